//! `lh-host sample` and `lh-host run`: one job through
//! [`run_job`], then its λ̂ ± SE, R̂ and ESS printed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lh_host::backend::cpu::default_threads;
use lh_host::backend::BackendKind;
use lh_host::config::{self, Overrides};
use lh_host::diagnose::Mode;
use lh_host::model::Precision;
use lh_host::sample::Status;
use lh_host::store::Store;
use lh_host::workflow::{run_job, Job, JobOutcome, JobTarget};

use super::exit::Exit;
use super::monitor::Bars;

/// Options shared by `sample` and `run`.
#[derive(clap::Args)]
pub struct JobArgs {
    /// Sampler plugin: a name (found in LH_PLUGIN_PATH or beside lh-host) or a path to its library.
    #[arg(long, default_value = "hmc")]
    plugin: String,
    /// Plugin config file (RON struct of overrides, e.g. `(draws: 2000)`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one plugin config key (RON value), repeatable: --set draws=2000.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Number of chains.
    #[arg(long, default_value_t = 4)]
    chains: usize,
    /// Run seed (each chain gets its own stream from it).
    #[arg(long, default_value_t = 12345)]
    seed: u64,
    /// Evaluation backend: auto picks a hardware GPU when there is one (for f64 only
    /// if it has SHADER_F64), else the CPU.
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    backend: BackendKind,
    /// Arithmetic precision (default: the target's training precision; giving
    /// another one is how a mismatch is asked for, and the manifest records both).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Experiment the run is filed under.
    #[arg(long)]
    experiment: Option<String>,
    /// CPU threads (default: LH_THREADS or all cores).
    #[arg(long, value_parser = super::threads::parse)]
    threads: Option<usize>,
    /// Then run `diagnose` on the run directory (analysis.json and plots).
    #[arg(long)]
    diagnose: bool,
    /// Seconds between two checkpoints of the run directory while it draws (a killed
    /// run keeps the draws of its last checkpoint).
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    checkpoint_every: f64,
}

/// A positive, finite number of seconds.
fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds > 0")),
    }
}

#[derive(clap::Args)]
pub struct SampleArgs {
    /// Target id (or a unique prefix).
    #[arg(long)]
    target: String,
    #[command(flatten)]
    job: JobArgs,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Experiment file whose first target is used (default: the built-in config/experiments/default.ron).
    #[arg(long = "target-config", conflicts_with = "target")]
    target_config: Option<PathBuf>,
    /// Use this stored target instead.
    #[arg(long)]
    target: Option<String>,
    #[command(flatten)]
    job: JobArgs,
}

/// The default experiment, built into the binary so `run` works from anywhere.
const DEFAULT_EXPERIMENT: &str = include_str!("../../../config/experiments/default.ron");

impl JobArgs {
    /// The job, on `target`, filed under `--experiment` or else `default_exp`.
    fn into_job(self, target: JobTarget, default_exp: &str) -> Result<Job> {
        Ok(Job {
            target,
            overrides: Overrides::from_cli(self.config.as_deref(), &self.sets)?,
            plugin: self.plugin,
            chains: self.chains,
            seed: self.seed,
            backend: self.backend,
            precision: self.precision,
            experiment: self.experiment.unwrap_or_else(|| default_exp.to_string()),
            threads: self.threads.map_or_else(default_threads, Ok)?,
            diagnose: self.diagnose.then_some(Mode::Light),
            checkpoint_every: std::time::Duration::from_secs_f64(self.checkpoint_every),
            tag: None,
            key: None,
        })
    }
}

pub fn exec_sample(store: &Store, a: SampleArgs) -> Result<Exit> {
    let job = a.job.into_job(JobTarget::Stored(a.target), "dev")?;
    report(store, &job)
}

pub fn exec_run(store: &Store, a: RunArgs) -> Result<Exit> {
    let job = match a.target {
        Some(id) => a.job.into_job(JobTarget::Stored(id), "dev")?,
        None => {
            let exp = match &a.target_config {
                Some(p) => config::load_experiment(p)?,
                None => config::parse_experiment(DEFAULT_EXPERIMENT, Path::new("config/experiments/default.ron"))?,
            };
            let recipe = exp.targets.first().cloned().context("the experiment has no targets")?;
            let name = exp.config.name.clone();
            a.job.into_job(JobTarget::Recipe { recipe, experiment: name.clone() }, &name)?
        }
    };
    report(store, &job)
}

/// Runs the job with progress bars and prints what it found.
fn report(store: &Store, job: &Job) -> Result<Exit> {
    let JobOutcome { built, run, analysis, .. } = run_job(store, job, &mut Bars::new())?;
    if let Some(b) = built {
        outln!("target {} (D = {}, n = {}, L0 = {:.6e}){}", b.id, b.meta.d, b.meta.n, b.meta.l0, if b.trained { ", built now" } else { ", from the store" });
    }
    let m = &run.manifest;
    match &m.llc {
        Some(e) => {
            outln!(
                "λ̂ = {:.4} ± {:.4}  (nβ = {:.4}, L0 = {:.6e}; per chain: {})",
                e.mean,
                e.se,
                e.n_beta,
                e.l0,
                e.per_chain.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ")
            );
            match e.rhat {
                Some(r) => outln!("R̂(L_n) = {r:.4}, ESS bulk = {:.0}, tail = {:.0}", e.ess_bulk, e.ess_tail.unwrap_or(f64::NAN)),
                None => outln!("independent draws: {} in all", e.ess_bulk),
            }
        }
        None => outln!("no draws after burn-in: no estimate"),
    }
    outln!(
        "{} {}: {} chains × {} draws (burn-in {}), {:.1} s, per chain {:.1} gradient and {} loss evaluations{}",
        m.plugin.name,
        m.plugin.version,
        m.chains,
        m.draws,
        m.burn_in,
        m.seconds(),
        m.work.grad_evals_fge,
        m.work.loss_evals,
        if m.status == Status::Complete { String::new() } else { " (INCOMPLETE: stopped early)".into() }
    );
    outln!("run: {}", run.dir.display());
    if let Some((path, a)) = analysis {
        outln!("diagnostics: {} and diagnostics/{}", path.display(), a.plots.join(", diagnostics/"));
    }
    Ok(Exit::unless_interrupted(Exit::Success))
}
