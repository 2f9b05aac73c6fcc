//! Stage C for one run: `analysis.json` (λ̂ recomputed from the traces per
//! chain and pooled, its SE and a block-bootstrap SE, R̂ / ESS / mean of L_n
//! and of every recorded statistic, the sampler-specific summaries, work and
//! work-normalised variance) and the run's figures under `diagnostics/`
//! (see [`super::figures`]).

use std::collections::BTreeMap;

use lh_plugin_api::stat_names;
use serde::{Deserialize, Serialize};

use super::run::Run;
use crate::estimate::mcmc::{self, mean};
use crate::estimate::{self, Estimate};
use crate::sample::observe::trace_name;
use crate::sample::{RestrictionInfo, Status};
use crate::store::record::Record;

/// How much `diagnose` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
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
/// Var(nβ·L_n)/λ̂ outside this band gets a note (exact samplers on this
/// project's converged runs: 0.87–1.05; MCLMC on ReLU 8-32-32-1, `base` and the
/// β0 = 22.5 deep linear network: 4–18).
pub const VARIANCE_RATIO_BAND: (f64, f64) = (0.5, 1.5);

/// Summary of one recorded trace after burn-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub mean: f64,
    /// Rank-normalised split R̂ (none for independent draws or too few draws).
    pub rhat: Option<f64>,
    pub ess_bulk: Option<f64>,
    pub ess_tail: Option<f64>,
}

/// The block-bootstrap standard error of pooled λ̂.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainMeans {
    pub mean: f64,
    pub per_chain: Vec<f64>,
}

/// MCLMC's energy change per step, over the kept draws of every chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyChange {
    pub mean: f64,
    /// Standard deviation (ddof 1).
    pub sd: f64,
    pub mean_abs: f64,
    pub max_abs: f64,
}

/// HMC's energy after burn-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HmcEnergy {
    /// Bayesian fraction of missing information per chain (ArviZ's `bfmi`; below ~0.3 is poor).
    pub bfmi_per_chain: Vec<f64>,
    pub bfmi_min: f64,
}

/// Variational plugins' ELBO at the end of optimisation (the last burn-in record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Elbo {
    pub final_mean: f64,
    pub final_per_chain: Vec<f64>,
}

/// Work done by the run, from its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wnv {
    /// SE² × gradient evaluations (FGE, all chains); none when the plugin took no gradients.
    pub grad_evals: Option<f64>,
    /// SE² × seconds.
    pub seconds: Option<f64>,
}

/// A run's `analysis.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub schema: u32,
    pub run_id: String,
    pub plugin: String,
    pub target_id: String,
    pub status: Status,
    pub created: String,
    pub mode: Mode,
    pub chains: usize,
    pub draws: usize,
    pub burn_in: usize,
    pub independent_draws: bool,
    /// The coordinates sampled, when not all of θ: λ̂ is then that of the restricted posterior.
    #[serde(default)]
    pub restriction: Option<RestrictionInfo>,
    /// λ̂ per chain and pooled, SE (MCSE; sd(chain λ̂)/√C for independent draws), R̂ and ESS of the draws.
    pub llc: Estimate,
    /// λ̂_S of each observed data subset (`--observe`), from its `loss_<name>` trace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observables: BTreeMap<String, Estimate>,
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

fn summarize(x: &[Vec<f64>], independent: bool) -> TraceSummary {
    let flat = x.concat();
    let mean = mean(&flat);
    let finite = |v: f64| v.is_finite().then_some(v);
    if independent {
        return TraceSummary { mean, rhat: None, ess_bulk: Some(flat.len() as f64), ess_tail: None };
    }
    TraceSummary { mean, rhat: finite(mcmc::rhat(x)), ess_bulk: finite(mcmc::ess_bulk(x)), ess_tail: finite(mcmc::ess_tail(x)) }
}

fn energy_change(x: &[Vec<f64>]) -> EnergyChange {
    let flat: Vec<f64> = x.concat();
    let m = mean(&flat);
    let sd = (flat.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (flat.len() as f64 - 1.0).max(1.0)).sqrt();
    let abs: Vec<f64> = flat.iter().map(|v| v.abs()).collect();
    EnergyChange { mean: m, sd, mean_abs: mean(&abs), max_abs: abs.iter().copied().fold(0.0, f64::max) }
}

impl Record for Analysis {
    const WHAT: &'static str = "run analysis";
    const SCHEMA: u32 = 1;
}

