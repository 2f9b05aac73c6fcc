//! Stage C for one run: `analysis.json` (λ̂ recomputed from the traces per
//! chain and pooled, its SE and a block-bootstrap SE, R̂ / ESS / mean of L_n
//! and of every recorded statistic, the sampler-specific summaries, work and
//! work-normalised variance) and the run's figures under `diagnostics/`
//! (see [`crate::run_plots`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diagnostics;
use crate::error::{Error, Result};
use crate::estimate::{self, Estimate};
use crate::npz::Npz;
use crate::store::{read_json, write_json_atomic};

/// How much `diagnose` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// analysis.json and every per-run figure except the WNV curve.
    #[default]
    Light,
    /// Also the work-normalised variance curve (wnv.png).
    Full,
}

/// Seed of the block bootstrap (fixed, so analysis.json is reproducible).
pub const BOOTSTRAP_SEED: u64 = 0x6c68_626f_6f74;
/// Bootstrap replicates.
pub const BOOTSTRAP_REPLICATES: usize = 1000;

/// Summary of one recorded trace after burn-in.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub mean: f64,
    /// Rank-normalised split R̂ (none for independent draws or too few draws).
    pub rhat: Option<f64>,
    pub ess_bulk: Option<f64>,
    pub ess_tail: Option<f64>,
}

/// The block-bootstrap standard error of pooled λ̂.
#[derive(Debug, Clone, Serialize)]
pub struct Bootstrap {
    /// Null where no bootstrap applies (see `notes`).
    pub se: Option<f64>,
    /// Markov draws: the moving-block length b = max(⌈T^{1/3}⌉, ⌈2τ⌉), τ = C·T /
    /// ESS_bulk the integrated autocorrelation time of λ̂'s draws; no SE when b
    /// would exceed T/4 (too few blocks: the bootstrap collapses towards 0).
    /// Independent draws: T, whole chains are resampled (each is its own fit).
    pub block_len: usize,
    pub replicates: usize,
    pub seed: u64,
}

/// Mean of a per-chain statistic over the kept draws.
#[derive(Debug, Clone, Serialize)]
pub struct ChainMeans {
    pub mean: f64,
    pub per_chain: Vec<f64>,
}

/// MCLMC's energy change per step, over the kept draws of every chain.
#[derive(Debug, Clone, Serialize)]
pub struct EnergyChange {
    pub mean: f64,
    /// Standard deviation (ddof 1).
    pub sd: f64,
    pub mean_abs: f64,
    pub max_abs: f64,
}

/// HMC's energy after burn-in.
#[derive(Debug, Clone, Serialize)]
pub struct HmcEnergy {
    /// Bayesian fraction of missing information per chain (ArviZ's `bfmi`; below ~0.3 is poor).
    pub bfmi_per_chain: Vec<f64>,
    pub bfmi_min: f64,
}

/// Variational plugins' ELBO at the end of optimisation (the last burn-in record).
#[derive(Debug, Clone, Serialize)]
pub struct Elbo {
    pub final_mean: f64,
    pub final_per_chain: Vec<f64>,
}

/// Work done by the run, from its manifest.
#[derive(Debug, Clone, Serialize)]
pub struct WorkSummary {
    /// Gradient evaluations over all chains, in full-batch equivalents
    /// (a minibatch of b rows counts b/n).
    pub grad_evals_fge: f64,
    pub grad_evals_fge_per_chain: f64,
    /// Full-batch loss-only evaluations per chain.
    pub loss_evals_per_chain: u64,
    /// Wall-clock seconds of the whole run (`timings.total`).
    pub seconds: f64,
}

/// Work-normalised variance Var(λ̂)·work = SE²·work: lower is a more efficient sampler.
#[derive(Debug, Clone, Serialize)]
pub struct Wnv {
    /// SE² × gradient evaluations (FGE, all chains); none when the plugin took no gradients.
    pub grad_evals: Option<f64>,
    /// SE² × seconds.
    pub seconds: Option<f64>,
}

