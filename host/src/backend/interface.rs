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

/// L_n and ∇L_n for up to C chains in one call.
pub trait Backend: Send {
    /// Backend, device and precision.
    fn info(&self) -> BackendInfo;
    /// Number of parameters D.
    fn dim(&self) -> usize;
    /// Number of training rows n.
    fn n_data(&self) -> usize;
    /// The most chains C one call evaluates (what the buffers were sized for).
    fn chains(&self) -> usize;
    /// Writes L(θ_k) for each of the K = `loss.len()` ≤ C positions into
    /// `loss[K]` and, when `grads` is given, ∇L(θ_k) into `grads[K×D]`.
    /// `positions` is K×D, chain-major. K < C evaluates only those K (a
    /// subset of the run's chains) and allocates nothing.
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

/// Checks the shapes of one evaluation's buffers; returns its chain count K
/// (`loss.len()`, 1 ≤ K ≤ C).
pub(crate) fn check_shapes(b: &dyn Backend, positions: &[f64], loss: &[f64], grads: Option<&[f64]>) -> Result<usize> {
    let (c, d, k) = (b.chains(), b.dim(), loss.len());
    crate::ensure!((1..=c).contains(&k), "loss has {k} values, expected 1 to C = {c} chains");
    crate::ensure!(positions.len() == k * d, "positions has {} values, expected K·D = {k}·{d}", positions.len());
    if let Some(g) = grads {
        crate::ensure!(g.len() == k * d, "grads has {} values, expected K·D = {k}·{d}", g.len());
    }
    Ok(k)
}
