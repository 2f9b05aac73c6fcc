//! `lh-host bench`: throughput of one full-batch loss-and-gradient over all
//! chains (chain-gradients/s and GFLOP/s), on synthetic data of a preset's shape.

use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use super::factory::BackendFactory;
use super::interface::{gradient_flops, Batch, Dataset};
use crate::error::Result;
use crate::model::MlpSpec;
use crate::model::{LossKind, Precision};
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
    let cols = (spec.in_dim + spec.out_dim) as f64;
    // X and Y in f64 and in the backend's copy; θ and gradients of every chain.
    crate::memory::check(&format!("bench --n {n} ({} columns)", spec.in_dim + spec.out_dim), 16.0 * n as f64 * cols)?;
    crate::memory::check(&format!("bench --chains {chains} (D = {})", spec.n_params()), 32.0 * chains as f64 * spec.n_params() as f64)?;
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
