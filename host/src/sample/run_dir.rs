//! A run directory on disk. It appears atomically, with its first snapshot
//! in it (assembled under a hidden temporary name, then renamed), and each
//! later snapshot rewrites `traces.npz` and then `manifest.json`, each
//! atomically. So a run killed at any moment leaves either no run directory
//! or one whose traces numpy reads and whose manifest counts the draws in
//! them (the traces may run ahead of the manifest by one snapshot, for an
//! instant: readers keep the manifest's count).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::manifest::Manifest;
use super::observe::{trace_name, Observed};
use crate::error::{Error, Result};
use crate::store::atomic::write_atomic;
use crate::store::layout::{tmp_prefix, MANIFEST, TRACES};
use crate::store::npz::{self, Array};
use crate::store::record::write_record;
use crate::store::Store;

/// What one snapshot writes: the manifest, and every recorded draw so far.
pub struct Snapshot<'a> {
    pub manifest: &'a Manifest,
    /// L_n per draw and chain, `loss[t][c]`.
    pub loss: &'a [Vec<f64>],
    /// Each statistic per draw and chain, `values[t][c]`.
    pub stats: &'a BTreeMap<String, Vec<Vec<f64>>>,
    /// The observables (`--observe`), each with its (C, T) trace `loss_<name>`.
    pub observed: &'a [Observed],
}

/// A run directory that exists.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `runs/<run id>` of the manifest's experiment, holding `first`.
    pub fn create(store: &Store, first: &Snapshot<'_>) -> Result<Self> {
        let runs = store.runs_dir(&first.manifest.experiment)?;
        std::fs::create_dir_all(&runs).map_err(|e| Error::io(&runs, e))?;
        let tmp = tempfile::Builder::new().prefix(&format!(".{}", tmp_prefix("run"))).tempdir_in(&runs).map_err(|e| Error::io(&runs, e))?;
        write_snapshot(tmp.path(), first)?;
        let path = runs.join(&first.manifest.run_id);
        let tmp_path = tmp.keep();
        std::fs::rename(&tmp_path, &path).map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp_path);
            Error::io(&path, e)
        })?;
        Ok(Self { path })
    }

    /// Replaces the directory's traces and manifest with `snapshot`.
    pub fn write(&self, snapshot: &Snapshot<'_>) -> Result<()> {
        write_snapshot(&self.path, snapshot)
    }
}

/// `traces.npz` (each array (C, T)), then `manifest.json`.
fn write_snapshot(dir: &Path, s: &Snapshot<'_>) -> Result<()> {
    let m = s.manifest;
    let (c, t) = (m.chains, s.loss.len());
    let shape = [c, t];
    let by_chain = |rows: &[Vec<f64>]| -> Vec<f64> { (0..c).flat_map(|ci| rows.iter().map(move |r| r[ci])).collect() };
    let loss = by_chain(s.loss);
    let (n_beta, l0) = (m.n_beta(), m.l0);
    let llc: Vec<f64> = loss.iter().map(|l| n_beta * (l - l0)).collect();
    let stats: Vec<(&str, Vec<f64>)> = s.stats.iter().filter(|(n, _)| *n != "loss" && *n != "llc").map(|(n, rows)| (n.as_str(), by_chain(rows))).collect();
    let mut arrays = vec![("loss", Array::F64(&shape, &loss)), ("llc", Array::F64(&shape, &llc))];
    arrays.extend(stats.iter().map(|(n, v)| (*n, Array::F64(&shape, v))));
    let observed: Vec<(String, Vec<f64>)> = s.observed.iter().map(|o| (trace_name(&o.name), o.loss.concat())).collect();
    arrays.extend(observed.iter().map(|(n, v)| (n.as_str(), Array::F64(&shape, v))));
    write_atomic(&dir.join(TRACES), &npz::to_bytes(&arrays, npz::Packing::Stored)?)?;
    write_record(&dir.join(MANIFEST), m)
}