/// A run's `analysis.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub run_id: String,
    pub plugin: String,
    pub target_id: String,
    pub status: String,
    pub created: String,
    pub mode: Mode,
    pub chains: usize,
    pub draws: usize,
    pub burn_in: usize,
    pub independent_draws: bool,
    /// λ̂ per chain and pooled, SE (MCSE; sd(chain λ̂)/√C for independent draws), R̂ and ESS of the draws.
    pub llc: Estimate,
    pub llc_bootstrap: Bootstrap,
    /// `loss` and every recorded statistic, after burn-in.
    pub traces: BTreeMap<String, TraceSummary>,
    /// Mean acceptance rate after burn-in (when the plugin records `acceptance_rate`).
    pub acceptance: Option<ChainMeans>,
    /// Divergent transitions after burn-in (when the plugin records `is_divergent`).
    pub divergences: Option<u64>,
    /// When the plugin records `energy` (HMC).
    pub energy: Option<HmcEnergy>,
    /// When the plugin records `energy_change` (MCLMC).
    pub energy_change: Option<EnergyChange>,
    /// When the plugin records `elbo` (variational plugins).
    pub elbo: Option<Elbo>,
    pub work: WorkSummary,
    pub wnv: Wnv,
    /// Bulk ESS of λ̂ per gradient evaluation (FGE, all chains).
    pub ess_per_grad_eval: Option<f64>,
    /// Bulk ESS of λ̂ per second.
    pub ess_per_second: Option<f64>,
    /// What was left out and why.
    pub notes: Vec<String>,
    /// The figures written under diagnostics/.
    pub plots: Vec<String>,
}

/// The manifest fields the analysis reads.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ManifestView {
    pub run_id: String,
    pub target_id: String,
    pub status: String,
    #[serde(default)]
    pub created: String,
    pub chains: usize,
    pub burn_in: usize,
    pub independent_draws: bool,
    pub l0: f64,
    pub plugin: PluginView,
    pub work: WorkView,
    #[serde(default)]
    pub timings: BTreeMap<String, f64>,
    pub n: usize,
    pub beta: f64,
}

/// The plugin's name, from the manifest.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PluginView {
    pub name: String,
}

/// The manifest's work counters.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct WorkView {
    pub grad_evals_fge: f64,
    #[serde(default)]
    pub loss_evals: u64,
}

/// A run directory read back: its manifest and its traces as (C, T) rows.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub manifest: ManifestView,
    pub loss: Vec<Vec<f64>>,
    /// Every recorded statistic but `loss` and `llc`, (C, T).
    pub stats: BTreeMap<String, Vec<Vec<f64>>>,
}

impl Run {
    /// Reads `manifest.json` and `traces.npz` of the run in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest: ManifestView = read_json(&dir.join("manifest.json"))?;
        let tpath = dir.join("traces.npz");
        let mut traces = Npz::open(&tpath)?;
        let (shape, flat) = traces.f64("loss")?;
        let loss = rows(&shape, flat, "loss", &tpath)?;
        let draws = loss.first().map_or(0, Vec::len);
        if loss.len() != manifest.chains || draws <= manifest.burn_in {
            return Err(Error::bad_file(&tpath, format!("{} chains × {draws} draws: nothing after the burn-in of {}", loss.len(), manifest.burn_in)));
        }
        let mut stats = BTreeMap::new();
        for name in traces.names() {
            if name != "loss" && name != "llc" {
                let (shape, flat) = traces.f64(&name)?;
                stats.insert(name.clone(), rows(&shape, flat, &name, &tpath)?);
            }
        }
        Ok(Self { dir: dir.to_path_buf(), manifest, loss, stats })
    }

    /// Draws per chain.
    pub fn draws(&self) -> usize {
        self.loss.first().map_or(0, Vec::len)
    }

    /// nβ.
    pub fn n_beta(&self) -> f64 {
        self.manifest.n as f64 * self.manifest.beta
    }

    /// The per-draw λ̂ values after burn-in, (C, T − burn_in).
    pub fn llc_draws(&self) -> Vec<Vec<f64>> {
        estimate::llc_draws(&self.loss, self.manifest.burn_in, self.n_beta(), self.manifest.l0)
    }

    /// Statistic `name` after burn-in, when recorded.
    pub fn kept(&self, name: &str) -> Option<Vec<Vec<f64>>> {
        self.stats.get(name).map(|x| x.iter().map(|c| c[self.manifest.burn_in..].to_vec()).collect())
    }

    /// Total wall-clock seconds.
    pub fn seconds(&self) -> f64 {
        self.manifest.timings.get("total").copied().unwrap_or(0.0)
    }
}

