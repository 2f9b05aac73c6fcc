//! A target's metadata record (`meta.json`, besides the store's hash
//! fields): where it came from (the canonical config its id hashes), its
//! size, L0, β and γ. (When and by what it was built is in the object's
//! provenance.json, outside the object hash.)

use serde::{Deserialize, Serialize};

use crate::config::{PosteriorConfig, QuadraticConfig, TargetConfig, TargetRecipe};
use crate::model::{LossKind, MlpSpec, Precision};
use crate::store::sha256_hex;

/// Where a target came from; its canonical JSON is what the id hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetSource {
    /// Built by `lh-host build` from a config.
    Built(TargetConfig),
    /// Imported by `lh-host import` from an npz of a network trained elsewhere.
    Imported(ImportedConfig),
    /// The quadratic test target L(θ) = ½‖θ − θ*‖², θ* = 0.
    Quadratic(QuadraticConfig),
}

/// The config of an imported target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportedConfig {
    /// sha256 of the imported arrays' values (X, Y, w_star, X_test, Y_test), so
    /// that the same network gives the same id however the file was written.
    pub arrays_sha256: String,
    pub model: MlpSpec,
    pub posterior: PosteriorConfig,
}

impl From<&TargetRecipe> for TargetSource {
    fn from(recipe: &TargetRecipe) -> Self {
        match recipe {
            TargetRecipe::Mlp(c) => TargetSource::Built(c.clone()),
            TargetRecipe::Quadratic(q) => TargetSource::Quadratic(q.clone()),
        }
    }
}

/// The id the target of `recipe` has (and will have, once built).
pub fn recipe_id(recipe: &TargetRecipe) -> String {
    TargetSource::from(recipe).id()
}

impl TargetSource {
    /// Canonical JSON (every key sorted).
    pub fn canonical_json(&self) -> String {
        // serde_json's map is a BTreeMap, so `to_value` sorts every key.
        let v = serde_json::to_value(self).expect("target config serialises");
        serde_json::to_string(&v).expect("json value serialises")
    }
    /// `tgt_` + the first 12 hex digits of sha256(canonical JSON).
    pub fn id(&self) -> String {
        format!("tgt_{}", &sha256_hex(self.canonical_json().as_bytes())[..12])
    }
    /// The MLP, for MLP targets.
    pub fn mlp(&self) -> Option<&MlpSpec> {
        match self {
            TargetSource::Built(c) => Some(&c.model),
            TargetSource::Imported(c) => Some(&c.model),
            TargetSource::Quadratic(_) => None,
        }
    }
    /// The posterior settings.
    pub fn posterior(&self) -> &PosteriorConfig {
        match self {
            TargetSource::Built(c) => &c.posterior,
            TargetSource::Imported(c) => &c.posterior,
            TargetSource::Quadratic(c) => &c.posterior,
        }
    }
    /// `built`, `imported` or `quadratic`.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetSource::Built(_) => "built",
            TargetSource::Imported(_) => "imported",
            TargetSource::Quadratic(_) => "quadratic",
        }
    }
}

/// A summary of training, recorded in `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub steps_run: usize,
    pub early_stopped: bool,
    pub final_test_loss: Option<f64>,
}

/// A target's `meta.json` (besides the store's hash fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetMeta {
    #[serde(rename = "type")]
    pub object_type: String,
    pub target_id: String,
    /// The config snapshot.
    pub source: TargetSource,
    /// Number of parameters D.
    pub d: usize,
    pub n: usize,
    pub n_test: usize,
    pub loss: LossKind,
    /// L_n(w*), in f64.
    pub l0: f64,
    pub beta: f64,
    pub gamma: f64,
    /// Precision w* was trained in (f64 for imports: stored as given).
    pub precision: Precision,
    pub training: Option<TrainingSummary>,
}

impl TargetMeta {
    /// Target metadata with the build-independent fields filled in.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &str,
        source: TargetSource,
        d: usize,
        n: usize,
        n_test: usize,
        l0: f64,
        precision: Precision,
        training: Option<TrainingSummary>,
    ) -> TargetMeta {
        let p = source.posterior();
        TargetMeta {
            object_type: "target".into(),
            target_id: id.to_string(),
            d,
            n,
            n_test,
            loss: p.loss,
            l0,
            beta: p.beta(n),
            gamma: p.gamma(d),
            precision,
            training,
            source,
        }
    }
}
