//! `lh-host bench`: throughput of one full-batch loss-and-gradient over all
//! chains (chain-gradients/s and GFLOP/s), on synthetic data of a preset's shape.

use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use crate::backend::{gradient_flops, Backend, BackendFactory, Batch, Dataset};
use crate::config::{LossKind, Precision};
use crate::error::Result;
use crate::model::MlpSpec;
use crate::rng::stream;

/// One benchmark measurement (one JSON line with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub preset: String,
    pub backend: String,
    pub adapter: String,
    pub precision: Precision,
    #[serde(rename = "D")]
    pub d: usize,
    pub n: usize,
    pub chains: usize,
    /// Median seconds per evaluation of all chains.
    pub seconds: f64,
    pub chain_grads_per_s: f64,
    pub gflops: f64,
    pub reps: usize,
}

/// Times `reps` evaluations (after one warm-up) and reports the median.
pub fn run(preset: &str, spec: &MlpSpec, n: usize, chains: usize, precision: Precision, factory: &BackendFactory, reps: usize) -> Result<BenchResult> {
    let mut r = stream(0xbe_4c, 0);
    let x: Vec<f64> = (0..n * spec.in_dim).map(|_| StandardNormal.sample(&mut r)).collect();
    let y: Vec<f64> = (0..n * spec.out_dim).map(|_| StandardNormal.sample(&mut r)).collect();
    let data = Dataset::new(x, y, spec.in_dim, spec.out_dim)?;
    let mut be = factory.build(spec, &data, LossKind::Mse, chains, precision)?;
    let pos: Vec<f64> = (0..chains).flat_map(|c| spec.init(&mut stream(0xbe_4c, 1 + c))).collect();
    let mut loss = vec![0.0; chains];
    let mut grads = vec![0.0; chains * spec.n_params()];
    be.loss_grad(&pos, Batch::Full, &mut loss, Some(&mut grads))?;
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = std::time::Instant::now();
            be.loss_grad(&pos, Batch::Full, &mut loss, Some(&mut grads)).map(|_| t.elapsed().as_secs_f64())
        })
        .collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    let seconds = times[times.len() / 2];
    let info = be.info();
    Ok(BenchResult {
        preset: preset.to_string(),
        backend: info.backend,
        adapter: info.adapter,
        precision,
        d: spec.n_params(),
        n,
        chains,
        seconds,
        chain_grads_per_s: chains as f64 / seconds,
        gflops: gradient_flops(spec, n, chains) / seconds / 1e9,
        reps: times.len(),
    })
}

/// Host-side cost of one `logdensity_and_grad` call through the plugin ABI.
#[derive(Debug, Clone, Serialize)]
pub struct AbiOverhead {
    #[serde(rename = "D")]
    pub d: usize,
    pub chains: usize,
    /// Microseconds per call of the backend's `loss_grad` directly.
    pub direct_us: f64,
    /// Microseconds per call of `Model::logdensity_and_grad` through the abi_stable trait object.
    pub via_abi_us: f64,
}

/// Times `calls` evaluations of the quadratic target (so the evaluation
/// itself is cheap) directly and through the ABI trait object a plugin sees.
pub fn abi_overhead(d: usize, chains: usize, calls: usize) -> Result<AbiOverhead> {
    use crate::backend::quadratic::QuadraticBackend;
    use lh_plugin_api::abi_stable::sabi_trait::TD_Opaque;
    use lh_plugin_api::{Model_TO, RMut, RSlice, RSliceMut};
    let center = vec![0.0; d];
    let pos: Vec<f64> = (0..chains * d).map(|i| (i % 7) as f64 * 0.1).collect();
    let (mut g, mut lp, mut l) = (vec![0.0; chains * d], vec![0.0; chains], vec![0.0; chains]);
    let mut direct = QuadraticBackend::new(center.clone(), 1000, chains);
    let t = std::time::Instant::now();
    for _ in 0..calls {
        direct.loss_grad(&pos, Batch::Full, &mut l, Some(&mut g))?;
    }
    let direct_us = t.elapsed().as_secs_f64() * 1e6 / calls as f64;
    let mut post = crate::posterior::Posterior::new(Box::new(QuadraticBackend::new(center.clone(), 1000, chains)), center, 0.1, 1.0)?;
    let mut model = Model_TO::from_ptr(RMut::new(&mut post), TD_Opaque);
    let t = std::time::Instant::now();
    for _ in 0..calls {
        model
            .logdensity_and_grad(RSlice::from_slice(&pos), RSliceMut::from_mut_slice(&mut g), RSliceMut::from_mut_slice(&mut lp), RSliceMut::from_mut_slice(&mut l))
            .into_result()
            .map_err(|e| crate::error::Error::Numerical(e.message.into()))?;
    }
    let via_abi_us = t.elapsed().as_secs_f64() * 1e6 / calls as f64;
    Ok(AbiOverhead { d, chains, direct_us, via_abi_us })
}
