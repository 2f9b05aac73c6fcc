//! The `tune: (…)` section of an experiment file (`lh-host workflow tune`):
//! a reference sampler run once per target until converged, and for each
//! method a search space over its plugin keys, searched by TPE under a fixed
//! budget per trial.
//!
//! ```ron
//! tune: (
//!     reference: (plugin: "nuts", until: "rhat=1.01,ess=400", budget: "time=30m"),
//!     trials: 40, startup: 20, seed: 42, parallel: 4, budget: "grads=20000",
//!     methods: [
//!         (plugin: "sgld", fixed: (steps: 1000000),
//!          space: {"step_size": log(1e-7, 1e-3), "batch_size": log_int(16, 256),
//!                  "precond": choice(["none", "rmsprop", "adam"])}),
//!     ],
//! )
//! ```
//!
//! The texts `until` and `budget` are checked where they are used (they are
//! the `--until` / `--budget` forms of `sample`); plugin keys are checked
//! against each plugin's defaults when the study is prepared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::names::is_plain_name;
use super::plugin_config::Overrides;
use crate::error::Result;

/// One hyperparameter's range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Param {
    /// A real number in [lo, hi), searched on a linear scale.
    Uniform(f64, f64),
    /// A real number in [lo, hi), lo > 0, searched on a log scale.
    Log(f64, f64),
    /// An integer in [lo, hi].
    Int(i64, i64),
    /// An integer in [lo, hi], lo ≥ 1, searched on a log scale.
    LogInt(i64, i64),
    /// One of these RON values (`"adam"` is the identifier `adam`, `"[64, 64]"` a list).
    Choice(Vec<String>),
}

impl Param {
    /// Checks the range; the error names `at` (`file: tune.methods[i].space.key`).
    pub fn validate(&self, at: &str) -> Result<()> {
        match self {
            Param::Uniform(lo, hi) => crate::ensure!(lo.is_finite() && hi.is_finite() && lo < hi, "{at}: uniform({lo}, {hi}) needs finite lo < hi"),
            Param::Log(lo, hi) => crate::ensure!(*lo > 0.0 && hi.is_finite() && lo < hi, "{at}: log({lo}, {hi}) needs 0 < lo < hi"),
            Param::Int(lo, hi) => crate::ensure!(lo <= hi, "{at}: int({lo}, {hi}) needs lo ≤ hi"),
            Param::LogInt(lo, hi) => crate::ensure!(*lo >= 1 && lo <= hi, "{at}: log_int({lo}, {hi}) needs 1 ≤ lo ≤ hi"),
            Param::Choice(v) => {
                crate::ensure!(!v.is_empty(), "{at}: choice([]) has nothing to choose");
                if let Some((i, c)) = v.iter().enumerate().find(|(i, c)| v[..*i].contains(c)) {
                    return Err(crate::error::Error::invalid(format!("{at}: choice value {c:?} is given twice (item {i})")));
                }
            }
        }
        Ok(())
    }
}

/// The reference sampler: run once per target with `until` and `budget`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    /// `nuts` or `hmc` (any Markov plugin with a `draws` key works).
    #[serde(default = "default_reference_plugin")]
    pub plugin: String,
    /// Its config overrides.
    #[serde(default)]
    pub overrides: Overrides,
    /// The convergence criterion (`--until` form).
    #[serde(default = "default_until")]
    pub until: String,
    /// Its budget (`--budget` form): it ends a reference that does not converge.
    #[serde(default = "default_reference_budget")]
    pub budget: String,
    /// Chains (default: the file's `chains`).
    #[serde(default)]
    pub chains: Option<usize>,
    /// A second reference run with these keys on top of `overrides` (e.g.
    /// `(num_integration_steps: 40)`), under the same `until` and `budget`:
    /// the two λ̂ must agree within 3 combined SEs, for R̂ and ESS of one run
    /// do not see a slow drift that all its chains share.
    #[serde(default)]
    pub check: Option<Overrides>,
}

impl Default for ReferenceSpec {
    fn default() -> Self {
        Self {
            plugin: default_reference_plugin(),
            overrides: Overrides::default(),
            until: default_until(),
            budget: default_reference_budget(),
            chains: None,
            check: None,
        }
    }
}

fn default_reference_plugin() -> String {
    "nuts".into()
}
fn default_until() -> String {
    "rhat=1.01,ess=400".into()
}
fn default_reference_budget() -> String {
    "time=30m".into()
}

/// One method to tune: a plugin, keys held fixed, and the keys searched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSpec {
    pub plugin: String,
    /// The method's name (a plain name; default: the plugin name).
    #[serde(default)]
    pub tag: Option<String>,
    /// Plugin keys every trial sets (e.g. a `steps` long enough for the budget to end the trial).
    #[serde(default)]
    pub fixed: Overrides,
    /// Plugin key → its range.
    pub space: BTreeMap<String, Param>,
}

impl MethodSpec {
    /// The tag, or the plugin name.
    pub fn name(&self) -> &str {
        self.tag.as_deref().unwrap_or(&self.plugin)
    }
}

