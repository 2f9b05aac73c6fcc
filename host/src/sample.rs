//! Stage B: run a sampler plugin on a target and write the run directory.
//!
//! ```text
//! $LH_HOME/experiments/<exp>/runs/<UTC time>-<plugin>-<target id>-<6 hex>/
//!     traces.npz     loss (C, T), llc (C, T), and each named stat (C, T)
//!     manifest.json  plugin, config, seed, backend, timings, work, λ̂, status
//! ```
//! The directory is assembled under a temporary name and renamed into place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lh_plugin_api::{Model, Plan, RSlice, RStr, SResult, SamplerError, Stat, TraceSink};
use serde::Serialize;

use crate::backend::{BackendFactory, BackendInfo};
use crate::config::Precision;
use crate::error::{Error, Result};
use crate::estimate::{self, Estimate};
use crate::npz::{self, Array};
use crate::plugins::{LoadedPlugin, PluginInfo};
use crate::posterior::{Posterior, Work};
use crate::store::{write_atomic, write_json_atomic, Store};
use crate::target::Target;

/// The host side of [`TraceSink`]: validates and keeps every draw.
pub struct Recorder {
    chains: usize,
    plan: Option<Plan>,
    /// loss[t][c].
    loss: Vec<Vec<f64>>,
    /// name → values[t][c], in the order first seen.
    stats: BTreeMap<String, Vec<Vec<f64>>>,
    phases: Vec<(String, Instant)>,
    stop: Arc<AtomicBool>,
    bar: indicatif::ProgressBar,
}

impl Recorder {
    /// A recorder for `chains` chains; `stop` is raised by Ctrl-C.
    pub fn new(chains: usize, stop: Arc<AtomicBool>, bar: indicatif::ProgressBar) -> Self {
        Self { chains, plan: None, loss: Vec::new(), stats: BTreeMap::new(), phases: Vec::new(), stop, bar }
    }

    /// Seconds spent in each announced phase, and in total since the first.
    pub fn timings(&self, end: Instant) -> BTreeMap<String, f64> {
        let mut t = BTreeMap::new();
        for (i, (name, start)) in self.phases.iter().enumerate() {
            let stop = self.phases.get(i + 1).map_or(end, |p| p.1);
            *t.entry(name.clone()).or_insert(0.0) += stop.duration_since(*start).as_secs_f64();
        }
        t
    }
}

impl TraceSink for Recorder {
    fn begin(&mut self, plan: Plan) -> SResult<()> {
        let r = if self.plan.is_some() {
            Err(SamplerError::fatal("begin() was called twice"))
        } else if plan.burn_in > plan.draws {
            Err(SamplerError::fatal(format!("burn-in {} exceeds the {} announced draws", plan.burn_in, plan.draws)))
        } else {
            self.plan = Some(plan);
            self.loss.reserve(plan.draws);
            Ok(())
        };
        r.into()
    }

    fn phase(&mut self, name: RStr<'_>) {
        self.phases.push((name.to_string(), Instant::now()));
    }

    fn record(&mut self, draw: usize, loss: RSlice<'_, f64>, stats: RSlice<'_, Stat<'_>>) -> SResult<()> {
        let r = (|| {
            let plan = self.plan.ok_or_else(|| SamplerError::fatal("record() before begin()"))?;
            if draw != self.loss.len() {
                return Err(SamplerError::fatal(format!("draw {draw} recorded out of order (expected {})", self.loss.len())));
            }
            if draw >= plan.draws {
                return Err(SamplerError::fatal(format!("the plugin wrote draw {draw} but announced only {} draws", plan.draws)));
            }
            if loss.len() != self.chains {
                return Err(SamplerError::fatal(format!("draw {draw} has {} losses for {} chains", loss.len(), self.chains)));
            }
            if let Some(c) = loss.iter().position(|l| !l.is_finite()) {
                return Err(SamplerError::fatal(format!("non-finite L_n ({}) for chain {c} at draw {draw}", loss[c])));
            }
            if draw > 0 && stats.len() != self.stats.len() {
                return Err(SamplerError::fatal(format!("draw {draw} has {} stats, earlier draws had {}", stats.len(), self.stats.len())));
            }
            for s in stats.iter() {
                if s.values.len() != self.chains {
                    return Err(SamplerError::fatal(format!("stat `{}` at draw {draw} has {} values for {} chains", s.name, s.values.len(), self.chains)));
                }
                let entry = self.stats.entry(s.name.to_string());
                let v = match (draw, entry) {
                    (0, e) => e.or_default(),
                    (_, std::collections::btree_map::Entry::Occupied(o)) => o.into_mut(),
                    (_, std::collections::btree_map::Entry::Vacant(_)) => {
                        return Err(SamplerError::fatal(format!("stat `{}` first appears at draw {draw}", s.name)));
                    }
                };
                v.push(s.values.to_vec());
            }
            self.loss.push(loss.to_vec());
            Ok(())
        })();
        r.into()
    }

