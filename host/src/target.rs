//! Stage A: target artifacts. Building one (data → training → store),
//! importing one trained elsewhere, and loading one back, verified.
//!
//! Payload files of a target object:
//! - `config.json`: the canonical source config (what the target id hashes);
//! - `data.npz`: `X` (n, d_in), `Y` (n, d_out), `X_test`, `Y_test`, and for
//!   built targets `Y_teacher`, `Y_teacher_test` (the teacher's clean outputs);
//! - `params.npz`: `w_star` (D,) and per layer `W{k}` (out, in) and `b{k}`
//!   (out,) for k = 1…L, plus `teacher_theta` for built targets;
//! - `training.csv`: step, train_loss, test_loss (built targets).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::{cpu, Dataset};
use crate::backend::quadratic::QuadraticBackend;
use crate::backend::{Backend, BackendFactory};
use crate::config::{LossKind, PosteriorConfig, Precision, QuadraticConfig, TargetConfig, TargetRecipe};
use crate::error::{Error, Result};
use crate::model::{Activation, MlpSpec};
use crate::npz::{self, Array, Npz};
use crate::store::{sha256_hex, ObjectMeta, Store};

/// Where a target came from; its canonical JSON is what the id hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetSource {
    /// Built by `lh-host build` from a config.
    Built(TargetConfig),
    /// Imported by `lh-host import` from an npz of a network trained elsewhere.
    Imported(ImportedConfig),
    /// The quadratic test target L(θ) = ½‖θ − θ*‖², θ* = 0.
    Quadratic(QuadraticConfig),
}

/// The config of an imported target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportedConfig {
    /// sha256 of the imported npz file.
    pub npz_sha256: String,
    pub model: MlpSpec,
    pub posterior: PosteriorConfig,
}

impl TargetSource {
    /// Canonical JSON (every key sorted).
    pub fn canonical_json(&self) -> String {
        // serde_json's map is a BTreeMap, so `to_value` sorts every key.
        let v = serde_json::to_value(self).expect("target config serialises");
        serde_json::to_string(&v).expect("json value serialises")
    }
    /// `tgt_` + the first 12 hex digits of sha256(canonical JSON).
    pub fn id(&self) -> String {
        format!("tgt_{}", &sha256_hex(self.canonical_json().as_bytes())[..12])
    }
    /// The MLP, for MLP targets.
    pub fn mlp(&self) -> Option<&MlpSpec> {
        match self {
            TargetSource::Built(c) => Some(&c.model),
            TargetSource::Imported(c) => Some(&c.model),
            TargetSource::Quadratic(_) => None,
        }
    }
    /// The posterior settings.
    pub fn posterior(&self) -> &PosteriorConfig {
        match self {
            TargetSource::Built(c) => &c.posterior,
            TargetSource::Imported(c) => &c.posterior,
            TargetSource::Quadratic(c) => &c.posterior,
        }
    }
    /// `built`, `imported` or `quadratic`.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetSource::Built(_) => "built",
            TargetSource::Imported(_) => "imported",
            TargetSource::Quadratic(_) => "quadratic",
        }
    }
}

/// A summary of training, recorded in `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub steps_run: usize,
    pub early_stopped: bool,
    pub final_test_loss: Option<f64>,
    pub wall_s: f64,
}

/// A target's `meta.json` (besides the store's hash fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetMeta {
    #[serde(rename = "type")]
    pub object_type: String,
    pub target_id: String,
    /// The config snapshot.
    pub source: TargetSource,
    /// Number of parameters D.
    pub d: usize,
    pub n: usize,
    pub n_test: usize,
    pub loss: LossKind,
    /// L_n(w*), in f64.
    pub l0: f64,
    pub beta: f64,
    pub gamma: f64,
    /// Precision w* was trained in (f64 for imports: stored as given).
    pub precision: Precision,
    pub training: Option<TrainingSummary>,
    pub created: String,
    pub crate_version: String,
    pub git_commit: String,
}

/// A loaded, verified target.
#[derive(Debug, Clone)]
pub struct Target {
    pub hash: String,
    pub meta: TargetMeta,
    pub model: TargetModel,
    /// θ* (D values).
    pub w_star: Vec<f64>,
}

