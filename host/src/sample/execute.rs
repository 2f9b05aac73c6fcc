//! Running a plugin on a target: the posterior over a backend (restricted
//! to some coordinates with `--restrict`), the recorder (and the observer of
//! `--observe`), and the run directory written at the end.
//!
//! ```text
//! $LH_HOME/experiments/<exp>/runs/<UTC time>-<plugin>-[<tag>-]<target id>-<6 hex>/
//!     traces.npz     loss (C, T), llc (C, T), each named stat (C, T), loss_<name> (C, T) per observable
//!     manifest.json  plugin, config, seed, tag and run key, backend, restriction, timings, work, λ̂ (and λ̂_S), status
//! ```
//! The directory appears when the plugin announces its plan and is
//! checkpointed while it draws (see [`super::run_dir`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lh_plugin_api::{Model, RStr, RunSummary, SamplerError};

use super::manifest::{Manifest, Status};
use super::observe::{ObserveSpec, Observer};
use super::plugins::LoadedPlugin;
use super::posterior::{Posterior, Work};
use super::recorder::{Checkpoints, Recorder};
use super::restrict::Restriction;
use super::stopping::{StopRule, Stopper};
use crate::backend::BackendFactory;
use crate::error::{Error, Result};
use crate::model::restrict::RestrictSpec;
use crate::model::Precision;
use crate::progress::{Monitor, Progress};
use crate::store::provenance::Provenance;
use crate::store::record::Record;
use crate::store::{sha256_hex, Store};
use crate::target::Target;

/// What a sample run is asked to do.
pub struct Request<'a> {
    pub target: &'a Target,
    pub plugin: LoadedPlugin,
    /// Resolved RON config.
    pub config: String,
    pub chains: usize,
    pub seed: u64,
    pub precision: Precision,
    /// Builds the evaluation backend (`--backend`).
    pub backends: &'a BackendFactory,
    pub experiment: String,
    /// `--until` / `--budget`.
    pub stop: StopRule,
    /// Time between two checkpoints of the run directory while draws arrive.
    pub checkpoint_every: Duration,
    /// Sample only these coordinates (`--restrict`); the others stay at θ*.
    pub restrict: Option<RestrictSpec>,
    /// Data subsets whose loss is recorded at every draw (`--observe`).
    pub observe: Vec<ObserveSpec>,
    /// The workflow's label of the run (a plain name), part of its directory's name.
    pub tag: Option<String>,
    /// The workflow's key of the run (see `workflow::plan`), kept in the manifest.
    pub job_key: Option<String>,
}

