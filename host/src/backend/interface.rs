//! The evaluation interface every backend implements: L_n and ∇L_n for C
//! chains per call, the data set it evaluates on, and what a run records
//! about the backend.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{MlpSpec, Precision};

/// Which rows of the training set an evaluation uses.
#[derive(Debug, Clone, Copy)]
pub enum Batch<'a> {
    /// All n rows.
    Full,
    /// These row indices (a minibatch); L is the mean over them.
    Rows(&'a [u32]),
}

/// What a run records about the backend that evaluated it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// `cpu` or `wgpu`.
    pub backend: String,
    /// The device: CPU model and thread count, or the GPU adapter's name.
    pub adapter: String,
    pub precision: Precision,
}

/// A training set in row-major f64 arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// n × d_in.
    pub x: Vec<f64>,
    /// n × d_out.
    pub y: Vec<f64>,
    pub n: usize,
    pub d_in: usize,
    pub d_out: usize,
}

impl Dataset {
    /// Builds a data set, checking that the arrays have n·d entries.
    pub fn new(x: Vec<f64>, y: Vec<f64>, d_in: usize, d_out: usize) -> Result<Self> {
        crate::ensure!(d_in >= 1 && d_out >= 1, "data dimensions must be ≥ 1");
        crate::ensure!(x.len() % d_in == 0, "X has {} values, not a multiple of d_in = {d_in}", x.len());
        let n = x.len() / d_in;
        crate::ensure!(n >= 1, "the data set is empty");
        crate::ensure!(y.len() == n * d_out, "Y has {} values, expected n·d_out = {n}·{d_out}", y.len());
        Ok(Self { x, y, n, d_in, d_out })
    }
}

/// L_n and ∇L_n for all chains in one call.
pub trait Backend: Send {
    /// Backend, device and precision.
    fn info(&self) -> BackendInfo;
    /// Number of parameters D.
    fn dim(&self) -> usize;
    /// Number of training rows n.
    fn n_data(&self) -> usize;
    /// Number of chains C evaluated per call.
    fn chains(&self) -> usize;
    /// Writes L(θ_c) for each chain c into `loss[C]` and, when `grads` is given,
    /// ∇L(θ_c) into `grads[C×D]`. `positions` is C×D, chain-major.
    fn loss_grad(&mut self, positions: &[f64], batch: Batch<'_>, loss: &mut [f64], grads: Option<&mut [f64]>) -> Result<()>;
}

/// FLOPs of one full-batch loss-and-gradient of the MLP for `chains` chains
/// (6 · n · Σ fan_in·fan_out · C: forward, δ propagation, weight gradient).
pub fn gradient_flops(spec: &MlpSpec, n: usize, chains: usize) -> f64 {
    let macs: usize = spec.sizes().windows(2).map(|w| w[0] * w[1]).sum();
    6.0 * n as f64 * macs as f64 * chains as f64
}

/// Checks that a backend can be built: at least one chain, data shaped for the model.
pub(crate) fn check_model_data(spec: &MlpSpec, data: &Dataset, chains: usize) -> Result<()> {
    crate::ensure!(chains >= 1, "chains must be ≥ 1");
    crate::ensure!(
        data.d_in == spec.in_dim && data.d_out == spec.out_dim,
        "data is {}→{} but the model is {}→{}",
        data.d_in,
        data.d_out,
        spec.in_dim,
        spec.out_dim
    );
    Ok(())
}

/// Checks the shapes of one evaluation's buffers.
pub(crate) fn check_shapes(b: &dyn Backend, positions: &[f64], loss: &[f64], grads: Option<&[f64]>) -> Result<()> {
    let (c, d) = (b.chains(), b.dim());
    crate::ensure!(positions.len() == c * d, "positions has {} values, expected C·D = {c}·{d}", positions.len());
    crate::ensure!(loss.len() == c, "loss has {} values, expected C = {c}", loss.len());
    if let Some(g) = grads {
        crate::ensure!(g.len() == c * d, "grads has {} values, expected C·D = {c}·{d}", g.len());
    }
    Ok(())
}
