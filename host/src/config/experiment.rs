//! Experiment files (`config/experiments/*.ron`): targets × samplers, each
//! target resolved from presets, shared settings and overrides into the
//! canonical [`TargetConfig`] that names it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::names::is_plain_name;
use super::parse::parse_ron;
use super::plugin_config::Overrides;
use super::presets::load_preset;
use super::sections::*;
use super::tune::TuneConfig;
use super::workflow::WorkflowPatch;
use crate::error::{Error, Result};
use crate::memory;
use crate::model::restrict::RestrictSpec;

/// Overrides of a target's sections, written under `overrides:` in an experiment file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetOverrides {
    pub model: Option<ModelPatch>,
    pub data: Option<DataPatch>,
    pub teacher: Option<TeacherConfig>,
    pub training: Option<TrainingPatch>,
    pub posterior: Option<PosteriorPatch>,
}

/// One target of an experiment: preset names plus overrides, or a quadratic
/// test target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Model preset name or path (MLP targets).
    #[serde(default)]
    pub model: Option<String>,
    /// Data preset name or path (MLP targets).
    #[serde(default)]
    pub data: Option<String>,
    /// Instead of model and data: the quadratic target L(θ) = ½‖θ − θ*‖²,
    /// whose λ̂ is exactly D·nβ/(2(nβ + γ)).
    #[serde(default)]
    pub quadratic: Option<QuadraticSpec>,
    /// Teacher preset name or path.
    #[serde(default = "default_teacher")]
    pub teacher: String,
    /// Seed of data generation and initialisation.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Per-target overrides.
    #[serde(default)]
    pub overrides: TargetOverrides,
}

/// Size of a quadratic target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuadraticSpec {
    /// Dimension D.
    pub dim: usize,
    /// The n that sets β (and nβ); there is no data.
    pub n: usize,
}

/// A resolved quadratic target: L(θ) = ½‖θ − θ*‖² with θ* = 0, so L0 = 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuadraticConfig {
    pub dim: usize,
    pub n: usize,
    pub posterior: PosteriorConfig,
}

/// What a target spec resolves to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetRecipe {
    /// A teacher–student MLP target: generate data, train to w*.
    Mlp(TargetConfig),
    /// A quadratic test target.
    Quadratic(QuadraticConfig),
}

fn default_teacher() -> String {
    "none".into()
}
fn default_seed() -> u64 {
    42
}

/// One sampler of an experiment: a plugin, its config overrides (RON values
/// checked against the plugin's keys when the plan is made) and a tag that
/// tells two entries of one plugin apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerSpec {
    /// Plugin name (`hmc`, `sgld`, …) or path to a plugin library.
    pub plugin: String,
    /// Plugin config overrides, key → RON value: the same form as `--config` and `--set`.
    #[serde(default)]
    pub overrides: Overrides,
    /// A plain name (letters, digits, `_`, `.`, `+`, `-`) that tells this entry
    /// apart from others of the same plugin (`rmsprop`); none by default.
    #[serde(default)]
    pub tag: Option<String>,
    /// Sample only these coordinates, the rest at θ* (as `--restrict`: `"layer:2"`,
    /// `"W1,b1"`, `"each-layer"`, or a `.npy` mask, relative to the experiment file).
    #[serde(default)]
    pub restrict: Option<RestrictSpec>,
    /// Run until converged, as `--until` (`"rhat=1.01,ess=400"`); needs `budget`.
    #[serde(default)]
    pub until: Option<String>,
    /// The most each run may spend, as `--budget` (`"grads=20000"` per chain, `"time=30m"`).
    #[serde(default)]
    pub budget: Option<String>,
}

impl SamplerSpec {
    /// The tag, or the plugin name when there is none: how tables name the entry.
    pub fn label(&self) -> String {
        match &self.tag {
            Some(t) => t.clone(),
            None => self.plugin.clone(),
        }
    }
}

/// An experiment file (`config/experiments/*.ron`): the grid targets × samplers × seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Experiment name (the folder under `experiments/`).
    pub name: String,
    /// Training settings shared by every target (per-target overrides win).
    #[serde(default)]
    pub training: TrainingPatch,
    /// Posterior settings shared by every target (per-target overrides win).
    #[serde(default)]
    pub posterior: PosteriorPatch,
    /// Number of chains per sampler run.
    #[serde(default = "default_chains")]
    pub chains: usize,
    /// The sampling seeds: every sampler runs once per seed on every target.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// The targets.
    pub targets: Vec<TargetSpec>,
    /// The samplers to run on every target.
    #[serde(default)]
    pub samplers: Vec<SamplerSpec>,
    /// How `lh-host workflow sample` runs the grid (threads, SLURM resources); `--set` wins.
    #[serde(default)]
    pub workflow: WorkflowPatch,
    /// What `lh-host workflow tune` searches (see [`TuneConfig`]); other commands ignore it.
    #[serde(default)]
    pub tune: Option<TuneConfig>,
}

