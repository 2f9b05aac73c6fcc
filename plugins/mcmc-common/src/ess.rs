//! Effective sample size of a few chains (or one), for samplers that tune on
//! it and for plugin-side tests.

use lh_plugin_api::ess_geyer;

/// ESS of `m` chains of n draws with Geyer's initial positive sequence and
/// the monotone correction, no splitting and no ranks (ArviZ's `_ess`;
/// with one chain, BlackJAX's `effective_sample_size` as MCLMC's tuner uses
/// it). Autocovariances (biased, / n) are computed lag by lag as the sequence
/// needs them. A chain shorter than 4 draws, or without spread, gives m·n.
pub fn ess(chains: &[Vec<f64>]) -> f64 {
    let (m, n) = (chains.len(), chains.first().map_or(0, Vec::len));
    let nf = n as f64;
    if n < 4 {
        return (m * n) as f64;
    }
    let means: Vec<f64> = chains.iter().map(|c| c.iter().sum::<f64>() / nf).collect();
    let acov = |k: usize| -> f64 {
        chains.iter().zip(&means).map(|(c, mu)| (0..n - k).map(|t| (c[t] - mu) * (c[t + k] - mu)).sum::<f64>() / nf).sum::<f64>() / m as f64
    };
    let mean_var = acov(0) * nf / (nf - 1.0);
    if mean_var <= 0.0 {
        return (m * n) as f64;
    }
    let grand = means.iter().sum::<f64>() / m as f64;
    let between = if m > 1 { means.iter().map(|mu| (mu - grand).powi(2)).sum::<f64>() / (m as f64 - 1.0) } else { 0.0 };
    ess_geyer(m, n, mean_var, mean_var * (nf - 1.0) / nf + between, acov)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lh_plugin_api::ChainRng;

    #[test]
    fn ess_of_iid_and_correlated_draws() {
        let mut r = ChainRng::seed_from_u64(1);
        let iid: Vec<f64> = (0..4000).map(|_| r.standard_normal()).collect();
        let e = ess(&[iid]);
        assert!((3000.0..5000.0).contains(&e), "{e}");
        // AR(1) with ρ = 0.9: ESS ≈ n(1 − ρ)/(1 + ρ) ≈ 210.
        let mut ar = vec![0.0; 4000];
        for t in 1..4000 {
            ar[t] = 0.9 * ar[t - 1] + r.standard_normal();
        }
        let e = ess(&[ar]);
        assert!((130.0..320.0).contains(&e), "{e}");
        // Four chains of independent draws: about their number.
        let x: Vec<Vec<f64>> = (0..4).map(|_| (0..500).map(|_| r.standard_normal()).collect()).collect();
        let e = ess(&x);
        assert!((1500.0..2600.0).contains(&e), "{e}");
        assert_eq!(ess(&[vec![1.0; 10]]), 10.0);
    }
}
