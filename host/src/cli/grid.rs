//! Where a workflow's runs go (`--backend local|slurm`), and running a plan
//! there for `workflow tune`: the local pool with its one bar, or a SLURM
//! submission followed to its end.

use lh_host::error::Result;
use lh_host::store::Store;
use lh_host::workflow::plan::Plan;
use lh_host::workflow::tune::Runner;
use lh_host::workflow::{local, slurm};

use super::pool_bar::PoolBar;
use super::signals;

/// Where the grid runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// A pool of worker threads on this machine.
    Local,
    /// SLURM job arrays (sbatch), one for the targets and one for the runs.
    Slurm,
}

/// Runs plans on `backend` (`jobs` at a time on the local pool), printing what happens.
pub struct PlanRunner<'s> {
    pub store: &'s Store,
    pub backend: Backend,
    pub jobs: usize,
}

impl Runner for PlanRunner<'_> {
    fn run(&mut self, plan: &Plan, todo: &[usize]) -> Result<()> {
        match self.backend {
            Backend::Local => {
                let bar = PoolBar::new(plan, local::needed_targets(plan, todo).len() + todo.len());
                local::run(self.store, plan, todo, self.jobs, &bar);
                bar.finish();
            }
            Backend::Slurm => {
                signals::install();
                let sub = slurm::Submission::prepare(self.store, plan, todo)?;
                let ids = sub.submit()?;
                outln!("submitted: {}", ids.describe());
                slurm::wait(self.store, plan, &sub, &ids, &mut |line| outln!("{line}"), &|| signals::interrupted().is_some())?;
            }
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        signals::interrupted().is_some()
    }

    fn say(&mut self, line: &str) {
        outln!("{line}");
    }
}
