//! When a run ends before its plugin's announced draws: `--until` (R̂ and
//! bulk ESS of the L_n trace) and `--budget` (gradient evaluations per chain
//! or wall time). The trace sink asks a [`Stopper`] after every draw, and
//! answers the plugin's `should_stop()` with it, so every plugin that honours
//! `should_stop()` runs until converged without a change of its own.
//!
//! An until-run gets its draws by the host raising the plugin's `draws` key
//! to [`UNTIL_DRAWS`] (or keeping the user's own `draws` as the cap); the run
//! is then `complete` when the criterion is met or the budget is spent, and
//! the manifest's `stop` says which, with R̂ and ESS.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::posterior::Work;
use crate::error::{Error, Result};
use crate::estimate::mcmc;

/// The `draws` an until-run gives its plugin unless the user set one (a cap, not a target).
pub const UNTIL_DRAWS: usize = 1_000_000;

/// Draws per chain after burn-in before the first convergence check.
const FIRST_CHECK: usize = 100;

/// `--until`: stop once R̂ ≤ `rhat` and bulk ESS ≥ `ess` (each optional, not both absent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Until {
    pub rhat: Option<f64>,
    pub ess: Option<f64>,
}

impl Until {
    /// Whether R̂ and bulk ESS (NaN when not computable) meet the criterion.
    fn met(&self, rhat: f64, ess: f64) -> bool {
        self.rhat.is_none_or(|r| rhat <= r) && self.ess.is_none_or(|e| ess >= e)
    }
}

impl FromStr for Until {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut u = Until { rhat: None, ess: None };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| Error::invalid(format!("--until {s}: expected key=value pairs, e.g. rhat=1.01,ess=400")))?;
            let v: f64 = v.trim().parse().map_err(|_| Error::invalid(format!("--until {s}: `{v}` is not a number")))?;
            match k.trim() {
                "rhat" if v >= 1.0 => u.rhat = Some(v),
                "rhat" => return Err(Error::invalid(format!("--until {s}: rhat must be ≥ 1"))),
                "ess" if v > 0.0 => u.ess = Some(v),
                "ess" => return Err(Error::invalid(format!("--until {s}: ess must be > 0"))),
                other => return Err(Error::invalid(format!("--until {s}: unknown key `{other}` (keys: rhat, ess)"))),
            }
        }
        if u.rhat.is_none() && u.ess.is_none() {
            return Err(Error::invalid(format!("--until {s}: give rhat=…, ess=… or both")));
        }
        Ok(u)
    }
}

impl fmt::Display for Until {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [self.rhat.map(|r| format!("rhat={r}")), self.ess.map(|e| format!("ess={e}"))].into_iter().flatten().collect();
        f.write_str(&parts.join(","))
    }
}

/// `--budget`: the most a run may spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Gradient evaluations per chain, in full-batch equivalents (as the manifest counts them).
    Grads(f64),
    /// Wall time from the start of sampling (tuning included).
    Time(Duration),
}

impl FromStr for Budget {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("--budget {s}: {why} (e.g. grads=20000 or time=30m)"));
        match s.trim().split_once('=') {
            Some(("grads", v)) => match v.trim().parse::<f64>() {
                Ok(n) if n > 0.0 && n.is_finite() => Ok(Budget::Grads(n)),
                _ => Err(bad("grads must be a positive number")),
            },
            Some(("time", v)) => match humantime::parse_duration(v.trim()) {
                Ok(d) if !d.is_zero() => Ok(Budget::Time(d)),
                _ => Err(bad("time must be a positive duration")),
            },
            _ => Err(bad("expected grads=N or time=DURATION")),
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Grads(n) => write!(f, "grads={n}"),
            Budget::Time(d) => write!(f, "time={}", humantime::format_duration(*d)),
        }
    }
}

/// When a run stops early: `--until` and `--budget` (either, both or neither).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StopRule {
    pub until: Option<Until>,
    pub budget: Option<Budget>,
}

