//! Convergence diagnostics as ArviZ 0.22 defines them: rank-normalised split
//! R̂, bulk and tail ESS, the MCSE of the mean and the autocorrelation; and a
//! moving-block bootstrap SE of the mean. Input traces are (C, T): `x[c][t]`.

use rustfft::{num_complex::Complex, FftPlanner};
use statrs::distribution::{ContinuousCDF, Normal};

/// Splits each chain into its first and last half (the middle draw of an odd
/// length is dropped): (C, T) → (2C, ⌊T/2⌋).
pub fn split(x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut out = Vec::with_capacity(2 * x.len());
    for c in x {
        let h = c.len() / 2;
        out.push(c[..h].to_vec());
        out.push(c[c.len() - h..].to_vec());
    }
    out
}

/// Average ranks (1-based; ties share their mean rank) mapped through
/// Φ⁻¹((r − 3/8)/(N + 1/4)).
pub fn z_scale(x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let flat: Vec<f64> = x.concat();
    let n = flat.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_unstable_by(|&a, &b| flat[a].total_cmp(&flat[b]));
    let mut ranks = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && flat[idx[j + 1]] == flat[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = avg;
        }
        i = j + 1;
    }
    let normal = Normal::standard();
    let z: Vec<f64> = ranks.iter().map(|r| normal.inverse_cdf((r - 0.375) / (n as f64 + 0.25))).collect();
    let t = x.first().map_or(0, Vec::len);
    z.chunks(t.max(1)).map(<[f64]>::to_vec).collect()
}

/// Biased autocovariance of one chain by FFT (zero-padded to a power of two ≥ 2T).
fn autocov(x: &[f64], planner: &mut FftPlanner<f64>) -> Vec<f64> {
    let n = x.len();
    let mean = x.iter().sum::<f64>() / n as f64;
    let m = (2 * n).next_power_of_two();
    let mut buf: Vec<Complex<f64>> = x.iter().map(|v| Complex::new(v - mean, 0.0)).chain(std::iter::repeat(Complex::new(0.0, 0.0))).take(m).collect();
    planner.plan_fft_forward(m).process(&mut buf);
    for v in &mut buf {
        *v = Complex::new(v.norm_sqr(), 0.0);
    }
    planner.plan_fft_inverse(m).process(&mut buf);
    buf[..n].iter().map(|v| v.re / (m as f64) / n as f64).collect()
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample variance (ddof 1).
pub fn var_ddof1(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() as f64 - 1.0)
}

/// ESS of (m chains, n draws) with Geyer's initial positive sequence and the
/// monotone correction, as ArviZ's `_ess` (no splitting, no ranks).
pub fn ess(x: &[Vec<f64>]) -> f64 {
    let m = x.len();
    let n = x.first().map_or(0, Vec::len);
    if m == 0 || n < 4 || x.iter().any(|c| c.len() != n) {
        return f64::NAN;
    }
    let flat = x.concat();
    if flat.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let (lo, hi) = flat.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    if hi - lo < 1e-15 {
        return (m * n) as f64;
    }
    let mut planner = FftPlanner::new();
    let acov: Vec<Vec<f64>> = x.iter().map(|c| autocov(c, &mut planner)).collect();
    let nf = n as f64;
    let chain_means: Vec<f64> = x.iter().map(|c| mean(c)).collect();
    let mean_var = acov.iter().map(|a| a[0]).sum::<f64>() / m as f64 * nf / (nf - 1.0);
    let mut var_plus = mean_var * (nf - 1.0) / nf;
    if m > 1 {
        var_plus += var_ddof1(&chain_means);
    }
    lh_plugin_api::ess_geyer(m, n, mean_var, var_plus, |k| acov.iter().map(|a| a[k]).sum::<f64>() / m as f64)
}

/// Bulk ESS: ESS of the rank-normalised split chains.
pub fn ess_bulk(x: &[Vec<f64>]) -> f64 {
    ess(&z_scale(&split(x)))
}

