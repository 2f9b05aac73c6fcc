//! The wgpu backend: forward and backward of the MLP as WGSL compute shaders
//! (`shaders/*.wgsl` at the repository root), all chains at once, in f32 or,
//! where the adapter has `SHADER_F64`, in f64 ([`WgpuBackend<T>`] for
//! T = f32 or f64). Both precisions are assembled from the same WGSL, with
//! the scalar type `real` aliased to one or the other; only the transcendental
//! functions have a file per precision (`math_f32.wgsl`, `math_f64.wgsl`).
//!
//! One evaluation writes θ (C × D, converted to T) and, for a minibatch, its
//! row indices to the GPU, records one command buffer and reads back Σr² per
//! chain and the C × D gradient with one mapping. Every buffer, bind group and
//! pipeline is created once, in [`WgpuBackend::new`]; the data is uploaded
//! there too.
//!
//! The rows of a batch are processed in chunks (all in the same submission) so
//! that each per-row intermediate (Z, H and Δ of all chains) stays below
//! [`CHUNK_BYTES`]. Within a chunk a layer's weight gradient, whose inner
//! dimension is the number of rows, is cut into slices of rows that run in
//! parallel; a reduction kernel adds the slices' partial sums to the gradient.
//! Layers of at most [`NARROW_MAX`] outputs (the output layer, typically) run
//! a kernel of their own instead of the tiled GEMM.

use std::num::NonZeroU64;
use std::sync::mpsc;

use ::wgpu::util::DeviceExt;
use bytemuck::{Pod, Zeroable};
use serde::Serialize;

use super::cpu::Real;
use super::{check_shapes, Backend, BackendInfo, Batch, Dataset};
use crate::config::{LossKind, Precision};
use crate::error::{Error, Result};
use crate::model::{Activation, LayerLayout, MlpSpec};

/// Largest size of one per-row intermediate buffer (Z, H or Δ of one layer for
/// all chains of a chunk of rows), and of the partial-gradient buffer.
pub const CHUNK_BYTES: u64 = 256 << 20;

/// Most slices of rows a chunk's weight gradient is split into.
const MAX_SPLITS: usize = 64;

/// Rows per slice of the weight gradient, before the slice count is capped.
const ROWS_PER_SPLIT: usize = 256;

/// Output tile of the GEMM kernel (rows and columns per workgroup).
const GEMM_TILE: u32 = 64;

/// Layers with at most this many outputs (the output layer, typically) run
/// the narrow kernel instead of the GEMM, whose 64-wide tiles they would
/// mostly leave empty.
pub const NARROW_MAX: usize = 4;

/// Columns of the gradient per workgroup of the narrow kernel.
const NARROW_COLS: u32 = 64;

/// Threads per workgroup of the loss and reduction kernels.
const THREADS: u32 = 256;

/// The WGSL files, embedded at build time.
pub mod source {
    /// The dispatch parameters shared by every kernel.
    pub const COMMON: &str = include_str!("../../../shaders/common.wgsl");
    /// exp, tanh and erfc in f32 (GLSL.std.450's, and a Chebyshev fit of erfc).
    pub const MATH_F32: &str = include_str!("../../../shaders/math_f32.wgsl");
    /// exp, tanh and erfc in f64 arithmetic (Vulkan has no f64 exp or tanh).
    pub const MATH_F64: &str = include_str!("../../../shaders/math_f64.wgsl");
    /// The activations and their derivatives (gelu's erf included).
    pub const ACTIVATION: &str = include_str!("../../../shaders/activation.wgsl");
    /// The bindings and layer input shared by the two layer kernels.
    pub const LAYER: &str = include_str!("../../../shaders/layer.wgsl");
    /// The batched, tiled matrix product with the layers' epilogues.
    pub const GEMM: &str = include_str!("../../../shaders/gemm.wgsl");
    /// The same products for layers of at most `NARROW_MAX` outputs.
    pub const NARROW: &str = include_str!("../../../shaders/narrow.wgsl");
    /// Residuals, the output layer's Δ and the per-chain Σr².
    pub const LOSS: &str = include_str!("../../../shaders/loss.wgsl");
    /// Sums the weight gradient's per-slice partial sums.
    pub const REDUCE: &str = include_str!("../../../shaders/reduce.wgsl");
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

/// Which adapters may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Hardware GPUs only (discrete, integrated or virtual): what `auto` takes.
    Hardware,
    /// The best adapter there is, a software rasteriser such as lavapipe included.
    Any,
}

/// One adapter, as `lh-host devices` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. `NVIDIA H100 80GB HBM3` or `llvmpipe (…)`.
    pub name: String,
    /// Vulkan, Metal, Dx12, …
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu or Other.
    pub device_type: String,
    /// Driver name and version, as the adapter reports them.
    pub driver: String,
    /// Whether the adapter offers f64 in shaders (`SHADER_F64`).
    pub shader_f64: bool,
    /// Whether it can run compute shaders at all.
    pub compute: bool,
    /// Whether `--backend auto` may pick it.
    pub hardware: bool,
}

fn instance() -> ::wgpu::Instance {
    ::wgpu::Instance::new(::wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Preference order of device types; `None` for those `policy` excludes.
fn rank(t: ::wgpu::DeviceType, policy: AdapterPolicy) -> Option<u8> {
    use ::wgpu::DeviceType as T;
    match (t, policy) {
        (T::DiscreteGpu, _) => Some(0),
        (T::IntegratedGpu, _) => Some(1),
        (T::VirtualGpu, _) => Some(2),
        (T::Cpu, AdapterPolicy::Any) => Some(3),
        (T::Other, AdapterPolicy::Any) => Some(4),
        (T::Cpu | T::Other, AdapterPolicy::Hardware) => None,
    }
}

fn can_compute(a: &::wgpu::Adapter) -> bool {
    a.get_downlevel_capabilities().flags.contains(::wgpu::DownlevelFlags::COMPUTE_SHADERS)
}

/// Every adapter wgpu finds, in the order [`GpuContext::open`] prefers them.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let mut all: Vec<_> = pollster::block_on(instance().enumerate_adapters(::wgpu::Backends::all()))
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            let order = (!can_compute(&a), rank(info.device_type, AdapterPolicy::Any));
            let summary = AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
                shader_f64: a.features().contains(::wgpu::Features::SHADER_F64),
                compute: can_compute(&a),
                hardware: rank(info.device_type, AdapterPolicy::Hardware).is_some(),
            };
            (order, summary)
        })
        .collect();
    all.sort_by_key(|(order, _)| *order);
    all.into_iter().map(|(_, s)| s).collect()
}

