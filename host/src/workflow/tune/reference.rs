//! A problem's reference λ̂: one run of the reference sampler (`nuts` or
//! `hmc`) with `until` and `budget`, planned like any workflow run, so its key
//! finds it done next time (the run directory is the cached artifact).
//! `tune/references.json` says what each one gave; one that did not converge
//! is refused unless forced.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::runs::Left;
use crate::error::{Error, Result};
use crate::sample::StopOutcome;
use crate::store::atomic::write_json_atomic;

/// What a reference run gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The target id.
    pub problem: String,
    pub plugin: String,
    pub llc: f64,
    pub se: f64,
    pub rhat: Option<f64>,
    pub ess_bulk: Option<f64>,
    /// The criterion and budget it ran under, and how it ended (`converged`, `budget exhausted`, `draws exhausted`).
    pub until: String,
    pub budget: String,
    pub outcome: String,
    /// Whether `until` was met.
    pub converged: bool,
    /// Gradient evaluations per chain (full-batch equivalents) and seconds.
    pub grad_evals: f64,
    pub wall_s: f64,
    pub run_dir: PathBuf,
    pub key: String,
}

impl Reference {
    /// The reference of `problem` from what its run `key` left; an error says why there is none.
    pub fn from_run(problem: &str, plugin: &str, key: &str, left: Left) -> Result<Reference> {
        match left {
            Left::Done { dir, manifest } => {
                let e = manifest
                    .llc
                    .as_ref()
                    .filter(|e| e.mean.is_finite() && e.se.is_finite())
                    .ok_or_else(|| Error::invalid(format!("problem {problem}: the reference run {} has no λ̂ (no draws after warm-up)", dir.display())))?;
                let stop = manifest.stop.as_ref();
                let outcome = stop.and_then(|s| s.outcome);
                Ok(Reference {
                    problem: problem.to_string(),
                    plugin: plugin.to_string(),
                    llc: e.mean,
                    se: e.se,
                    rhat: e.rhat,
                    ess_bulk: Some(e.ess_bulk).filter(|v| v.is_finite()),
                    until: stop.and_then(|s| s.until.clone()).unwrap_or_default(),
                    budget: stop.and_then(|s| s.budget.clone()).unwrap_or_default(),
                    outcome: outcome.map(|o| serde_json::to_value(o).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()).unwrap_or_default(),
                    converged: outcome == Some(StopOutcome::Converged),
                    grad_evals: manifest.work.grad_evals_fge,
                    wall_s: manifest.seconds(),
                    run_dir: dir,
                    key: key.to_string(),
                })
            }
            Left::Failed { error, .. } => Err(Error::invalid(format!("problem {problem}: the reference run ({plugin}) failed: {error}"))),
            Left::NotDone => Err(Error::invalid(format!("problem {problem}: the reference run ({plugin}, key {key}) did not finish"))),
        }
    }

    /// `1.6012 ± 0.0113 (nuts, R̂ 1.004, ESS 512, converged)`.
    pub fn describe(&self) -> String {
        let num = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
        format!("{:.4} ± {:.4} ({}, R̂ {}, ESS {}, {})", self.llc, self.se, self.plugin, num(self.rhat, 3), num(self.ess_bulk, 0), self.outcome)
    }
}

/// Refuses references that did not converge, unless `force`: one error naming each of them.
pub fn check_converged(refs: &[Reference], force: bool) -> Result<()> {
    let bad: Vec<String> = refs.iter().filter(|r| !r.converged).map(|r| format!("{}: {} ({})", r.problem, r.describe(), r.run_dir.display())).collect();
    if bad.is_empty() || force {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the reference did not converge ({} not met within {}): {}; give tune.reference a larger budget (or more draws per unit of it), or pass --force-reference to tune against it anyway",
        refs[0].until,
        refs[0].budget,
        bad.join("; ")
    )))
}

/// Writes `refs` as `references.json`.
pub fn write(path: &Path, refs: &[Reference]) -> Result<()> {
    write_json_atomic(path, &refs)
}
