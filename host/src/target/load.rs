//! Finding stored targets by id and loading one back, every file's hash and
//! every array's shape verified.

use std::path::PathBuf;

use super::meta::TargetMeta;
use crate::backend::quadratic::QuadraticBackend;
use crate::backend::{Backend, BackendFactory, Dataset};
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Precision};
use crate::store::atomic::read_json;
use crate::store::npz::Npz;
use crate::store::objects::OBJECT_SCHEMA;
use crate::store::{ObjectMeta, Store};

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

/// Every target in the store: (id, object hash), sorted by id.
pub fn list(store: &Store) -> Result<Vec<(String, String)>> {
    let mut v = Vec::new();
    for hash in store.object_hashes()? {
        // Listing reads meta.json only; loading a target verifies its files. An
        // object of an older schema is not found (a build makes it anew).
        if let Ok(m) = read_json::<ObjectMeta<TargetMeta>>(&store.object_meta_path(&hash)) {
            if m.meta.object_type == "target" && m.schema == OBJECT_SCHEMA {
                v.push((m.meta.target_id, hash));
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

/// The object hash and `meta.json` of target `id` (an exact id or a unique prefix); an error when it is not stored.
pub fn load_meta(store: &Store, id: &str) -> Result<(String, TargetMeta)> {
    let hash =
        find(store, id)?.ok_or_else(|| Error::invalid(format!("no target `{id}` in the store at {} (see `lh-host targets ls`)", store.home.display())))?;
    let ObjectMeta { meta, .. } = store.load_meta::<TargetMeta>(&hash)?;
    Ok((hash, meta))
}

/// Loads target `id`, verifying every file's hash and every array's shape.
pub fn load(store: &Store, id: &str) -> Result<Target> {
    let (hash, meta) = load_meta(store, id)?;
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
