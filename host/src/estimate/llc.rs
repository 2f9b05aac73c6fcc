//! λ̂ from recorded L_n traces, computed by the host identically for every
//! plugin: λ̂ = nβ·(E[L_n] − L0) over the draws after burn-in, per chain and
//! pooled, with the Monte Carlo standard error of the pooled mean, and the
//! variance of the per-draw values, a check on the distribution sampled.

use serde::{Deserialize, Serialize};

use super::mcmc;

/// The LLC estimate of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Pooled λ̂ (mean over chains and kept draws).
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    /// Its Monte Carlo standard error: sd / √ESS for Markov chains. For
    /// independent draws (variational plugins) each chain is its own fit of q,
    /// so the chains are C independent replicates: sd(chain means) / √C, which
    /// counts the fit-to-fit spread that sd / √N would miss (sd / √N with one chain).
    #[serde(deserialize_with = "nan_if_null")]
    pub se: f64,
    /// λ̂ of each chain.
    #[serde(deserialize_with = "nans_if_null")]
    pub per_chain: Vec<f64>,
    pub n_beta: f64,
    pub l0: f64,
    pub burn_in: usize,
    /// Draws per chain used (after burn-in).
    pub draws_used: usize,
    /// Rank-normalised split R̂ of the L_n trace (none for independent draws).
    pub rhat: Option<f64>,
    /// Bulk ESS of the L_n trace (the draw count for independent draws).
    #[serde(deserialize_with = "nan_if_null")]
    pub ess_bulk: f64,
    /// Tail ESS of the L_n trace (none for independent draws).
    pub ess_tail: Option<f64>,
    /// Var(nβ·L_n) over the kept draws of all chains. For the tempered
    /// posterior E_β[nL_n] = nL0 + λ/β to leading order, so its derivative
    /// gives Var_β[nβ·L_n] = λ too (the specific heat of the free energy):
    /// `variance / mean` near 1 says the draws spread as a posterior's do, a
    /// check on the distribution sampled that R̂ and ESS cannot make (an
    /// unadjusted sampler's energy error shows here). Exactly, on a quadratic
    /// target it is ½Σaᵢ² against λ = ½Σaᵢ, aᵢ = nβhᵢ/(nβhᵢ + γ). None in
    /// manifests written before it was recorded, or with one draw.
    #[serde(default)]
    pub variance: Option<f64>,
}

impl Estimate {
    /// Var(nβ·L_n) / λ̂ (≈ 1 for a posterior near its asymptotics, below 1 where γ matters).
    pub fn variance_ratio(&self) -> Option<f64> {
        self.variance.map(|v| v / self.mean).filter(|r| r.is_finite())
    }
}

/// JSON writes a NaN as `null`; reading it back gives NaN again.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// [`nan_if_null`] for each value of a list.
fn nans_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// The per-draw λ̂ values nβ(L_n − L0) after burn-in, (C, T − burn_in).
pub fn llc_draws(loss: &[Vec<f64>], burn_in: usize, n_beta: f64, l0: f64) -> Vec<Vec<f64>> {
    loss.iter().map(|c| c[burn_in.min(c.len())..].iter().map(|l| n_beta * (l - l0)).collect()).collect()
}

/// λ̂ from `loss[c][t]`, skipping the first `burn_in` draws of each chain.
pub fn llc(loss: &[Vec<f64>], burn_in: usize, n_beta: f64, l0: f64, independent: bool) -> Estimate {
    let kept = llc_draws(loss, burn_in, n_beta, l0);
    let per_chain: Vec<f64> = kept.iter().map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
    let flat = kept.concat();
    let mean = flat.iter().sum::<f64>() / flat.len() as f64;
    let draws_used = kept.first().map_or(0, Vec::len);
    let variance = (flat.len() >= 2).then(|| mcmc::var_ddof1(&flat)).filter(|v| v.is_finite());
    let (se, rhat, ess_bulk, ess_tail) = if independent {
        let sd = |x: &[f64], m: f64| (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() as f64 - 1.0)).sqrt();
        let se = if per_chain.len() >= 2 { sd(&per_chain, mean) / (per_chain.len() as f64).sqrt() } else { sd(&flat, mean) / (flat.len() as f64).sqrt() };
        (se, None, flat.len() as f64, None)
    } else {
        let finite = |v: f64| v.is_finite().then_some(v);
        (mcmc::mcse_mean(&kept), finite(mcmc::rhat(&kept)), mcmc::ess_bulk(&kept), finite(mcmc::ess_tail(&kept)))
    };
    Estimate { mean, se, per_chain, n_beta, l0, burn_in, draws_used, rhat, ess_bulk, ess_tail, variance }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_in_is_skipped_and_scaling_applied() {
        let loss = vec![vec![100.0, 1.0, 2.0, 3.0, 1.0, 2.0], vec![100.0, 2.0, 3.0, 1.0, 2.0, 3.0]];
        let e = llc(&loss, 1, 10.0, 1.0, false);
        assert_eq!(e.draws_used, 5);
        assert!((e.per_chain[0] - 10.0 * (9.0 / 5.0 - 1.0)).abs() < 1e-12);
        assert!((e.mean - 10.0 * (20.0 / 10.0 - 1.0)).abs() < 1e-12);
        // Kept losses 1, 2, 3, 1, 2, 2, 3, 1, 2, 3 (mean 2, Σ(x − 2)² = 6) scaled by nβ = 10.
        assert!((e.variance.unwrap() - 100.0 * 6.0 / 9.0).abs() < 1e-9, "{:?}", e.variance);
        assert!((e.variance_ratio().unwrap() - 100.0 * 6.0 / 9.0 / 10.0).abs() < 1e-9);
        assert!(llc(&[vec![1.0, 2.0]], 1, 10.0, 1.0, false).variance.is_none(), "one kept draw has no variance");
        let ind = llc(&loss, 1, 10.0, 1.0, true);
        assert_eq!(ind.ess_bulk, 10.0);
        assert!(ind.rhat.is_none());
        // Two independent replicates with λ̂ 8 and 12: SE = sd(8, 12)/√2 = 2.
        assert!((ind.se - 2.0).abs() < 1e-12, "{}", ind.se);
    }
}
