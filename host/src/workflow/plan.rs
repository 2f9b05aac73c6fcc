//! A workflow's plan: an experiment file's grid, targets × samplers × seeds,
//! made concrete. Each target appears once (by id, however many entries of
//! the file resolve to it); each run carries its plugin (resolved to a
//! library, loaded once to learn its defaults), its resolved config and its
//! **key**, the hash of everything that makes the run what it is:
//!
//! ```text
//! key = sha256(target id, plugin name, plugin version, resolved config, seed, chains, tag,
//!              precision, restriction (a mask by its contents' sha256), stop rule)[..16]
//! ```
//!
//! (The stop rule, `--until`/`--budget`, only where a run has one: a sampler entry's
//! `until`/`budget`, `workflow tune`'s references and trials; a run without one has
//! the key it always had.)
//!
//! A sampler with `restrict: "each-layer"` is one run per layer of each
//! target (`layer:1`, `layer:2`, …), each with its own key.
//!
//! The key is recorded in the run's manifest, so a later workflow finds the
//! run done (a complete manifest with that key) and skips it, whatever the
//! run directory is called. The evaluation backend and thread count are not
//! part of it: they change how fast a run goes, not what it estimates.
//!
//! The plan is written to `workflow/plan.json` (and to each SLURM
//! submission's folder), where `workflow status|collect` and the SLURM tasks
//! read it back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{parse_ron, resolve_config, Experiment, Overrides, TargetRecipe, WorkflowConfig};
use crate::error::{Error, Result};
use crate::model::restrict::RestrictSpec;
use crate::model::Precision;
use crate::sample::plugins;
use crate::sample::stopping::{Budget, StopRule, Until, UNTIL_DRAWS};
use crate::store::provenance::Provenance;
use crate::store::record::{read_record, write_record, Record};
use crate::store::{sha256_hex, Store};
use crate::target::recipe_id;

/// One target of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedTarget {
    pub id: String,
    pub recipe: TargetRecipe,
    /// The experiment file's `targets[i]` that resolve to it.
    pub entries: Vec<usize>,
}

/// One run of the plan: a sampler with one seed on one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedRun {
    /// See the module documentation.
    pub key: String,
    /// Index into [`Plan::targets`].
    pub target: usize,
    pub target_id: String,
    /// The experiment file's `samplers[i]`.
    pub sampler: usize,
    /// The entry of the file the run comes from when it is not `samplers[sampler]`
    /// (`tune.methods[2]`), for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// The plugin's own name and version.
    pub plugin: String,
    pub plugin_version: String,
    /// The library the plugin was found in.
    pub plugin_path: PathBuf,
    pub tag: Option<String>,
    /// The weights it samples (`--restrict`; never `each-layer`, which the plan expands).
    #[serde(default)]
    pub restrict: Option<RestrictSpec>,
    pub seed: u64,
    pub chains: usize,
    /// The plugin config, resolved (RON).
    pub config: String,
    /// sha256 of `config`, 12 hex digits.
    pub config_hash: String,
    /// When the run stops early (`--until`, `--budget`), if it may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<PlannedStop>,
}

/// A run's stop rule as the plan keeps it: the `--until` and `--budget` texts, in their canonical form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStop {
    pub until: Option<String>,
    pub budget: Option<String>,
}

impl PlannedStop {
    /// The plan's form of `rule` (`None` when it stops nothing).
    pub fn of(rule: &StopRule) -> Option<Self> {
        rule.is_set().then(|| Self { until: rule.until.map(|u| u.to_string()), budget: rule.budget.map(|b| b.to_string()) })
    }

    /// An experiment entry's `until` and `budget` texts, checked (`until` needs a
    /// budget, so that a run that does not converge still ends).
    fn parse(until: Option<&str>, budget: Option<&str>) -> Result<Option<Self>> {
        let at = |field: &'static str| move |e: Error| Error::invalid(format!("`{field}`: {e}"));
        let rule = StopRule {
            until: until.map(str::parse::<Until>).transpose().map_err(at("until"))?,
            budget: budget.map(str::parse::<Budget>).transpose().map_err(at("budget"))?,
        };
        crate::ensure!(
            rule.until.is_none() || rule.budget.is_some(),
            "`until` needs a `budget` (\"grads=N\" or \"time=DURATION\"), so that a run that does not converge still ends"
        );
        Ok(Self::of(&rule))
    }

