//! `lh-host diagnose-target` (one target) and `diagnose-targets` (every
//! target of an experiment): student-vs-teacher figures.

use anyhow::Result;
use lh_host::store::Store;
use lh_host::target::figures::{self, Report};

use super::exit::Exit;
use super::format::fmt_sci;

#[derive(clap::Args)]
pub struct Args {
    /// Target id (or a unique prefix).
    #[arg(long)]
    target: String,
}

#[derive(clap::Args)]
pub struct ExperimentArgs {
    #[arg(long)]
    experiment: String,
}

pub fn exec(store: &Store, a: Args) -> Result<Exit> {
    print_report(&figures::diagnose(store, &a.target)?);
    Ok(Exit::Success)
}

fn print_report(r: &Report) {
    outln!(
        "{}: student vs teacher MSE train {:.4e}, test {}; wrote {} in {}",
        r.target_id,
        r.mse_vs_teacher_train,
        fmt_sci(r.mse_vs_teacher_test, 4),
        r.plots.join(", "),
        r.dir.display()
    );
}

/// Every target in turn; one that cannot be diagnosed is reported (exit 1 when any failed).
pub fn exec_experiment(store: &Store, a: ExperimentArgs) -> Result<Exit> {
    let exp = &a.experiment;
    let ids = figures::experiment_targets(store, exp)?;
    let n = ids.len();
    outln!("[diagnose-targets] Processing {n} targets in experiment '{exp}'");
    let mut failed = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        match figures::diagnose(store, id) {
            Ok(r) => {
                out!("[diagnose-targets] [{}/{n}] ", i + 1);
                print_report(&r);
            }
            Err(e) => {
                outln!("[diagnose-targets] [{}/{n}] FAILED: {id} - {e}", i + 1);
                failed.push(id.as_str());
            }
        }
    }
    outln!("[diagnose-targets] Completed: {} success, {} failed out of {n} targets", n - failed.len(), failed.len());
    if failed.is_empty() {
        return Ok(Exit::Success);
    }
    outln!("Failed targets:");
    for id in failed {
        outln!("  • {id}");
    }
    Ok(Exit::SomeFailed)
}