fn default_chains() -> usize {
    4
}

/// The seed `sample` and `run` use by default.
fn default_seeds() -> Vec<u64> {
    vec![12345]
}

/// A fully resolved target: the canonical config that names it (see [`TargetConfig::id`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub seed: u64,
    pub model: crate::model::MlpSpec,
    pub data: DataConfig,
    pub teacher: TeacherConfig,
    pub training: TrainingConfig,
    pub posterior: PosteriorConfig,
}

/// Loaded experiment file with every target resolved.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub config: ExperimentConfig,
    pub targets: Vec<TargetRecipe>,
    pub path: PathBuf,
}

/// Reads an experiment file and resolves every target (presets, shared
/// settings, overrides, width inference) and validates it.
pub fn load_experiment(path: &Path) -> Result<Experiment> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_experiment(&text, path)
}

/// Parses experiment text as if read from `path` (presets by path resolve relative to it).
pub fn parse_experiment(text: &str, path: &Path) -> Result<Experiment> {
    let mut config: ExperimentConfig = parse_ron(text, &path.display().to_string())?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    for s in &mut config.samplers {
        if let Some(RestrictSpec::Mask(mask)) = &mut s.restrict {
            *mask = base_dir.join(&*mask);
        }
    }
    let file = path.display();
    crate::ensure!(!config.targets.is_empty(), "{file}: `targets` is empty");
    crate::ensure!(config.chains >= 1, "{file}: `chains` must be ≥ 1");
    crate::ensure!(!config.seeds.is_empty(), "{file}: `seeds` is empty");
    if let Some((i, s)) = config.seeds.iter().enumerate().find(|(i, s)| config.seeds[..*i].contains(s)) {
        return Err(Error::invalid(format!("{file}: seeds[{i}] = {s} is given twice")));
    }
    for (i, s) in config.samplers.iter_mut().enumerate() {
        s.overrides.origin = format!("{file}: samplers[{i}].overrides");
        if let Some(t) = &s.tag {
            crate::ensure!(is_plain_name(t), "{file}: samplers[{i}].tag = {t:?} is not a plain name (letters, digits, `_`, `.`, `+`, `-`)");
        }
    }
    for (i, s) in config.samplers.iter().enumerate() {
        if let Some(j) = config.samplers[..i].iter().position(|o| o.plugin == s.plugin && o.tag == s.tag && o.restrict == s.restrict) {
            return Err(Error::invalid(format!(
                "{file}: samplers[{i}] has the plugin, tag and restriction of samplers[{j}]: give one of them a distinct `tag`"
            )));
        }
    }
    config.workflow.validate(&file.to_string())?;
    if let Some(t) = &mut config.tune {
        t.prepare(&file.to_string())?;
    }
    let targets = config
        .targets
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            resolve_target(spec, &config.training, &config.posterior, base_dir).map_err(|e| e.context(&format!("{}: targets[{i}]", path.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Experiment { config, targets, path: path.to_path_buf() })
}

/// Resolves one target spec into its canonical config.
pub fn resolve_target(spec: &TargetSpec, shared_training: &TrainingPatch, shared_posterior: &PosteriorPatch, base_dir: &Path) -> Result<TargetRecipe> {
    let (model_name, data_name) = match (&spec.model, &spec.data, &spec.quadratic) {
        (None, None, Some(q)) => {
            crate::ensure!(
                spec.overrides.model.is_none() && spec.overrides.data.is_none() && spec.overrides.teacher.is_none() && spec.overrides.training.is_none(),
                "a quadratic target takes only posterior overrides"
            );
            crate::ensure!(q.dim >= 1 && q.n >= 1, "quadratic needs dim ≥ 1 and n ≥ 1");
            let mut posterior = PosteriorConfig::default();
            shared_posterior.apply(&mut posterior);
            if let Some(p) = &spec.overrides.posterior {
                p.apply(&mut posterior);
            }
            posterior.validate()?;
            memory::check(&format!("quadratic.dim = {}", q.dim), 8.0 * 8.0 * q.dim as f64)?;
            return Ok(TargetRecipe::Quadratic(QuadraticConfig { dim: q.dim, n: q.n, posterior }));
        }
        (Some(m), Some(d), None) => (m, d),
        _ => return Err(Error::invalid("a target needs `model` and `data`, or `quadratic` alone")),
    };
    let mut model: ModelConfig = load_preset("model", model_name, base_dir)?;
    let mut data: DataConfig = load_preset("data", data_name, base_dir)?;
    let mut teacher: TeacherConfig = load_preset("teacher", &spec.teacher, base_dir)?;
    let mut training = TrainingConfig::default();
    let mut posterior = PosteriorConfig::default();
    shared_training.apply(&mut training);
    shared_posterior.apply(&mut posterior);
    let o = &spec.overrides;
    if let Some(p) = &o.model {
        p.apply(&mut model);
    }
    if let Some(p) = &o.data {
        p.apply(&mut data);
    }
    if let Some(t) = &o.teacher {
        teacher = t.clone();
    }
    if let Some(p) = &o.training {
        p.apply(&mut training);
    }
    if let Some(p) = &o.posterior {
        p.apply(&mut posterior);
    }
    let target = TargetConfig { seed: spec.seed, model: model.resolve()?, data, teacher, training, posterior };
    target.validate()?;
    Ok(TargetRecipe::Mlp(target))
}

impl TargetConfig {
    /// Checks every section.
    pub fn validate(&self) -> Result<()> {
        self.data.validate(self.model.in_dim)?;
        self.check_memory()?;
        self.posterior.validate()?;
        let t = &self.training;
        crate::ensure!(t.lr > 0.0 && t.lr.is_finite(), "training.lr must be > 0, got {}", t.lr);
        crate::ensure!(t.log_every >= 1, "training.log_every must be ≥ 1");
        if let Some(b) = t.batch_size {
            crate::ensure!(b >= 1, "training.batch_size must be ≥ 1");
        }
        match &self.teacher {
            TeacherConfig::StudentArch => {}
            TeacherConfig::Mlp { widths, dropout, .. } => {
                crate::ensure!(widths.iter().all(|w| *w >= 1), "teacher.widths must all be ≥ 1");
                let sizes: Vec<usize> = [self.model.in_dim].into_iter().chain(widths.iter().copied()).chain([self.model.out_dim]).collect();
                let d = crate::model::param_count(&sizes, true).map_or(f64::INFINITY, |d| d as f64);
                memory::check(&format!("teacher.widths = {widths:?} ({d} parameters)"), 8.0 * d)?;
                crate::ensure!((0.0..1.0).contains(dropout), "teacher.dropout must be in [0, 1)");
            }
            TeacherConfig::DeepLinear { widths, rank } => {
                let min = widths.iter().copied().chain([self.model.in_dim, self.model.out_dim]).min().unwrap_or(0);
                crate::ensure!(*rank <= min, "teacher.rank {rank} exceeds the smallest width {min}");
            }
        }
        Ok(())
    }

    /// Refuses, by key, data or a model too large for this machine's memory:
    /// building holds X and Y (train and test, several copies: generated,
    /// trained on, written) and about six copies of θ (teacher, w*, Adam's
    /// moments, gradient).
    fn check_memory(&self) -> Result<()> {
        let d = &self.data;
        let m = &self.model;
        let rows = d.n as f64 + d.n_test as f64;
        let data_bytes = 8.0 * 3.0 * rows * (m.in_dim as f64 + 2.0 * m.out_dim as f64);
        memory::check(&format!("data.n = {}, data.n_test = {} ({} → {} columns)", d.n, d.n_test, m.in_dim, m.out_dim), data_bytes)?;
        let params = 8.0 * 6.0 * m.n_params() as f64;
        memory::check(&format!("model.widths = {:?} ({} parameters)", m.widths, m.n_params()), params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGETS: &str = r#"targets: [(quadratic: (dim: 3, n: 10))]"#;

    #[test]
    fn a_sampler_restriction_is_checked_and_its_mask_found_beside_the_file() {
        let text = format!(
            r#"(name: "e", {TARGETS}, samplers: [(plugin: "hmc", restrict: "layer:2", overrides: (draws: 2000)), (plugin: "hmc", restrict: "m.npy"), (plugin: "sgld")])"#
        );
        let e = parse_experiment(&text, Path::new("exps/e.ron")).unwrap();
        let r: Vec<Option<String>> = e.config.samplers.iter().map(|s| s.restrict.as_ref().map(ToString::to_string)).collect();
        assert_eq!(r, [Some("layer:2".to_string()), Some("exps/m.npy".to_string()), None]);
        let bad = format!(r#"(name: "e", {TARGETS}, samplers: [(plugin: "hmc", restrict: "conv1")])"#);
        let err = parse_experiment(&bad, Path::new("e.ron")).unwrap_err().to_string();
        assert!(err.starts_with("e.ron:1:") && err.contains("restriction `conv1`: unknown part"), "{err}");
    }
}
