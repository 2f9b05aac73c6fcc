//! What a run the tuner planned (a reference or a trial) left on disk, read
//! the way `workflow sample` reads it ([`crate::workflow::state`]): the
//! manifests of the experiment's runs by key, and the task's outcome record.

use std::path::PathBuf;

use crate::sample::Manifest;
use crate::store::Store;
use crate::workflow::state::{Ledger, OutcomeRecord, RunState};

/// Where a planned run stands.
pub enum Left {
    /// A complete run with its key.
    Done { dir: PathBuf, manifest: Box<Manifest> },
    /// It failed; `lasting` unless the machine was to blame (an I/O error), so that trying again would fail again.
    Failed { error: String, dir: Option<PathBuf>, lasting: bool },
    /// Not run, or stopped before the end (redone next time).
    NotDone,
}

/// Where the run with `key` of experiment `exp` stands.
pub fn left(store: &Store, ledger: &Ledger, exp: &str, key: &str) -> Left {
    let outcome = OutcomeRecord::read(store, exp, key);
    match ledger.state(key, outcome.as_ref()) {
        RunState::Done(f) => Left::Done { dir: f.dir.clone(), manifest: Box::new(f.manifest.clone()) },
        RunState::Failed { error, dir } => {
            let lasting = outcome.and_then(|o| o.error_kind).is_none_or(|k| k != "io");
            Left::Failed { error, dir, lasting }
        }
        RunState::Incomplete(_) | RunState::New => Left::NotDone,
    }
}
