//! Running a plugin on a target: the posterior over a backend, the
//! recorder, and the run directory written at the end.
//!
//! ```text
//! $LH_HOME/experiments/<exp>/runs/<UTC time>-<plugin>-<target id>-<6 hex>/
//!     traces.npz     loss (C, T), llc (C, T), and each named stat (C, T)
//!     manifest.json  plugin, config, seed, backend, timings, work, λ̂, status
//! ```
//! The directory is assembled under a temporary name and renamed into place.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use lh_plugin_api::{Model, Plan, RStr};

use super::manifest::{Manifest, Status};
use super::plugins::LoadedPlugin;
use super::posterior::Posterior;
use super::recorder::Recorder;
use super::stopping::{StopRule, Stopper};
use crate::backend::BackendFactory;
use crate::error::{Error, Result};
use crate::estimate;
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
    /// `--until` / `--budget`.
    pub stop: StopRule,
}

/// Outcome of [`execute`].
pub struct Outcome {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Runs the plugin on the target and writes the run directory. A fatal plugin
/// error still writes the draws recorded so far (status `failed`) and is then
/// returned as the error.
pub fn execute(store: &Store, req: Request<'_>, monitor: &mut dyn Monitor) -> Result<Outcome> {
    let Request { target, mut plugin, config, chains, seed, precision, backends, experiment, stop } = req;
    let backend = target.backend(backends, chains, precision)?;
    let mut posterior = Posterior::new(backend, target.w_star.clone(), target.meta.beta, target.meta.gamma)?;
    let backend_info = posterior.backend_info();
    monitor.report(Progress::Start { what: &plugin.info.name, total: 0 });
    let stopper = stop.is_set().then(|| Stopper::new(stop, posterior.meter()));
    let mut recorder = Recorder::new(chains, monitor, stopper);
    let start = Instant::now();
    let result = {
        use lh_plugin_api::abi_stable::sabi_trait::TD_Opaque;
        use lh_plugin_api::{Model_TO, TraceSink_TO};
        let model = Model_TO::from_ptr(lh_plugin_api::RMut::new(&mut posterior), TD_Opaque);
        let sink = TraceSink_TO::from_ptr(lh_plugin_api::RMut::new(&mut recorder), TD_Opaque);
        plugin.sampler.run(model, sink, RStr::from_str(&config), seed).into_result()
    };
    let end = Instant::now();
    let mut timings = recorder.timings(end);
    timings.insert("total".into(), end.duration_since(start).as_secs_f64());
    let Recorder { plan, loss: recorded, stats, stopper, .. } = recorder;
    monitor.report(Progress::Finish);

    let plan = plan.unwrap_or(Plan { draws: 0, burn_in: 0, independent: false });
    let draws = recorded.len();
    // A run the stop rule ended (converged, or its budget spent) did what was asked: complete.
    let stopped_by_rule = stopper.as_ref().is_some_and(|s| s.outcome().is_some());
    let (status, error, summary) = match result {
        Ok(s) if (draws == plan.draws || stopped_by_rule) && draws > 0 => (Status::Complete, None, Some(s)),
        Ok(s) => (Status::Incomplete, None, Some(s)),
        Err(e) => (Status::Failed, Some(format!("plugin `{}`: {}", plugin.info.name, e.message)), None),
    };
    let l0 = posterior.l0();
    let n_beta = posterior.n_beta();
    // loss as (C, T).
    let loss_ct: Vec<Vec<f64>> = (0..chains).map(|c| recorded.iter().map(|row| row[c]).collect()).collect();
    let llc = (draws > plan.burn_in).then(|| estimate::llc(&loss_ct, plan.burn_in, n_beta, l0, plan.independent));
    let stop =
        stopper.map(|s| s.report(status == Status::Complete, llc.as_ref().and_then(|e| e.rhat), llc.as_ref().map(|e| e.ess_bulk).filter(|e| e.is_finite())));

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
        work: posterior.work.clone(),
        n: target.meta.n,
        beta: target.meta.beta,
        gamma: target.meta.gamma,
        l0,
        target_l0: target.meta.l0,
        llc,
        tuned,
        notes,
        stop,
        provenance,
    };

    let dir = write_run_dir(store, &experiment, &run_id, &manifest, &loss_ct, &stats, n_beta, l0)?;
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