    fn progress(&mut self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every announced draw was recorded.
    Complete,
    /// Stopped early (Ctrl-C or the plugin stopped short): traces kept.
    Incomplete,
    /// The plugin returned a fatal error: the draws so far are kept.
    Failed,
}

/// What a sample run is asked to do.
pub struct Request<'a> {
    pub target: &'a Target,
    pub plugin: LoadedPlugin,
    /// Resolved RON config.
    pub config: String,
    pub chains: usize,
    pub seed: u64,
    pub precision: Precision,
    /// Builds the evaluation backend (`--backend`).
    pub backends: &'a BackendFactory,
    pub experiment: String,
    pub stop: Arc<AtomicBool>,
    pub show_progress: bool,
}

/// The run's `manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub schema: u32,
    pub run_id: String,
    pub experiment: String,
    pub target_id: String,
    pub target_hash: String,
    pub plugin: PluginInfo,
    /// The resolved config passed to the plugin (RON).
    pub config: String,
    pub seed: u64,
    pub chains: usize,
    pub backend: BackendInfo,
    /// The precision the target was trained in (the run's is in `backend`).
    pub target_precision: Precision,
    pub status: Status,
    /// The fatal error, when status is `failed`.
    pub error: Option<String>,
    pub draws: usize,
    pub draws_announced: usize,
    pub burn_in: usize,
    pub independent_draws: bool,
    /// Seconds per phase the plugin announced, plus `total`.
    pub timings: BTreeMap<String, f64>,
    /// Counted by the host.
    pub work: Work,
    pub n: usize,
    pub beta: f64,
    pub gamma: f64,
    /// L_n(θ*) in the run's precision (λ̂ uses this one).
    pub l0: f64,
    /// L_n(θ*) in f64, from the target.
    pub target_l0: f64,
    pub llc: Option<Estimate>,
    pub tuned: BTreeMap<String, f64>,
    pub notes: String,
    pub created: String,
    pub host_version: String,
    pub git_commit: String,
}