impl StopRule {
    /// Whether anything can stop the run early.
    pub fn is_set(&self) -> bool {
        self.until.is_some() || self.budget.is_some()
    }
}

/// Why the host stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The `--until` criterion was met.
    #[serde(rename = "converged")]
    Converged,
    /// The `--budget` was spent first.
    #[serde(rename = "budget exhausted")]
    BudgetExhausted,
    /// The plugin recorded all its draws first (the criterion was not met).
    #[serde(rename = "draws exhausted")]
    DrawsExhausted,
}

impl Outcome {
    /// Its name in the manifest and in `llc_runs.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Converged => "converged",
            Outcome::BudgetExhausted => "budget exhausted",
            Outcome::DrawsExhausted => "draws exhausted",
        }
    }
}

/// The manifest's record of a run's stop rule and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopReport {
    /// The criterion (`rhat=1.01,ess=400`), if one was given.
    pub until: Option<String>,
    /// The budget (`grads=20000`, `time=30m`), if one was given.
    pub budget: Option<String>,
    /// How it ended: by the rule, or with all the plugin's draws; `null` when neither (interrupted, failed).
    pub outcome: Option<Outcome>,
    /// R̂ and bulk ESS of L_n over the kept draws at the end (as in `llc`).
    pub rhat: Option<f64>,
    pub ess_bulk: Option<f64>,
    /// Convergence checks made.
    pub checks: usize,
}

/// Applies a [`StopRule`] to a run in progress.
pub struct Stopper {
    rule: StopRule,
    /// The posterior's work counters (budgets of gradients are checked against them).
    work: Rc<RefCell<Work>>,
    start: Instant,
    /// Kept draws per chain at which the next convergence check runs.
    next_check: usize,
    checks: usize,
    outcome: Cell<Option<Outcome>>,
}

impl Stopper {
    /// Starts the clock; `work` holds the gradient evaluations the posterior counts.
    pub fn new(rule: StopRule, work: Rc<RefCell<Work>>) -> Self {
        Self { rule, work, start: Instant::now(), next_check: FIRST_CHECK, checks: 0, outcome: Cell::new(None) }
    }

    /// Whether the rule has a convergence criterion (which needs Markov draws).
    pub fn has_until(&self) -> bool {
        self.rule.until.is_some()
    }

    /// The fraction of the budget spent (0 without one).
    pub fn budget_spent(&self) -> f64 {
        match self.rule.budget {
            Some(Budget::Grads(n)) => self.work.borrow().grad_evals_fge / n,
            Some(Budget::Time(d)) => self.start.elapsed().as_secs_f64() / d.as_secs_f64(),
            None => 0.0,
        }
    }

    /// After a draw is recorded: `loss[t][c]` are all draws so far, the first
    /// `burn_in` of them burn-in. Checks R̂ and bulk ESS of the kept draws
    /// when they have grown by 10 % (at least 20 draws) since the last check,
    /// from 100 kept draws per chain on, so checking costs a small multiple of
    /// one final diagnosis.
    pub fn after_draw(&mut self, loss: &[Vec<f64>], burn_in: usize) {
        if self.outcome.get().is_some() {
            return;
        }
        let kept = loss.len().saturating_sub(burn_in);
        if let Some(until) = self.rule.until {
            if kept >= self.next_check {
                self.checks += 1;
                self.next_check = (kept + 20).max(kept + kept / 10);
                let chains = loss.first().map_or(0, Vec::len);
                let x: Vec<Vec<f64>> = (0..chains).map(|c| loss[burn_in..].iter().map(|row| row[c]).collect()).collect();
                if until.met(mcmc::rhat(&x), mcmc::ess_bulk(&x)) {
                    self.outcome.set(Some(Outcome::Converged));
                    return;
                }
            }
        }
        self.check_budget();
    }

    /// Sets the outcome to `budget exhausted` once the budget is spent.
    fn check_budget(&self) -> bool {
        if self.outcome.get().is_none() && self.rule.budget.is_some() && self.budget_spent() >= 1.0 {
            self.outcome.set(Some(Outcome::BudgetExhausted));
        }
        self.outcome.get().is_some()
    }

