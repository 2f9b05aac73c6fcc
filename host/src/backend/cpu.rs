//! The CPU reference backend: forward and backward of the MLP with GEMMs from
//! the `gemm` crate, in f64 or f32, for C chains per call.
//!
//! Speed comes from cache blocking over data rows: the rows are cut into tiles
//! of [`TILE`]; the whole forward + backward of one tile runs from L1/L2, and
//! its weight gradient is accumulated. The (chain, tile) work units are cut
//! into a fixed number of contiguous parts ([`PARTS`], independent of the
//! thread count), each with its own accumulator; threads take whole parts, and
//! the parts are summed in part order. So the loss and gradient are
//! bit-identical for any thread count, and a target id means the same w* on
//! any machine of the same build.

use super::interface::{check_model_data, check_shapes, Backend, BackendInfo, Batch, Dataset};
use crate::error::Result;
use crate::model::{Activation, LayerLayout, MlpSpec, Real};
use crate::model::{LossKind, Precision};

/// Rows per cache tile.
pub const TILE: usize = 256;

/// Below this many multiply-adds per call, one part holds all the work
/// (spawning costs more than it saves).
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Parts the work units of a call are cut into (at most; fewer when there
/// are fewer units): the most threads one call can use.
pub const PARTS: usize = 16;

/// Builds the CPU backend in the requested precision.
pub fn new_backend(spec: &MlpSpec, data: &Dataset, loss: LossKind, chains: usize, precision: Precision, threads: usize) -> Result<Box<dyn Backend>> {
    Ok(match precision {
        Precision::F32 => Box::new(CpuBackend::<f32>::new(spec, data, loss, chains, threads)?),
        Precision::F64 => Box::new(CpuBackend::<f64>::new(spec, data, loss, chains, threads)?),
    })
}

/// The number of threads the CPU backend uses by default: `LH_THREADS`, else
/// all cores. An `LH_THREADS` that is not a whole number ≥ 1 is an error.
pub fn default_threads() -> Result<usize> {
    match std::env::var("LH_THREADS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(t) if t >= 1 => Ok(t),
            _ => Err(crate::error::Error::invalid(format!("LH_THREADS={v:?}: must be a whole number ≥ 1"))),
        },
        Err(std::env::VarError::NotUnicode(v)) => Err(crate::error::Error::invalid(format!("LH_THREADS={v:?}: must be a whole number ≥ 1"))),
        Err(std::env::VarError::NotPresent) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Per-thread scratch space, allocated once per backend.
struct Scratch<T> {
    /// Pre-activations of every layer, TILE × fan_out each (the last is the prediction).
    z: Vec<Vec<T>>,
    /// Activations of the hidden layers, TILE × width each.
    h: Vec<Vec<T>>,
    /// δ for the current and the previous layer, TILE × max width.
    delta: Vec<T>,
    delta_prev: Vec<T>,
}

/// One part's accumulators, allocated once per backend.
struct Part<T> {
    /// Gradient accumulators, C × D (only the chains of the part's units are used).
    grad: Vec<T>,
    /// Sum of squared residuals per chain.
    sse: Vec<f64>,
    /// The chains the part's units belong to in this call (first..=last).
    chains: std::ops::RangeInclusive<usize>,
}

/// The model side shared by every thread of one evaluation.
struct Net<'a, T> {
    act: Activation,
    layout: &'a [LayerLayout],
    d_out: usize,
    /// dL/dpred = scale · residual.
    scale: T,
}

/// CPU backend in precision `T`.
pub struct CpuBackend<T> {
    spec: MlpSpec,
    layout: Vec<LayerLayout>,
    data_x: Vec<T>,
    data_y: Vec<T>,
    n: usize,
    chains: usize,
    loss_kind: LossKind,
    threads: usize,
    /// The chains' positions converted to T, C × D.
    params: Vec<T>,
    /// Gathered minibatch rows.
    batch_x: Vec<T>,
    batch_y: Vec<T>,
    scratch: Vec<Scratch<T>>,
    parts: Vec<Part<T>>,
}

impl<T: Real> CpuBackend<T> {
    /// A backend over `data` for `chains` chains using up to `threads` threads.
    pub fn new(spec: &MlpSpec, data: &Dataset, loss: LossKind, chains: usize, threads: usize) -> Result<Self> {
        check_model_data(spec, data, chains)?;
        let layout = spec.layout();
        let dim = spec.n_params();
        let max_w = spec.sizes().into_iter().max().unwrap_or(1);
        let threads = threads.max(1);
        let scratch = (0..threads.min(PARTS))
            .map(|_| Scratch {
                z: layout.iter().map(|l| vec![T::ZERO; TILE * l.fan_out]).collect(),
                h: layout[..layout.len() - 1].iter().map(|l| vec![T::ZERO; TILE * l.fan_out]).collect(),
                delta: vec![T::ZERO; TILE * max_w],
                delta_prev: vec![T::ZERO; TILE * max_w],
            })
            .collect();
        let parts = (0..PARTS).map(|_| Part { grad: vec![T::ZERO; chains * dim], sse: vec![0.0; chains], chains: 0..=0 }).collect();
        Ok(Self {
            spec: spec.clone(),
            layout,
            data_x: data.x.iter().map(|v| T::from_f64(*v)).collect(),
            data_y: data.y.iter().map(|v| T::from_f64(*v)).collect(),
            n: data.n,
            chains,
            loss_kind: loss,
            threads,
            params: vec![T::ZERO; chains * dim],
            batch_x: Vec::new(),
            batch_y: Vec::new(),
            scratch,
            parts,
        })
    }
}

impl<T: Real> Backend for CpuBackend<T> {
    fn info(&self) -> BackendInfo {
        BackendInfo { backend: "cpu".into(), adapter: format!("cpu ({} threads)", self.threads), precision: T::PRECISION }
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

    fn loss_grad(&mut self, positions: &[f64], batch: Batch<'_>, loss: &mut [f64], mut grads: Option<&mut [f64]>) -> Result<()> {
        // K ≤ C chains: only the first K·D of the buffers sized for C are used.
        let c = check_shapes(self, positions, loss, grads.as_deref())?;
        let (d_in, d_out, dim) = (self.spec.in_dim, self.spec.out_dim, self.dim());
        for (p, v) in self.params.iter_mut().zip(positions) {
            *p = T::from_f64(*v);
        }
        let (x, y, rows): (&[T], &[T], usize) = match batch {
            Batch::Full => (&self.data_x, &self.data_y, self.n),
            Batch::Rows(idx) => {
                crate::ensure!(!idx.is_empty(), "a minibatch must have at least one row");
                self.batch_x.clear();
                self.batch_y.clear();
                for &i in idx {
                    let i = i as usize;
                    crate::ensure!(i < self.n, "minibatch row {i} is out of range (n = {})", self.n);
                    self.batch_x.extend_from_slice(&self.data_x[i * d_in..(i + 1) * d_in]);
                    self.batch_y.extend_from_slice(&self.data_y[i * d_out..(i + 1) * d_out]);
                }
                (&self.batch_x, &self.batch_y, idx.len())
            }
        };
        let (scale, loss_of_sse) = match self.loss_kind {
            LossKind::Mse => (2.0 / (rows * d_out) as f64, 1.0 / (rows * d_out) as f64),
            LossKind::HalfSse => (1.0 / rows as f64, 0.5 / rows as f64),
        };
        let net = Net { act: self.spec.activation, layout: &self.layout, d_out, scale: T::from_f64(scale) };
        let want_grad = grads.is_some();

        // Work units are (chain, tile) pairs, cut into contiguous parts whose
        // number depends only on the sizes, never on the thread count.
        let n_tiles = rows.div_ceil(TILE);
        let units = c * n_tiles;
        let macs = rows * c * dim;
        let n_parts = if macs < PARALLEL_MIN_MACS { 1 } else { PARTS.min(units) };
        let params = &self.params;
        let run_part = |s: &mut Scratch<T>, p: &mut Part<T>, part: usize| {
            let (u0, u1) = (part * units / n_parts, (part + 1) * units / n_parts);
            p.chains = u0 / n_tiles..=(u1 - 1) / n_tiles;
            for ci in p.chains.clone() {
                p.sse[ci] = 0.0;
                if want_grad {
                    p.grad[ci * dim..(ci + 1) * dim].iter_mut().for_each(|g| *g = T::ZERO);
                }
            }
            for u in u0..u1 {
                let (chain, tile) = (u / n_tiles, u % n_tiles);
                let r0 = tile * TILE;
                let r1 = (r0 + TILE).min(rows);
                let theta = &params[chain * dim..(chain + 1) * dim];
                let g = if want_grad { Some(&mut p.grad[chain * dim..(chain + 1) * dim]) } else { None };
                let sse =
                    net.tile(&mut s.z, &mut s.h, &mut s.delta, &mut s.delta_prev, theta, &x[r0 * d_in..r1 * d_in], &y[r0 * d_out..r1 * d_out], r1 - r0, g);
                p.sse[chain] += sse;
            }
        };
        let parts = &mut self.parts[..n_parts];
        let threads = self.scratch.len().min(n_parts);
        if threads == 1 {
            for (i, p) in parts.iter_mut().enumerate() {
                run_part(&mut self.scratch[0], p, i);
            }
        } else {
            // Thread t takes parts [t·P/T, (t+1)·P/T), with its own scratch.
            std::thread::scope(|sc| {
                let mut rest = &mut parts[..];
                let mut first = 0;
                for (t, s) in self.scratch[..threads].iter_mut().enumerate() {
                    let take = (t + 1) * n_parts / threads - first;
                    let (mine, tail) = std::mem::take(&mut rest).split_at_mut(take);
                    rest = tail;
                    let run_part = &run_part;
                    let start = first;
                    first += take;
                    sc.spawn(move || {
                        for (i, p) in mine.iter_mut().enumerate() {
                            run_part(s, p, start + i);
                        }
                    });
                }
            });
        }

        // Sum the parts in part order.
        for (ci, l) in loss.iter_mut().enumerate() {
            *l = loss_of_sse * parts.iter().filter(|p| p.chains.contains(&ci)).map(|p| p.sse[ci]).sum::<f64>();
        }
        if let Some(g) = grads.as_deref_mut() {
            for ci in 0..c {
                // The parts holding chain ci's units are consecutive.
                let lo = parts.iter().position(|p| p.chains.contains(&ci)).expect("every chain has units");
                let hi = parts.iter().rposition(|p| p.chains.contains(&ci)).expect("every chain has units");
                for (i, gi) in g[ci * dim..(ci + 1) * dim].iter_mut().enumerate() {
                    let mut acc = T::ZERO;
                    for p in &parts[lo..=hi] {
                        acc += p.grad[ci * dim + i];
                    }
                    *gi = acc.to_f64();
                }
            }
        }
        for (ci, l) in loss.iter().enumerate() {
            if !l.is_finite() {
                return Err(crate::error::Error::Numerical(format!("non-finite loss {l} for chain {ci}")));
            }
        }
        Ok(())
    }
}

impl<T: Real> Net<'_, T> {
    /// Forward (and backward when `grad` is given) of one tile of `rows` rows
    /// for one chain. Returns the tile's sum of squared residuals.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        z: &mut [Vec<T>],
        h: &mut [Vec<T>],
        delta: &mut Vec<T>,
        delta_prev: &mut Vec<T>,
        theta: &[T],
        x: &[T],
        y: &[T],
        rows: usize,
        grad: Option<&mut [T]>,
    ) -> f64 {
        let n_layers = self.layout.len();
        // Forward.
        for (li, l) in self.layout.iter().enumerate() {
            let input: &[T] = if li == 0 { x } else { &h[li - 1] };
            let out = &mut z[li];
            // SAFETY: `input` holds rows × fan_in, W holds fan_out × fan_in and `out`
            // holds at least rows × fan_out values, all row-major with the strides given.
            unsafe {
                matmul(
                    rows,
                    l.fan_out,
                    l.fan_in,
                    out.as_mut_ptr(),
                    l.fan_out,
                    1,
                    false,
                    input.as_ptr(),
                    l.fan_in as isize,
                    1,
                    theta[l.w..].as_ptr(),
                    1,
                    l.fan_in as isize,
                );
            }
            let out = &mut out[..rows * l.fan_out];
            if let Some(b) = l.b {
                let bias = &theta[b..b + l.fan_out];
                for row in out.chunks_exact_mut(l.fan_out) {
                    for (v, bv) in row.iter_mut().zip(bias) {
                        *v += *bv;
                    }
                }
            }
            if li + 1 < n_layers {
                for (hv, zv) in h[li][..rows * l.fan_out].iter_mut().zip(out.iter()) {
                    *hv = T::act(self.act, *zv);
                }
            }
        }
        // Residual, loss and dL/dpred.
        let pred = &z[n_layers - 1][..rows * self.d_out];
        let mut sse = 0.0;
        for ((d, p), t) in delta[..rows * self.d_out].iter_mut().zip(pred).zip(y) {
            let r = *p - *t;
            sse += r.to_f64() * r.to_f64();
            *d = self.scale * r;
        }
        let Some(grad) = grad else { return sse };
        // Backward.
        for li in (0..n_layers).rev() {
            let l = &self.layout[li];
            let input: &[T] = if li == 0 { x } else { &h[li - 1] };
            // gW += δᵀ · input.
            // SAFETY: δ is rows × fan_out, input rows × fan_in, gW fan_out × fan_in.
            unsafe {
                matmul(
                    l.fan_out,
                    l.fan_in,
                    rows,
                    grad[l.w..].as_mut_ptr(),
                    l.fan_in,
                    1,
                    true,
                    delta.as_ptr(),
                    1,
                    l.fan_out as isize,
                    input.as_ptr(),
                    l.fan_in as isize,
                    1,
                );
            }
            if let Some(b) = l.b {
                let gb = &mut grad[b..b + l.fan_out];
                for row in delta[..rows * l.fan_out].chunks_exact(l.fan_out) {
                    for (g, d) in gb.iter_mut().zip(row) {
                        *g += *d;
                    }
                }
            }
            if li == 0 {
                break;
            }
            // δ_prev = (δ · W) ⊙ act'(z_prev).
            // SAFETY: δ is rows × fan_out, W fan_out × fan_in, δ_prev rows × fan_in.
            unsafe {
                matmul(
                    rows,
                    l.fan_in,
                    l.fan_out,
                    delta_prev.as_mut_ptr(),
                    l.fan_in,
                    1,
                    false,
                    delta.as_ptr(),
                    l.fan_out as isize,
                    1,
                    theta[l.w..].as_ptr(),
                    l.fan_in as isize,
                    1,
                );
            }
            let (zp, hp) = (&z[li - 1], &h[li - 1]);
            for ((d, zv), hv) in delta_prev[..rows * l.fan_in].iter_mut().zip(zp.iter()).zip(hp.iter()) {
                *d = *d * T::act_deriv(self.act, *zv, *hv);
            }
            std::mem::swap(delta, delta_prev);
        }
        sse
    }
}

