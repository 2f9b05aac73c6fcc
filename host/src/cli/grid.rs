//! What `workflow sample` and `workflow tune` share: the experiment file,
//! where its runs go (`--backend local|slurm`, `--jobs`), its `--set`
//! settings; and running a plan there for `workflow tune`: the local pool
//! with its one bar, or a SLURM submission followed to its end.

use std::path::PathBuf;

use lh_host::backend::cpu::default_threads;
use lh_host::config::{self, Experiment, WorkflowConfig, WorkflowPatch};
use lh_host::error::{Error, Result};
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

/// The arguments of `workflow sample` and `workflow tune` that say what runs where.
#[derive(clap::Args)]
pub struct GridArgs {
    /// Experiment file (RON): `targets`, `chains`, `seeds`, and `samplers` (sample)
    /// or a `tune: (…)` section (tune).
    #[arg(long)]
    pub config: PathBuf,
    /// Where the runs go.
    #[arg(long, value_enum, default_value_t = Backend::Local)]
    pub backend: Backend,
    /// Jobs at once on the local pool (default: as many as fit the cores at
    /// `workflow.threads` each; jobs × threads never exceeds the cores).
    #[arg(long, value_parser = super::threads::parse)]
    pub jobs: Option<usize>,
    /// A workflow setting, repeatable: threads, device, precision, checkpoint_every,
    /// and for SLURM partition, walltime, cpus, mem, gpus, throttle, poll (e.g.
    /// --set walltime=04:00:00); wins over the file's `workflow:` section.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print what would run and what is done (for SLURM also the sbatch commands
    /// and job script), and stop.
    #[arg(long)]
    pub dry_run: bool,
}

/// An experiment file loaded with its settings, and the shape of its runs.
pub struct Grid {
    pub exp: Experiment,
    pub settings: WorkflowConfig,
    /// Jobs at once on the local pool (0 on SLURM).
    pub jobs: usize,
    /// CPU threads per run.
    pub threads: usize,
}

impl GridArgs {
    /// Loads the file, applies `--set`, and sizes the local pool for at most
    /// `max_jobs(exp)` runs at once (on SLURM, the threads its settings give).
    pub fn load(&self, max_jobs: impl FnOnce(&Experiment) -> usize) -> Result<Grid> {
        if self.backend == Backend::Slurm && self.jobs.is_some() {
            return Err(Error::invalid("--jobs is for --backend local; on SLURM, --set throttle=K limits how many tasks run at once"));
        }
        let exp = config::load_experiment(&self.config)?;
        let sets = self.sets.iter().map(|s| WorkflowPatch::from_set(s)).collect::<Result<Vec<_>>>()?;
        let settings = lh_host::workflow::settings(&exp, &sets)?;
        let (jobs, threads) = match self.backend {
            Backend::Local => {
                let s = local::shape(default_threads()?, self.jobs, settings.threads, max_jobs(&exp))?;
                (s.jobs, s.threads)
            }
            Backend::Slurm => (0, slurm::threads(&settings)),
        };
        Ok(Grid { exp, settings, jobs, threads })
    }
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