/// Outcome of [`execute`].
pub struct Outcome {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Runs `plugin` on `model` with `sink`.
fn run_plugin<M: Model>(
    plugin: &mut LoadedPlugin,
    model: &mut M,
    sink: &mut Recorder<'_>,
    config: &str,
    seed: u64,
) -> std::result::Result<RunSummary, SamplerError> {
    use lh_plugin_api::abi_stable::sabi_trait::TD_Opaque;
    use lh_plugin_api::{Model_TO, TraceSink_TO};
    let model = Model_TO::from_ptr(lh_plugin_api::RMut::new(model), TD_Opaque);
    let sink = TraceSink_TO::from_ptr(lh_plugin_api::RMut::new(sink), TD_Opaque);
    plugin.sampler.run(model, sink, RStr::from_str(config), seed).into_result()
}

/// Runs the plugin on the target, checkpointing the run directory as it goes
/// and writing it a last time at the end. A fatal plugin error still writes
/// the draws recorded so far (status `failed`) and is then returned as the error.
/// A restriction or observable that does not fit the target is an error
/// before anything runs.
pub fn execute(store: &Store, req: Request<'_>, monitor: &mut dyn Monitor) -> Result<Outcome> {
    let Request { target, mut plugin, config, chains, seed, precision, backends, experiment, checkpoint_every, restrict, observe, tag, job_key, stop } = req;
    let restriction = restrict.map(|r| Restriction::resolve(&r, target)).transpose()?;
    let backend = target.backend(backends, chains, precision)?;
    let mut posterior = Posterior::new(backend, target.w_star.clone(), target.meta.beta, target.meta.gamma)?;
    let mut observer = if observe.is_empty() { None } else { Some(Observer::new(&observe, target, backends, chains, precision)?) };
    if let Some(o) = &observer {
        posterior.track(o.log());
    }
    let provenance = Provenance::now();
    let stamp: String = provenance.created.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let tid = target.meta.target_id.trim_start_matches("tgt_");
    let rand6 = &sha256_hex(format!("{}{:?}{}", provenance.created, Instant::now(), std::process::id()).as_bytes())[..6];
    let tag_part = tag.as_ref().map(|t| format!("{t}-")).unwrap_or_default();
    let run_id = format!("{stamp}-{}-{tag_part}{}-{rand6}", plugin.info.name, &tid[..tid.len().min(8)]);
    let base = Manifest {
        schema: <Manifest as Record>::SCHEMA,
        run_id,
        experiment,
        target_id: target.meta.target_id.clone(),
        target_hash: target.hash.clone(),
        plugin: plugin.info.clone(),
        config: config.clone(),
        seed,
        chains,
        tag,
        job_key,
        backend: posterior.backend_info(),
        target_precision: target.meta.precision,
        status: Status::Incomplete,
        error: None,
        draws: 0,
        draws_announced: 0,
        burn_in: 0,
        independent_draws: false,
        timings: BTreeMap::new(),
        work: Work::default(),
        n: target.meta.n,
        beta: target.meta.beta,
        gamma: target.meta.gamma,
        l0: posterior.l0(),
        target_l0: target.meta.l0,
        llc: None,
        restriction: restriction.as_ref().map(|r| r.info.clone()),
        observables: BTreeMap::new(),
        tuned: BTreeMap::new(),
        notes: String::new(),
        stop: None,
        provenance,
    };
    monitor.report(Progress::Start { what: &plugin.info.name, total: 0 });
    let checkpoints = Checkpoints { store: store.clone(), base, work: posterior.work.clone(), every: checkpoint_every };
    let stopper = stop.is_set().then(|| Stopper::new(stop, posterior.work.clone()));
    let mut recorder = Recorder::new(chains, monitor, checkpoints, observer.as_mut(), stopper);
    let result = match &restriction {
        Some(r) => run_plugin(&mut plugin, &mut r.model(&mut posterior), &mut recorder, &config, seed),
        None => run_plugin(&mut plugin, &mut posterior, &mut recorder, &config, seed),
    };
    let (draws, plan) = recorder.recorded();
    // A run the stop rule ended (converged, or its budget spent) did what was asked: complete,
    // even when the budget ran out in warm-up and left no λ̂ (running it again would do the same;
    // a workflow redoes incomplete runs).
    let complete = recorder.stopped_by_rule() || (draws > 0 && plan.is_some_and(|p| draws == p.draws));
    let (status, error, summary) = match result {
        Ok(s) if complete => (Status::Complete, None, Some(s)),
        Ok(s) => (Status::Incomplete, None, Some(s)),
        Err(e) => (Status::Failed, Some(format!("plugin `{}`: {}", plugin.info.name, e.message)), None),
    };
    let (dir, manifest) = recorder.finish(status, error.clone(), summary)?;
    match (error, dir) {
        (Some(e), Some(dir)) => Err(Error::plugin(&plugin.info.name, format!("{e} (the {draws} draws recorded before it are in {})", dir.display()))),
        (Some(e), None) => Err(Error::plugin(&plugin.info.name, e)),
        (None, Some(dir)) => Ok(Outcome { dir, manifest }),
        (None, None) => unreachable!("only a failed run leaves no directory"),
    }
}