/// dst[m×n] (row stride `dst_rs`, column stride `dst_cs`) = (dst if `accumulate`) + lhs[m×k] · rhs[k×n].
///
/// # Safety
/// Every pointer must address enough elements for the shape and strides given.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    dst_cs: usize,
    accumulate: bool,
    lhs: *const T,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const T,
    rhs_rs: isize,
    rhs_cs: isize,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs as isize,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs,
        lhs_rs,
        rhs,
        rhs_cs,
        rhs_rs,
        T::ONE,
        T::ONE,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;
    use rand_distr::{Distribution, StandardNormal};

    fn problem(act: Activation, bias: bool, n: usize, widths: Vec<usize>, seed: u64) -> (MlpSpec, Dataset) {
        let spec = MlpSpec { in_dim: 3, widths, out_dim: 2, activation: act, bias };
        let mut r = stream(seed, 0);
        let x: Vec<f64> = (0..n * 3).map(|_| StandardNormal.sample(&mut r)).collect();
        let y: Vec<f64> = (0..n * 2).map(|_| StandardNormal.sample(&mut r)).collect();
        (spec.clone(), Dataset::new(x, y, 3, 2).unwrap())
    }

    fn positions(spec: &MlpSpec, chains: usize, seed: u64) -> Vec<f64> {
        (0..chains).flat_map(|c| spec.init(&mut stream(seed, 10 + c))).collect()
    }

    fn eval(b: &mut dyn Backend, pos: &[f64], batch: Batch<'_>) -> (Vec<f64>, Vec<f64>) {
        let mut l = vec![0.0; b.chains()];
        let mut g = vec![0.0; b.chains() * b.dim()];
        b.loss_grad(pos, batch, &mut l, Some(&mut g)).unwrap();
        (l, g)
    }

    fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
        let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
        num / den.max(1e-300)
    }

    const ACTS: [Activation; 4] = [Activation::Relu, Activation::Tanh, Activation::Gelu, Activation::Identity];

    /// f64 gradient vs central finite differences of the f64 loss:
    /// relative L2 error (over all C·D entries) below 1e-6.
    #[test]
    fn f64_gradient_matches_finite_differences() {
        for act in ACTS {
            for bias in [true, false] {
                for chains in [1, 3] {
                    for loss in [LossKind::Mse, LossKind::HalfSse] {
                        let (spec, data) = problem(act, bias, 41, vec![5, 4], 1);
                        let mut b = CpuBackend::<f64>::new(&spec, &data, loss, chains, 2).unwrap();
                        let pos = positions(&spec, chains, 2);
                        let (l, g) = eval(&mut b, &pos, Batch::Full);
                        let h = 1e-6;
                        let mut fd = vec![0.0; g.len()];
                        let mut lp = vec![0.0; chains];
                        let mut lm = vec![0.0; chains];
                        for i in 0..spec.n_params() {
                            let mut p = pos.clone();
                            let mut m = pos.clone();
                            for c in 0..chains {
                                p[c * spec.n_params() + i] += h;
                                m[c * spec.n_params() + i] -= h;
                            }
                            b.loss_grad(&p, Batch::Full, &mut lp, None).unwrap();
                            b.loss_grad(&m, Batch::Full, &mut lm, None).unwrap();
                            for c in 0..chains {
                                fd[c * spec.n_params() + i] = (lp[c] - lm[c]) / (2.0 * h);
                            }
                        }
                        let e = rel_l2(&g, &fd);
                        assert!(e < 1e-6, "{act:?} bias={bias} C={chains} {loss:?}: rel L2 {e}");
                        // The loss agrees with the plain forward pass.
                        for c in 0..chains {
                            let pred = spec.predict(&pos[c * spec.n_params()..(c + 1) * spec.n_params()], &data.x, data.n);
                            let sse: f64 = pred.iter().zip(&data.y).map(|(p, y)| (p - y) * (p - y)).sum();
                            let want = match loss {
                                LossKind::Mse => sse / (data.n * 2) as f64,
                                LossKind::HalfSse => 0.5 * sse / data.n as f64,
                            };
                            assert!((l[c] - want).abs() < 1e-12 * want.max(1.0), "{act:?}: {} vs {want}", l[c]);
                        }
                    }
                }
            }
        }
    }

    /// f32 gradient vs central finite differences of the f32 loss itself
    /// (h = 1e-3, so f32 rounding of L, ~1e-7·L/h, stays small): relative L2
    /// error below 1e-2. The tight check of f32 is against f64, below.
    #[test]
    fn f32_gradient_matches_finite_differences() {
        for act in ACTS {
            for bias in [true, false] {
                for chains in [1, 3] {
                    let (spec, data) = problem(act, bias, 41, vec![5, 4], 7);
                    let mut b = CpuBackend::<f32>::new(&spec, &data, LossKind::Mse, chains, 2).unwrap();
                    let pos: Vec<f64> = positions(&spec, chains, 8).iter().map(|v| *v as f32 as f64).collect();
                    let (_, g) = eval(&mut b, &pos, Batch::Full);
                    let d = spec.n_params();
                    let h = 1e-3;
                    let (mut lp, mut lm) = (vec![0.0; chains], vec![0.0; chains]);
                    let mut fd = vec![0.0; g.len()];
                    for i in 0..d {
                        let (mut p, mut m) = (pos.clone(), pos.clone());
                        for c in 0..chains {
                            p[c * d + i] += h;
                            m[c * d + i] -= h;
                        }
                        b.loss_grad(&p, Batch::Full, &mut lp, None).unwrap();
                        b.loss_grad(&m, Batch::Full, &mut lm, None).unwrap();
                        for c in 0..chains {
                            fd[c * d + i] = (lp[c] - lm[c]) / (2.0 * h);
                        }
                    }
                    let e = rel_l2(&g, &fd);
                    assert!(e < 1e-2, "{act:?} bias={bias} C={chains}: f32 rel L2 {e}");
                }
            }
        }
    }

    /// f32 vs the f64 reference: loss within 1e-5 relative, gradient within
    /// 1e-4 relative L2, on a problem large enough to use several tiles and
    /// both threads.
    #[test]
    fn f32_matches_f64_reference() {
        for act in ACTS {
            for bias in [true, false] {
                for chains in [1, 3] {
                    let (spec, data) = problem(act, bias, 700, vec![17, 16], 3);
                    let pos = positions(&spec, chains, 4);
                    let (l64, g64) = eval(&mut CpuBackend::<f64>::new(&spec, &data, LossKind::Mse, chains, 2).unwrap(), &pos, Batch::Full);
                    let (l32, g32) = eval(&mut CpuBackend::<f32>::new(&spec, &data, LossKind::Mse, chains, 2).unwrap(), &pos, Batch::Full);
                    assert!(rel_l2(&l32, &l64) < 1e-5, "{act:?} loss");
                    let e = rel_l2(&g32, &g64);
                    assert!(e < 1e-4, "{act:?} bias={bias} C={chains}: f32 gradient rel L2 {e}");
                }
            }
        }
    }

    /// Threads, tiles, chains and minibatches do not change the numbers.
    #[test]
    fn chains_threads_and_minibatches_are_consistent() {
        let (spec, data) = problem(Activation::Tanh, true, 1500, vec![16, 16], 5);
        let chains = 3;
        let d = spec.n_params();
        let pos = positions(&spec, chains, 6);
        let mut b2 = CpuBackend::<f64>::new(&spec, &data, LossKind::Mse, chains, 2).unwrap();
        let (l2, g2) = eval(&mut b2, &pos, Batch::Full);
        let (l2b, g2b) = eval(&mut b2, &pos, Batch::Full);
        assert_eq!((&l2, &g2), (&l2b, &g2b), "not deterministic");
        // Any thread count gives the same bits (the parts, not the threads, fix the summation order).
        for threads in [1, 3, 7, 32] {
            let (l, g) = eval(&mut CpuBackend::<f64>::new(&spec, &data, LossKind::Mse, chains, threads).unwrap(), &pos, Batch::Full);
            assert_eq!((&l, &g), (&l2, &g2), "{threads} threads");
            let (l, g) = eval(&mut CpuBackend::<f32>::new(&spec, &data, LossKind::Mse, chains, threads).unwrap(), &pos, Batch::Full);
            let (l32, g32) = eval(&mut CpuBackend::<f32>::new(&spec, &data, LossKind::Mse, chains, 2).unwrap(), &pos, Batch::Full);
            assert_eq!((&l, &g), (&l32, &g32), "f32, {threads} threads");
        }
        for c in 0..chains {
            let one = &pos[c * d..(c + 1) * d];
            let (l, g) = eval(&mut CpuBackend::<f64>::new(&spec, &data, LossKind::Mse, 1, 2).unwrap(), one, Batch::Full);
            assert!((l[0] - l2[c]).abs() < 1e-13 * l[0]);
            assert!(rel_l2(&g, &g2[c * d..(c + 1) * d]) < 1e-12);
        }
        // K < C chains per call on the C-chain backend: the last two chains alone.
        let (mut lk, mut gk) = (vec![0.0; 2], vec![0.0; 2 * d]);
        b2.loss_grad(&pos[d..], Batch::Full, &mut lk, Some(&mut gk)).unwrap();
        assert!(rel_l2(&lk, &l2[1..]) < 1e-13 && rel_l2(&gk, &g2[d..]) < 1e-12);
        let mut too_many = vec![0.0; chains + 1];
        let e = b2.loss_grad(&[pos.clone(), pos[..d].to_vec()].concat(), Batch::Full, &mut too_many, None).unwrap_err();
        assert!(e.to_string().contains("expected 1 to C = 3 chains"), "{e}");
        // A minibatch equals the full batch of a data set made of those rows.
        let rows: Vec<u32> = vec![7, 3, 1400, 3, 999, 0];
        let sub = Dataset::new(
            rows.iter().flat_map(|&r| data.x[r as usize * 3..r as usize * 3 + 3].to_vec()).collect(),
            rows.iter().flat_map(|&r| data.y[r as usize * 2..r as usize * 2 + 2].to_vec()).collect(),
            3,
            2,
        )
        .unwrap();
        let (lb, gb) = eval(&mut b2, &pos, Batch::Rows(&rows));
        let (ls, gs) = eval(&mut CpuBackend::<f64>::new(&spec, &sub, LossKind::Mse, chains, 2).unwrap(), &pos, Batch::Full);
        assert!(rel_l2(&lb, &ls) < 1e-13 && rel_l2(&gb, &gs) < 1e-12);
        let mut l = vec![0.0; chains];
        assert!(b2.loss_grad(&pos, Batch::Rows(&[1500]), &mut l, None).is_err());
        assert!(b2.loss_grad(&pos[..d], Batch::Full, &mut l, None).is_err());
    }
}
