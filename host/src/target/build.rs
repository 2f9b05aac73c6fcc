//! Building a target: data → training to w* → a store object, linked into
//! an experiment (or reusing the stored one with the same id).
//!
//! Payload files of a target object:
//! - `config.json`: the canonical source config (what the target id hashes);
//! - `data.npz`: `X` (n, d_in), `Y` (n, d_out), `X_test`, `Y_test`, and for
//!   built targets `Y_teacher`, `Y_teacher_test` (the teacher's clean outputs);
//! - `params.npz`: `w_star` (D,) and per layer `W{k}` (out, in) and `b{k}`
//!   (out,) for k = 1…L, plus `teacher_theta` for built targets;
//! - `training.csv`: step, train_loss, test_loss (built targets).

use std::time::Instant;

use super::load::find;
use super::meta::{TargetMeta, TargetSource, TrainingSummary};
use crate::backend::Dataset;
use crate::config::{QuadraticConfig, TargetConfig, TargetRecipe};
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Precision};
use crate::progress::{Monitor, Progress};
use crate::store::layout::check_experiment_name;
use crate::store::lock::FileLock;
use crate::store::npz::{self, Array};
use crate::store::provenance::Provenance;
use crate::store::{ObjectProvenance, Store};

/// `params.npz`: w* flat plus one array per layer.
pub(super) fn params_npz(spec: &MlpSpec, w_star: &[f64], teacher: Option<&[f64]>) -> Result<Vec<u8>> {
    let layout = spec.layout();
    let shapes: Vec<([usize; 2], [usize; 1])> = layout.iter().map(|l| ([l.fan_out, l.fan_in], [l.fan_out])).collect();
    let names: Vec<(String, String)> = (1..=layout.len()).map(|k| (format!("W{k}"), format!("b{k}"))).collect();
    let d = [w_star.len()];
    let mut arrays = vec![("w_star", Array::F64(&d, w_star))];
    for ((l, (ws, bs)), (wn, bn)) in layout.iter().zip(&shapes).zip(&names) {
        arrays.push((wn, Array::F64(ws, &w_star[l.w..l.w + l.fan_in * l.fan_out])));
        if let Some(b) = l.b {
            arrays.push((bn, Array::F64(bs, &w_star[b..b + l.fan_out])));
        }
    }
    let td = [teacher.map_or(0, <[f64]>::len)];
    if let Some(t) = teacher {
        arrays.push(("teacher_theta", Array::F64(&td, t)));
    }
    npz::to_bytes(&arrays, npz::Packing::Deflated)
}

/// `data.npz`.
pub(super) fn data_npz(train: &Dataset, test: &Dataset, teacher: Option<(&[f64], &[f64])>) -> Result<Vec<u8>> {
    let (sx, sy) = ([train.n, train.d_in], [train.n, train.d_out]);
    let (tx, ty) = ([test.n, test.d_in], [test.n, test.d_out]);
    let mut arrays =
        vec![("X", Array::F64(&sx, &train.x)), ("Y", Array::F64(&sy, &train.y)), ("X_test", Array::F64(&tx, &test.x)), ("Y_test", Array::F64(&ty, &test.y))];
    if let Some((a, b)) = teacher {
        arrays.push(("Y_teacher", Array::F64(&sy, a)));
        arrays.push(("Y_teacher_test", Array::F64(&ty, b)));
    }
    npz::to_bytes(&arrays, npz::Packing::Deflated)
}

/// Outcome of [`build`] (and [`super::import`]).
pub struct Built {
    pub id: String,
    pub hash: String,
    /// False when an existing, verified object was reused.
    pub trained: bool,
    pub meta: TargetMeta,
    /// Seconds this build took (0 when the object was reused).
    pub seconds: f64,
}

/// Commits a target object built since `start`; its provenance records when,
/// by what and how long.
pub(super) fn commit(store: &Store, id: String, payload: &[(&str, Vec<u8>)], meta: TargetMeta, trained: bool, start: Instant) -> Result<Built> {
    let seconds = start.elapsed().as_secs_f64();
    let hash = store.commit(payload, meta.clone(), &ObjectProvenance { made: Provenance::now(), seconds })?;
    Ok(Built { id, hash, trained, meta, seconds })
}