/// An opened wgpu device and its queue. Cloning shares the device.
#[derive(Clone)]
pub struct GpuContext {
    device: ::wgpu::Device,
    queue: ::wgpu::Queue,
    info: ::wgpu::AdapterInfo,
}

impl GpuContext {
    /// Opens the most preferred adapter `policy` allows (discrete before
    /// integrated before virtual before software), with the adapter's own
    /// limits and, where it has it, `SHADER_F64`. `Ok(None)` when there is no
    /// such adapter.
    pub fn open(policy: AdapterPolicy) -> Result<Option<Self>> {
        let adapters = pollster::block_on(instance().enumerate_adapters(::wgpu::Backends::all()));
        let Some(adapter) = adapters
            .into_iter()
            .filter(can_compute)
            .filter_map(|a| rank(a.get_info().device_type, policy).map(|r| (r, a)))
            .min_by_key(|(r, _)| *r)
            .map(|(_, a)| a)
        else {
            return Ok(None);
        };
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&::wgpu::DeviceDescriptor {
            label: Some("lh-host"),
            required_features: adapter.features() & ::wgpu::Features::SHADER_F64,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| Error::invalid(format!("wgpu: cannot open a device on adapter '{}': {e}", info.name)))?;
        Ok(Some(Self { device, queue, info }))
    }

    /// The adapter's name and wgpu back end, e.g. `NVIDIA H100 (Vulkan)`.
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// Whether the device runs f64 shaders (the adapter has `SHADER_F64`).
    pub fn shader_f64(&self) -> bool {
        self.device.features().contains(::wgpu::Features::SHADER_F64)
    }
}