    /// The rule again.
    pub fn rule(&self) -> Result<StopRule> {
        Ok(StopRule {
            until: self.until.as_deref().map(str::parse::<Until>).transpose()?,
            budget: self.budget.as_deref().map(str::parse::<Budget>).transpose()?,
        })
    }
}

impl PlannedRun {
    /// The tag, or the plugin name, and the restriction if any: how tables name the sampler.
    pub fn label(&self) -> String {
        label(self.tag.as_deref().unwrap_or(&self.plugin), self.restrict.as_ref().map(ToString::to_string).as_deref())
    }
}

/// `name`, or `name[restriction]`.
pub fn label(name: &str, restrict: Option<&str>) -> String {
    match restrict {
        Some(r) if !r.is_empty() => format!("{name}[{r}]"),
        _ => name.to_string(),
    }
}

/// The array tasks of one SLURM submission: task `k` of the targets array
/// builds `targets[targets_tasks[k]]`, task `k` of the runs array runs
/// `runs[run_tasks[k]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tasks {
    pub submission: String,
    pub targets: Vec<usize>,
    pub runs: Vec<usize>,
}

/// A workflow's plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub schema: u32,
    pub experiment: String,
    /// The experiment file.
    pub source: PathBuf,
    /// The artifact root, absolute (SLURM tasks use it, wherever they start).
    pub home: PathBuf,
    pub settings: WorkflowConfig,
    /// CPU threads per job.
    pub threads: usize,
    /// Diagnose every run after it samples (`--promote`).
    pub diagnose: bool,
    pub targets: Vec<PlannedTarget>,
    pub runs: Vec<PlannedRun>,
    /// The SLURM submission this copy of the plan belongs to.
    #[serde(default)]
    pub tasks: Option<Tasks>,
    #[serde(flatten)]
    pub provenance: Provenance,
}

impl Record for Plan {
    const WHAT: &'static str = "workflow plan";
    const SCHEMA: u32 = 1;
}

/// What a run's key hashes (see the module documentation).
#[derive(Debug, Clone, Serialize)]
pub struct KeyParts<'a> {
    pub target_id: &'a str,
    pub plugin: &'a str,
    pub plugin_version: &'a str,
    pub config: &'a str,
    pub seed: u64,
    pub chains: usize,
    pub tag: Option<&'a str>,
    pub precision: Option<Precision>,
    /// The restriction as written, or `mask:<sha256>` for a mask file.
    pub restrict: Option<String>,
    /// Left out when absent, so that runs without one keep their keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<&'a PlannedStop>,
}

impl KeyParts<'_> {
    /// The run key: 16 hex digits of the sha256 of these parts' JSON.
    pub fn key(&self) -> String {
        let v = serde_json::to_value(self).expect("key parts serialise");
        sha256_hex(v.to_string().as_bytes())[..16].to_string()
    }
}

/// How a restriction enters a run key: a mask by its contents.
fn restrict_for_key(r: &RestrictSpec) -> Result<String> {
    Ok(match r {
        RestrictSpec::Mask(path) => format!("mask:{}", sha256_hex(&std::fs::read(path).map_err(|e| Error::io(path, e))?)),
        other => other.to_string(),
    })
}

impl PlannedRun {
    /// Sets `key` and `config_hash` from the other fields and the runs' `precision`.
    pub fn sealed(mut self, precision: Option<Precision>) -> Result<Self> {
        let parts = KeyParts {
            target_id: &self.target_id,
            plugin: &self.plugin,
            plugin_version: &self.plugin_version,
            config: &self.config,
            seed: self.seed,
            chains: self.chains,
            tag: self.tag.as_deref(),
            precision,
            restrict: self.restrict.as_ref().map(restrict_for_key).transpose()?,
            stop: self.stop.as_ref(),
        };
        self.key = parts.key();
        self.config_hash = sha256_hex(self.config.as_bytes())[..12].to_string();
        Ok(self)
    }
}