/// What evaluates a target's loss.
#[derive(Debug, Clone)]
pub enum TargetModel {
    /// An MLP with its training and test data.
    Mlp { spec: MlpSpec, train: Dataset, test: Dataset },
    /// L(θ) = ½‖θ − θ*‖².
    Quadratic,
}

impl Target {
    /// A backend evaluating this target's L_n for `chains` chains.
    pub fn backend(&self, backends: &BackendFactory, chains: usize, precision: Precision) -> Result<Box<dyn Backend>> {
        match &self.model {
            TargetModel::Mlp { spec, train, .. } => backends.build(spec, train, self.meta.loss, chains, precision),
            TargetModel::Quadratic => Ok(Box::new(QuadraticBackend::new(self.w_star.clone(), self.meta.n, chains))),
        }
    }
}

fn now_utc() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn git_commit() -> String {
    option_env!("LH_GIT_COMMIT").unwrap_or("unknown").to_string()
}

/// `params.npz`: w* flat plus one array per layer.
fn params_npz(spec: &MlpSpec, w_star: &[f64], teacher: Option<&[f64]>) -> Result<Vec<u8>> {
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
    npz::to_bytes(&arrays)
}

/// `data.npz`.
fn data_npz(train: &Dataset, test: &Dataset, teacher: Option<(&[f64], &[f64])>) -> Result<Vec<u8>> {
    let (sx, sy) = ([train.n, train.d_in], [train.n, train.d_out]);
    let (tx, ty) = ([test.n, test.d_in], [test.n, test.d_out]);
    let mut arrays = vec![
        ("X", Array::F64(&sx, &train.x)),
        ("Y", Array::F64(&sy, &train.y)),
        ("X_test", Array::F64(&tx, &test.x)),
        ("Y_test", Array::F64(&ty, &test.y)),
    ];
    if let Some((a, b)) = teacher {
        arrays.push(("Y_teacher", Array::F64(&sy, a)));
        arrays.push(("Y_teacher_test", Array::F64(&ty, b)));
    }
    npz::to_bytes(&arrays)
}

/// Outcome of [`build`].
pub struct Built {
    pub id: String,
    pub hash: String,
    /// False when an existing, verified object was reused.
    pub trained: bool,
    pub meta: TargetMeta,
}

/// Builds (or reuses) one target and links it into experiment `exp`.
pub fn build(store: &Store, recipe: &TargetRecipe, exp: &str, threads: usize, progress: impl FnMut(usize, usize)) -> Result<Built> {
    let source = match recipe {
        TargetRecipe::Mlp(c) => TargetSource::Built(c.clone()),
        TargetRecipe::Quadratic(q) => TargetSource::Quadratic(q.clone()),
    };
    let id = source.id();
    if let Some(hash) = find(store, &id)? {
        let meta = store.load_meta::<TargetMeta>(&hash)?.meta;
        store.link(exp, "targets", &id, &hash)?;
        return Ok(Built { id, hash, trained: false, meta });
    }
    let built = match recipe {
        TargetRecipe::Mlp(cfg) => build_mlp(store, cfg, source, threads, progress)?,
        TargetRecipe::Quadratic(q) => build_quadratic(store, q, source)?,
    };
    store.link(exp, "targets", &built.id, &built.hash)?;
    Ok(built)
}

/// Stores a quadratic target: θ* = 0, L0 = 0.
fn build_quadratic(store: &Store, q: &QuadraticConfig, source: TargetSource) -> Result<Built> {
    let id = source.id();
    let w_star = vec![0.0; q.dim];
    let d = [q.dim];
    let payload = [
        ("config.json", source.canonical_json().into_bytes()),
        ("params.npz", npz::to_bytes(&[("w_star", Array::F64(&d, &w_star))])?),
    ];
    let meta = new_meta(&id, source, q.dim, q.n, 0, 0.0, Precision::F64, None);
    let hash = store.commit(&payload, meta.clone())?;
    Ok(Built { id, hash, trained: false, meta })
}

/// Target metadata with the build-independent fields filled in.
#[allow(clippy::too_many_arguments)]
fn new_meta(
    id: &str,
    source: TargetSource,
    d: usize,
    n: usize,
    n_test: usize,
    l0: f64,
    precision: Precision,
    training: Option<TrainingSummary>,
) -> TargetMeta {
    let p = source.posterior();
    TargetMeta {
        object_type: "target".into(),
        target_id: id.to_string(),
        d,
        n,
        n_test,
        loss: p.loss,
        l0,
        beta: p.beta(n),
        gamma: p.gamma(d),
        precision,
        training,
        source,
        created: now_utc(),
        crate_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: git_commit(),
    }
}