/// Runs `f` inside a validation and an out-of-memory error scope, turning
/// wgpu errors into [`Error`]s that say what was being done.
fn scoped<T>(device: &::wgpu::Device, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let oom = device.push_error_scope(::wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(::wgpu::ErrorFilter::Validation);
    let out = f();
    let errors = [pollster::block_on(validation.pop()), pollster::block_on(oom.pop())];
    if let Some(e) = errors.into_iter().flatten().next() {
        return Err(Error::invalid(format!("wgpu: {what}: {e}")));
    }
    out
}

/// The three pipelines of one layer kernel (its MODEs).
struct LayerPipelines {
    forward: ::wgpu::ComputePipeline,
    delta: ::wgpu::ComputePipeline,
    gradient: ::wgpu::ComputePipeline,
}

/// The compute pipelines of one backend.
struct Pipelines {
    /// For layers of more than [`NARROW_MAX`] outputs.
    gemm: LayerPipelines,
    /// For layers of at most [`NARROW_MAX`] outputs.
    narrow: LayerPipelines,
    loss: ::wgpu::ComputePipeline,
    reduce: ::wgpu::ComputePipeline,
}

/// The bind groups of one backend, each bound with a dynamic offset into the
/// parameter buffer.
struct Groups {
    /// Per layer.
    forward: Vec<::wgpu::BindGroup>,
    /// Per layer.
    gradient: Vec<::wgpu::BindGroup>,
    /// Per layer l ≥ 1 (Δ_l → Δ_{l−1}); index l − 1.
    delta: Vec<::wgpu::BindGroup>,
    loss: ::wgpu::BindGroup,
    reduce: ::wgpu::BindGroup,
}

/// The wgpu backend, computing in T (f32, or f64 where the adapter has
/// `SHADER_F64`). Build it with [`WgpuBackend::new`].
pub struct WgpuBackend<T> {
    ctx: GpuContext,
    spec: MlpSpec,
    layout: Vec<LayerLayout>,
    n: usize,
    chains: usize,
    loss_kind: LossKind,
    /// Rows per chunk.
    chunk_rows: usize,
    /// Most slices per chunk of the weight gradient.
    max_splits: usize,
    /// Bytes between two dispatches' parameters.
    params_stride: u64,
    /// The adapter's most workgroups per dispatch dimension.
    max_groups: u32,
    pipelines: Pipelines,
    groups: Groups,
    theta: ::wgpu::Buffer,
    idx: ::wgpu::Buffer,
    params: ::wgpu::Buffer,
    sse: ::wgpu::Buffer,
    grad: ::wgpu::Buffer,
    staging: ::wgpu::Buffer,
    /// Z, H, Δ and the partial gradients (poisoned by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    intermediates: Vec<::wgpu::Buffer>,
    /// Host scratch, allocated once: θ in T and the dispatches' parameters.
    theta_host: Vec<T>,
    params_host: Vec<u8>,
}

/// Dispatches per chunk: forward per layer, loss, gradient per layer, Δ per
/// layer but the first, reduction.
fn dispatches_per_chunk(layers: usize) -> usize {
    3 * layers + 1
}

impl<T: Real + Pod> WgpuBackend<T> {
    /// Bytes per value of T.
    const SIZE: usize = std::mem::size_of::<T>();

    /// A backend on `ctx` over `data` for `chains` chains, processing at most
    /// `max_chunk_rows` rows per chunk (`None`: as many as fit in
    /// [`CHUNK_BYTES`] per buffer). A minibatch may hold up to n rows. An
    /// error for f64 when the adapter lacks `SHADER_F64`.
    pub fn new(
        ctx: &GpuContext,
        spec: &MlpSpec,
        data: &Dataset,
        loss: LossKind,
        chains: usize,
        max_chunk_rows: Option<usize>,
    ) -> Result<Self> {
        super::check_model_data(spec, data, chains)?;
        crate::ensure!(
            T::PRECISION == Precision::F32 || ctx.shader_f64(),
            "wgpu backend: adapter '{}' has no f64 in shaders (SHADER_F64): use --precision f32, or --backend cpu for f64",
            ctx.adapter_name()
        );
        scoped(&ctx.device, "creating the buffers and pipelines of the wgpu backend", || {
            Self::build(ctx, spec, data, loss, chains, max_chunk_rows)
        })
    }

    fn build(
        ctx: &GpuContext,
        spec: &MlpSpec,
        data: &Dataset,
        loss: LossKind,
        chains: usize,
        max_chunk_rows: Option<usize>,
    ) -> Result<Self> {
        let device = &ctx.device;
        let limits = device.limits();
        let layout = spec.layout();
        let n_layers = layout.len();
        let (n, dim) = (data.n, spec.n_params());
        let max_fan_out = layout.iter().map(|l| l.fan_out).max().unwrap_or(1);
        let bind_limit = CHUNK_BYTES.min(u64::from(limits.max_storage_buffer_binding_size)).min(limits.max_buffer_size);
        let max_groups = limits.max_compute_workgroups_per_dimension as usize;
        let fits = |what: &str, count: usize, size: usize| -> Result<()> {
            crate::ensure!(
                count <= u32::MAX as usize && (count * size) as u64 <= bind_limit,
                "wgpu backend: {what} needs {count} values, more than one buffer binding holds ({bind_limit} bytes on '{}')",
                ctx.info.name
            );
            Ok(())
        };
        fits("θ for all chains (C·D)", chains * dim, Self::SIZE)?;
        fits("the training inputs (n·d_in)", n * data.d_in, Self::SIZE)?;
        fits("the row indices (2n)", 2 * n, 4)?;
        crate::ensure!(chains <= max_groups, "wgpu backend: {chains} chains exceed the adapter's {max_groups} workgroups per dispatch dimension");

        let per_row = (chains * max_fan_out * Self::SIZE) as u64;
        let mut chunk_rows = ((bind_limit / per_row) as usize).min(n).min(max_groups * GEMM_TILE as usize);
        if let Some(m) = max_chunk_rows {
            chunk_rows = chunk_rows.min(m.max(1));
        }
        crate::ensure!(chunk_rows >= 1, "wgpu backend: one row of intermediates for {chains} chains exceeds {bind_limit} bytes");
        if chunk_rows > GEMM_TILE as usize && chunk_rows < n {
            chunk_rows -= chunk_rows % GEMM_TILE as usize;
        }
        let max_splits = MAX_SPLITS
            .min((bind_limit / (chains * dim * Self::SIZE) as u64) as usize)
            .min(max_groups / chains)
            .min(chunk_rows.div_ceil(ROWS_PER_SPLIT))
            .max(1);
        let n_chunks = n.div_ceil(chunk_rows);
        let align = u64::from(limits.min_uniform_buffer_offset_alignment);
        let params_stride = (std::mem::size_of::<Params>() as u64).div_ceil(align) * align;
        let params_bytes = params_stride * (n_chunks * dispatches_per_chunk(n_layers)) as u64;

        use ::wgpu::BufferUsages as U;
        let storage = |label: &str, values: usize, extra: U| {
            device.create_buffer(&::wgpu::BufferDescriptor {
                label: Some(label),
                size: (values.max(1) * Self::SIZE) as u64,
                usage: U::STORAGE | extra,
                mapped_at_creation: false,
            })
        };
        let init = |label: &str, contents: &[u8], usage: U| {
            device.create_buffer_init(&::wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage })
        };
        let to_real = |v: &[f64]| v.iter().map(|x| T::from_f64(*x)).collect::<Vec<T>>();
        let x = init("X", bytemuck::cast_slice(&to_real(&data.x)), U::STORAGE);
        let y = init("Y", bytemuck::cast_slice(&to_real(&data.y)), U::STORAGE);
        let identity: Vec<u32> = (0..n as u32).chain(std::iter::repeat_n(0, n)).collect();
        let idx = init("row indices", bytemuck::cast_slice(&identity), U::STORAGE | U::COPY_DST);
        let theta = storage("theta", chains * dim, U::COPY_DST);
        let grad = storage("grad", chains * dim, U::COPY_SRC | U::COPY_DST);
        let sse = storage("sse", chains, U::COPY_SRC | U::COPY_DST);
        let part = storage("partial gradients", max_splits * chains * dim, U::COPY_DST);
        let z: Vec<_> = layout.iter().enumerate().map(|(l, ly)| storage(&format!("Z{l}"), chains * chunk_rows * ly.fan_out, U::COPY_DST)).collect();
        let h: Vec<_> = layout[..n_layers - 1]
            .iter()
            .enumerate()
            .map(|(l, ly)| storage(&format!("H{l}"), chains * chunk_rows * ly.fan_out, U::COPY_DST))
            .collect();
        let deltas: Vec<_> = (0..2).map(|i| storage(&format!("delta{i}"), chains * chunk_rows * max_fan_out, U::COPY_DST)).collect();
        let dummy_read = storage("unused (read)", 1, U::empty());
        let dummy_write = storage("unused (write)", 1, U::empty());
        let params = device.create_buffer(&::wgpu::BufferDescriptor {
            label: Some("dispatch parameters"),
            size: params_bytes,
            usage: U::UNIFORM | U::COPY_DST,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&::wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: ((chains + chains * dim) * Self::SIZE) as u64,
            usage: U::MAP_READ | U::COPY_DST,
            mapped_at_creation: false,
        });

        // One layout for every kernel: the parameters, four read-only and two
        // read-write storage buffers (a kernel uses a subset).
        let storage_entry = |binding: u32, read_only: bool| ::wgpu::BindGroupLayoutEntry {
            binding,
            visibility: ::wgpu::ShaderStages::COMPUTE,
            ty: ::wgpu::BindingType::Buffer { ty: ::wgpu::BufferBindingType::Storage { read_only }, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        };
        let params_size = NonZeroU64::new(std::mem::size_of::<Params>() as u64);
        let mut entries = vec![::wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: ::wgpu::ShaderStages::COMPUTE,
            ty: ::wgpu::BindingType::Buffer { ty: ::wgpu::BufferBindingType::Uniform, has_dynamic_offset: true, min_binding_size: params_size },
            count: None,
        }];
        entries.extend((1..=4).map(|b| storage_entry(b, true)));
        entries.extend((5..=6).map(|b| storage_entry(b, false)));
        let bgl = device.create_bind_group_layout(&::wgpu::BindGroupLayoutDescriptor { label: Some("lh-host kernels"), entries: &entries });
        let pl = device.create_pipeline_layout(&::wgpu::PipelineLayoutDescriptor {
            label: Some("lh-host kernels"),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let module = |k: Kernel| {
            device.create_shader_module(::wgpu::ShaderModuleDescriptor {
                label: Some(k.name()),
                source: ::wgpu::ShaderSource::Wgsl(k.source(T::PRECISION).into()),
            })
        };
        let (loss_module, reduce_module) = (module(Kernel::Loss), module(Kernel::Reduce));
        let activation = f64::from(activation_code(spec.activation));
        let pipeline = |label: &str, m: &::wgpu::ShaderModule, constants: &[(&str, f64)]| {
            device.create_compute_pipeline(&::wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: Some(&pl),
                module: m,
                entry_point: Some("main"),
                compilation_options: ::wgpu::PipelineCompilationOptions { constants, zero_initialize_workgroup_memory: false },
                cache: None,
            })
        };
        let layer_pipelines = |k: Kernel| {
            let m = module(k);
            LayerPipelines {
                forward: pipeline("forward", &m, &[("MODE", 0.0), ("ACTIVATION", activation)]),
                delta: pipeline("delta", &m, &[("MODE", 1.0), ("ACTIVATION", activation)]),
                gradient: pipeline("gradient", &m, &[("MODE", 2.0), ("ACTIVATION", activation)]),
            }
        };
        let pipelines = Pipelines {
            gemm: layer_pipelines(Kernel::Gemm),
            narrow: layer_pipelines(Kernel::Narrow),
            loss: pipeline("loss", &loss_module, &[]),
            reduce: pipeline("reduce", &reduce_module, &[]),
        };

        let group = |label: &str, b: [&::wgpu::Buffer; 6]| {
            let mut e = vec![::wgpu::BindGroupEntry {
                binding: 0,
                resource: ::wgpu::BindingResource::Buffer(::wgpu::BufferBinding { buffer: &params, offset: 0, size: params_size }),
            }];
            e.extend(b.iter().enumerate().map(|(i, buf)| ::wgpu::BindGroupEntry { binding: i as u32 + 1, resource: buf.as_entire_binding() }));
            device.create_bind_group(&::wgpu::BindGroupDescriptor { label: Some(label), layout: &bgl, entries: &e })
        };
        // Δ_l lives in deltas[(L − 1 − l) % 2], so Δ propagation reads one and writes the other.
        let delta_of = |l: usize| &deltas[(n_layers - 1 - l) % 2];
        let input_of = |l: usize| if l == 0 { &x } else { &h[l - 1] };
        let groups = Groups {
            forward: (0..n_layers)
                .map(|l| {
                    let out2 = if l + 1 < n_layers { &h[l] } else { &dummy_write };
                    group("forward", [input_of(l), &theta, &idx, &dummy_read, &z[l], out2])
                })
                .collect(),
            gradient: (0..n_layers).map(|l| group("gradient", [input_of(l), &theta, &idx, delta_of(l), &part, &dummy_write])).collect(),
            delta: (1..n_layers).map(|l| group("delta", [&z[l - 1], &theta, &idx, delta_of(l), delta_of(l - 1), &dummy_write])).collect(),
            loss: group("loss", [&z[n_layers - 1], &y, &idx, &dummy_read, delta_of(n_layers - 1), &sse]),
            reduce: group("reduce", [&part, &dummy_read, &dummy_read, &dummy_read, &grad, &dummy_write]),
        };

        let mut intermediates = z;
        intermediates.extend(h);
        intermediates.extend(deltas);
        intermediates.push(part);
        Ok(Self {
            ctx: ctx.clone(),
            spec: spec.clone(),
            layout,
            n,
            chains,
            loss_kind: loss,
            chunk_rows,
            max_splits,
            params_stride,
            max_groups: max_groups as u32,
            pipelines,
            groups,
            theta,
            idx,
            params,
            sse,
            grad,
            staging,
            intermediates,
            theta_host: vec![T::ZERO; chains * dim],
            params_host: vec![0; params_bytes as usize],
        })
    }

    /// Rows per chunk (the batch is processed in ⌈rows / chunk⌉ chunks).
    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    /// Fills every intermediate and output buffer with NaN, so that an element
    /// an evaluation fails to write shows up in its result.
    #[cfg(test)]
    fn poison(&self) {
        let q = &self.ctx.queue;
        for b in self.intermediates.iter().chain([&self.sse, &self.grad, &self.staging]) {
            q.write_buffer(b, 0, bytemuck::cast_slice(&vec![T::from_f64(f64::NAN); b.size() as usize / Self::SIZE]));
        }
        q.submit([]);
    }

    /// Writes every dispatch's parameters for a batch of `rows` rows whose
    /// indices start at `idx_base`; returns the bytes used.
    fn write_params(&mut self, rows: usize, idx_base: usize) -> usize {
        let d_out = self.spec.out_dim;
        let n_layers = self.layout.len();
        let stride = self.params_stride as usize;
        let mut slot = 0;
        for row0 in (0..rows).step_by(self.chunk_rows) {
            let chunk = self.chunk_rows.min(rows - row0);
            let splits = chunk.div_ceil(ROWS_PER_SPLIT).clamp(1, self.max_splits);
            let base = Params {
                rows: chunk as u32,
                row0: row0 as u32,
                idx_base: idx_base as u32,
                chains: self.chains as u32,
                dim: self.spec.n_params() as u32,
                split_rows: chunk.div_ceil(splits) as u32,
                splits: splits as u32,
                d_out: d_out as u32,
                ..Params::default()
            };
            let layer = |l: usize| {
                let ly = &self.layout[l];
                Params {
                    fan_in: ly.fan_in as u32,
                    fan_out: ly.fan_out as u32,
                    w_off: ly.w as u32,
                    b_off: ly.b.unwrap_or(0) as u32,
                    has_bias: u32::from(ly.b.is_some()),
                    gather: u32::from(l == 0),
                    hidden: u32::from(l + 1 < n_layers),
                    ..base
                }
            };
            let order = (0..n_layers)
                .map(layer)
                .chain([base])
                .chain((0..n_layers).rev().flat_map(|l| std::iter::repeat_n(layer(l), if l > 0 { 2 } else { 1 })))
                .chain([base]);
            for p in order {
                self.params_host[slot * stride..slot * stride + std::mem::size_of::<Params>()].copy_from_slice(bytemuck::bytes_of(&p));
                slot += 1;
            }
        }
        slot * stride
    }

    /// Records the evaluation of a batch of `rows` rows into `encoder`.
    fn record(&self, encoder: &mut ::wgpu::CommandEncoder, rows: usize, want_grad: bool) {
        let n_layers = self.layout.len();
        let c = self.chains as u32;
        let tiles = |v: usize| (v as u32).div_ceil(GEMM_TILE);
        // Workgroups (x, y) of THREADS threads for `elements` elements, as
        // few rows of at most max_groups as hold them.
        let grid = |elements: usize| {
            let groups = elements.div_ceil(THREADS as usize) as u32;
            let x = groups.min(self.max_groups);
            (x, groups.div_ceil(x))
        };
        let (reduce_x, reduce_y) = grid(self.chains * self.spec.n_params());
        let mut pass = encoder.begin_compute_pass(&::wgpu::ComputePassDescriptor { label: Some("loss and gradient"), timestamp_writes: None });
        for (chunk_index, row0) in (0..rows).step_by(self.chunk_rows).enumerate() {
            let chunk = self.chunk_rows.min(rows - row0);
            let splits = chunk.div_ceil(ROWS_PER_SPLIT).clamp(1, self.max_splits) as u32;
            // The dispatches take consecutive parameter slots, in the order `write_params` writes them.
            let mut slot = (chunk_index * dispatches_per_chunk(n_layers)) as u64;
            let mut bind = |pass: &mut ::wgpu::ComputePass<'_>, pipeline: &::wgpu::ComputePipeline, group: &::wgpu::BindGroup| {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, group, &[(slot * self.params_stride) as u32]);
                slot += 1;
            };
            let narrow = |l: usize| self.layout[l].fan_out <= NARROW_MAX;
            for (l, ly) in self.layout.iter().enumerate() {
                if narrow(l) {
                    bind(&mut pass, &self.pipelines.narrow.forward, &self.groups.forward[l]);
                    let (x, y) = grid(chunk);
                    pass.dispatch_workgroups(x, y, c);
                } else {
                    bind(&mut pass, &self.pipelines.gemm.forward, &self.groups.forward[l]);
                    pass.dispatch_workgroups(tiles(ly.fan_out), tiles(chunk), c);
                }
            }
            bind(&mut pass, &self.pipelines.loss, &self.groups.loss);
            pass.dispatch_workgroups(c, 1, 1);
            if !want_grad {
                continue;
            }
            for l in (0..n_layers).rev() {
                let ly = &self.layout[l];
                let columns = ly.fan_in + usize::from(ly.b.is_some());
                if narrow(l) {
                    bind(&mut pass, &self.pipelines.narrow.gradient, &self.groups.gradient[l]);
                    pass.dispatch_workgroups((columns as u32).div_ceil(NARROW_COLS), 1, c * splits);
                } else {
                    bind(&mut pass, &self.pipelines.gemm.gradient, &self.groups.gradient[l]);
                    pass.dispatch_workgroups(tiles(columns), tiles(ly.fan_out), c * splits);
                }
                if l == 0 {
                    continue;
                }
                if narrow(l) {
                    bind(&mut pass, &self.pipelines.narrow.delta, &self.groups.delta[l - 1]);
                    let (x, y) = grid(chunk * ly.fan_in);
                    pass.dispatch_workgroups(x, y, c);
                } else {
                    bind(&mut pass, &self.pipelines.gemm.delta, &self.groups.delta[l - 1]);
                    pass.dispatch_workgroups(tiles(ly.fan_in), tiles(chunk), c);
                }
            }
            bind(&mut pass, &self.pipelines.reduce, &self.groups.reduce);
            pass.dispatch_workgroups(reduce_x, reduce_y, 1);
        }
    }
}