/// Each target of `exp` once (by id), with the file's entries that resolve to it.
pub fn targets(exp: &Experiment) -> Vec<PlannedTarget> {
    let mut targets: Vec<PlannedTarget> = Vec::new();
    for (i, recipe) in exp.targets.iter().enumerate() {
        let id = recipe_id(recipe);
        match targets.iter_mut().find(|t| t.id == id) {
            Some(t) => t.entries.push(i),
            None => targets.push(PlannedTarget { id, recipe: recipe.clone(), entries: vec![i] }),
        }
    }
    targets
}

/// The restrictions sampler entry `spec` stands for on `target`: `each-layer`
/// is one per layer.
fn restrictions(spec: Option<&RestrictSpec>, target: &PlannedTarget) -> Result<Vec<Option<RestrictSpec>>> {
    match spec {
        Some(RestrictSpec::EachLayer) => match &target.recipe {
            TargetRecipe::Mlp(c) => Ok(RestrictSpec::each_layer(c.model.layout().len()).into_iter().map(Some).collect()),
            TargetRecipe::Quadratic(_) => Err(Error::invalid(format!("restriction `each-layer`: target {} is quadratic and has no layers", target.id))),
        },
        other => Ok(vec![other.cloned()]),
    }
}

/// The config layer that lets a stop rule, not the draw count, end a run of a
/// plugin with default config `defaults`: its `draws` raised to [`UNTIL_DRAWS`]
/// (a later layer that sets `draws` is the cap instead), as `sample --until`
/// does; `None` when the plugin has no `draws` key (the variational plugins).
pub fn raised_draws(defaults: &str, plugin: &str, origin: &str) -> Result<Option<Overrides>> {
    let keys = parse_ron::<Overrides>(defaults, &format!("plugin `{plugin}` default config"))?;
    if !keys.fields.iter().any(|(k, _)| k == "draws") {
        return Ok(None);
    }
    Ok(Some(Overrides::from_set(&format!("draws={UNTIL_DRAWS}"))?.with_origin(origin)))
}

/// What one sampler entry resolves to.
struct Resolved {
    name: String,
    version: String,
    path: PathBuf,
    config: String,
    stop: Option<PlannedStop>,
}

/// Makes the plan of experiment `exp` with `settings` and `threads` per job:
/// every target's id, every sampler's plugin found and its config resolved
/// (an unknown plugin or key is an error naming the file and entry).
pub fn make(store: &Store, exp: &Experiment, settings: WorkflowConfig, threads: usize, diagnose: bool) -> Result<Plan> {
    let file = exp.path.display().to_string();
    let cfg = &exp.config;
    crate::ensure!(!cfg.samplers.is_empty(), "{file}: `samplers` is empty: the workflow has nothing to run");
    let targets = targets(exp);
    let mut loaded: BTreeMap<String, (String, String, PathBuf, String)> = BTreeMap::new();
    let mut samplers = Vec::new();
    for (i, s) in cfg.samplers.iter().enumerate() {
        let at = |e: Error| Error::invalid(format!("{file}: samplers[{i}] (`{}`): {e}", s.plugin));
        if !loaded.contains_key(&s.plugin) {
            let path = plugins::resolve(&s.plugin).map_err(at)?;
            let p = plugins::load(&path).map_err(at)?;
            loaded.insert(s.plugin.clone(), (p.info.name, p.info.version, path, p.info.default_config));
        }
        let (name, version, path, defaults) = loaded[&s.plugin].clone();
        let stop = PlannedStop::parse(s.until.as_deref(), s.budget.as_deref()).map_err(at)?;
        let mut layers = Vec::new();
        if s.until.is_some() {
            let raised = raised_draws(&defaults, &name, &format!("samplers[{i}].until (it sets the plugin's `draws` key)"))?;
            layers.push(raised.ok_or_else(|| {
                at(Error::invalid("`until` needs Markov chains, but this plugin's draws are independent (variational): use its own draw count"))
            })?);
        }
        layers.push(s.overrides.clone());
        let config = resolve_config(&defaults, &name, &layers)?.text;
        samplers.push(Resolved { name, version, path, config, stop });
    }
    let mut runs = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        for (i, (spec, r)) in cfg.samplers.iter().zip(&samplers).enumerate() {
            let at = |e: Error| e.context(&format!("{file}: samplers[{i}]"));
            for restrict in restrictions(spec.restrict.as_ref(), target).map_err(at)? {
                for &seed in &cfg.seeds {
                    let run = PlannedRun {
                        key: String::new(),
                        target: t,
                        target_id: target.id.clone(),
                        sampler: i,
                        entry: None,
                        plugin: r.name.clone(),
                        plugin_version: r.version.clone(),
                        plugin_path: absolute(&r.path)?,
                        tag: spec.tag.clone(),
                        restrict: restrict.clone(),
                        seed,
                        chains: cfg.chains,
                        config: r.config.clone(),
                        config_hash: String::new(),
                        stop: r.stop.clone(),
                    };
                    runs.push(run.sealed(settings.precision).map_err(at)?);
                }
            }
        }
    }
    Ok(Plan {
        schema: Plan::SCHEMA,
        experiment: cfg.name.clone(),
        source: absolute(&exp.path)?,
        home: absolute(&store.home)?,
        settings,
        threads,
        diagnose,
        targets,
        runs,
        tasks: None,
        provenance: Provenance::now(),
    })
}

