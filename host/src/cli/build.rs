//! `lh-host build`: every target of an experiment file, built or reused.

use std::path::PathBuf;

use anyhow::Result;
use lh_host::backend::cpu::default_threads;
use lh_host::config;
use lh_host::store::Store;
use lh_host::target;

use super::exit::Exit;
use super::monitor::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// Experiment file (RON), e.g. config/experiments/default.ron.
    #[arg(long)]
    config: PathBuf,
    /// Experiment to link the targets into (default: the file's `name`).
    #[arg(long)]
    experiment: Option<String>,
    /// CPU threads (default: LH_THREADS or all cores).
    #[arg(long, value_parser = super::threads::parse)]
    threads: Option<usize>,
}

/// Builds each target in turn; a target that fails is reported and the rest
/// still built (exit 1 when any failed).
pub fn exec(store: &Store, a: Args) -> Result<Exit> {
    let exp = config::load_experiment(&a.config)?;
    let name = a.experiment.unwrap_or_else(|| exp.config.name.clone());
    let threads = a.threads.map_or_else(default_threads, Ok)?;
    let n = exp.targets.len();
    let mut bars = Bars::new();
    let mut failed = 0;
    for (i, cfg) in exp.targets.iter().enumerate() {
        bars.set_prefix(format!("target {}/{n}: ", i + 1));
        let built = match target::build(store, cfg, &name, threads, &mut bars) {
            Ok(b) => b,
            Err(e) if n > 1 => {
                outln!("FAILED: {}: targets[{i}]: {e}", a.config.display());
                failed += 1;
                continue;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("{}: targets[{i}]", a.config.display()))),
        };
        let m = &built.meta;
        let how = if built.trained { format!("built in {:.1} s", built.seconds) } else { "already in the store".to_string() };
        outln!("{}  D={} n={} L0={:.6e} β={:.5} γ={}  {how}  -> {}", built.id, m.d, m.n, m.l0, m.beta, m.gamma, store.object_dir(&built.hash).display());
    }
    if failed > 0 {
        eprintln!("error: {failed} of {n} targets failed to build");
        return Ok(Exit::SomeFailed);
    }
    Ok(Exit::Success)
}
