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

use std::sync::mpsc;

use ::wgpu::util::DeviceExt;
use bytemuck::Pod;

mod device;
mod kernels;
mod pipelines;
#[cfg(test)]
mod tests;

use self::device::scoped;
pub use self::device::{list_adapters, AdapterPolicy, AdapterSummary, GpuContext};
pub use self::kernels::{source, Kernel, Params, CHUNK_BYTES, NARROW_MAX};
use self::kernels::{GEMM_TILE, MAX_SPLITS, NARROW_COLS, ROWS_PER_SPLIT, THREADS};
use self::pipelines::{Groups, Pipelines};
use super::interface::{check_model_data, check_shapes, Backend, BackendInfo, Batch, Dataset};
use crate::error::{Error, Result};
use crate::model::{LayerLayout, LossKind, MlpSpec, Precision, Real};

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
    pub fn new(ctx: &GpuContext, spec: &MlpSpec, data: &Dataset, loss: LossKind, chains: usize, max_chunk_rows: Option<usize>) -> Result<Self> {
        check_model_data(spec, data, chains)?;
        crate::ensure!(
            T::PRECISION == Precision::F32 || ctx.shader_f64(),
            "wgpu backend: adapter '{}' has no f64 in shaders (SHADER_F64): use --precision f32, or --backend cpu for f64",
            ctx.adapter_name()
        );
        scoped(&ctx.device, "creating the buffers and pipelines of the wgpu backend", || Self::build(ctx, spec, data, loss, chains, max_chunk_rows))
    }

    fn build(ctx: &GpuContext, spec: &MlpSpec, data: &Dataset, loss: LossKind, chains: usize, max_chunk_rows: Option<usize>) -> Result<Self> {
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
        let max_splits =
            MAX_SPLITS.min((bind_limit / (chains * dim * Self::SIZE) as u64) as usize).min(max_groups / chains).min(chunk_rows.div_ceil(ROWS_PER_SPLIT)).max(1);
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
        let init =
            |label: &str, contents: &[u8], usage: U| device.create_buffer_init(&::wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage });
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
        let h: Vec<_> =
            layout[..n_layers - 1].iter().enumerate().map(|(l, ly)| storage(&format!("H{l}"), chains * chunk_rows * ly.fan_out, U::COPY_DST)).collect();
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

        let (bgl, pipelines) = pipelines::create(device, T::PRECISION, spec.activation);
        let params_size = pipelines::params_size();

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

    /// Writes every dispatch's parameters for `chains` (≤ C) chains and a
    /// batch of `rows` rows whose indices start at `idx_base`; returns the
    /// bytes used.
    fn write_params(&mut self, chains: usize, rows: usize, idx_base: usize) -> usize {
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
                chains: chains as u32,
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

    /// Records the evaluation of `chains` (≤ C) chains on a batch of `rows`
    /// rows into `encoder`.
    fn record(&self, encoder: &mut ::wgpu::CommandEncoder, chains: usize, rows: usize, want_grad: bool) {
        let n_layers = self.layout.len();
        let c = chains as u32;
        let tiles = |v: usize| (v as u32).div_ceil(GEMM_TILE);
        // Workgroups (x, y) of THREADS threads for `elements` elements, as
        // few rows of at most max_groups as hold them.
        let grid = |elements: usize| {
            let groups = elements.div_ceil(THREADS as usize) as u32;
            let x = groups.min(self.max_groups);
            (x, groups.div_ceil(x))
        };
        let (reduce_x, reduce_y) = grid(chains * self.spec.n_params());
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
        // K ≤ C chains: the kernels run over the first K of the buffers sized for C.
        let c = check_shapes(self, positions, loss, grads.as_deref())?;
        let (dim, d_out) = (self.dim(), self.spec.out_dim);
        let q = self.ctx.queue.clone();
        let (rows, idx_base) = match batch {
            Batch::Full => (self.n, 0),
            Batch::Rows(idx) => {
                crate::ensure!(!idx.is_empty(), "a minibatch must have at least one row");
                crate::ensure!(idx.len() <= self.n, "a minibatch of {} rows exceeds the wgpu backend's capacity of n = {} rows", idx.len(), self.n);
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
        q.write_buffer(&self.theta, 0, bytemuck::cast_slice(&self.theta_host[..c * dim]));
        let used = self.write_params(c, rows, idx_base);
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
            self.record(&mut encoder, c, rows, want_grad);
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
