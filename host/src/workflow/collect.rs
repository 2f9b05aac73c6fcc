//! The results of a plan, one row per planned run, read from disk alone (run
//! manifests and outcome records, see [`super::state`]): what
//! `llc_runs.csv` holds and the summary prints, for the local backend, for
//! SLURM and for `workflow collect` alike.

use std::path::Path;

use serde::Serialize;

use super::plan::{label, Plan};
use super::state::{Ledger, OutcomeRecord, RunState};
use crate::error::Result;
use crate::estimate::Estimate;
use crate::sample::Manifest;
use crate::store::atomic::write_csv_atomic;
use crate::store::Store;

/// One row of `llc_runs.csv`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlcRow {
    pub target: String,
    pub plugin: String,
    /// The sampler entry's tag (empty when it has none).
    pub tag: String,
    /// The weights sampled (`--restrict`), empty for all of them.
    pub restrict: String,
    pub seed: u64,
    /// sha256 of the resolved plugin config, 12 hex digits.
    pub config_hash: String,
    pub llc: Option<f64>,
    pub se: Option<f64>,
    pub rhat: Option<f64>,
    pub ess_bulk: Option<f64>,
    /// Var(nβ·L_n) / λ̂ over the kept draws (≈ 1 for a posterior near its asymptotics).
    pub var_ratio: Option<f64>,
    /// Gradient evaluations per chain, in full-batch equivalents.
    pub grad_evals: Option<f64>,
    /// Seconds the run took.
    pub wall_s: Option<f64>,
    /// `complete`, `incomplete`, `failed` or `not_run`.
    pub status: String,
    /// How a run with a stop rule (`until`, `budget`) ended: `converged`,
    /// `budget exhausted` or `draws exhausted`; empty otherwise.
    pub stop: String,
    pub run_dir: String,
    pub key: String,
    pub error: String,
}

impl LlcRow {
    /// The row of a run directory's manifest (also for runs outside any plan).
    pub fn from_manifest(m: &Manifest, dir: &Path, config_hash: &str, status: &str) -> Self {
        let e = m.llc.as_ref();
        LlcRow {
            target: m.target_id.clone(),
            plugin: m.plugin.name.clone(),
            tag: m.tag.clone().unwrap_or_default(),
            restrict: m.restriction.as_ref().map(|r| r.spec.clone()).unwrap_or_default(),
            seed: m.seed,
            config_hash: config_hash.to_string(),
            llc: e.map(|e| e.mean),
            se: e.map(|e| e.se),
            rhat: e.and_then(|e| e.rhat),
            ess_bulk: e.map(|e| e.ess_bulk),
            var_ratio: e.and_then(Estimate::variance_ratio),
            grad_evals: Some(m.work.grad_evals_fge),
            wall_s: Some(m.seconds()),
            status: status.to_string(),
            stop: m.stop.as_ref().and_then(|s| s.outcome).map(|o| o.as_str().to_string()).unwrap_or_default(),
            run_dir: dir.display().to_string(),
            key: m.job_key.clone().unwrap_or_default(),
            error: m.error.clone().unwrap_or_default(),
        }
    }

    /// The sampler's label: its tag, or the plugin name, and the restriction if any.
    pub fn label(&self) -> String {
        label(if self.tag.is_empty() { &self.plugin } else { &self.tag }, Some(&self.restrict))
    }
}

/// One row per run of `plan`, in plan order, from what is on disk now.
pub fn rows(store: &Store, plan: &Plan) -> Result<Vec<LlcRow>> {
    let ledger = Ledger::scan(store, &plan.experiment)?;
    Ok(plan
        .runs
        .iter()
        .map(|r| {
            let outcome = OutcomeRecord::read(store, &plan.experiment, &r.key);
            let blank = |status: &str, dir: Option<&Path>, error: String| LlcRow {
                target: r.target_id.clone(),
                plugin: r.plugin.clone(),
                tag: r.tag.clone().unwrap_or_default(),
                restrict: r.restrict.as_ref().map(ToString::to_string).unwrap_or_default(),
                seed: r.seed,
                config_hash: r.config_hash.clone(),
                llc: None,
                se: None,
                rhat: None,
                ess_bulk: None,
                var_ratio: None,
                grad_evals: None,
                wall_s: None,
                status: status.to_string(),
                stop: String::new(),
                run_dir: dir.map(|d| d.display().to_string()).unwrap_or_default(),
                key: r.key.clone(),
                error,
            };
            match ledger.state(&r.key, outcome.as_ref()) {
                RunState::Done(f) => LlcRow::from_manifest(&f.manifest, &f.dir, &r.config_hash, "complete"),
                RunState::Incomplete(f) => LlcRow::from_manifest(&f.manifest, &f.dir, &r.config_hash, "incomplete"),
                RunState::Failed { error, dir } => match ledger.runs(&r.key).last() {
                    Some(f) if Some(&f.dir) == dir.as_ref() => LlcRow { error, ..LlcRow::from_manifest(&f.manifest, &f.dir, &r.config_hash, "failed") },
                    _ => blank("failed", dir.as_deref(), error),
                },
                RunState::New => blank("not_run", None, String::new()),
            }
        })
        .collect())
}

/// Writes `rows` as CSV (header first; empty cells where a value does not apply), atomically.
pub fn write_csv(rows: &[LlcRow], path: &Path) -> Result<()> {
    write_csv_atomic(rows, path)
}

/// Counts of rows by status: complete, incomplete, failed, not run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub complete: usize,
    pub incomplete: usize,
    pub failed: usize,
    pub not_run: usize,
}

impl Counts {
    /// The counts of `rows`.
    pub fn of(rows: &[LlcRow]) -> Self {
        let mut c = Counts::default();
        for r in rows {
            match r.status.as_str() {
                "complete" => c.complete += 1,
                "incomplete" => c.incomplete += 1,
                "failed" => c.failed += 1,
                _ => c.not_run += 1,
            }
        }
        c
    }
}
