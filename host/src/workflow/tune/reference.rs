//! A problem's reference λ̂: one run of the reference sampler (`nuts` or
//! `hmc`) with `until` and `budget`, planned like any workflow run, so its key
//! finds it done next time (the run directory is the cached artifact).
//! `tune/references.json` says what each one gave; one that did not converge,
//! or whose check run (`tune.reference.check`) did not converge or disagrees
//! with it, is refused unless forced.

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
    /// The check run (`tune.reference.check`), and how many combined SEs apart the two λ̂ are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Box<Reference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_z: Option<f64>,
}

/// Two λ̂ further apart than this many combined SEs disagree.
pub const AGREE_Z: f64 = 3.0;

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
                    check: None,
                    check_z: None,
                })
            }
            Left::Failed { error, .. } => Err(Error::invalid(format!("problem {problem}: the reference run ({plugin}) failed: {error}"))),
            Left::NotDone => Err(Error::invalid(format!("problem {problem}: the reference run ({plugin}, key {key}) did not finish"))),
        }
    }

    /// This reference with `check`, its check run.
    pub fn with_check(self, check: Reference) -> Reference {
        let z = (self.llc - check.llc).abs() / (self.se * self.se + check.se * check.se).sqrt();
        Reference { check: Some(Box::new(check)), check_z: Some(z), ..self }
    }

    /// Whether it converged, and so did its check run, and the two agree.
    pub fn trusted(&self) -> bool {
        self.converged && self.check.as_ref().is_none_or(|c| c.converged) && self.check_z.is_none_or(|z| z <= AGREE_Z)
    }

    /// `1.6012 ± 0.0113 (nuts, R̂ 1.004, ESS 512, converged)`, and its check's `; check 1.6101 ± 0.0120 (…), 0.5 SE apart`.
    pub fn describe(&self) -> String {
        let num = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
        let one = |r: &Reference| format!("{:.4} ± {:.4} ({}, R̂ {}, ESS {}, {})", r.llc, r.se, r.plugin, num(r.rhat, 3), num(r.ess_bulk, 0), r.outcome);
        match (&self.check, self.check_z) {
            (Some(c), Some(z)) => format!("{}; check {}, {z:.1} SE apart", one(self), one(c)),
            _ => one(self),
        }
    }
}

/// Refuses references that are not [`Reference::trusted`], unless `force`: one error naming each of them.
pub fn check_trusted(refs: &[Reference], force: bool) -> Result<()> {
    let unconverged = |r: &Reference| !r.converged || r.check.as_ref().is_some_and(|c| !c.converged);
    let bad: Vec<String> = refs.iter().filter(|r| !r.trusted()).map(|r| format!("{}: {} ({})", r.problem, r.describe(), r.run_dir.display())).collect();
    if bad.is_empty() || force {
        return Ok(());
    }
    let why = if refs.iter().any(unconverged) {
        format!(
            "the reference did not converge ({} not met within {}): {}; give tune.reference a larger budget (or more draws per unit of it)",
            refs[0].until,
            refs[0].budget,
            bad.join("; ")
        )
    } else {
        format!(
            "the reference and its check (tune.reference.check) disagree by more than {AGREE_Z} combined SEs: {}; the reference has not mixed as its R̂ and ESS say: run it longer or with longer trajectories",
            bad.join("; ")
        )
    };
    Err(Error::invalid(format!("{why}, or pass --force-reference to tune against it anyway")))
}

/// Writes `refs` as `references.json`.
pub fn write(path: &Path, refs: &[Reference]) -> Result<()> {
    write_json_atomic(path, &refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(llc: f64, se: f64, converged: bool) -> Reference {
        Reference {
            problem: "tgt_1".into(),
            plugin: "hmc".into(),
            llc,
            se,
            rhat: Some(1.005),
            ess_bulk: Some(420.0),
            until: "rhat=1.01,ess=400".into(),
            budget: "time=30m".into(),
            outcome: if converged { "converged" } else { "budget exhausted" }.into(),
            converged,
            grad_evals: 1000.0,
            wall_s: 1.0,
            run_dir: "/runs/r".into(),
            key: "k".into(),
            check: None,
            check_z: None,
        }
    }

    #[test]
    fn a_check_that_disagrees_or_did_not_converge_is_refused_unless_forced() {
        // The deep linear network's 10-step HMC against a 40-step one: 6.9 SEs apart.
        let drifting = reference(861.1, 1.5, true).with_check(reference(874.0, 1.1, true));
        assert!((drifting.check_z.unwrap() - 12.9 / (1.5f64.powi(2) + 1.1f64.powi(2)).sqrt()).abs() < 1e-12);
        assert!(!drifting.trusted());
        let e = check_trusted(std::slice::from_ref(&drifting), false).unwrap_err().to_string();
        assert!(e.contains("disagree by more than 3 combined SEs") && e.contains("check 874.0000 ± 1.1000") && e.contains("6.9 SE apart"), "{e}");
        assert!(e.contains("--force-reference"), "{e}");
        assert!(check_trusted(std::slice::from_ref(&drifting), true).is_ok());

        let agreeing = reference(861.1, 1.5, true).with_check(reference(864.0, 1.1, true));
        assert!(agreeing.trusted() && check_trusted(&[agreeing.clone(), reference(1.0, 0.1, true)], false).is_ok());
        let unconverged_check = reference(861.1, 1.5, true).with_check(reference(861.0, 1.1, false));
        let e = check_trusted(&[agreeing, unconverged_check], false).unwrap_err().to_string();
        // Only the reference whose check did not converge is named.
        assert!(e.contains("the reference did not converge") && e.contains("check 861.0000 ± 1.1000 (hmc, R̂ 1.005, ESS 420, budget exhausted)"), "{e}");
        assert!(!e.contains("check 864"), "{e}");
        // Without a check, what counts is convergence alone.
        assert!(reference(1.0, 0.1, true).trusted() && !reference(1.0, 0.1, false).trusted());
    }
}