/// (C, T) rows of a trace array.
fn rows(shape: &[usize], flat: Vec<f64>, name: &str, path: &Path) -> Result<Vec<Vec<f64>>> {
    if shape.len() != 2 {
        return Err(Error::bad_file(path, format!("`{name}` must be (chains, draws), has shape {shape:?}")));
    }
    Ok(flat.chunks(shape[1].max(1)).map(<[f64]>::to_vec).take(shape[0]).collect())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn summarize(x: &[Vec<f64>], independent: bool) -> TraceSummary {
    let flat = x.concat();
    let mean = mean(&flat);
    let finite = |v: f64| v.is_finite().then_some(v);
    if independent {
        return TraceSummary { mean, rhat: None, ess_bulk: Some(flat.len() as f64), ess_tail: None };
    }
    TraceSummary {
        mean,
        rhat: finite(diagnostics::rhat(x)),
        ess_bulk: finite(diagnostics::ess_bulk(x)),
        ess_tail: finite(diagnostics::ess_tail(x)),
    }
}

fn energy_change(x: &[Vec<f64>]) -> EnergyChange {
    let flat: Vec<f64> = x.concat();
    let m = mean(&flat);
    let sd = (flat.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (flat.len() as f64 - 1.0).max(1.0)).sqrt();
    let abs: Vec<f64> = flat.iter().map(|v| v.abs()).collect();
    EnergyChange { mean: m, sd, mean_abs: mean(&abs), max_abs: abs.iter().copied().fold(0.0, f64::max) }
}

/// Computes the analysis of a loaded run (no files written; `plots` is empty).
pub fn analyse(run: &Run, mode: Mode) -> Analysis {
    let m = &run.manifest;
    let independent = m.independent_draws;
    let llc = estimate::llc(&run.loss, m.burn_in, run.n_beta(), m.l0, independent);
    let draws = run.llc_draws();
    let t = llc.draws_used;
    let mut notes = Vec::new();
    let (block_len, boot_se) = if independent {
        (t, diagnostics::chain_bootstrap_se(&draws, BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED))
    } else {
        let tau = (m.chains * t) as f64 / llc.ess_bulk;
        let cube_root = (t as f64).cbrt().ceil();
        let b = if tau.is_finite() { cube_root.max((2.0 * tau).ceil()) } else { cube_root } as usize;
        if b > t / 4 {
            notes.push(format!("no block bootstrap: blocks of {b} draws (2τ, τ = {tau:.1}) leave fewer than 4 per chain of {t}"));
            (b, f64::NAN)
        } else {
            (b, diagnostics::block_bootstrap_se(&draws, b, BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED))
        }
    };
    let llc_bootstrap = Bootstrap { se: boot_se.is_finite().then_some(boot_se), block_len, replicates: BOOTSTRAP_REPLICATES, seed: BOOTSTRAP_SEED };

    let kept_loss: Vec<Vec<f64>> = run.loss.iter().map(|c| c[m.burn_in..].to_vec()).collect();
    let mut traces = BTreeMap::new();
    traces.insert("loss".to_string(), summarize(&kept_loss, independent));
    for name in run.stats.keys() {
        let x = run.kept(name).unwrap_or_default();
        traces.insert(name.clone(), summarize(&x, independent));
    }
    let divergences = run.kept("is_divergent").map(|x| x.iter().flatten().filter(|v| **v != 0.0).count() as u64);
    let acceptance = run.kept("acceptance_rate").map(|x| {
        let per_chain: Vec<f64> = x.iter().map(|c| mean(c)).collect();
        ChainMeans { mean: mean(&x.concat()), per_chain }
    });
    let energy = run.kept("energy").map(|x| {
        let bfmi_per_chain: Vec<f64> = x.iter().map(|c| diagnostics::bfmi(c)).collect();
        HmcEnergy { bfmi_min: bfmi_per_chain.iter().copied().fold(f64::INFINITY, f64::min), bfmi_per_chain }
    });
    let energy_change = run.kept("energy_change").map(|x| energy_change(&x));
    let elbo = run.stats.get("elbo").map(|x| {
        let at = if m.burn_in > 0 { m.burn_in - 1 } else { run.draws() - 1 };
        let final_per_chain: Vec<f64> = x.iter().map(|c| c[at]).collect();
        Elbo { final_mean: mean(&final_per_chain), final_per_chain }
    });

    let seconds = run.seconds();
    let work = WorkSummary {
        grad_evals_fge: m.work.grad_evals_fge * m.chains as f64,
        grad_evals_fge_per_chain: m.work.grad_evals_fge,
        loss_evals_per_chain: m.work.loss_evals,
        seconds,
    };
    let var = llc.se * llc.se;
    let wnv = Wnv {
        grad_evals: (work.grad_evals_fge > 0.0).then_some(var * work.grad_evals_fge),
        seconds: (seconds > 0.0).then_some(var * seconds),
    };
    let ess_per_grad_eval = (work.grad_evals_fge > 0.0).then(|| llc.ess_bulk / work.grad_evals_fge);
    let ess_per_second = (seconds > 0.0).then(|| llc.ess_bulk / seconds);
    if independent {
        notes.insert(0, "independent draws: R̂, autocorrelation and rank plots are not computed; SE = sd(chain λ̂)/√C (each chain is its own fit) and ESS = N".to_string());
    }
    if m.chains < 2 {
        notes.push("one chain: R̂ is that of its two halves; the convergence plot's between-chain band and the WNV curve need at least 2".to_string());
    }
    Analysis {
        run_id: m.run_id.clone(),
        plugin: m.plugin.name.clone(),
        target_id: m.target_id.clone(),
        status: m.status.clone(),
        created: m.created.clone(),
        mode,
        chains: m.chains,
        draws: run.draws(),
        burn_in: m.burn_in,
        independent_draws: independent,
        llc,
        llc_bootstrap,
        traces,
        acceptance,
        divergences,
        energy,
        energy_change,
        elbo,
        work,
        wnv,
        ess_per_grad_eval,
        ess_per_second,
        notes,
        plots: Vec::new(),
    }
}

/// Diagnoses the run in `dir`: writes `diagnostics/*.png` and `analysis.json`.
pub fn diagnose(dir: &Path, mode: Mode) -> Result<(PathBuf, Analysis)> {
    let run = Run::load(dir)?;
    let mut analysis = analyse(&run, mode);
    let (plots, skipped) = crate::run_plots::write_all(&run, &analysis, mode)?;
    analysis.plots = plots;
    analysis.notes.extend(skipped);
    let out = dir.join("analysis.json");
    write_json_atomic(&out, &analysis)?;
    Ok((out, analysis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npz::{self, Array};

    /// A synthetic variational run: 20 optimisation records (burn-in, with
    /// `elbo`) then 40 independent draws per chain.
    fn vi_run(dir: &Path) {
        let (c, t, burn_in) = (2, 60, 20);
        let loss: Vec<f64> = (0..c * t).map(|i| 1.0 + 0.01 * ((i * 7919) % 13) as f64 + if i % t < burn_in { 1.0 / (1 + i % t) as f64 } else { 0.0 }).collect();
        let elbo: Vec<f64> = (0..c * t).map(|i| -100.0 + (i % t).min(burn_in) as f64 + 0.1 * (i / t) as f64).collect();
        let shape = [c, t];
        let llc: Vec<f64> = loss.iter().map(|l| 10.0 * (l - 1.0)).collect();
        let bytes = npz::to_bytes(&[("loss", Array::F64(&shape, &loss)), ("llc", Array::F64(&shape, &llc)), ("elbo", Array::F64(&shape, &elbo))]).unwrap();
        std::fs::write(dir.join("traces.npz"), bytes).unwrap();
        let m = serde_json::json!({
            "run_id": "r", "target_id": "tgt_x", "status": "complete", "created": "2026-01-01T00:00:00Z",
            "chains": c, "burn_in": burn_in, "independent_draws": true, "l0": 1.0, "n": 10, "beta": 1.0,
            "plugin": {"name": "vi"}, "work": {"grad_evals_fge": 4.0, "loss_evals": 40}, "timings": {"total": 2.0},
        });
        std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    }

    #[test]
    fn independent_draws_get_iid_errors_and_an_elbo_plot() {
        let dir = tempfile::tempdir().unwrap();
        vi_run(dir.path());
        let (_, a) = diagnose(dir.path(), Mode::Full).unwrap();
        // Two chains, each its own fit: SE = sd(chain λ̂)/√2 = |λ̂₀ − λ̂₁|/2.
        let per_chain: Vec<f64> = Run::load(dir.path()).unwrap().llc_draws().iter().map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
        assert!((a.llc.se - (per_chain[0] - per_chain[1]).abs() / 2.0).abs() < 1e-12 && a.llc.rhat.is_none(), "{}", a.llc.se);
        assert_eq!(a.llc_bootstrap.block_len, 40, "whole chains are resampled");
        assert!(a.llc_bootstrap.se.is_some_and(|se| se > 0.0));
        let e = a.elbo.as_ref().unwrap();
        assert!((e.final_per_chain[0] + 81.0).abs() < 1e-12 && (e.final_per_chain[1] + 80.9).abs() < 1e-12, "{e:?}");
        assert!((a.wnv.grad_evals.unwrap() - a.llc.se.powi(2) * 8.0).abs() < 1e-15);
        assert!(a.notes[0].starts_with("independent draws"), "{:?}", a.notes);
        for f in ["trace.png", "llc_convergence_combined.png", "elbo.png", "wnv.png"] {
            assert!(a.plots.iter().any(|p| p == f) && dir.path().join("diagnostics").join(f).exists(), "{f}: {:?}", a.plots);
        }
        assert!(!a.plots.iter().any(|p| p == "rank.png" || p == "autocorr.png"));
    }
}
