//! `lh-host diagnose` (one run) and `diagnose-experiment` (every run of an
//! experiment): analysis.json and figures, with a summary printed.

use std::path::{Path, PathBuf};

use anyhow::Result;
use lh_host::diagnose::{self, compare, Analysis, Mode};
use lh_host::store::Store;

use super::exit::Exit;
use super::format::{fmt_opt, variance_line};

#[derive(clap::Args)]
pub struct Args {
    /// The run directory (printed by `sample` and `run`).
    #[arg(long = "run-dir")]
    run_dir: PathBuf,
    /// light: every figure but the WNV curve; full: also wnv.png.
    #[arg(long, value_enum, default_value_t = Mode::Light)]
    mode: Mode,
}

#[derive(clap::Args)]
pub struct ExperimentArgs {
    #[arg(long)]
    experiment: String,
    /// Only the runs of these plugins, e.g. --samplers hmc,mclmc.
    #[arg(long, value_delimiter = ',')]
    samplers: Vec<String>,
    #[arg(long, value_enum, default_value_t = Mode::Light)]
    mode: Mode,
}

pub fn exec(a: Args) -> Result<Exit> {
    let (path, analysis) = diagnose::diagnose(&a.run_dir, a.mode)?;
    print_analysis(&path, &analysis);
    Ok(Exit::Success)
}

fn print_analysis(path: &Path, a: &Analysis) {
    outln!(
        "λ̂ = {:.4} ± {:.4} (bootstrap ± {}, b = {})  ({} chains × {} draws after burn-in {})",
        a.llc.mean,
        a.llc.se,
        fmt_opt(a.llc_bootstrap.se, 4),
        a.llc_bootstrap.block_len,
        a.chains,
        a.draws - a.burn_in,
        a.burn_in
    );
    outln!("  per chain: {}", a.llc.per_chain.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(", "));
    if let Some(line) = variance_line(&a.llc, "L_n") {
        outln!("  {line}");
    }
    for (name, t) in &a.traces {
        outln!("  {name:<16} mean {:<12.6} R̂ {:<8} ESS bulk {:<10} tail {}", t.mean, fmt_opt(t.rhat, 4), fmt_opt(t.ess_bulk, 1), fmt_opt(t.ess_tail, 1));
    }
    if let Some(acc) = &a.acceptance {
        outln!("  acceptance rate: {:.4}", acc.mean);
    }
    if let Some(d) = a.divergences {
        outln!("  divergences after burn-in: {d}");
    }
    if let Some(e) = &a.energy_change {
        outln!("  energy change: mean {:.3e}, sd {:.3e}, max |ΔE| {:.3e}", e.mean, e.sd, e.max_abs);
    }
    if let Some(e) = &a.elbo {
        outln!("  final ELBO: {:.4}", e.final_mean);
    }
    outln!(
        "  work: {:.1} gradient evaluations (FGE), {:.2} s; ESS/s {}; WNV {} (× grad evals), {} (× s)",
        a.work.grad_evals_fge,
        a.work.seconds,
        fmt_opt(a.ess_per_second, 1),
        fmt_opt(a.wnv.grad_evals, 4),
        fmt_opt(a.wnv.seconds, 6)
    );
    for n in &a.notes {
        outln!("  note: {n}");
    }
    outln!("wrote {} and diagnostics/{}", path.display(), a.plots.join(", diagnostics/"));
}

/// Diagnoses every run; one that fails is reported and the rest go on (exit 1 when any failed).
pub fn exec_experiment(store: &Store, a: ExperimentArgs) -> Result<Exit> {
    let exp = &a.experiment;
    let dirs = compare::run_dirs(store, exp, &a.samplers)?;
    let n = dirs.len();
    let mut failed = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let name = dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        match diagnose::diagnose(dir, a.mode) {
            Ok((_, an)) => outln!(
                "[{}/{n}] {name}: λ̂ = {:.4} ± {:.4}, R̂ {}, ESS {:.0}; {} figures",
                i + 1,
                an.llc.mean,
                an.llc.se,
                fmt_opt(an.llc.rhat, 4),
                an.llc.ess_bulk,
                an.plots.len()
            ),
            Err(e) => {
                outln!("[{}/{n}] FAILED: {name} - {e}", i + 1);
                failed.push(name);
            }
        }
    }
    outln!("diagnosed {} of {n} runs in experiment `{exp}`", n - failed.len());
    if !failed.is_empty() {
        eprintln!("error: {} of {n} runs could not be diagnosed: {}", failed.len(), failed.join(", "));
        return Ok(Exit::SomeFailed);
    }
    Ok(Exit::Success)
}
