//! `--backend auto|cpu|wgpu`: which backend evaluates a run, and building it.

use serde::{Deserialize, Serialize};

use super::cpu;
use super::interface::{Backend, Dataset};
use super::wgpu::{AdapterPolicy, GpuContext, WgpuBackend};
use crate::error::{Error, Result};
use crate::model::{LossKind, MlpSpec, Precision};

/// Which backend evaluates the model (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