/// Tail ESS: the smaller ESS of the indicators x ≤ q₀.₀₅ and x ≤ q₀.₉₅ (split chains).
pub fn ess_tail(x: &[Vec<f64>]) -> f64 {
    let s = split(x);
    let mut flat = x.concat();
    flat.sort_unstable_by(f64::total_cmp);
    [0.05, 0.95]
        .iter()
        .map(|&q| {
            let cut = quantile_sorted(&flat, q);
            let ind: Vec<Vec<f64>> = s.iter().map(|c| c.iter().map(|v| f64::from(u8::from(*v <= cut))).collect()).collect();
            ess(&ind)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Quantile of sorted data, type 7 (linear interpolation).
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

fn rhat_basic(x: &[Vec<f64>]) -> f64 {
    let n = x[0].len() as f64;
    let means: Vec<f64> = x.iter().map(|c| mean(c)).collect();
    let b = n * var_ddof1(&means);
    let w = x.iter().map(|c| var_ddof1(c)).sum::<f64>() / x.len() as f64;
    ((b / w + n - 1.0) / n).sqrt()
}

/// Rank-normalised split R̂ (the larger of the bulk and the folded version).
/// NaN with fewer than 2 chains... after splitting, fewer than 4 draws, or non-finite values.
pub fn rhat(x: &[Vec<f64>]) -> f64 {
    let s = split(x);
    if s.len() < 2 || s[0].len() < 2 || x.iter().flatten().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let flat = s.concat();
    let mut sorted = flat.clone();
    sorted.sort_unstable_by(f64::total_cmp);
    let med = quantile_sorted(&sorted, 0.5);
    let folded: Vec<Vec<f64>> = s.iter().map(|c| c.iter().map(|v| (v - med).abs()).collect()).collect();
    rhat_basic(&z_scale(&s)).max(rhat_basic(&z_scale(&folded)))
}

/// Monte Carlo standard error of the mean: sd / √ESS_mean, where ESS_mean is
/// the ESS of the split chains (not rank-normalised).
pub fn mcse_mean(x: &[Vec<f64>]) -> f64 {
    let flat = x.concat();
    if flat.len() < 2 {
        return f64::NAN;
    }
    var_ddof1(&flat).sqrt() / ess(&split(x)).sqrt()
}

/// Autocorrelation of one chain at lags 0..=`max_lag` (the FFT autocovariance
/// divided by its lag-0 value, as ArviZ's `autocorr`); none for a constant chain.
pub fn autocorr(x: &[f64], max_lag: usize) -> Option<Vec<f64>> {
    if x.len() < 2 {
        return None;
    }
    let acov = autocov(x, &mut FftPlanner::new());
    (acov[0] > 0.0 && acov[0].is_finite()).then(|| acov.iter().take(max_lag + 1).map(|a| a / acov[0]).collect())
}

/// Bayesian fraction of missing information of one chain's HMC energies, as
/// ArviZ's `bfmi`: mean((E_t − E_{t−1})²) / Var(E) (ddof 0). Values below
/// about 0.3 mean the momentum resampling explores the energy levels poorly.
pub fn bfmi(energy: &[f64]) -> f64 {
    let n = energy.len();
    if n < 2 {
        return f64::NAN;
    }
    let m = mean(energy);
    let var = energy.iter().map(|e| (e - m) * (e - m)).sum::<f64>() / n as f64;
    let diff2 = energy.windows(2).map(|w| (w[1] - w[0]) * (w[1] - w[0])).sum::<f64>() / (n - 1) as f64;
    diff2 / var
}

/// Standard error of the pooled mean of `x` (C chains × T draws) by the
/// moving-block bootstrap: each replicate rebuilds every chain from ⌈T/b⌉
/// blocks of `block` consecutive draws starting at uniform random offsets
/// (truncated to T), and the SE is the standard deviation (ddof 1) of the
/// replicates' pooled means. Deterministic for a given `seed`.
pub fn block_bootstrap_se(x: &[Vec<f64>], block: usize, replicates: usize, seed: u64) -> f64 {
    use rand::RngExt;
    let t = x.first().map_or(0, Vec::len);
    if t == 0 || replicates < 2 {
        return f64::NAN;
    }
    let b = block.clamp(1, t);
    let mut rng = crate::rng::stream(seed, 0);
    let means: Vec<f64> = (0..replicates)
        .map(|_| {
            let mut sum = 0.0;
            for c in x {
                let mut left = t;
                while left > 0 {
                    let start = rng.random_range(0..=t - b);
                    let take = b.min(left);
                    sum += c[start..start + take].iter().sum::<f64>();
                    left -= take;
                }
            }
            sum / (t * x.len()) as f64
        })
        .collect();
    var_ddof1(&means).sqrt()
}

/// Standard error of the mean of the chains' means by resampling whole chains
/// (C draws with replacement): for chains that are independent replicates,
/// such as variational fits, where the spread between chains is the
/// uncertainty. NaN with fewer than two chains. Deterministic for a given `seed`.
pub fn chain_bootstrap_se(x: &[Vec<f64>], replicates: usize, seed: u64) -> f64 {
    use rand::RngExt;
    if x.len() < 2 || replicates < 2 {
        return f64::NAN;
    }
    let chain_means: Vec<f64> = x.iter().map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
    let mut rng = crate::rng::stream(seed, 0);
    let means: Vec<f64> = (0..replicates).map(|_| (0..x.len()).map(|_| chain_means[rng.random_range(0..x.len())]).sum::<f64>() / x.len() as f64).collect();
    var_ddof1(&means).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ar1() -> Vec<Vec<f64>> {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/ar1_4x200.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    /// Four draws per chain (a split of eight or nine kept draws, as a short
    /// budgeted run gives): ArviZ's degenerate case (max_t = −1), an ESS of
    /// mn·log₁₀(mn), where the sum used to underflow and panic.
    #[test]
    fn four_draws_per_chain_give_arviz_s_ess() {
        let four = vec![vec![1.0, 2.0, 0.5, 1.5], vec![0.3, 1.2, 2.2, 0.1]];
        assert!((ess(&four) - 8.0 * 8f64.log10()).abs() < 1e-12, "{}", ess(&four));
        let nine: Vec<Vec<f64>> = (0..2).map(|c| (0..9).map(|t| ((t * 7 + c * 3) % 5) as f64).collect()).collect();
        assert!(ess_bulk(&nine).is_finite() && rhat(&nine).is_finite());
    }

    #[test]
    fn matches_blackjax_on_the_reference_ar1() {
        // reference_vectors.json `ess_rhat_example`: BlackJAX's ESS is ArviZ's
        // `_ess` without splitting or ranks.
        let x = ar1();
        assert_eq!(x[0][0], 0.1257302210933933);
        let e = ess(&x);
        assert!((e / 162.04670044411267 - 1.0).abs() < 1e-10, "{e}");
    }

    /// ArviZ 0.22.0 golden values (tests/data/make_arviz_golden.py): rank R̂,
    /// bulk and tail ESS and MCSE of the mean agree within 1e-8 relative,
    /// including an odd draw count and a constant trace (R̂ is then NaN, stored
    /// as null; ESS is the draw count; MCSE 0).
    #[test]
    fn matches_arviz_golden_values() {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/arviz_golden.json");
        let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        let mut checked = 0;
        for (name, case) in golden.as_object().unwrap().iter().filter(|(k, _)| !k.starts_with('_')) {
            let x: Vec<Vec<f64>> = serde_json::from_value(case["x"].clone()).unwrap();
            for (what, got) in [("rhat", rhat(&x)), ("ess_bulk", ess_bulk(&x)), ("ess_tail", ess_tail(&x)), ("mcse_mean", mcse_mean(&x))] {
                match case[what].as_f64() {
                    Some(want) => assert!((got - want).abs() <= 1e-8 * want.abs(), "{name} {what}: {got} vs ArviZ {want}"),
                    None => assert!(got.is_nan(), "{name} {what}: {got} vs ArviZ NaN"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 36);
    }

    #[test]
    fn iid_draws_have_ess_near_the_count_and_rhat_near_one() {
        use rand_distr::{Distribution, StandardNormal};
        let mut r = crate::rng::stream(11, 0);
        let x: Vec<Vec<f64>> = (0..4).map(|_| (0..1000).map(|_| StandardNormal.sample(&mut r)).collect()).collect();
        let b = ess_bulk(&x);
        // i.i.d.: ESS ≈ 4000 up to sampling error (~10 %).
        assert!((3200.0..4800.0).contains(&b), "{b}");
        assert!((rhat(&x) - 1.0).abs() < 0.01);
        assert!(ess_tail(&x) > 2500.0);
        // A chain stuck elsewhere is flagged.
        let mut y = x.clone();
        y[0].iter_mut().for_each(|v| *v += 3.0);
        assert!(rhat(&y) > 1.1, "{}", rhat(&y));
        assert!((mcse_mean(&x) - 1.0 / 4000f64.sqrt()).abs() < 0.004);
    }

    #[test]
    fn autocorrelation_and_block_bootstrap() {
        let x = ar1();
        let r = autocorr(&x[0], 5).unwrap();
        assert_eq!(r.len(), 6);
        assert!((r[0] - 1.0).abs() < 1e-12 && r[1] > 0.5 && r[1] < 1.0, "{r:?}");
        assert!(autocorr(&[2.0; 10], 3).is_none());
        // Alternating energies: every transition spans the whole spread.
        assert!((bfmi(&[1.0, -1.0, 1.0, -1.0]) - 4.0).abs() < 1e-12);
        // i.i.d. draws: with blocks of 1 the bootstrap SE is sd/√N.
        use rand_distr::{Distribution, StandardNormal};
        let mut g = crate::rng::stream(5, 0);
        let iid: Vec<Vec<f64>> = (0..4).map(|_| (0..500).map(|_| StandardNormal.sample(&mut g)).collect()).collect();
        let se = block_bootstrap_se(&iid, 1, 2000, 7);
        assert!((se / (1.0 / 2000f64.sqrt()) - 1.0).abs() < 0.1, "{se}");
        assert_eq!(se, block_bootstrap_se(&iid, 1, 2000, 7));
        // Correlated draws: long blocks see the larger error that blocks of 1 miss,
        // in line with the ESS-based MCSE.
        let (short, long) = (block_bootstrap_se(&x, 1, 1000, 7), block_bootstrap_se(&x, 20, 1000, 7));
        let mcse = mcse_mean(&x);
        assert!(long > 1.5 * short && (long / mcse - 1.0).abs() < 0.35, "{short} {long} {mcse}");
        // Independent replicates with means 8 and 12: the plug-in SE is √(4/2) (1000 replicates: ±6 %).
        let reps = vec![vec![7.0, 9.0], vec![11.0, 13.0]];
        let se = chain_bootstrap_se(&reps, 1000, 3);
        assert!((se / 2f64.sqrt() - 1.0).abs() < 0.06, "{se}");
        assert!(chain_bootstrap_se(&reps[..1], 1000, 3).is_nan(), "one chain has no between-chain spread");
    }
}