fn build_mlp(store: &Store, cfg: &TargetConfig, source: TargetSource, threads: usize, progress: impl FnMut(usize, usize)) -> Result<Built> {
    let id = source.id();
    let start = std::time::Instant::now();
    let spec = &cfg.model;
    let gen = crate::data::generate(&cfg.data, &cfg.teacher, spec, cfg.seed)?;
    let init = spec.init(&mut crate::rng::stream(cfg.seed, crate::rng::purpose::INIT));
    let trained = crate::train::train(spec, &gen.train, &gen.test, cfg.posterior.loss, &cfg.training, init, cfg.seed, threads, progress)?;
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
    let summary = TrainingSummary {
        steps_run: trained.steps_run,
        early_stopped: trained.early_stopped,
        final_test_loss: final_test,
        wall_s: start.elapsed().as_secs_f64(),
    };
    let meta = new_meta(&id, source, spec.n_params(), gen.train.n, gen.test.n, trained.l0, cfg.training.precision, Some(summary));
    let hash = store.commit(&payload, meta.clone())?;
    Ok(Built { id, hash, trained: true, meta })
}

/// Imports a network trained elsewhere from an npz (see the README for the
/// names and shapes it must hold) and links it into experiment `exp`.
pub fn import(store: &Store, path: &Path, exp: &str, threads: usize) -> Result<Built> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let npz_sha256 = sha256_hex(&bytes);
    let mut z = Npz::from_bytes(bytes, path)?;
    let bad = |msg: String| Error::bad_file(path, msg);
    let (xs, x) = z.f64("X")?;
    let (ys, y) = z.f64("Y")?;
    let (_, w_star) = z.f64("w_star")?;
    let (_, widths) = z.f64("widths")?;
    let act_name = z.string("activation")?;
    let activation = Activation::parse(&act_name).ok_or_else(|| bad(format!("activation `{act_name}` is not one of relu, tanh, gelu, identity")))?;
    let bias = z.scalar("bias")? != 0.0;
    if xs.len() != 2 || ys.len() != 2 || xs[0] != ys[0] {
        return Err(bad(format!("X must be (n, d_in) and Y (n, d_out) with the same n; got X {xs:?}, Y {ys:?}")));
    }
    let widths: Vec<usize> = widths
        .iter()
        .map(|w| (*w >= 1.0 && w.fract() == 0.0).then_some(*w as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(format!("widths must be positive integers, got {widths:?}")))?;
    let spec = MlpSpec { in_dim: xs[1], widths, out_dim: ys[1], activation, bias };
    if w_star.len() != spec.n_params() {
        return Err(bad(format!(
            "w_star has {} values but a {}→{:?}→{} {} network {} biases has D = {}",
            w_star.len(),
            spec.in_dim,
            spec.widths,
            spec.out_dim,
            act_name,
            if bias { "with" } else { "without" },
            spec.n_params()
        )));
    }
    let mut posterior = PosteriorConfig::default();
    if z.has("loss") {
        let l = z.string("loss")?;
        posterior.loss = match l.as_str() {
            "mse" => LossKind::Mse,
            "half_sse" => LossKind::HalfSse,
            _ => return Err(bad(format!("loss `{l}` is not mse or half_sse"))),
        };
    }
    if z.has("beta") {
        posterior.beta_mode = crate::config::BetaMode::Fixed;
        posterior.beta0 = z.scalar("beta")?;
    }
    if z.has("gamma") {
        posterior.gamma = z.scalar("gamma")?;
    }
    posterior.validate().map_err(|e| bad(e.to_string()))?;
    let train = Dataset::new(x, y, spec.in_dim, spec.out_dim).map_err(|e| bad(e.to_string()))?;
    let test = if z.has("X_test") {
        let (_, xt) = z.f64("X_test")?;
        let (_, yt) = z.f64("Y_test")?;
        Dataset::new(xt, yt, spec.in_dim, spec.out_dim).map_err(|e| bad(format!("X_test/Y_test: {e}")))?
    } else {
        Dataset { x: vec![], y: vec![], n: 0, d_in: spec.in_dim, d_out: spec.out_dim }
    };

    let source = TargetSource::Imported(ImportedConfig { npz_sha256, model: spec.clone(), posterior: posterior.clone() });
    let id = source.id();
    let mut be = cpu::new_backend(&spec, &train, posterior.loss, 1, Precision::F64, threads)?;
    let mut l0 = [0.0];
    be.loss_grad(&w_star, crate::backend::Batch::Full, &mut l0, None).map_err(|e| bad(format!("L_n(w_star): {e}")))?;
    let payload = [
        ("config.json", source.canonical_json().into_bytes()),
        ("data.npz", data_npz(&train, &test, None)?),
        ("params.npz", params_npz(&spec, &w_star, None)?),
    ];
    let meta = new_meta(&id, source, spec.n_params(), train.n, test.n, l0[0], Precision::F64, None);
    let hash = store.commit(&payload, meta.clone())?;
    store.link(exp, "targets", &id, &hash)?;
    Ok(Built { id, hash, trained: false, meta })
}