/// The `tune:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuneConfig {
    #[serde(default)]
    pub reference: ReferenceSpec,
    /// Trials per target and method (trial 0 is the plugin's defaults).
    #[serde(default = "default_trials")]
    pub trials: usize,
    /// Trials drawn at random (uniform in the searched scale) before TPE starts, trial 0 included.
    #[serde(default = "default_startup")]
    pub startup: usize,
    /// Seed of the random and TPE draws.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// TPE trials of one study asked together (from the trials finished before them), and so run at once.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// What one trial may spend (`--budget` form: `grads=N` per chain, or `time=DURATION`).
    #[serde(default = "default_budget")]
    pub budget: String,
    pub methods: Vec<MethodSpec>,
}

fn default_trials() -> usize {
    40
}
fn default_startup() -> usize {
    20
}
fn default_seed() -> u64 {
    42
}
fn default_parallel() -> usize {
    4
}
fn default_budget() -> String {
    "grads=20000".into()
}

impl TuneConfig {
    /// Names where the overrides came from and checks counts, names and ranges; errors name `file` and the field.
    pub fn prepare(&mut self, file: &str) -> Result<()> {
        self.reference.overrides.origin = format!("{file}: tune.reference.overrides");
        if let Some(check) = &mut self.reference.check {
            check.origin = format!("{file}: tune.reference.check");
        }
        crate::ensure!(self.trials >= 1, "{file}: tune.trials must be ≥ 1");
        crate::ensure!(self.startup >= 1, "{file}: tune.startup must be ≥ 1 (trial 0, the defaults, is one)");
        crate::ensure!(self.parallel >= 1, "{file}: tune.parallel must be ≥ 1");
        crate::ensure!(self.reference.chains.is_none_or(|c| c >= 1), "{file}: tune.reference.chains must be ≥ 1");
        crate::ensure!(!self.methods.is_empty(), "{file}: tune.methods is empty: nothing to tune");
        for (i, m) in self.methods.iter_mut().enumerate() {
            let at = format!("{file}: tune.methods[{i}]");
            m.fixed.origin = format!("{at}.fixed");
            if let Some(t) = &m.tag {
                crate::ensure!(is_plain_name(t), "{at}.tag = {t:?} is not a plain name (letters, digits, `_`, `.`, `+`, `-`)");
            }
            crate::ensure!(!m.space.is_empty(), "{at}.space is empty: give it a key to search");
            for (k, p) in &m.space {
                p.validate(&format!("{at}.space.{k}"))?;
                crate::ensure!(!m.fixed.fields.iter().any(|(f, _)| f == k), "{at}: `{k}` is both fixed and searched");
            }
        }
        for (i, m) in self.methods.iter().enumerate() {
            if let Some(j) = self.methods[..i].iter().position(|o| o.name() == m.name()) {
                return Err(crate::error::Error::invalid(format!(
                    "{file}: tune.methods[{i}] is named `{}` as tune.methods[{j}] is: give one of them a distinct `tag`",
                    m.name()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_ron;

    #[test]
    fn a_tune_section_parses_and_bad_ranges_are_named() {
        let text = r#"(methods: [(plugin: "sgld", fixed: (steps: 100000),
            space: {"step_size": log(1e-7, 1e-3), "batch_size": log_int(16, 256), "precond": choice(["none", "adam"]), "x": uniform(0, 1), "n": int(1, 3)})])"#;
        let mut t: TuneConfig = parse_ron(text, "t.ron").unwrap();
        t.prepare("t.ron").unwrap();
        assert_eq!(t.trials, 40);
        assert_eq!(t.reference.plugin, "nuts");
        let m = &t.methods[0];
        assert_eq!(m.space["step_size"], Param::Log(1e-7, 1e-3));
        assert_eq!(m.space["precond"], Param::Choice(vec!["none".into(), "adam".into()]));
        assert_eq!(m.space["x"], Param::Uniform(0.0, 1.0));
        assert_eq!(m.fixed.origin, "t.ron: tune.methods[0].fixed");
        for (bad, says) in [
            (r#"(methods: [(plugin: "sgld", space: {"step_size": log(0, 1)})])"#, "tune.methods[0].space.step_size: log(0, 1) needs 0 < lo < hi"),
            (r#"(methods: [(plugin: "sgld", space: {"b": int(5, 1)})])"#, "tune.methods[0].space.b: int(5, 1) needs lo ≤ hi"),
            (r#"(methods: [(plugin: "sgld", space: {"p": choice([])})])"#, "choice([]) has nothing to choose"),
            (r#"(methods: [(plugin: "sgld", space: {})])"#, "tune.methods[0].space is empty"),
            (r#"(methods: [(plugin: "sgld", fixed: (a: 1), space: {"a": int(1, 2)})])"#, "`a` is both fixed and searched"),
            (r#"(methods: [(plugin: "sgld", space: {"a": int(1, 2)}), (plugin: "sgld", space: {"a": int(1, 2)})])"#, "give one of them a distinct `tag`"),
            (r#"(trials: 0, methods: [(plugin: "sgld", space: {"a": int(1, 2)})])"#, "tune.trials must be ≥ 1"),
            (r#"(methods: [])"#, "tune.methods is empty"),
        ] {
            let mut t: TuneConfig = parse_ron(bad, "t.ron").unwrap();
            let e = t.prepare("t.ron").unwrap_err().to_string();
            assert!(e.starts_with("t.ron: ") && e.contains(says), "{bad}: {e}");
        }
        let e = parse_ron::<TuneConfig>(r#"(methods: [(plugin: "sgld", space: {"a": logg(1, 2)})])"#, "t.ron").unwrap_err().to_string();
        assert!(e.starts_with("t.ron:1:") && e.contains("logg"), "{e}");
    }
}