    /// Whether the run should stop now (the criterion met or the budget spent).
    pub fn should_stop(&self) -> bool {
        self.check_budget()
    }

    /// How it ended so far (`None`: the rule has not stopped it).
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.get()
    }

    /// The manifest's record, given how the run ended (`finished`: the plugin
    /// returned normally) and the final R̂ and bulk ESS.
    pub fn report(&self, finished: bool, rhat: Option<f64>, ess_bulk: Option<f64>) -> StopReport {
        let outcome = match self.outcome.get() {
            Some(o) => Some(o),
            None if finished => Some(Outcome::DrawsExhausted),
            None => None,
        };
        StopReport {
            until: self.rule.until.map(|u| u.to_string()),
            budget: self.rule.budget.map(|b| b.to_string()),
            outcome,
            rhat,
            ess_bulk,
            checks: self.checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_and_budget_parse_and_print() {
        let u: Until = "rhat=1.01,ess=400".parse().unwrap();
        assert_eq!(u, Until { rhat: Some(1.01), ess: Some(400.0) });
        assert_eq!(u.to_string(), "rhat=1.01,ess=400");
        assert_eq!("ess=200".parse::<Until>().unwrap(), Until { rhat: None, ess: Some(200.0) });
        for bad in ["", "rhat=0.9", "ess=-1", "tau=3", "rhat"] {
            let e = bad.parse::<Until>().unwrap_err().to_string();
            assert!(e.starts_with("--until"), "{bad}: {e}");
        }
        assert_eq!("grads=2e4".parse::<Budget>().unwrap(), Budget::Grads(20000.0));
        assert_eq!("time=30m".parse::<Budget>().unwrap(), Budget::Time(Duration::from_secs(1800)));
        assert_eq!(Budget::Time(Duration::from_secs(1800)).to_string(), "time=30m");
        for bad in ["grads=0", "time=soon", "steps=3", "grads"] {
            assert!(bad.parse::<Budget>().unwrap_err().to_string().contains("--budget"), "{bad}");
        }
    }

    /// Four chains of i.i.d. draws converge at the first check; a budget of
    /// gradients stops a run that never converges.
    #[test]
    fn convergence_and_budget_stop_a_run() {
        let mut r = lh_plugin_api::ChainRng::seed_from_u64(1);
        let rule = StopRule { until: Some("rhat=1.05,ess=100".parse().unwrap()), budget: None };
        let mut s = Stopper::new(rule, Rc::default());
        let mut loss: Vec<Vec<f64>> = Vec::new();
        for t in 0..150 {
            loss.push((0..4).map(|_| r.standard_normal()).collect());
            s.after_draw(&loss, 30);
            assert_eq!(s.should_stop(), t + 1 >= 130, "draw {t}");
        }
        assert_eq!(s.outcome(), Some(Outcome::Converged));
        assert_eq!(s.report(true, Some(1.0), Some(500.0)).outcome, Some(Outcome::Converged));

        // A spent budget stops the run whatever the criterion says.
        let s = Stopper::new(StopRule { until: None, budget: Some(Budget::Time(Duration::from_nanos(1))) }, Rc::default());
        std::thread::sleep(Duration::from_millis(1));
        assert!(s.should_stop());
        assert_eq!(s.outcome(), Some(Outcome::BudgetExhausted));

        // Chains stuck at different levels never converge.
        let mut never = Stopper::new(StopRule { until: Some("rhat=1.01".parse().unwrap()), budget: None }, Rc::default());
        let stuck: Vec<Vec<f64>> = (0..300).map(|t| (0..4).map(|c| c as f64 + 0.01 * ((t * 7 + c) % 5) as f64).collect()).collect();
        never.after_draw(&stuck, 0);
        assert!(!never.should_stop());
        assert_eq!(never.report(true, None, None).outcome, Some(Outcome::DrawsExhausted));
        assert_eq!(never.report(false, None, None).outcome, None);
    }
}