/// Outcome of [`run`].
pub struct Outcome {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Runs the plugin on the target and writes the run directory. A fatal plugin
/// error still writes the draws recorded so far (status `failed`) and is then
/// returned as the error.
pub fn run(store: &Store, req: Request<'_>) -> Result<Outcome> {
    let Request { target, mut plugin, config, chains, seed, precision, backends, experiment, stop, show_progress } = req;
    let backend = target.backend(backends, chains, precision)?;
    let mut posterior = Posterior::new(backend, target.w_star.clone(), target.meta.beta, target.meta.gamma)?;
    let backend_info = posterior.backend_info();
    let bar = if show_progress {
        indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_prefix(plugin.info.name.clone());
    let mut recorder = Recorder::new(chains, stop.clone(), bar.clone());
    let start = Instant::now();
    let result = {
        use lh_plugin_api::{Model_TO, TraceSink_TO};
        use lh_plugin_api::abi_stable::sabi_trait::TD_Opaque;
        let model = Model_TO::from_ptr(lh_plugin_api::RMut::new(&mut posterior), TD_Opaque);
        let sink = TraceSink_TO::from_ptr(lh_plugin_api::RMut::new(&mut recorder), TD_Opaque);
        plugin.sampler.run(model, sink, RStr::from_str(&config), seed).into_result()
    };
    let end = Instant::now();
    bar.finish_and_clear();
    let mut timings = recorder.timings(end);
    timings.insert("total".into(), end.duration_since(start).as_secs_f64());

    let plan = recorder.plan.unwrap_or(Plan { draws: 0, burn_in: 0, independent: false });
    let draws = recorder.loss.len();
    let (status, error, summary) = match result {
        Ok(s) if draws == plan.draws && draws > 0 => (Status::Complete, None, Some(s)),
        Ok(s) => (Status::Incomplete, None, Some(s)),
        Err(e) => (Status::Failed, Some(format!("plugin `{}`: {}", plugin.info.name, e.message)), None),
    };
    let l0 = posterior.l0();
    let n_beta = posterior.n_beta();
    // loss as (C, T).
    let loss_ct: Vec<Vec<f64>> = (0..chains).map(|c| recorder.loss.iter().map(|row| row[c]).collect()).collect();
    let llc = (draws > plan.burn_in).then(|| estimate::llc(&loss_ct, plan.burn_in, n_beta, l0, plan.independent));

    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = created.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let tid = target.meta.target_id.trim_start_matches("tgt_");
    let rand6 = &crate::store::sha256_hex(format!("{created}{:?}{}", start, std::process::id()).as_bytes())[..6];
    let run_id = format!("{stamp}-{}-{}-{rand6}", plugin.info.name, &tid[..tid.len().min(8)]);
    let (tuned, notes) = summary.map_or_else(Default::default, |s| {
        (s.tuned.iter().map(|t| (t.name.to_string(), t.value)).collect(), s.notes.to_string())
    });
    let manifest = Manifest {
        schema: 1,
        run_id: run_id.clone(),
        experiment: experiment.clone(),
        target_id: target.meta.target_id.clone(),
        target_hash: target.hash.clone(),
        plugin: plugin.info.clone(),
        config,
        seed,
        chains,
        backend: backend_info,
        target_precision: target.meta.precision,
        status,
        error: error.clone(),
        draws,
        draws_announced: plan.draws,
        burn_in: plan.burn_in,
        independent_draws: plan.independent,
        timings,
        work: posterior.work.clone(),
        n: target.meta.n,
        beta: target.meta.beta,
        gamma: target.meta.gamma,
        l0,
        target_l0: target.meta.l0,
        llc,
        tuned,
        notes,
        created,
        host_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("LH_GIT_COMMIT").unwrap_or("unknown").into(),
    };

    let dir = write_run_dir(store, &experiment, &run_id, &manifest, &loss_ct, &recorder.stats, n_beta, l0)?;
    if let Some(e) = error {
        return Err(Error::Invalid(format!("{e} (the {draws} draws recorded before it are in {})", dir.display())));
    }
    Ok(Outcome { dir, manifest })
}

#[allow(clippy::too_many_arguments)]
fn write_run_dir(
    store: &Store,
    exp: &str,
    run_id: &str,
    manifest: &Manifest,
    loss_ct: &[Vec<f64>],
    stats: &BTreeMap<String, Vec<Vec<f64>>>,
    n_beta: f64,
    l0: f64,
) -> Result<PathBuf> {
    let runs = store.home.join("experiments").join(exp).join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| Error::io(&runs, e))?;
    let tmp = tempfile::Builder::new().prefix(".run-").tempdir_in(&runs).map_err(|e| Error::io(&runs, e))?;
    let (c, t) = (loss_ct.len(), loss_ct.first().map_or(0, Vec::len));
    let shape = [c, t];
    let loss_flat: Vec<f64> = loss_ct.concat();
    let llc_flat: Vec<f64> = loss_flat.iter().map(|l| n_beta * (l - l0)).collect();
    let stat_flat: Vec<(String, Vec<f64>)> = stats
        .iter()
        .map(|(name, rows)| (name.clone(), (0..c).flat_map(|ci| rows.iter().map(move |r| r[ci])).collect()))
        .collect();
    let mut arrays = vec![("loss", Array::F64(&shape, &loss_flat)), ("llc", Array::F64(&shape, &llc_flat))];
    for (name, v) in &stat_flat {
        if name != "loss" && name != "llc" {
            arrays.push((name.as_str(), Array::F64(&shape, v)));
        }
    }
    write_atomic(&tmp.path().join("traces.npz"), &npz::to_bytes(&arrays)?)?;
    write_json_atomic(&tmp.path().join("manifest.json"), manifest)?;
    let dir = runs.join(run_id);
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, &dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp_path);
        Error::io(&dir, e)
    })?;
    Ok(dir)
}

