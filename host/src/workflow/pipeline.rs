//! One job, end to end: target → backend → plugin → config → sample →
//! (diagnose).

use std::path::PathBuf;
use std::time::Duration;

use crate::backend::{BackendFactory, BackendKind};
use crate::config::{resolve_config, Overrides, TargetRecipe};
use crate::diagnose::{self, Analysis, Mode};
use crate::error::{Error, Result};
use crate::model::restrict::RestrictSpec;
use crate::model::Precision;
use crate::progress::Monitor;
use crate::sample::stopping::UNTIL_DRAWS;
use crate::sample::{self, plugins, ObserveSpec, Outcome, Request, StopRule};
use crate::store::layout::check_experiment_name;
use crate::store::Store;
use crate::target::{self, Built, Target};

/// Which target a job samples.
#[derive(Debug, Clone)]
pub enum JobTarget {
    /// A stored target, by id or unique id prefix.
    Stored(String),
    /// A target recipe, built unless the store has it, and linked into `experiment`.
    Recipe { recipe: TargetRecipe, experiment: String },
}

/// Everything one run needs to know.
#[derive(Debug, Clone)]
pub struct Job {
    pub target: JobTarget,
    /// A plugin name (looked up in LH_PLUGIN_PATH and beside lh-host) or a library path.
    pub plugin: String,
    /// Overrides of the plugin's default config, applied in order.
    pub overrides: Vec<Overrides>,
    pub chains: usize,
    pub seed: u64,
    pub backend: BackendKind,
    /// The run's precision (default: the target's training precision).
    pub precision: Option<Precision>,
    /// The experiment the run is filed under.
    pub experiment: String,
    /// CPU threads, for training and the CPU backend.
    pub threads: usize,
    /// Diagnose the run afterwards (analysis.json and figures).
    pub diagnose: Option<Mode>,
    /// Stop early: `--until` (R̂ and bulk ESS of L_n met; needs a budget) and `--budget`.
    pub stop: StopRule,
    /// Time between two checkpoints of the run while it draws.
    pub checkpoint_every: Duration,
    /// The run's label in a workflow (a plain name, part of the run directory's name).
    pub tag: Option<String>,
    /// The run's key in a workflow (recorded in the manifest; see [`super::plan`]).
    pub key: Option<String>,
    /// Sample only these coordinates, the rest at θ* (`each-layer`: see [`expand`]).
    pub restrict: Option<RestrictSpec>,
    /// Data subsets whose λ̂_S is recorded beside λ̂.
    pub observe: Vec<ObserveSpec>,
}

/// What a job did.
pub struct JobOutcome {
    /// The target, when the job built or reused it from a recipe.
    pub built: Option<Built>,
    pub target: Target,
    pub run: Outcome,
    /// Where `analysis.json` went and what it holds, when the job diagnosed the run.
    pub analysis: Option<(PathBuf, Analysis)>,
}

/// The jobs `job` stands for: one per layer of its target for `--restrict
/// each-layer` (`layer:1`, `layer:2`, …), else `job` itself.
pub fn expand(store: &Store, job: &Job) -> Result<Vec<Job>> {
    if job.restrict != Some(RestrictSpec::EachLayer) {
        return Ok(vec![job.clone()]);
    }
    let (id, mlp) = match &job.target {
        JobTarget::Stored(id) => {
            let (_, meta) = target::load_meta(store, id)?;
            (meta.target_id.clone(), meta.source.mlp().cloned())
        }
        JobTarget::Recipe { recipe: TargetRecipe::Mlp(cfg), .. } => ("the target".into(), Some(cfg.model.clone())),
        JobTarget::Recipe { recipe: TargetRecipe::Quadratic(_), .. } => ("the target".into(), None),
    };
    let mlp = mlp.ok_or_else(|| Error::invalid(format!("restriction `each-layer`: {id} is quadratic and has no layers")))?;
    Ok(RestrictSpec::each_layer(mlp.layout().len()).into_iter().map(|r| Job { restrict: Some(r), ..job.clone() }).collect())
}

/// Runs `job`: builds or loads its target, opens the backend, loads and
/// configures the plugin, samples, and diagnoses when asked. Progress, notes
/// and the stop request go through `monitor`. A plugin failure is an
/// [`Error::Plugin`] (its draws so far are kept in the run directory).
pub fn run_job(store: &Store, job: &Job, monitor: &mut dyn Monitor) -> Result<JobOutcome> {
    check_experiment_name(&job.experiment)?;
    let (built, target) = match &job.target {
        JobTarget::Stored(id) => (None, target::load(store, id)?),
        JobTarget::Recipe { recipe, experiment } => {
            let built = target::build(store, recipe, experiment, job.threads, monitor)?;
            let t = target::load(store, &built.id)?;
            (Some(built), t)
        }
    };
    let factory = BackendFactory::new(job.backend, job.threads)?;
    let precision = job.precision.unwrap_or(target.meta.precision);
    if let Some(note) = factory.fallback_note(precision) {
        monitor.note(&note);
    }
    if job.stop.until.is_some() && job.stop.budget.is_none() {
        return Err(Error::invalid("--until needs a --budget (grads=N or time=DURATION), so that a run that does not converge still ends"));
    }
    let plugin = plugins::load(&plugins::resolve(&job.plugin)?)?;
    // An until-run gets its draws from the host: the plugin's `draws` raised to a cap
    // (a user's own `draws` override, applied after, is the cap instead).
    let until_draws =
        job.stop.until.map(|_| Overrides::from_set(&format!("draws={UNTIL_DRAWS}")).map(|o| o.with_origin("--until (it sets the plugin's `draws` key)")));
    let layers: Vec<Overrides> = until_draws.transpose()?.into_iter().chain(job.overrides.iter().cloned()).collect();
    let config = resolve_config(&plugin.info.default_config, &plugin.info.name, &layers)?;
    if job.chains == 0 {
        return Err(Error::invalid("--chains must be ≥ 1"));
    }
    let req = Request {
        target: &target,
        plugin,
        config: config.text.clone(),
        chains: job.chains,
        seed: job.seed,
        precision,
        backends: &factory,
        experiment: job.experiment.clone(),
        stop: job.stop,
        checkpoint_every: job.checkpoint_every,
        tag: job.tag.clone(),
        job_key: job.key.clone(),
        restrict: job.restrict.clone(),
        observe: job.observe.clone(),
    };
    let run = sample::execute(store, req, monitor).map_err(|e| match e {
        Error::Plugin { plugin, msg } => Error::Plugin { msg: config.explain(&msg), plugin },
        other => other,
    })?;
    let analysis = job.diagnose.map(|mode| diagnose::diagnose(&run.dir, mode)).transpose()?;
    Ok(JobOutcome { built, target, run, analysis })
}
