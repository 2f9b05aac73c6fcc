//! `lh-host sample` and `lh-host run`: one job through [`run_job`] (one per
//! layer for `--restrict each-layer`), then its λ̂ ± SE, R̂ and ESS printed,
//! with each observable's λ̂_S.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lh_host::backend::cpu::default_threads;
use lh_host::backend::BackendKind;
use lh_host::config::{self, Overrides};
use lh_host::diagnose::compare::sum_independent;
use lh_host::diagnose::Mode;
use lh_host::estimate::Estimate;
use lh_host::model::Precision;
use lh_host::sample::{Budget, Status, StopOutcome, StopRule, Until};
use lh_host::store::Store;
use lh_host::workflow::{expand, run_job, Job, JobOutcome, JobTarget};

use super::exit::Exit;
use super::format::variance_line;
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
    /// Run until converged: R̂ and bulk ESS of the L_n trace, checked as draws
    /// come in (e.g. rhat=1.01,ess=400). Needs --budget; raises the plugin's
    /// `draws` key to a cap of 10⁶ (or your --set draws=N).
    #[arg(long, value_name = "rhat=R,ess=E")]
    until: Option<Until>,
    /// The most the run may spend: gradient evaluations per chain (grads=20000)
    /// or wall time (time=30m); the run stops when it is spent.
    #[arg(long, value_name = "grads=N|time=DURATION")]
    budget: Option<Budget>,
    /// Sample only these coordinates, the others fixed at θ*: layer:K, layer:J..K
    /// (J to K inclusive), WK, bK (layers count from 1, as params.npz's W1, b1),
    /// several joined by commas; a .npy mask of D bools; or each-layer (one run per layer).
    #[arg(long, value_name = "SPEC")]
    restrict: Option<String>,
    /// Also record the loss on a subset of the data at every draw and report its
    /// λ̂_S = nβ(E[L_S] − L_S(θ*)), repeatable: NAME=rows:A..B (training rows
    /// A ≤ i < B), NAME=FILE.npy (training row indices) or NAME=test (the test set).
    #[arg(long, value_name = "NAME=SPEC")]
    observe: Vec<String>,
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
            stop: StopRule { until: self.until, budget: self.budget },
            checkpoint_every: std::time::Duration::from_secs_f64(self.checkpoint_every),
            tag: None,
            key: None,
            restrict: self.restrict.as_deref().map(str::parse).transpose()?,
            observe: self.observe.iter().map(|s| s.parse()).collect::<lh_host::error::Result<_>>()?,
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

/// λ̂ ± SE with nβ, L0 and the per-chain values, then R̂ and ESS of the
/// `trace` it comes from (or the draw count).
fn print_estimate(label: &str, trace: &str, e: &Estimate) {
    outln!(
        "{label} = {:.4} ± {:.4}  (nβ = {:.4}, L0 = {:.6e}; per chain: {})",
        e.mean,
        e.se,
        e.n_beta,
        e.l0,
        e.per_chain.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ")
    );
    match e.rhat {
        Some(r) => outln!("R̂({trace}) = {r:.4}, ESS bulk = {:.0}, tail = {:.0}", e.ess_bulk, e.ess_tail.unwrap_or(f64::NAN)),
        None => outln!("independent draws: {} in all", e.ess_bulk),
    }
    if let Some(line) = variance_line(e, trace) {
        outln!("{line}");
    }
}

/// Runs the job (each layer's, for `--restrict each-layer`) with progress
/// bars and prints what it found.
fn report(store: &Store, job: &Job) -> Result<Exit> {
    let jobs = expand(store, job)?;
    let mut layers = Vec::new();
    for job in &jobs {
        let outcome = run_job(store, job, &mut Bars::new())?;
        print_outcome(outcome, &mut layers);
        if Exit::unless_interrupted(Exit::Success) != Exit::Success {
            break;
        }
    }
    if jobs.len() > 1 {
        let (sum, se) = sum_independent(layers.iter().map(|(_, e)| (e.mean, e.se)));
        outln!("per layer: {}", layers.iter().map(|(s, e)| format!("{s} {:.4} ± {:.4}", e.mean, e.se)).collect::<Vec<_>>().join(", "));
        outln!("sum over layers = {sum:.4} ± {se:.4} (`lh-host compare --experiment {}` sets it beside the whole network's λ̂)", job.experiment);
    }
    Ok(Exit::unless_interrupted(Exit::Success))
}

/// Prints one run's outcome; a restricted run's (spec, λ̂) is pushed onto `restricted`.
fn print_outcome(outcome: JobOutcome, restricted: &mut Vec<(String, Estimate)>) {
    let JobOutcome { built, run, analysis, .. } = outcome;
    if let Some(b) = built {
        outln!("target {} (D = {}, n = {}, L0 = {:.6e}){}", b.id, b.meta.d, b.meta.n, b.meta.l0, if b.trained { ", built now" } else { ", from the store" });
    }
    let m = &run.manifest;
    if let Some(r) = &m.restriction {
        outln!("restricted to `{}`: D′ = {} of {} coordinates move, the rest stay at θ*", r.spec, r.dim, r.full_dim);
    }
    match &m.llc {
        Some(e) => {
            print_estimate("λ̂", "L_n", e);
            if let Some(r) = &m.restriction {
                restricted.push((r.spec.clone(), e.clone()));
            }
        }
        None => outln!("no draws after burn-in: no estimate"),
    }
    for (name, o) in &m.observables {
        match &o.llc {
            Some(e) => print_estimate(&format!("λ̂[{name}] ({} rows)", o.rows), &format!("L_{name}"), e),
            None => outln!("λ̂[{name}]: no draws after burn-in"),
        }
    }
    outln!(
        "{} {}: {} chains × {} draws (burn-in {}), {:.1} s, per chain {:.1} gradient and {} loss evaluations{}{}",
        m.plugin.name,
        m.plugin.version,
        m.chains,
        m.draws,
        m.burn_in,
        m.seconds(),
        m.work.grad_evals_fge,
        m.work.loss_evals,
        if m.work.observe_loss_evals > 0 { format!(", {} on observed subsets", m.work.observe_loss_evals) } else { String::new() },
        if m.status == Status::Complete { String::new() } else { " (INCOMPLETE: stopped early)".into() }
    );
    if let Some(s) = &m.stop {
        let fig = |v: Option<f64>, f: fn(f64) -> String| v.map_or("n/a".to_string(), f);
        let how = match s.outcome {
            Some(StopOutcome::DrawsExhausted) => "the plugin's draws ran out first",
            Some(o) => o.as_str(),
            None => "interrupted",
        };
        outln!(
            "stop rule {}{}: {how} (R̂ = {}, ESS bulk = {}, {} checks)",
            s.until.as_deref().unwrap_or(""),
            s.budget.as_deref().map(|b| format!(" within {b}")).unwrap_or_default(),
            fig(s.rhat, |r| format!("{r:.4}")),
            fig(s.ess_bulk, |e| format!("{e:.0}")),
            s.checks
        );
    }
    outln!("run: {}", run.dir.display());
    if let Some((path, a)) = analysis {
        outln!("diagnostics: {} and diagnostics/{}", path.display(), a.plots.join(", diagnostics/"));
    }
}