/// `p` made absolute (against the working folder), without resolving links.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

impl Plan {
    /// The job overrides of run `r`: its resolved config, as the one layer
    /// (attributed to the experiment file's sampler entry, for messages).
    pub fn overrides(&self, r: usize) -> Result<Overrides> {
        let run = &self.runs[r];
        let entry = run.entry.clone().unwrap_or_else(|| format!("samplers[{}]", run.sampler));
        let origin = format!("{}: {entry}", self.source.display());
        Ok(crate::config::parse_ron::<Overrides>(&run.config, &origin)?.with_origin(origin))
    }

    /// Writes the plan to `path`, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_record(path, self)
    }

    /// Reads a plan written by [`Plan::write`].
    pub fn read(path: &Path) -> Result<Plan> {
        read_record(path)
    }

    /// The latest plan of experiment `exp` (an error saying how to make one when there is none).
    pub fn latest(store: &Store, exp: &str) -> Result<Plan> {
        let path = store.plan_path(exp)?;
        if !path.exists() {
            store.existing_experiment_dir(exp)?;
            return Err(Error::invalid(format!("experiment `{exp}` has no workflow plan ({}): run `lh-host workflow sample` first", path.display())));
        }
        Plan::read(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_every_ingredient() {
        let budget = PlannedStop { until: None, budget: Some("grads=100".into()) };
        let base = KeyParts {
            target_id: "tgt_a",
            plugin: "hmc",
            plugin_version: "0.1.0",
            config: "(draws: 10)",
            seed: 1,
            chains: 4,
            tag: None,
            precision: None,
            restrict: None,
            stop: None,
        };
        let k = base.key();
        assert_eq!(k.len(), 16);
        assert_eq!(k, base.clone().key());
        let others = [
            KeyParts { target_id: "tgt_b", ..base.clone() },
            KeyParts { plugin: "sgld", ..base.clone() },
            KeyParts { plugin_version: "0.2.0", ..base.clone() },
            KeyParts { config: "(draws: 11)", ..base.clone() },
            KeyParts { seed: 2, ..base.clone() },
            KeyParts { chains: 2, ..base.clone() },
            KeyParts { tag: Some("t"), ..base.clone() },
            KeyParts { precision: Some(Precision::F32), ..base.clone() },
            KeyParts { restrict: Some("layer:1".into()), ..base.clone() },
            KeyParts { stop: Some(&budget), ..base.clone() },
        ];
        for o in others {
            assert_ne!(k, o.key(), "{o:?}");
        }
    }
}