/// Computes the analysis of a loaded run (no files written; `plots` is empty).
pub fn analyse(run: &Run, mode: Mode) -> Analysis {
    let m = &run.manifest;
    let independent = m.independent_draws;
    let llc = estimate::llc(&run.loss, m.burn_in, run.n_beta(), m.l0, independent);
    let draws = run.llc_draws();
    let t = llc.draws_used;
    let mut notes = Vec::new();
    if let Some(r) = &m.restriction {
        notes.push(format!("restricted to `{}`: λ̂ is that of the D′ = {} free coordinates (of {}), the others fixed at θ*", r.spec, r.dim, r.full_dim));
    }
    let observables = m
        .observables
        .iter()
        .filter_map(|(name, o)| run.stats.get(&trace_name(name)).map(|x| (name.clone(), estimate::llc(x, m.burn_in, run.n_beta(), o.l0, independent))))
        .collect();
    let (block_len, boot_se) = if independent {
        (t, mcmc::chain_bootstrap_se(&draws, BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED))
    } else {
        let tau = (m.chains * t) as f64 / llc.ess_bulk;
        let cube_root = (t as f64).cbrt().ceil();
        let b = if tau.is_finite() { cube_root.max((2.0 * tau).ceil()) } else { cube_root } as usize;
        if b > t / 4 {
            notes.push(format!("no block bootstrap: blocks of {b} draws (2τ, τ = {tau:.1}) leave fewer than 4 per chain of {t}"));
            (b, f64::NAN)
        } else {
            (b, mcmc::block_bootstrap_se(&draws, b, BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED))
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
    let divergences = run.kept(stat_names::IS_DIVERGENT).map(|x| x.iter().flatten().filter(|v| **v != 0.0).count() as u64);
    let acceptance = run.kept(stat_names::ACCEPTANCE_RATE).map(|x| {
        let per_chain: Vec<f64> = x.iter().map(|c| mean(c)).collect();
        ChainMeans { mean: mean(&x.concat()), per_chain }
    });
    let energy = run.kept(stat_names::ENERGY).map(|x| {
        let bfmi_per_chain: Vec<f64> = x.iter().map(|c| mcmc::bfmi(c)).collect();
        HmcEnergy { bfmi_min: bfmi_per_chain.iter().copied().fold(f64::INFINITY, f64::min), bfmi_per_chain }
    });
    let energy_change = run.kept(stat_names::ENERGY_CHANGE).map(|x| energy_change(&x));
    let elbo = run.stats.get(stat_names::ELBO).map(|x| {
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
    let wnv = Wnv { grad_evals: (work.grad_evals_fge > 0.0).then_some(var * work.grad_evals_fge), seconds: (seconds > 0.0).then_some(var * seconds) };
    let ess_per_grad_eval = (work.grad_evals_fge > 0.0).then(|| llc.ess_bulk / work.grad_evals_fge);
    let ess_per_second = (seconds > 0.0).then(|| llc.ess_bulk / seconds);
    if independent {
        notes.insert(
            0,
            "independent draws: R̂, autocorrelation and rank plots are not computed; SE = sd(chain λ̂)/√C (each chain is its own fit) and ESS = N".to_string(),
        );
    }
    if let Some(r) = llc.variance_ratio().filter(|r| !(VARIANCE_RATIO_BAND.0..=VARIANCE_RATIO_BAND.1).contains(r)) {
        notes.push(format!(
            "Var(nβ·L_n) is {r:.2} × λ̂: a tempered posterior near its asymptotics gives ≈ 1 (less where γ rivals nβ × the curvature), so these draws do not spread as a posterior's (an unadjusted sampler's bias, a run not yet mixed, or a posterior far from its asymptotics)"
        ));
    }
    if m.chains < 2 {
        notes.push("one chain: R̂ is that of its two halves; the convergence plot's between-chain band and the WNV curve need at least 2".to_string());
    }
    Analysis {
        schema: Analysis::SCHEMA,
        run_id: m.run_id.clone(),
        plugin: m.plugin.name.clone(),
        target_id: m.target_id.clone(),
        status: m.status,
        created: m.provenance.created.clone(),
        mode,
        chains: m.chains,
        draws: run.draws(),
        burn_in: m.burn_in,
        independent_draws: independent,
        restriction: m.restriction.clone(),
        llc,
        observables,
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