/// The `ACTIVATION` override of `activation.wgsl`.
fn activation_code(a: Activation) -> u32 {
    match a {
        Activation::Relu => 0,
        Activation::Tanh => 1,
        Activation::Gelu => 2,
        Activation::Identity => 3,
    }
}

impl<T: Real + Pod> Backend for WgpuBackend<T> {
    fn info(&self) -> BackendInfo {
        BackendInfo { backend: "wgpu".into(), adapter: self.ctx.adapter_name(), precision: T::PRECISION }
    }
    fn dim(&self) -> usize {
        self.spec.n_params()
    }
    fn n_data(&self) -> usize {
        self.n
    }
    fn chains(&self) -> usize {
        self.chains
    }

    fn loss_grad(&mut self, positions: &[f64], batch: Batch<'_>, loss: &mut [f64], grads: Option<&mut [f64]>) -> Result<()> {
        check_shapes(self, positions, loss, grads.as_deref())?;
        let (c, dim, d_out) = (self.chains, self.dim(), self.spec.out_dim);
        let q = self.ctx.queue.clone();
        let (rows, idx_base) = match batch {
            Batch::Full => (self.n, 0),
            Batch::Rows(idx) => {
                crate::ensure!(!idx.is_empty(), "a minibatch must have at least one row");
                crate::ensure!(
                    idx.len() <= self.n,
                    "a minibatch of {} rows exceeds the wgpu backend's capacity of n = {} rows",
                    idx.len(),
                    self.n
                );
                if let Some(&i) = idx.iter().find(|&&i| i as usize >= self.n) {
                    return Err(Error::invalid(format!("minibatch row {i} is out of range (n = {})", self.n)));
                }
                q.write_buffer(&self.idx, (self.n * 4) as u64, bytemuck::cast_slice(idx));
                (idx.len(), self.n)
            }
        };
        for (t, p) in self.theta_host.iter_mut().zip(positions) {
            *t = T::from_f64(*p);
        }
        q.write_buffer(&self.theta, 0, bytemuck::cast_slice(&self.theta_host));
        let used = self.write_params(rows, idx_base);
        q.write_buffer(&self.params, 0, &self.params_host[..used]);

        let want_grad = grads.is_some();
        let device = self.ctx.device.clone();
        let (sse_bytes, grad_bytes) = ((c * Self::SIZE) as u64, (c * dim * Self::SIZE) as u64);
        let read_bytes = sse_bytes + if want_grad { grad_bytes } else { 0 };
        let loss_of_sse = match self.loss_kind {
            LossKind::Mse => 1.0 / (rows * d_out) as f64,
            LossKind::HalfSse => 0.5 / rows as f64,
        };
        // L = k·Σr², so dL/dpred = 2k·r: the kernels propagate Δ = r.
        let grad_of_residual = 2.0 * loss_of_sse;
        scoped(&device, "evaluating the loss and gradient", || {
            let mut encoder = device.create_command_encoder(&::wgpu::CommandEncoderDescriptor { label: Some("loss and gradient") });
            encoder.clear_buffer(&self.sse, 0, None);
            if want_grad {
                encoder.clear_buffer(&self.grad, 0, None);
            }
            self.record(&mut encoder, rows, want_grad);
            encoder.copy_buffer_to_buffer(&self.sse, 0, &self.staging, 0, sse_bytes);
            if want_grad {
                encoder.copy_buffer_to_buffer(&self.grad, 0, &self.staging, sse_bytes, grad_bytes);
            }
            q.submit([encoder.finish()]);
            let slice = self.staging.slice(..read_bytes);
            let (tx, rx) = mpsc::channel();
            slice.map_async(::wgpu::MapMode::Read, move |r| {
                // The receiver waits below; it cannot be gone.
                let _ = tx.send(r);
            });
            device.poll(::wgpu::PollType::wait_indefinitely()).map_err(|e| Error::invalid(format!("wgpu: waiting for the evaluation: {e}")))?;
            rx.recv()
                .map_err(|_| Error::invalid("wgpu: the read-back callback was dropped".to_string()))?
                .map_err(|e| Error::invalid(format!("wgpu: mapping the read-back buffer: {e}")))?;
            {
                let view = slice.get_mapped_range().map_err(|e| Error::invalid(format!("wgpu: reading the read-back buffer: {e}")))?;
                let values: &[T] = bytemuck::cast_slice(&view);
                for (l, s) in loss.iter_mut().zip(&values[..c]) {
                    *l = loss_of_sse * s.to_f64();
                }
                if let Some(g) = grads {
                    for (gi, v) in g.iter_mut().zip(&values[c..]) {
                        *gi = grad_of_residual * v.to_f64();
                    }
                }
            }
            self.staging.unmap();
            Ok(())
        })?;
        for (ci, l) in loss.iter().enumerate() {
            if !l.is_finite() {
                return Err(Error::Numerical(format!("non-finite loss {l} for chain {ci} (wgpu)")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::rng::stream;
    use rand_distr::{Distribution, StandardNormal};
    use std::sync::OnceLock;

    const PRECISIONS: [Precision; 2] = [Precision::F32, Precision::F64];

    /// Every kernel module parses and validates with naga (no GPU needed), the
    /// f32 ones without `FLOAT64` and the f64 ones with it. The f64 modules call
    /// none of the GLSL.std.450 functions that Vulkan defines for 16- and
    /// 32-bit floats only (exp, tanh, …) on an f64 value.
    #[test]
    fn shaders_parse_and_validate() {
        use naga::MathFunction as M;
        let float32_only = [
            M::Sin, M::Cos, M::Tan, M::Asin, M::Acos, M::Atan, M::Atan2, M::Sinh, M::Cosh, M::Tanh, M::Asinh, M::Acosh, M::Atanh,
            M::Exp, M::Exp2, M::Log, M::Log2, M::Pow, M::Radians, M::Degrees,
        ];
        for precision in PRECISIONS {
            let caps = match precision {
                Precision::F32 => naga::valid::Capabilities::default(),
                Precision::F64 => naga::valid::Capabilities::default() | naga::valid::Capabilities::FLOAT64,
            };
            for k in Kernel::ALL {
                let src = k.source(precision);
                let what = format!("{} ({precision})", k.name());
                let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&src)));
                let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&src)));
                let functions = module.functions.iter().map(|(h, f)| (f, &info[h]));
                let entry_points = module.entry_points.iter().enumerate().map(|(i, ep)| (&ep.function, info.get_entry_point(i)));
                for (f, fi) in functions.chain(entry_points) {
                    for (_, e) in f.expressions.iter() {
                        if let naga::Expression::Math { fun, arg, .. } = e {
                            let scalar = fi[*arg].ty.inner_with(&module.types).scalar();
                            assert!(
                                !(scalar == Some(naga::Scalar::F64) && float32_only.contains(fun)),
                                "{what}: {fun:?} of an f64 in {:?}: Vulkan defines it for 16/32-bit floats only",
                                f.name
                            );
                        }
                    }
                }
            }
        }
    }

    /// `struct Params` in common.wgsl has the Rust struct's members, offsets and size.
    #[test]
    fn params_layout_matches_wgsl() {
        macro_rules! rust_fields {
            ($($f:ident),*) => { vec![$((stringify!($f), std::mem::offset_of!(Params, $f) as u32)),*] };
        }
        let rust = rust_fields!(rows, row0, idx_base, chains, dim, fan_in, fan_out, w_off, b_off, has_bias, gather, hidden, split_rows, splits, d_out);
        for k in Kernel::ALL.into_iter().flat_map(|k| PRECISIONS.map(|p| (k, p))) {
            let (k, precision) = k;
            let module = naga::front::wgsl::parse_str(&k.source(precision)).unwrap();
            let mut layouter = naga::proc::Layouter::default();
            layouter.update(module.to_ctx()).unwrap();
            let (handle, ty) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("Params")).expect("struct Params");
            let naga::TypeInner::Struct { members, span } = &ty.inner else { panic!("Params is not a struct") };
            let wgsl: Vec<(&str, u32)> = members.iter().map(|m| (m.name.as_deref().unwrap(), m.offset)).collect();
            assert_eq!(wgsl, rust, "{}: Params members and offsets", k.name());
            assert_eq!(*span as usize, std::mem::size_of::<Params>(), "{}: Params size", k.name());
            assert_eq!(layouter[handle].size as usize, std::mem::size_of::<Params>());
            // Every member is a u32, as in Rust, in both precisions.
            for m in members {
                assert_eq!(module.types[m.ty].inner, naga::TypeInner::Scalar(naga::Scalar::U32), "{} ({precision}): {:?}", k.name(), m.name);
            }
        }
    }

    /// `auto` (Hardware) never takes a software adapter; both policies
    /// prefer discrete over integrated over virtual GPUs.
    #[test]
    fn adapter_preference() {
        use ::wgpu::DeviceType as T;
        for t in [T::Cpu, T::Other] {
            assert_eq!(rank(t, AdapterPolicy::Hardware), None, "{t:?}");
            assert!(rank(t, AdapterPolicy::Any).is_some());
        }
        for policy in [AdapterPolicy::Hardware, AdapterPolicy::Any] {
            let r = |t| rank(t, policy).unwrap();
            assert!(r(T::DiscreteGpu) < r(T::IntegratedGpu) && r(T::IntegratedGpu) < r(T::VirtualGpu));
        }
        assert!(rank(T::VirtualGpu, AdapterPolicy::Any) < rank(T::Cpu, AdapterPolicy::Any));
    }

    /// The shared GPU, opened once; `None` (the test skips) when there is no
    /// adapter, unless `REQUIRE_GPU=1`, which turns that into a failure.
    fn gpu() -> Option<&'static GpuContext> {
        static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
        let ctx = CTX.get_or_init(|| GpuContext::open(AdapterPolicy::Any).expect("opening a wgpu device")).as_ref();
        if ctx.is_none() {
            assert!(std::env::var("REQUIRE_GPU").as_deref() != Ok("1"), "REQUIRE_GPU=1 but wgpu finds no adapter");
            eprintln!("skipped: wgpu finds no adapter (install mesa-vulkan-drivers for lavapipe; REQUIRE_GPU=1 makes this a failure)");
        }
        ctx
    }

    fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
        let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
        if num.is_nan() {
            return f64::INFINITY;
        }
        num / den.max(1e-300)
    }

    /// One comparison of the wgpu backend against the CPU f64 reference.
    struct Case {
        act: Activation,
        widths: Vec<usize>,
        d_in: usize,
        d_out: usize,
        bias: bool,
        n: usize,
        chains: usize,
        loss: LossKind,
        chunk: Option<usize>,
    }

    /// Relative L2 error of the f32 kernels, over the C losses and over all
    /// C·D gradient entries, against the CPU f64 backend.
    const TOL_F32: f64 = 1e-4;
    /// The same for the f64 kernels.
    const TOL_F64: f64 = 1e-12;

    /// Compares the wgpu backend in f32 and, where the adapter has
    /// `SHADER_F64`, in f64 with the CPU f64 backend (the f64 comparison is
    /// skipped, with a message, on adapters without it).
    fn check(ctx: &GpuContext, case: &Case, seed: u64) {
        check_in::<f32>(ctx, case, seed, TOL_F32);
        if ctx.shader_f64() {
            check_in::<f64>(ctx, case, seed, TOL_F64);
        } else {
            eprintln!("f64 skipped: adapter '{}' has no SHADER_F64", ctx.adapter_name());
        }
    }

    /// Loss and gradient in T within `tol` (relative L2 error over the C losses
    /// and over all C·D gradient entries) of the CPU f64 backend, with the
    /// GPU's buffers poisoned with NaN before each run. Checks the full batch
    /// and two minibatches (with repeated rows).
    fn check_in<T: Real + Pod>(ctx: &GpuContext, case: &Case, seed: u64, tol: f64) {
        let spec = MlpSpec { in_dim: case.d_in, widths: case.widths.clone(), out_dim: case.d_out, activation: case.act, bias: case.bias };
        let mut r = stream(seed, 0);
        let mut normal = |k: usize| (0..k).map(|_| StandardNormal.sample(&mut r)).collect::<Vec<f64>>();
        let data = Dataset::new(normal(case.n * case.d_in), normal(case.n * case.d_out), case.d_in, case.d_out).unwrap();
        // Wider inits than the default so that hidden units sit in every regime of the activation.
        let pos: Vec<f64> = (0..case.chains).flat_map(|c| spec.init(&mut stream(seed, 1 + c)).into_iter().map(|v| 1.5 * v)).collect();
        let mut cpu = CpuBackend::<f64>::new(&spec, &data, case.loss, case.chains, 1).unwrap();
        let mut gpu = WgpuBackend::<T>::new(ctx, &spec, &data, case.loss, case.chains, case.chunk).unwrap();
        let mut mb_rng = stream(seed, 99);
        let rows = rand_distr::Uniform::new(0, case.n as u32).unwrap();
        let minibatch: Vec<u32> = (0..case.n.div_ceil(2)).map(|_| rows.sample(&mut mb_rng)).collect();
        let repeated = vec![(case.n - 1) as u32; case.n.min(3)];
        let what = format!(
            "{} {:?} {}→{:?}→{} bias={} n={} C={} {:?} chunk={}",
            T::PRECISION,
            case.act,
            case.d_in,
            case.widths,
            case.d_out,
            case.bias,
            case.n,
            case.chains,
            case.loss,
            gpu.chunk_rows()
        );
        for (name, batch) in [("full", Batch::Full), ("minibatch", Batch::Rows(&minibatch)), ("repeated rows", Batch::Rows(&repeated))] {
            let (c, d) = (case.chains, spec.n_params());
            let (mut l64, mut g64) = (vec![0.0; c], vec![0.0; c * d]);
            cpu.loss_grad(&pos, batch, &mut l64, Some(&mut g64)).unwrap();
            let (mut l_gpu, mut g_gpu) = (vec![f64::NAN; c], vec![f64::NAN; c * d]);
            gpu.poison();
            gpu.loss_grad(&pos, batch, &mut l_gpu, Some(&mut g_gpu)).unwrap();
            let (el, eg) = (rel_l2(&l_gpu, &l64), rel_l2(&g_gpu, &g64));
            eprintln!("{what} {name}: loss rel err {el:.2e}, gradient rel L2 err {eg:.2e}");
            assert!(el < tol, "{what} {name}: loss rel err {el:e} ({l_gpu:?} vs {l64:?})");
            assert!(eg < tol, "{what} {name}: gradient rel L2 err {eg:e}");
            // Loss alone (no backward pass) agrees too.
            let mut l_only = vec![f64::NAN; c];
            gpu.poison();
            gpu.loss_grad(&pos, batch, &mut l_only, None).unwrap();
            assert!(rel_l2(&l_only, &l64) < tol, "{what} {name}: loss without gradient");
        }
    }

    const ACTS: [Activation; 4] = [Activation::Relu, Activation::Tanh, Activation::Gelu, Activation::Identity];

    fn case(act: Activation, widths: &[usize], n: usize, chains: usize) -> Case {
        Case { act, widths: widths.to_vec(), d_in: 3, d_out: 2, bias: true, n, chains, loss: LossKind::Mse, chunk: None }
    }

    /// Widths 1, 3, 17, 62, 65 (none a multiple of the 64-wide tile but 65's
    /// overhang), n = 1, 7, 1000 and C = 1, 3, 8, for every activation.
    #[test]
    fn matches_cpu_f64_for_every_activation_and_shape() {
        let Some(ctx) = gpu() else { return };
        for (i, act) in ACTS.into_iter().enumerate() {
            let seed = 100 + i as u64;
            check(ctx, &case(act, &[17, 65], 1000, 3), seed);
            check(ctx, &case(act, &[62, 3], 7, 8), seed);
            check(ctx, &case(act, &[1], 1, 1), seed);
        }
    }

    /// Half-SSE, no biases, several outputs, a single input, deeper nets.
    #[test]
    fn matches_cpu_f64_for_losses_and_layouts() {
        let Some(ctx) = gpu() else { return };
        let mut c = case(Activation::Tanh, &[5, 4, 3], 300, 2);
        c.loss = LossKind::HalfSse;
        c.bias = false;
        check(ctx, &c, 7);
        let mut c = case(Activation::Gelu, &[62, 62, 62], 1000, 1);
        c.d_in = 32;
        c.d_out = 1;
        check(ctx, &c, 8);
        let mut c = case(Activation::Relu, &[], 50, 3);
        c.d_in = 1;
        c.d_out = 4;
        check(ctx, &c, 9);
    }

    /// Several chunks of rows, the last one partial, and several gradient
    /// slices per chunk, give the same numbers as one pass.
    #[test]
    fn matches_cpu_f64_across_chunks() {
        let Some(ctx) = gpu() else { return };
        for (chunk, n) in [(64, 1000), (1, 7), (300, 1000)] {
            let mut c = case(Activation::Gelu, &[17, 3], n, 3);
            c.chunk = Some(chunk);
            check(ctx, &c, 11);
        }
    }

    /// The f64 activations agree value by value with f64 references (std's
    /// tanh; Φ from libm's erfc) over z ∈ ±[0.25, 20.25], tails included, and
    /// at tiny |z|: act(z) to a relative 1e-13, act′(z) to 1e-13 of the size
    /// of its terms (1 for tanh′ = 1 − tanh², Φ + |z|φ for gelu′ = Φ + zφ).
    /// Chain c evaluates the 1→1→1 net with W1 = z_c, W2 = 1 and zero biases
    /// on the single row x = 1, y = 0 under half-SSE, so its loss is
    /// act(z_c)²/2 and ∂L/∂b1 = act(z_c)·act′(z_c).
    #[test]
    fn f64_activations_match_references_value_by_value() {
        let Some(ctx) = gpu() else { return };
        if !ctx.shader_f64() {
            eprintln!("skipped: adapter '{}' has no SHADER_F64", ctx.adapter_name());
            return;
        }
        let mut zs: Vec<f64> = (0..82).map(|i| -20.25 + 0.5 * f64::from(i)).collect();
        zs.extend([1e-8, -1e-8, 1e-3, -1e-3]);
        let data = Dataset::new(vec![1.0], vec![0.0], 1, 1).unwrap();
        for act in [Activation::Tanh, Activation::Gelu] {
            let spec = MlpSpec { in_dim: 1, widths: vec![1], out_dim: 1, activation: act, bias: true };
            let (layout, d) = (spec.layout(), spec.n_params());
            let mut pos = vec![0.0; zs.len() * d];
            for (c, z) in zs.iter().enumerate() {
                pos[c * d + layout[0].w] = *z;
                pos[c * d + layout[1].w] = 1.0;
            }
            let mut b = WgpuBackend::<f64>::new(ctx, &spec, &data, LossKind::HalfSse, zs.len(), None).unwrap();
            let (mut loss, mut grad) = (vec![f64::NAN; zs.len()], vec![f64::NAN; zs.len() * d]);
            b.poison();
            b.loss_grad(&pos, Batch::Full, &mut loss, Some(&mut grad)).unwrap();
            let (mut worst_h, mut worst_dh) = (0.0f64, 0.0f64);
            for (c, &z) in zs.iter().enumerate() {
                let (h, dh, scale) = match act {
                    Activation::Gelu => {
                        let cdf = 0.5 * libm::erfc(-z * std::f64::consts::FRAC_1_SQRT_2);
                        let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
                        (z * cdf, cdf + z * pdf, cdf + z.abs() * pdf)
                    }
                    _ => (z.tanh(), 1.0 - z.tanh() * z.tanh(), 1.0),
                };
                let h_gpu = h.signum() * (2.0 * loss[c]).sqrt();
                let dh_gpu = grad[c * d + layout[0].b.unwrap()] / h_gpu;
                assert!((h_gpu - h).abs() <= 1e-13 * h.abs(), "{act:?}({z}): {h_gpu:e} vs {h:e}");
                assert!((dh_gpu - dh).abs() <= 1e-13 * scale, "{act:?}'({z}): {dh_gpu:e} vs {dh:e}");
                worst_h = worst_h.max((h_gpu - h).abs() / h.abs());
                worst_dh = worst_dh.max((dh_gpu - dh).abs() / scale);
            }
            eprintln!("f64 {act:?}: act rel err ≤ {worst_h:.2e}, act′ err ≤ {worst_dh:.2e} (of its terms' size)");
        }
    }

    /// Shapes and rows are checked, with messages that say what is wrong.
    #[test]
    fn rejects_bad_arguments() {
        let Some(ctx) = gpu() else { return };
        let spec = MlpSpec { in_dim: 2, widths: vec![3], out_dim: 1, activation: Activation::Relu, bias: true };
        let data = Dataset::new(vec![0.5; 10], vec![1.0; 5], 2, 1).unwrap();
        let mut b = WgpuBackend::<f32>::new(ctx, &spec, &data, LossKind::Mse, 2, None).unwrap();
        let pos = vec![0.1; 2 * spec.n_params()];
        let mut l = vec![0.0; 2];
        let e = b.loss_grad(&pos, Batch::Rows(&[5]), &mut l, None).unwrap_err().to_string();
        assert!(e.contains("row 5 is out of range"), "{e}");
        let e = b.loss_grad(&pos, Batch::Rows(&[0; 6]), &mut l, None).unwrap_err().to_string();
        assert!(e.contains("exceeds"), "{e}");
        assert!(b.loss_grad(&pos[1..], Batch::Full, &mut l, None).is_err());
        assert_eq!(b.info().precision, Precision::F32);
        let other = Dataset::new(vec![0.5; 9], vec![1.0; 3], 3, 1).unwrap();
        assert!(WgpuBackend::<f32>::new(ctx, &spec, &other, LossKind::Mse, 2, None).is_err());
    }

    /// `--backend wgpu` builds the f64 kernels where the adapter has
    /// `SHADER_F64` (an error naming the adapter where it has not), and the
    /// backend reports wgpu, the adapter and the precision it computes in.
    #[test]
    fn factory_builds_each_precision() {
        use crate::backend::{BackendFactory, BackendKind};
        let Some(ctx) = gpu() else { return };
        let factory = BackendFactory::new(BackendKind::Wgpu, 1).unwrap();
        let spec = MlpSpec { in_dim: 2, widths: vec![3], out_dim: 1, activation: Activation::Tanh, bias: true };
        let data = Dataset::new(vec![0.5; 10], vec![1.0; 5], 2, 1).unwrap();
        assert_eq!(factory.precisions().contains(&Precision::F64), ctx.shader_f64());
        assert_eq!(factory.fallback_note(Precision::F64), None, "only auto falls back");
        for precision in PRECISIONS {
            match factory.build(&spec, &data, LossKind::Mse, 2, precision) {
                Ok(b) => assert_eq!(b.info(), BackendInfo { backend: "wgpu".into(), adapter: ctx.adapter_name(), precision }),
                Err(e) => {
                    assert!(precision == Precision::F64 && !ctx.shader_f64(), "{precision}: {e}");
                    assert!(e.to_string().contains(&ctx.adapter_name()) && e.to_string().contains("--precision f32"), "{e}");
                }
            }
        }
    }
}
