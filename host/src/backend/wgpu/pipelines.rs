//! The compute pipelines of a backend (one per kernel and mode) and the
//! bind-group layout they share, created once per backend.

use std::num::NonZeroU64;

use super::kernels::{activation_code, Kernel, Params};
use crate::model::{Activation, Precision};

/// The three pipelines of one layer kernel (its MODEs).
pub(super) struct LayerPipelines {
    pub(super) forward: ::wgpu::ComputePipeline,
    pub(super) delta: ::wgpu::ComputePipeline,
    pub(super) gradient: ::wgpu::ComputePipeline,
}

/// The compute pipelines of one backend.
pub(super) struct Pipelines {
    /// For layers of more than [`NARROW_MAX`] outputs.
    pub(super) gemm: LayerPipelines,
    /// For layers of at most [`NARROW_MAX`] outputs.
    pub(super) narrow: LayerPipelines,
    pub(super) loss: ::wgpu::ComputePipeline,
    pub(super) reduce: ::wgpu::ComputePipeline,
}

/// The bind groups of one backend, each bound with a dynamic offset into the
/// parameter buffer.
pub(super) struct Groups {
    /// Per layer.
    pub(super) forward: Vec<::wgpu::BindGroup>,
    /// Per layer.
    pub(super) gradient: Vec<::wgpu::BindGroup>,
    /// Per layer l ≥ 1 (Δ_l → Δ_{l−1}); index l − 1.
    pub(super) delta: Vec<::wgpu::BindGroup>,
    pub(super) loss: ::wgpu::BindGroup,
    pub(super) reduce: ::wgpu::BindGroup,
}

/// The size of one dispatch's parameters, as bound.
pub(super) fn params_size() -> Option<NonZeroU64> {
    NonZeroU64::new(std::mem::size_of::<Params>() as u64)
}

/// The bind-group layout every kernel shares (the parameters, four read-only
/// and two read-write storage buffers; a kernel uses a subset) and every
/// pipeline, for `precision` and the hidden `activation`.
pub(super) fn create(device: &::wgpu::Device, precision: Precision, activation: Activation) -> (::wgpu::BindGroupLayout, Pipelines) {
    // One layout for every kernel: the parameters, four read-only and two
    // read-write storage buffers (a kernel uses a subset).
    let storage_entry = |binding: u32, read_only: bool| ::wgpu::BindGroupLayoutEntry {
        binding,
        visibility: ::wgpu::ShaderStages::COMPUTE,
        ty: ::wgpu::BindingType::Buffer { ty: ::wgpu::BufferBindingType::Storage { read_only }, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    };
    let params_size = params_size();
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
        device.create_shader_module(::wgpu::ShaderModuleDescriptor { label: Some(k.name()), source: ::wgpu::ShaderSource::Wgsl(k.source(precision).into()) })
    };
    let (loss_module, reduce_module) = (module(Kernel::Loss), module(Kernel::Reduce));
    let activation = f64::from(activation_code(activation));
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
    (bgl, pipelines)
}