/// The top-level fields of a RON struct, each value kept as its raw text (so
/// enum identifiers, comments and formatting survive the merge).
struct RonFields(Vec<(String, Box<ron::value::RawValue>)>);

impl<'de> serde::Deserialize<'de> for RonFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = RonFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a struct like (key: value, …)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<RonFields, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, Box<ron::value::RawValue>>()? {
                    v.push(entry);
                }
                Ok(RonFields(v))
            }
            fn visit_unit<E>(self) -> std::result::Result<RonFields, E> {
                Ok(RonFields(Vec::new()))
            }
        }
        d.deserialize_any(Fields)
    }
}

/// Merges a plugin's default RON config with a config file and `key=value`
/// overrides. Every key must exist in the defaults; the result is RON struct syntax.
pub fn resolve_config(defaults: &str, plugin: &str, file: Option<&Path>, sets: &[String]) -> Result<String> {
    let mut cfg: BTreeMap<String, String> = crate::config::parse_ron::<RonFields>(defaults, &format!("plugin `{plugin}` default config"))?
        .0
        .into_iter()
        .map(|(k, v)| (k, v.get_ron().trim().to_string()))
        .collect();
    let known: Vec<String> = cfg.keys().cloned().collect();
    let mut apply = |k: String, v: String, origin: &str| -> Result<()> {
        match cfg.get_mut(&k) {
            Some(slot) => *slot = v,
            None => return Err(Error::invalid(format!("{origin}: unknown key `{k}` for plugin `{plugin}` (keys: {})", known.join(", ")))),
        }
        Ok(())
    };
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
        let origin = f.display().to_string();
        for (k, v) in crate::config::parse_ron::<RonFields>(&text, &origin)?.0 {
            apply(k, v.get_ron().trim().to_string(), &origin)?;
        }
    }
    for s in sets {
        let (k, v) = s.split_once('=').ok_or_else(|| Error::invalid(format!("--set {s}: expected key=value")))?;
        let raw: Box<ron::value::RawValue> = crate::config::parse_ron(v, &format!("--set {k}"))?;
        apply(k.trim().to_string(), raw.get_ron().trim().to_string(), &format!("--set {s}"))?;
    }
    // One field per line, the comma after a newline: a trailing comment in a value stays harmless.
    Ok(format!("({}\n)", cfg.iter().map(|(k, v)| format!("\n    {k}: {v}\n")).collect::<Vec<_>>().join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_merging_and_unknown_keys() {
        let d = "(steps: 100, step_size: 0.1, precond: none)";
        let r = resolve_config(d, "x", None, &["steps=5".into(), "precond=adam".into()]).unwrap();
        assert!(r.contains("steps: 5") && r.contains("precond: adam") && r.contains("step_size: 0.1"), "{r}");
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct C {
            steps: usize,
            step_size: f64,
            precond: P,
        }
        #[derive(serde::Deserialize, PartialEq, Debug)]
        #[serde(rename_all = "snake_case")]
        enum P {
            None,
            Adam,
        }
        assert_eq!(crate::config::parse_ron::<C>(&r, "merged").unwrap().precond, P::Adam);
        let e = resolve_config(d, "x", None, &["stepz=5".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown key `stepz` for plugin `x`"), "{e}");
        assert!(resolve_config(d, "x", None, &["steps".into()]).is_err());
    }
}