/// The minimal part of a meta.json needed to find a target by id.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(rename = "type")]
    object_type: String,
    target_id: String,
}

/// Every target in the store: (id, object hash), sorted by id.
pub fn list(store: &Store) -> Result<Vec<(String, String)>> {
    let mut v = Vec::new();
    for hash in store.object_hashes()? {
        let p = store.object_dir(&hash).join("meta.json");
        if let Ok(m) = crate::store::read_json::<IdOnly>(&p) {
            if m.object_type == "target" {
                v.push((m.target_id, hash));
            }
        }
    }
    v.sort();
    Ok(v)
}

/// The object hash of target `id` (an exact id or a unique prefix), if stored.
pub fn find(store: &Store, id: &str) -> Result<Option<String>> {
    let all = list(store)?;
    if let Some((_, h)) = all.iter().find(|(i, _)| i == id) {
        return Ok(Some(h.clone()));
    }
    let hits: Vec<&(String, String)> = all.iter().filter(|(i, _)| i.starts_with(id)).collect();
    match hits.len() {
        0 => Ok(None),
        1 => Ok(Some(hits[0].1.clone())),
        _ => Err(Error::invalid(format!("target id prefix `{id}` is ambiguous: {} targets match", hits.len()))),
    }
}

/// Loads target `id`, verifying every file's hash and every array's shape.
pub fn load(store: &Store, id: &str) -> Result<Target> {
    let hash = find(store, id)?.ok_or_else(|| {
        Error::invalid(format!("no target `{id}` in the store at {} (see `lh-host targets ls`)", store.home.display()))
    })?;
    let ObjectMeta { meta, .. } = store.load_meta::<TargetMeta>(&hash)?;
    let ppath = store.payload_path(&hash, "params.npz");
    let (_, w_star) = Npz::open(&ppath)?.f64("w_star")?;
    if w_star.len() != meta.d {
        return Err(Error::bad_file(&ppath, format!("w_star has {} values but the target has D = {}", w_star.len(), meta.d)));
    }
    let Some(spec) = meta.source.mlp().cloned() else {
        return Ok(Target { hash, meta, model: TargetModel::Quadratic, w_star });
    };
    if spec.n_params() != meta.d {
        return Err(Error::bad_file(&ppath, format!("the model has D = {} but meta.json says {}", spec.n_params(), meta.d)));
    }
    let dpath: PathBuf = store.payload_path(&hash, "data.npz");
    let mut data = Npz::open(&dpath)?;
    let mut read = |name: &str, rows: usize, cols: usize| -> Result<Vec<f64>> {
        let (shape, v) = data.f64(name)?;
        if shape != [rows, cols] {
            return Err(Error::bad_file(&dpath, format!("`{name}` has shape {shape:?}, expected [{rows}, {cols}]")));
        }
        Ok(v)
    };
    let (d_in, d_out) = (spec.in_dim, spec.out_dim);
    let train = Dataset { x: read("X", meta.n, d_in)?, y: read("Y", meta.n, d_out)?, n: meta.n, d_in, d_out };
    let test = Dataset { x: read("X_test", meta.n_test, d_in)?, y: read("Y_test", meta.n_test, d_out)?, n: meta.n_test, d_in, d_out };
    Ok(Target { hash, meta, model: TargetModel::Mlp { spec, train, test }, w_star })
}
