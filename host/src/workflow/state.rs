//! What a workflow finds on disk: every run directory's manifest, by run key,
//! and the outcome record each planned task leaves when it ends
//! (`workflow/outcomes/<key>.json`: how it ended and why, also when it failed
//! before a run directory existed). From these alone — no in-memory state —
//! a planned run is done, to redo, failed or new, which is what makes a
//! workflow resumable after any kill.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::sample::{Manifest, Status};
use crate::store::layout::{entry_names, MANIFEST};
use crate::store::provenance::Provenance;
use crate::store::record::{read_record, write_record, Record};
use crate::store::Store;

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Ran to the end.
    Complete,
    /// Found done already (not run again).
    Skipped,
    /// Stopped early (a signal, a time limit): to be redone.
    Incomplete,
    /// Failed (the error says why).
    Failed,
}

/// The record a task leaves when it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub schema: u32,
    /// The run key, or the target id of a target task.
    pub key: String,
    pub status: TaskStatus,
    pub error: Option<String>,
    /// `bad_input`, `plugin`, `numerical` or `io`, for a failure.
    pub error_kind: Option<String>,
    pub run_dir: Option<PathBuf>,
    pub seconds: f64,
    /// The SLURM submission that ran it, if any.
    pub submission: Option<String>,
    #[serde(flatten)]
    pub provenance: Provenance,
}

impl Record for OutcomeRecord {
    const WHAT: &'static str = "workflow task outcome";
    const SCHEMA: u32 = 1;
}

impl OutcomeRecord {
    /// A record of now.
    pub fn new(key: &str, status: TaskStatus, error: Option<(String, String)>, run_dir: Option<PathBuf>, seconds: f64, submission: Option<String>) -> Self {
        let (error, error_kind) = error.map_or((None, None), |(e, k)| (Some(e), Some(k)));
        Self { schema: Self::SCHEMA, key: key.to_string(), status, error, error_kind, run_dir, seconds, submission, provenance: Provenance::now() }
    }

    /// Writes it where `workflow status|collect` look.
    pub fn write(&self, store: &Store, exp: &str) -> Result<()> {
        write_record(&store.outcome_path(exp, &self.key)?, self)
    }

    /// The record of task `key`, if there is a readable one.
    pub fn read(store: &Store, exp: &str, key: &str) -> Option<Self> {
        read_record(&store.outcome_path(exp, key).ok()?).ok()
    }
}

/// A run directory found, with its manifest.
#[derive(Debug, Clone)]
pub struct Found {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Where a planned run stands.
#[derive(Debug, Clone)]
pub enum RunState<'a> {
    /// A complete run with its key exists: skipped.
    Done(&'a Found),
    /// The latest run with its key stopped early (killed, signalled, timed out): redone.
    Incomplete(&'a Found),
    /// It failed last time (redone, and probably failing again): why, and its directory if any.
    Failed { error: String, dir: Option<PathBuf> },
    /// Never run.
    New,
}

impl RunState<'_> {
    /// `done`, `incomplete`, `failed` or `new`.
    pub fn word(&self) -> &'static str {
        match self {
            RunState::Done(_) => "done",
            RunState::Incomplete(_) => "incomplete",
            RunState::Failed { .. } => "failed",
            RunState::New => "new",
        }
    }
}

/// Every run directory of an experiment, by run key.
#[derive(Debug, Default)]
pub struct Ledger {
    by_key: HashMap<String, Vec<Found>>,
}

impl Ledger {
    /// Reads the manifest of every run directory of experiment `exp` (those
    /// that cannot be read are left out: they belong to no key).
    pub fn scan(store: &Store, exp: &str) -> Result<Ledger> {
        Self::scan_matching(store, exp, |_| true)
    }

    /// [`Ledger::scan`] of only the run directories of plugin `plugin` on
    /// target `target_id` (told by their names, before any manifest is read):
    /// what one task needs to know, at a fraction of the cost.
    pub fn scan_for(store: &Store, exp: &str, plugin: &str, target_id: &str) -> Result<Ledger> {
        let plugin = format!("-{plugin}-");
        let tid = target_id.trim_start_matches("tgt_");
        let tid = format!("-{}-", &tid[..tid.len().min(8)]);
        Self::scan_matching(store, exp, |name| name.contains(&plugin) && name.contains(&tid))
    }

    fn scan_matching(store: &Store, exp: &str, keep: impl Fn(&str) -> bool) -> Result<Ledger> {
        let runs = store.runs_dir(exp)?;
        let mut by_key: HashMap<String, Vec<Found>> = HashMap::new();
        for name in entry_names(&runs)?.into_iter().filter(|n| keep(n)) {
            let dir = runs.join(name);
            let Ok(manifest) = read_record::<Manifest>(&dir.join(MANIFEST)) else { continue };
            if let Some(key) = manifest.job_key.clone() {
                by_key.entry(key).or_default().push(Found { dir, manifest });
            }
        }
        // Oldest first: run ids start with their UTC time.
        for v in by_key.values_mut() {
            v.sort_by(|a, b| a.manifest.run_id.cmp(&b.manifest.run_id));
        }
        Ok(Ledger { by_key })
    }

    /// Every run directory with `key`, oldest first.
    pub fn runs(&self, key: &str) -> &[Found] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    /// Where the run with `key` of experiment `exp` stands (its outcome record read from `store`).
    pub fn state_in(&self, store: &Store, exp: &str, key: &str) -> RunState<'_> {
        self.state(key, OutcomeRecord::read(store, exp, key).as_ref())
    }

    /// Where the run with `key` stands, given its outcome record (if any).
    pub fn state(&self, key: &str, outcome: Option<&OutcomeRecord>) -> RunState<'_> {
        let runs = self.runs(key);
        if let Some(f) = runs.iter().rev().find(|f| f.manifest.status == Status::Complete) {
            return RunState::Done(f);
        }
        // A failure recorded before the latest run started is an older attempt's.
        let failed = outcome.filter(|o| o.status == TaskStatus::Failed && runs.last().is_none_or(|f| f.manifest.provenance.created <= o.provenance.created));
        match (runs.last(), failed) {
            (Some(f), None) if f.manifest.status == Status::Incomplete => RunState::Incomplete(f),
            (last, Some(o)) => {
                RunState::Failed { error: o.error.clone().unwrap_or_else(|| "failed".into()), dir: o.run_dir.clone().or(last.map(|f| f.dir.clone())) }
            }
            (Some(f), None) => RunState::Failed { error: f.manifest.error.clone().unwrap_or_else(|| "failed".into()), dir: Some(f.dir.clone()) },
            (None, None) => RunState::New,
        }
    }
}
