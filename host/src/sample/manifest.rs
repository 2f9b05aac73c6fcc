//! A run's `manifest.json`: what ran (plugin, config, seed, backend, the
//! restriction), how it ended, the work the host counted, λ̂ and each
//! observable's λ̂_S.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::observe::Observable;
use super::plugins::PluginInfo;
use super::posterior::Work;
use super::restrict::RestrictionInfo;
use super::stopping::StopReport;
use crate::backend::BackendInfo;
use crate::estimate::Estimate;
use crate::model::Precision;
use crate::store::provenance::Provenance;
use crate::store::record::Record;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every announced draw was recorded, or the stop rule (`--until`,
    /// `--budget`) ended the run: `stop` says which.
    Complete,
    /// Stopped early (Ctrl-C or the plugin stopped short): traces kept.
    Incomplete,
    /// The plugin returned a fatal error: the draws so far are kept.
    Failed,
}

/// The run's `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub run_id: String,
    pub experiment: String,
    pub target_id: String,
    pub target_hash: String,
    pub plugin: PluginInfo,
    /// The resolved config passed to the plugin (RON).
    pub config: String,
    pub seed: u64,
    pub chains: usize,
    /// The workflow's label of the run (an experiment file's sampler `tag`).
    #[serde(default)]
    pub tag: Option<String>,
    /// The workflow's key of the run: the hash of what makes it (target, plugin,
    /// resolved config, seed, chains, tag, precision), by which a rerun finds it done.
    #[serde(default)]
    pub job_key: Option<String>,
    pub backend: BackendInfo,
    /// The precision the target was trained in (the run's is in `backend`).
    pub target_precision: Precision,
    pub status: Status,
    /// The fatal error, when status is `failed`.
    pub error: Option<String>,
    pub draws: usize,
    pub draws_announced: usize,
    pub burn_in: usize,
    pub independent_draws: bool,
    /// Seconds per phase the plugin announced, plus `total`.
    pub timings: BTreeMap<String, f64>,
    /// Counted by the host.
    pub work: Work,
    pub n: usize,
    pub beta: f64,
    pub gamma: f64,
    /// L_n(θ*) in the run's precision (λ̂ uses this one).
    pub l0: f64,
    /// L_n(θ*) in f64, from the target.
    pub target_l0: f64,
    pub llc: Option<Estimate>,
    /// The coordinates sampled, when not all of θ (`--restrict`); λ̂ is then that of the restricted posterior.
    #[serde(default)]
    pub restriction: Option<RestrictionInfo>,
    /// λ̂_S of each data subset recorded (`--observe`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observables: BTreeMap<String, Observable>,
    pub tuned: BTreeMap<String, f64>,
    pub notes: String,
    /// `--until` / `--budget` and how the run ended by them (absent without either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopReport>,
    #[serde(flatten)]
    pub provenance: Provenance,
}

impl Record for Manifest {
    const WHAT: &'static str = "run manifest";
    const SCHEMA: u32 = 1;
}

impl Manifest {
    /// nβ.
    pub fn n_beta(&self) -> f64 {
        self.n as f64 * self.beta
    }
    /// Total wall-clock seconds.
    pub fn seconds(&self) -> f64 {
        self.timings.get("total").copied().unwrap_or(0.0)
    }
}
