//! A run directory read back for Stage C: its manifest and its traces as
//! (C, T) rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::estimate;
use crate::sample::Manifest;
use crate::store::layout::{MANIFEST, TRACES};
use crate::store::npz::Npz;
use crate::store::record::read_record;

/// A run directory read back: its manifest and its traces as (C, T) rows.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub loss: Vec<Vec<f64>>,
    /// Every recorded statistic but `loss` and `llc`, (C, T).
    pub stats: BTreeMap<String, Vec<Vec<f64>>>,
}

impl Run {
    /// Reads `manifest.json` and `traces.npz` of the run in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest: Manifest = read_record(&dir.join(MANIFEST))?;
        let tpath = dir.join(TRACES);
        let mut traces = Npz::open(&tpath)?;
        let (shape, flat) = traces.f64("loss")?;
        let mut loss = rows(&shape, flat, "loss", &tpath)?;
        if loss.len() != manifest.chains {
            return Err(Error::bad_file(&tpath, format!("`loss` has {} chains but the run's manifest says {}", loss.len(), manifest.chains)));
        }
        // A checkpoint writes the traces before the manifest, so traces may
        // run ahead of it; the manifest's draw count is the one committed.
        let draws = loss.first().map_or(0, Vec::len);
        if draws < manifest.draws {
            return Err(Error::bad_file(&tpath, format!("`loss` has {draws} draws but the run's manifest says {}", manifest.draws)));
        }
        loss.iter_mut().for_each(|c| c.truncate(manifest.draws));
        if manifest.draws <= manifest.burn_in {
            return Err(Error::bad_file(
                &tpath,
                format!("{} chains × {} draws: nothing after the burn-in of {}", loss.len(), manifest.draws, manifest.burn_in),
            ));
        }
        if let Some((c, t, v)) = loss.iter().enumerate().find_map(|(c, row)| row.iter().position(|v| !v.is_finite()).map(|t| (c, t, row[t]))) {
            return Err(Error::bad_file(&tpath, format!("`loss` holds {v} at chain {c}, draw {t}: λ̂ cannot be estimated from non-finite L_n")));
        }
        let mut stats = BTreeMap::new();
        for name in traces.names() {
            if name != "loss" && name != "llc" {
                let (shape, flat) = traces.f64(&name)?;
                let mut r = rows(&shape, flat, &name, &tpath)?;
                if r.len() != manifest.chains || r.iter().any(|c| c.len() < manifest.draws) {
                    return Err(Error::bad_file(&tpath, format!("`{name}` has shape {shape:?}, expected ({}, {})", manifest.chains, manifest.draws)));
                }
                r.iter_mut().for_each(|c| c.truncate(manifest.draws));
                stats.insert(name.clone(), r);
            }
        }
        Ok(Self { dir: dir.to_path_buf(), manifest, loss, stats })
    }

    /// Draws per chain.
    pub fn draws(&self) -> usize {
        self.loss.first().map_or(0, Vec::len)
    }

    /// nβ.
    pub fn n_beta(&self) -> f64 {
        self.manifest.n_beta()
    }

    /// The per-draw λ̂ values after burn-in, (C, T − burn_in).
    pub fn llc_draws(&self) -> Vec<Vec<f64>> {
        estimate::llc_draws(&self.loss, self.manifest.burn_in, self.n_beta(), self.manifest.l0)
    }

    /// Statistic `name` after burn-in, when recorded.
    pub fn kept(&self, name: &str) -> Option<Vec<Vec<f64>>> {
        self.stats.get(name).map(|x| x.iter().map(|c| c[self.manifest.burn_in..].to_vec()).collect())
    }

    /// Total wall-clock seconds.
    pub fn seconds(&self) -> f64 {
        self.manifest.seconds()
    }
}

/// (C, T) rows of a trace array.
fn rows(shape: &[usize], flat: Vec<f64>, name: &str, path: &Path) -> Result<Vec<Vec<f64>>> {
    if shape.len() != 2 {
        return Err(Error::bad_file(path, format!("`{name}` must be (chains, draws), has shape {shape:?}")));
    }
    Ok(flat.chunks(shape[1].max(1)).map(<[f64]>::to_vec).take(shape[0]).collect())
}
