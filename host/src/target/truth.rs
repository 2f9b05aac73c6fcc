//! The learning coefficient of a deep linear network (Aoyagi 2024), the
//! analytic ground truth for deep-linear targets.
//!
//! The network is f(x) = W_L⋯W_1 x with W_j ∈ R^{H_j × H_{j−1}}, H_0 the input
//! and H_L the output dimension, and the true product has rank r.

use crate::error::Result;

/// λ for layer sizes `h` = [H_0, …, H_L] (L ≥ 1) and true rank `r`.
pub fn dln_learning_coefficient(h: &[usize], r: usize) -> Result<f64> {
    crate::ensure!(h.len() >= 2, "a deep linear network needs at least input and output sizes, got {h:?}");
    let min = *h.iter().min().expect("non-empty");
    crate::ensure!(r <= min, "rank {r} exceeds the smallest layer size {min} of {h:?}");
    let (l1, h0, hl) = (h.len(), h[0] as f64, h[h.len() - 1] as f64);
    let m: Vec<i64> = h.iter().map(|&x| x as i64 - r as i64).collect();
    let mut order: Vec<usize> = (0..l1).collect();
    order.sort_by_key(|&j| m[j]);
    // The smallest k sizes form Σ once they satisfy the three conditions.
    let mut chosen = None;
    for k in 2..=l1 {
        let ell = (k - 1) as i64;
        let max_sigma = m[order[k - 1]];
        let s: i64 = order[..k].iter().map(|&j| m[j]).sum();
        let min_c = (k < l1).then(|| m[order[k]]);
        let cond1 = min_c.is_none_or(|c| max_sigma < c);
        let cond2 = s >= ell * max_sigma;
        let cond3 = min_c.is_none_or(|c| s < ell * c);
        if cond1 && cond2 && cond3 {
            chosen = Some((k, ell, s));
            break;
        }
    }
    let (k, ell, s) = chosen.ok_or_else(|| crate::error::Error::invalid(format!("no admissible subset for {h:?}, rank {r}")))?;
    let mbar = (s + ell - 1).div_euclid(ell); // ceil(S/ℓ)
    let a = s - (mbar - 1) * ell;
    let sigma: Vec<i64> = order[..k].iter().map(|&j| m[j]).collect();
    let mut pair_sum = 0i64;
    for i in 0..sigma.len() {
        for j in i + 1..sigma.len() {
            pair_sum += sigma[i] * sigma[j];
        }
    }
    // a(ℓ−a)/(4ℓ) − ℓ(ℓ−1)/4·(S/ℓ)² over one integer numerator, so the result is exact.
    let frac = (a * (ell - a) - (ell - 1) * s * s) as f64 / (4 * ell) as f64;
    let r = r as f64;
    Ok((-r * r + r * (h0 + hl)) / 2.0 + frac + 0.5 * pair_sum as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> serde_json::Value {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/reference_vectors.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    #[test]
    fn matches_reference_vectors_and_the_table() {
        let cases = reference()["dln"].as_array().unwrap().clone();
        assert!(cases.len() >= 9);
        for c in cases {
            let mut h = vec![c["input_dim"].as_u64().unwrap() as usize];
            h.extend(c["widths_incl_output"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize));
            let r = c["rank"].as_u64().unwrap() as usize;
            let want = c["lambda"].as_f64().unwrap();
            let got = dln_learning_coefficient(&h, r).unwrap();
            assert!((got - want).abs() < 1e-12, "{h:?} r={r}: {got} vs {want}");
        }
        // ALGORITHMS.md §10.3 table.
        for (h, r, want) in [
            (vec![5, 3, 5], 0, 6.5),
            (vec![4, 4, 8], 0, 8.0),
            (vec![3, 5, 6, 4], 1, 6.0),
            (vec![3, 5, 6, 4], 2, 6.0),
            (vec![8, 10, 10, 10, 10, 5], 1, 19.5),
            (vec![5, 7, 9, 4, 6], 3, 13.0),
            (vec![10, 10, 10], 0, 37.5),
            (vec![10, 10, 10], 5, 47.0),
            (vec![10, 10, 10], 10, 50.0),
        ] {
            assert_eq!(dln_learning_coefficient(&h, r).unwrap(), want, "{h:?} r={r}");
        }
    }

    #[test]
    fn reduced_rank_regression_special_case() {
        // L = 2, r = 0: Aoyagi–Watanabe's four cases.
        for m in 1..=8usize {
            for hh in 1..=8usize {
                for n in 1..=8usize {
                    let want = if m + hh < n {
                        (m * hh) as f64 / 2.0
                    } else if n + hh < m {
                        (hh * n) as f64 / 2.0
                    } else if m + n < hh {
                        (m * n) as f64 / 2.0
                    } else {
                        let (m, hh, n) = (m as i64, hh as i64, n as i64);
                        let odd = (m + hh + n) % 2;
                        (2 * m * n + 2 * hh * n + 2 * m * hh - m * m - n * n - hh * hh + odd) as f64 / 8.0
                    };
                    assert_eq!(dln_learning_coefficient(&[m, hh, n], 0).unwrap(), want, "({m},{hh},{n})");
                }
            }
        }
    }

    #[test]
    fn one_layer_is_regular() {
        // A single linear layer is a regular model: λ = d/2 whatever the true rank.
        for r in 0..=3 {
            assert_eq!(dln_learning_coefficient(&[3, 4], r).unwrap(), 6.0);
        }
    }

    #[test]
    fn bad_rank_is_an_error() {
        assert!(dln_learning_coefficient(&[3, 2, 3], 3).is_err());
        assert!(dln_learning_coefficient(&[3], 0).is_err());
    }
}
