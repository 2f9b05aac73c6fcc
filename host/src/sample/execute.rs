//! Running a plugin on a target: the posterior over a backend (restricted
//! to some coordinates with `--restrict`), the recorder (and the observer of
//! `--observe`), and the run directory written at the end.
//!
//! ```text
//! $LH_HOME/experiments/<exp>/runs/<UTC time>-<plugin>-<target id>-<6 hex>/
//!     traces.npz     loss (C, T), llc (C, T), each named stat (C, T), loss_<name> (C, T) per observable
//!     manifest.json  plugin, config, seed, backend, restriction, timings, work, λ̂ (and λ̂_S), status
//! ```
//! The directory is assembled under a temporary name and renamed into place.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use lh_plugin_api::{Model, Plan, RStr, RunSummary, SamplerError};

use super::manifest::{Manifest, Status};
use super::observe::{trace_name, ObserveSpec, Observed, Observer};
use super::plugins::LoadedPlugin;
use super::posterior::Posterior;
use super::recorder::Recorder;
use super::restrict::Restriction;
use crate::backend::BackendFactory;
use crate::error::{Error, Result};
use crate::estimate;
use crate::model::restrict::RestrictSpec;
use crate::model::Precision;
use crate::progress::{Monitor, Progress};
use crate::store::atomic::write_atomic;
use crate::store::layout::{MANIFEST, TRACES};
use crate::store::npz::{self, Array};
use crate::store::provenance::Provenance;
use crate::store::record::write_record;
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
    /// Sample only these coordinates (`--restrict`); the others stay at θ*.
    pub restrict: Option<RestrictSpec>,
    /// Data subsets whose loss is recorded at every draw (`--observe`).
    pub observe: Vec<ObserveSpec>,
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

/// Runs the plugin on the target and writes the run directory. A fatal plugin
/// error still writes the draws recorded so far (status `failed`) and is then
/// returned as the error. A restriction or observable that does not fit the
/// target is an error before anything runs.
pub fn execute(store: &Store, req: Request<'_>, monitor: &mut dyn Monitor) -> Result<Outcome> {
    let Request { target, mut plugin, config, chains, seed, precision, backends, experiment, restrict, observe } = req;
    let restriction = restrict.map(|r| Restriction::resolve(&r, target)).transpose()?;
    let backend = target.backend(backends, chains, precision)?;
    let mut posterior = Posterior::new(backend, target.w_star.clone(), target.meta.beta, target.meta.gamma)?;
    let mut observer = if observe.is_empty() { None } else { Some(Observer::new(&observe, target, backends, chains, precision)?) };
    if let Some(o) = &observer {
        posterior.track(o.log());
    }
    let backend_info = posterior.backend_info();
    monitor.report(Progress::Start { what: &plugin.info.name, total: 0 });
    let mut recorder = Recorder::new(chains, monitor, observer.as_mut());
    let start = Instant::now();
    let result = match &restriction {
        Some(r) => run_plugin(&mut plugin, &mut r.model(&mut posterior), &mut recorder, &config, seed),
        None => run_plugin(&mut plugin, &mut posterior, &mut recorder, &config, seed),
    };
    let end = Instant::now();
    let mut timings = recorder.timings(end);
    timings.insert("total".into(), end.duration_since(start).as_secs_f64());
    let Recorder { plan, loss: recorded, stats, .. } = recorder;
    monitor.report(Progress::Finish);

    let plan = plan.unwrap_or(Plan { draws: 0, burn_in: 0, independent: false });
    let draws = recorded.len();
    let (status, error, summary) = match result {
        Ok(s) if draws == plan.draws && draws > 0 => (Status::Complete, None, Some(s)),
        Ok(s) => (Status::Incomplete, None, Some(s)),
        Err(e) => (Status::Failed, Some(format!("plugin `{}`: {}", plugin.info.name, e.message)), None),
    };
    let l0 = posterior.l0();
    let n_beta = posterior.n_beta();
    // loss as (C, T).
    let loss_ct: Vec<Vec<f64>> = (0..chains).map(|c| recorded.iter().map(|row| row[c]).collect()).collect();
    let llc = (draws > plan.burn_in).then(|| estimate::llc(&loss_ct, plan.burn_in, n_beta, l0, plan.independent));
    let mut work = posterior.work.clone();
    let observed = match observer {
        Some(o) => {
            let (observed, evals) = o.finish(plan.burn_in, n_beta, plan.independent);
            work.observe_loss_evals = evals;
            observed
        }
        None => Vec::new(),
    };

    let provenance = Provenance::now();
    let stamp: String = provenance.created.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let tid = target.meta.target_id.trim_start_matches("tgt_");
    let rand6 = &sha256_hex(format!("{}{:?}{}", provenance.created, start, std::process::id()).as_bytes())[..6];
    let run_id = format!("{stamp}-{}-{}-{rand6}", plugin.info.name, &tid[..tid.len().min(8)]);
    let (tuned, notes) = summary.map_or_else(Default::default, |s| (s.tuned.iter().map(|t| (t.name.to_string(), t.value)).collect(), s.notes.to_string()));
    let manifest = Manifest {
        schema: <Manifest as crate::store::record::Record>::SCHEMA,
        run_id: run_id.clone(),
        experiment: experiment.clone(),
        target_id: target.meta.target_id.clone(),
        target_hash: target.hash.clone(),
        plugin: plugin.info.clone(),
        config,
        seed,
        chains,
        backend: backend_info,
        target_precision: target.meta.precision,
        status,
        error: error.clone(),
        draws,
        draws_announced: plan.draws,
        burn_in: plan.burn_in,
        independent_draws: plan.independent,
        timings,
        work,
        n: target.meta.n,
        beta: target.meta.beta,
        gamma: target.meta.gamma,
        l0,
        target_l0: target.meta.l0,
        llc,
        restriction: restriction.map(|r| r.info),
        observables: observed.iter().map(|o| (o.name.clone(), o.record.clone())).collect(),
        tuned,
        notes,
        provenance,
    };

    let dir = write_run_dir(store, &experiment, &run_id, &manifest, &loss_ct, &stats, &observed, n_beta, l0)?;
    if let Some(e) = error {
        return Err(Error::plugin(&plugin.info.name, format!("{e} (the {draws} draws recorded before it are in {})", dir.display())));
    }
    Ok(Outcome { dir, manifest })
}

