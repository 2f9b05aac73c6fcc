//! The WGSL kernels (`shaders/*.wgsl`, embedded at build time), how each
//! module is assembled for a precision, their tile sizes, and the dispatch
//! parameters they share with the host.

use bytemuck::{Pod, Zeroable};

use crate::model::{Activation, Precision};

/// Largest size of one per-row intermediate buffer (Z, H or Δ of one layer for
/// all chains of a chunk of rows), and of the partial-gradient buffer.
pub const CHUNK_BYTES: u64 = 256 << 20;

/// Most slices of rows a chunk's weight gradient is split into.
pub(super) const MAX_SPLITS: usize = 64;

/// Rows per slice of the weight gradient, before the slice count is capped.
pub(super) const ROWS_PER_SPLIT: usize = 256;

/// Output tile of the GEMM kernel (rows and columns per workgroup).
pub(super) const GEMM_TILE: u32 = 64;

/// Layers with at most this many outputs (the output layer, typically) run
/// the narrow kernel instead of the GEMM, whose 64-wide tiles they would
/// mostly leave empty.
pub const NARROW_MAX: usize = 4;

/// Columns of the gradient per workgroup of the narrow kernel.
pub(super) const NARROW_COLS: u32 = 64;

/// Threads per workgroup of the loss and reduction kernels.
pub(super) const THREADS: u32 = 256;

/// The WGSL files, embedded at build time.
pub mod source {
    /// The dispatch parameters shared by every kernel.
    pub const COMMON: &str = include_str!("../../../../shaders/common.wgsl");
    /// exp, tanh and erfc in f32 (GLSL.std.450's, and a Chebyshev fit of erfc).
    pub const MATH_F32: &str = include_str!("../../../../shaders/math_f32.wgsl");
    /// exp, tanh and erfc in f64 arithmetic (Vulkan has no f64 exp or tanh).
    pub const MATH_F64: &str = include_str!("../../../../shaders/math_f64.wgsl");
    /// The activations and their derivatives (gelu's erf included).
    pub const ACTIVATION: &str = include_str!("../../../../shaders/activation.wgsl");
    /// The bindings and layer input shared by the two layer kernels.
    pub const LAYER: &str = include_str!("../../../../shaders/layer.wgsl");
    /// The batched, tiled matrix product with the layers' epilogues.
    pub const GEMM: &str = include_str!("../../../../shaders/gemm.wgsl");
    /// The same products for layers of at most `NARROW_MAX` outputs.
    pub const NARROW: &str = include_str!("../../../../shaders/narrow.wgsl");
    /// Residuals, the output layer's Δ and the per-chain Σr².
    pub const LOSS: &str = include_str!("../../../../shaders/loss.wgsl");
    /// Sums the weight gradient's per-slice partial sums.
    pub const REDUCE: &str = include_str!("../../../../shaders/reduce.wgsl");
}

/// The compute kernels, each one WGSL module with one entry point `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Forward, Δ propagation and weight gradient (`gemm.wgsl`).
    Gemm,
    /// The same for layers of at most [`NARROW_MAX`] outputs (`narrow.wgsl`).
    Narrow,
    /// Residuals and loss (`loss.wgsl`).
    Loss,
    /// Partial-gradient reduction (`reduce.wgsl`).
    Reduce,
}

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 4] = [Kernel::Gemm, Kernel::Narrow, Kernel::Loss, Kernel::Reduce];

    /// The kernel's whole module in `precision`: WGSL has neither includes
    /// nor generics, so the alias `real` (f32 or f64), the narrow kernel's
    /// `NARROW` and the shared files are put in front of the kernel's own.
    pub fn source(self, precision: Precision) -> String {
        let (scalar, math) = match precision {
            Precision::F32 => ("f32", source::MATH_F32),
            Precision::F64 => ("f64", source::MATH_F64),
        };
        let alias = format!("alias real = {scalar};\n");
        match self {
            Kernel::Gemm => [&alias, source::COMMON, math, source::ACTIVATION, source::LAYER, source::GEMM].concat(),
            Kernel::Narrow => {
                let narrow = format!("const NARROW: u32 = {NARROW_MAX}u;\n");
                [&alias, &narrow, source::COMMON, math, source::ACTIVATION, source::LAYER, source::NARROW].concat()
            }
            Kernel::Loss => [&alias, source::COMMON, source::LOSS].concat(),
            Kernel::Reduce => [&alias, source::COMMON, source::REDUCE].concat(),
        }
    }

    /// A label for wgpu objects and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Gemm => "gemm.wgsl",
            Kernel::Narrow => "narrow.wgsl",
            Kernel::Loss => "loss.wgsl",
            Kernel::Reduce => "reduce.wgsl",
        }
    }
}

/// The parameters of one dispatch: `struct Params` of `shaders/common.wgsl`,
/// field for field (a unit test checks the layouts against each other).
/// Integers only, so that the layout is the same in both precisions.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Pod, Zeroable)]
pub struct Params {
    /// Rows in this chunk of the batch.
    pub rows: u32,
    /// The chunk's first row within the batch.
    pub row0: u32,
    /// Where the batch's row indices start in the index buffer (0: the identity list).
    pub idx_base: u32,
    /// Chains C.
    pub chains: u32,
    /// Parameters per chain D.
    pub dim: u32,
    /// The layer's input width.
    pub fan_in: u32,
    /// The layer's output width.
    pub fan_out: u32,
    /// Offset of the layer's W in θ.
    pub w_off: u32,
    /// Offset of the layer's b in θ (0 without biases).
    pub b_off: u32,
    /// 1 when the layer has a bias.
    pub has_bias: u32,
    /// 1 when the layer's input is X, read through the row indices (the first layer).
    pub gather: u32,
    /// 1 for a hidden layer (activation applied, H written).
    pub hidden: u32,
    /// Rows per slice of the weight gradient.
    pub split_rows: u32,
    /// Slices of the weight gradient in this chunk.
    pub splits: u32,
    /// Outputs per row.
    pub d_out: u32,
}

/// The `ACTIVATION` override of `activation.wgsl`.
pub fn activation_code(a: Activation) -> u32 {
    match a {
        Activation::Relu => 0,
        Activation::Tanh => 1,
        Activation::Gelu => 2,
        Activation::Identity => 3,
    }
}
