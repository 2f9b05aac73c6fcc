//! `lh-host __workflow-task` (hidden): what one SLURM array task runs —
//! entry `SLURM_ARRAY_TASK_ID + offset` of a phase of a submission's plan,
//! through the same task code as the local pool. Exit 0 when it completed
//! (or was done already), 2 when it failed, 143/130 when a signal (SLURM's
//! time limit, scancel) stopped it: the run is then checkpointed and the
//! next `workflow sample` redoes it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use lh_host::store::Store;
use lh_host::workflow::plan::Plan;
use lh_host::workflow::state::TaskStatus;
use lh_host::workflow::task;

use super::exit::Exit;
use super::monitor::Bars;

/// Which array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Targets,
    Runs,
}

#[derive(clap::Args)]
pub struct Args {
    /// The submission's plan.json.
    #[arg(long)]
    plan: PathBuf,
    #[arg(long, value_enum)]
    phase: Phase,
    /// Added to the task index (arrays are chunked below SLURM's MaxArraySize).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// The task index (default: $SLURM_ARRAY_TASK_ID).
    #[arg(long)]
    index: Option<usize>,
}

pub fn exec(a: Args) -> Result<Exit> {
    let plan = Plan::read(&a.plan)?;
    let store = Store { home: plan.home.clone() };
    if let Ok(exe) = std::env::current_exe() {
        lh_host::sample::probe::isolate(exe, store.cache_dir().join("plugin-probes"));
    }
    let index = match a.index {
        Some(i) => i,
        None => std::env::var("SLURM_ARRAY_TASK_ID").ok().and_then(|v| v.parse::<usize>().ok()).context("no --index and no SLURM_ARRAY_TASK_ID")?,
    } + a.offset;
    let tasks = plan.tasks.as_ref().with_context(|| format!("{}: not a SLURM submission's plan", a.plan.display()))?;
    let (list, what) = match a.phase {
        Phase::Targets => (&tasks.targets, "targets"),
        Phase::Runs => (&tasks.runs, "runs"),
    };
    let entry = *list.get(index).with_context(|| format!("{}: task {index} of the {what} array does not exist ({} tasks)", a.plan.display(), list.len()))?;
    let mut bars = Bars::new();
    let (name, report) = match a.phase {
        Phase::Targets => (format!("target {}", plan.targets[entry].id), task::build_target(&store, &plan, entry, &mut bars)?),
        Phase::Runs => {
            let r = &plan.runs[entry];
            (format!("run {} ({} seed {} on {})", r.key, r.label(), r.seed, r.target_id), task::run(&store, &plan, entry, &mut bars)?)
        }
    };
    let dir = report.dir.as_ref().map(|d| format!(": {}", d.display())).unwrap_or_default();
    match report.status {
        TaskStatus::Failed => bail!("{name}: {}", report.error.unwrap_or_default()),
        TaskStatus::Skipped => outln!("{name}: already done{dir}"),
        TaskStatus::Incomplete => outln!("{name}: stopped early, checkpointed{dir}"),
        TaskStatus::Complete => outln!("{name}: complete in {:.1} s{dir}", report.seconds),
    }
    Ok(Exit::unless_interrupted(Exit::Success))
}