/// Builds (or reuses) one target and links it into experiment `exp`, under
/// the target's lock so that racing builders train it once. Training
/// progress goes to `monitor`.
pub fn build(store: &Store, recipe: &TargetRecipe, exp: &str, threads: usize, monitor: &mut dyn Monitor) -> Result<Built> {
    let source = TargetSource::from(recipe);
    let id = source.id();
    check_experiment_name(exp)?;
    store.gc()?;
    let reuse = |hash: String| -> Result<Built> {
        let meta = store.load_meta::<TargetMeta>(&hash)?.meta;
        store.link(exp, "targets", &id, &hash)?;
        Ok(Built { id: id.clone(), hash, trained: false, meta, seconds: 0.0 })
    };
    if let Some(hash) = find(store, &id)? {
        return reuse(hash);
    }
    // One builder per target, across threads, processes and hosts: whoever
    // waited finds the object the holder committed.
    let _lock = FileLock::acquire(&store.target_lock_path(&id), |h| monitor.note(&format!("{id} is being built by {h}: waiting for it")))?;
    if let Some(hash) = find(store, &id)? {
        return reuse(hash);
    }
    let built = match recipe {
        TargetRecipe::Mlp(cfg) => build_mlp(store, cfg, source, threads, monitor)?,
        TargetRecipe::Quadratic(q) => build_quadratic(store, q, source)?,
    };
    store.link(exp, "targets", &built.id, &built.hash)?;
    Ok(built)
}

/// Stores a quadratic target: θ* = 0, L0 = 0.
fn build_quadratic(store: &Store, q: &QuadraticConfig, source: TargetSource) -> Result<Built> {
    let start = Instant::now();
    let id = source.id();
    let w_star = vec![0.0; q.dim];
    let d = [q.dim];
    let payload =
        [("config.json", source.canonical_json().into_bytes()), ("params.npz", npz::to_bytes(&[("w_star", Array::F64(&d, &w_star))], npz::Packing::Deflated)?)];
    let meta = TargetMeta::new(&id, source, q.dim, q.n, 0, 0.0, Precision::F64, None);
    commit(store, id, &payload, meta, false, start)
}

fn build_mlp(store: &Store, cfg: &TargetConfig, source: TargetSource, threads: usize, monitor: &mut dyn Monitor) -> Result<Built> {
    let id = source.id();
    let start = Instant::now();
    let spec = &cfg.model;
    let gen = super::data::generate(&cfg.data, &cfg.teacher, spec, cfg.seed)?;
    let init = spec.init(&mut crate::rng::stream(cfg.seed, crate::rng::purpose::INIT));
    monitor.report(Progress::Start { what: "training", total: cfg.training.steps as u64 });
    let progress = |done: usize, total: usize| monitor.report(Progress::Advance { done: done as u64, total: total as u64 });
    let trained = super::train::train(spec, &gen.train, &gen.test, cfg.posterior.loss, &cfg.training, init, cfg.seed, threads, progress);
    monitor.report(Progress::Finish);
    let trained = trained?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::invalid(format!("training.csv: {e}"));
    csv.write_record(["step", "train_loss", "test_loss"]).map_err(csv_err)?;
    for p in &trained.curve {
        csv.write_record([p.step.to_string(), p.train.to_string(), p.test.to_string()]).map_err(csv_err)?;
    }
    let csv = csv.into_inner().map_err(|e| Error::invalid(format!("training.csv: {e}")))?;
    let payload = [
        ("config.json", source.canonical_json().into_bytes()),
        ("data.npz", data_npz(&gen.train, &gen.test, Some((&gen.teacher_train, &gen.teacher_test)))?),
        ("params.npz", params_npz(spec, &trained.w_star, Some(&gen.teacher.1))?),
        ("training.csv", csv),
    ];
    let final_test = trained.curve.last().map(|p| p.test).filter(|t| t.is_finite());
    let summary = TrainingSummary { steps_run: trained.steps_run, early_stopped: trained.early_stopped, final_test_loss: final_test };
    let meta = TargetMeta::new(&id, source, spec.n_params(), gen.train.n, gen.test.n, trained.l0, cfg.training.precision, Some(summary));
    commit(store, id, &payload, meta, true, start)
}