#[allow(clippy::too_many_arguments)]
fn write_run_dir(
    store: &Store,
    exp: &str,
    run_id: &str,
    manifest: &Manifest,
    loss_ct: &[Vec<f64>],
    stats: &BTreeMap<String, Vec<Vec<f64>>>,
    observed: &[Observed],
    n_beta: f64,
    l0: f64,
) -> Result<PathBuf> {
    let runs = store.runs_dir(exp)?;
    std::fs::create_dir_all(&runs).map_err(|e| Error::io(&runs, e))?;
    let tmp = tempfile::Builder::new().prefix(".run-").tempdir_in(&runs).map_err(|e| Error::io(&runs, e))?;
    let (c, t) = (loss_ct.len(), loss_ct.first().map_or(0, Vec::len));
    let shape = [c, t];
    let loss_flat: Vec<f64> = loss_ct.concat();
    let llc_flat: Vec<f64> = loss_flat.iter().map(|l| n_beta * (l - l0)).collect();
    let stat_flat: Vec<(String, Vec<f64>)> =
        stats.iter().map(|(name, rows)| (name.clone(), (0..c).flat_map(|ci| rows.iter().map(move |r| r[ci])).collect())).collect();
    let mut arrays = vec![("loss", Array::F64(&shape, &loss_flat)), ("llc", Array::F64(&shape, &llc_flat))];
    for (name, v) in &stat_flat {
        if name != "loss" && name != "llc" {
            arrays.push((name.as_str(), Array::F64(&shape, v)));
        }
    }
    let observed_flat: Vec<(String, Vec<f64>)> = observed.iter().map(|o| (trace_name(&o.name), o.loss.concat())).collect();
    for (name, v) in &observed_flat {
        arrays.push((name.as_str(), Array::F64(&shape, v)));
    }
    write_atomic(&tmp.path().join(TRACES), &npz::to_bytes(&arrays)?)?;
    write_record(&tmp.path().join(MANIFEST), manifest)?;
    let dir = runs.join(run_id);
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, &dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp_path);
        Error::io(&dir, e)
    })?;
    Ok(dir)
}
