//! `lh-host bench`: backend throughput, or the cost of the plugin ABI.

use anyhow::Result;
use lh_host::backend::cpu::default_threads;
use lh_host::backend::{bench, BackendFactory, BackendKind};
use lh_host::config;
use lh_host::model::Precision;
use lh_host::sample::abi_overhead;

use super::exit::Exit;

#[derive(clap::Args)]
pub struct Args {
    /// Model preset: small, base, relu_8_32_32, or a .ron path.
    #[arg(long, default_value = "base")]
    preset: String,
    /// Chains per evaluation.
    #[arg(long, default_value_t = 4)]
    chains: usize,
    /// Training rows (default: 20000 for base, 1000 for relu_8_32_32, 100 for small).
    #[arg(long)]
    n: Option<usize>,
    /// Backend to measure: auto takes a hardware GPU when there is one (for f64 only
    /// if it has SHADER_F64), else the CPU.
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    backend: BackendKind,
    /// Precision (default: both; f32 alone for wgpu on an adapter without SHADER_F64).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Run the series C ∈ {1, 4, 16, 64} × n ∈ {10³, 10⁴, 10⁵} instead.
    #[arg(long)]
    series: bool,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// CPU threads (default: LH_THREADS or all cores).
    #[arg(long, value_parser = super::threads::parse)]
    threads: Option<usize>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure instead the host-side cost of a `logdensity_and_grad` call
    /// through the plugin ABI vs a direct backend call (quadratic target, --n = D).
    #[arg(long)]
    abi_overhead: bool,
}

pub fn exec(a: Args) -> Result<Exit> {
    if a.abi_overhead {
        let r = abi_overhead::abi_overhead(a.n.unwrap_or(1000), a.chains, 100_000)?;
        if a.json {
            outln!("{}", serde_json::to_string(&r)?);
        } else {
            outln!(
                "D = {}, C = {}: direct {:.3} µs/call, through the ABI {:.3} µs/call (overhead {:.3} µs, including the localisation term)",
                r.d,
                r.chains,
                r.direct_us,
                r.via_abi_us,
                r.via_abi_us - r.direct_us
            );
        }
        return Ok(Exit::Success);
    }
    let spec = config::model_preset(&a.preset)?;
    let factory = BackendFactory::new(a.backend, a.threads.map_or_else(default_threads, Ok)?)?;
    let precisions = a.precision.map_or_else(|| factory.precisions(), |p| vec![p]);
    for note in precisions.iter().filter_map(|&p| factory.fallback_note(p)) {
        eprintln!("note: {note}");
    }
    let default_n = match a.preset.as_str() {
        "small" => 100,
        "relu_8_32_32" => 1000,
        _ => 20_000,
    };
    let grid: Vec<(usize, usize)> = if a.series {
        [1, 4, 16, 64].iter().flat_map(|&c| [1_000, 10_000, 100_000].map(|n| (c, n))).collect()
    } else {
        vec![(a.chains, a.n.unwrap_or(default_n))]
    };
    if !a.json {
        outln!("{:<14} {:<8} {:>4} {:>7} {:>7} {:>5} {:>12} {:>16} {:>9}", "preset", "backend", "prec", "D", "n", "C", "s/eval", "chain-grads/s", "GFLOP/s");
    }
    for (c, n) in grid {
        for &p in &precisions {
            let r = bench::run(&a.preset, &spec, n, c, p, &factory, a.reps)?;
            if a.json {
                outln!("{}", serde_json::to_string(&r)?);
            } else {
                outln!(
                    "{:<14} {:<8} {:>4} {:>7} {:>7} {:>5} {:>12.3e} {:>16.1} {:>9.1}",
                    r.preset,
                    r.backend,
                    r.precision,
                    r.d,
                    r.n,
                    r.chains,
                    r.seconds,
                    r.chain_grads_per_s,
                    r.gflops
                );
            }
        }
    }
    Ok(Exit::Success)
}
