//! Evaluation backends: L_n and its gradient for C chains at once.
//!
//! One trait, implemented by the CPU reference ([`cpu`]) and by the wgpu
//! backend ([`wgpu`](self::wgpu)); [`BackendFactory`] builds either from a
//! `--backend auto|cpu|wgpu` choice. Positions and gradients cross the trait in f64 (samplers
//! keep their state in f64); a backend may compute in f32 internally.

pub mod cpu;
pub mod quadratic;
pub mod wgpu;

use serde::Serialize;

use self::wgpu::{AdapterPolicy, GpuContext, WgpuBackend};
use crate::config::{LossKind, Precision};
use crate::error::{Error, Result};
use crate::model::MlpSpec;

/// Which rows of the training set an evaluation uses.
#[derive(Debug, Clone, Copy)]
pub enum Batch<'a> {
    /// All n rows.
    Full,
    /// These row indices (a minibatch); L is the mean over them.
    Rows(&'a [u32]),
}

/// What a run records about the backend that evaluated it.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// Which backend evaluates the model (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// wgpu on a hardware GPU adapter when there is one (never a software
    /// one such as llvmpipe), else the CPU. f64 runs on the GPU where the
    /// adapter has `SHADER_F64`, else on the CPU.
    Auto,
    /// The CPU reference backend, f64 or f32.
    Cpu,
    /// wgpu on the best adapter there is, a software one included: f32, and
    /// f64 where the adapter has `SHADER_F64` (an error where it has not).
    Wgpu,
}

/// Builds backends of one [`BackendKind`], opening the GPU (if any) once.
pub struct BackendFactory {
    kind: BackendKind,
    gpu: Option<GpuContext>,
    threads: usize,
}

impl BackendFactory {
    /// Resolves `kind`: opens the adapter `auto` or `wgpu` asks for. The CPU
    /// backend uses `threads` threads. An error for `wgpu` when wgpu finds no
    /// adapter.
    pub fn new(kind: BackendKind, threads: usize) -> Result<Self> {
        let gpu = match kind {
            BackendKind::Cpu => None,
            BackendKind::Auto => GpuContext::open(AdapterPolicy::Hardware)?,
            BackendKind::Wgpu => Some(GpuContext::open(AdapterPolicy::Any)?.ok_or_else(|| {
                Error::invalid(
                    "--backend wgpu: wgpu finds no adapter that runs compute shaders \
                     (install a Vulkan driver, e.g. Mesa's mesa-vulkan-drivers; `lh-host devices` lists what wgpu sees)",
                )
            })?),
        };
        Ok(Self { kind, gpu, threads })
    }

    /// The precisions this factory can build, f64 first (`wgpu` offers f64
    /// only where the adapter has `SHADER_F64`).
    pub fn precisions(&self) -> Vec<Precision> {
        match (&self.gpu, self.kind) {
            (Some(ctx), BackendKind::Wgpu) if !ctx.shader_f64() => vec![Precision::F32],
            _ => vec![Precision::F64, Precision::F32],
        }
    }

    /// Why a backend in `precision` will not run where `--backend` asked: for
    /// `auto` with a GPU that lacks f64, f64 falls back to the CPU. The
    /// binary prints it as a note.
    pub fn fallback_note(&self, precision: Precision) -> Option<String> {
        match (&self.gpu, precision) {
            (Some(ctx), Precision::F64) if self.kind == BackendKind::Auto && !ctx.shader_f64() => Some(format!(
                "adapter '{}' has no f64 in shaders (SHADER_F64): f64 runs on the CPU backend (--precision f32 runs on the GPU)",
                ctx.adapter_name()
            )),
            _ => None,
        }
    }

    /// A backend for `chains` chains over `data` in `precision`: wgpu when a
    /// GPU was opened (f64 only where it has `SHADER_F64`: else an error for
    /// `wgpu` and the CPU for `auto`), else the CPU.
    pub fn build(&self, spec: &MlpSpec, data: &Dataset, loss: LossKind, chains: usize, precision: Precision) -> Result<Box<dyn Backend>> {
        match (&self.gpu, precision) {
            (Some(ctx), Precision::F32) => Ok(Box::new(WgpuBackend::<f32>::new(ctx, spec, data, loss, chains, None)?)),
            (Some(ctx), Precision::F64) if ctx.shader_f64() || self.kind == BackendKind::Wgpu => {
                Ok(Box::new(WgpuBackend::<f64>::new(ctx, spec, data, loss, chains, None)?))
            }
            _ => cpu::new_backend(spec, data, loss, chains, precision, self.threads),
        }
    }
}
