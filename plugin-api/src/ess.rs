//! Effective sample size, shared by samplers that tune on it and by the host.

/// Effective sample size of m chains of n draws from their autocovariances,
/// with Geyer's initial positive sequence and monotone correction, as ArviZ's
/// `_ess` and BlackJAX's `effective_sample_size`: `mean_var` is the mean
/// within-chain variance (ddof 1), `var_plus` the pooled variance estimate and
/// `mean_autocov(k)` the chains' mean lag-k autocovariance (biased, / n).
/// Samplers that tune on ESS (MCLMC's third stage) use it; so do the host's
/// diagnostics. Needs n ≥ 2.
pub fn ess_geyer(m: usize, n: usize, mean_var: f64, var_plus: f64, mean_autocov: impl Fn(usize) -> f64) -> f64 {
    let rho_at = |k: usize| 1.0 - (mean_var - mean_autocov(k)) / var_plus;
    let mut rho = vec![0.0; n];
    rho[0] = 1.0;
    rho[1] = rho_at(1);
    let (mut even, mut odd) = (rho[0], rho[1]);
    let mn = (m * n) as f64;
    let mut t = 1;
    while t + 3 < n && even + odd > 0.0 {
        even = rho_at(t + 1);
        odd = rho_at(t + 2);
        if even + odd >= 0.0 {
            rho[t + 1] = even;
            rho[t + 2] = odd;
        }
        t += 2;
    }
    if t < 2 {
        // Too few draws (n ≤ 4) or ρ̂₁ ≤ −1: ArviZ's max_t is −1, its sums are
        // empty and ρ̂₀ takes `even` when that is positive.
        let rho0 = if even > 0.0 { even } else { rho[0] };
        return mn / (-1.0 + rho0).max(1.0 / mn.log10());
    }
    let max_t = t - 2;
    if even > 0.0 {
        rho[max_t + 1] = even;
    }
    let mut t = 1;
    while t + 2 <= max_t {
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t] {
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0;
            rho[t + 2] = rho[t + 1];
        }
        t += 2;
    }
    let tau = (-1.0 + 2.0 * rho[..=max_t].iter().sum::<f64>() + rho[max_t + 1]).max(1.0 / mn.log10());
    mn / tau
}
