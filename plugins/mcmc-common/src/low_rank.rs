//! A low-rank plus diagonal mass matrix estimated from draws and scores as
//! nutpie / nuts-rs 0.19.1 does it (ALGORITHMS-2 §13.2), and its metric
//! operations.
//!
//! **The estimate.** From a window's n draws x and scores g = ∇log π(x) in D
//! dimensions, [`estimate`] returns Σ̂ = diag(σ)(I + U(Λ − I)Uᵀ)diag(σ), the
//! inverse mass matrix, with σ > 0 per coordinate, U (D × k) with
//! orthonormal columns and Λ = diag(λ₁ … λ_k):
//!
//! 1. *Rescale* per coordinate with population (/n) variances:
//!    σ_i = (var x_i / var g_i)^¼ clamped to [1e-10, 1e10],
//!    μ*_i = x̄_i + σ_i² ḡ_i; x̃ = (x − μ*)/σ, g̃ = g·σ; both are centred,
//!    keeping their means.
//! 2. *Subspace*: thin SVDs of the centred X̃ and G̃ (D × n); Q is the thin Q
//!    of a column-pivoted QR of [U_x, U_g]; P_x = QᵀX̃, P_g = QᵀG̃.
//! 3. *Regularise*: A = P_xP_xᵀ/γ + I, B = P_gP_gᵀ/γ + I with γ = 1e-5 (the
//!    scatters are not divided by n, so the ridge is γ/n relative to a
//!    covariance).
//! 4. *SPD mean*: Σ_Q = B^{−½}(B^{½}AB^{½})^{½}B^{−½}, the SPD solution of
//!    Σ B Σ = A, i.e. the Fisher-divergence minimiser Σ·Cov(g)·Σ = Cov(x)
//!    within the subspace.
//! 5. *Filter*: Σ_Q = VΛVᵀ; the eigenpairs with λ > 2 or λ < ½ are kept
//!    (eigenvalue cut-off 2), λ clamped to [1e-20, 1e20]; U = Q·V_kept.
//!    Outside span(U) Σ̂ is the diagonal diag(σ²).
//!
//! Any non-finite value in the result gives `None` (nuts-rs then skips the
//! update; the NUTS plugin falls back to its diagonal estimate).
//!
//! **Cost.** The estimator holds the window (2·D·n values), the SVD work
//! (about as much again) and Q (D × min(D, 2n)), and takes O(D·n²) time
//! for the SVDs and QR plus O(n³) for the small eigenproblems, once per slow
//! window and chain. nalgebra's decompositions are unblocked Householder
//! ones (≈ 1 GFlop/s): measured in a dev build, 5 s at D = 2000, n = 250 and
//! 14 s at D = 10⁴, n = 200, growing as n², so a last window of 500 draws at
//! D = 10⁴ takes about a minute and 80 MB per D × 2n matrix.
//!
//! **The metric.** [`LowRank`] applies Σ̂ and draws momenta from N(0, Σ̂⁻¹) in
//! O(D·k) without forming a D × D matrix: with w = σ⊙p,
//! Σ̂p = σ⊙(w + U(Λ − I)Uᵀw); ½pᵀΣ̂p = ½(|w|² + Σ_j (λ_j − 1)(u_jᵀw)²); and
//! since (I + U(Λ^{-½} − I)Uᵀ)² = I + U(Λ⁻¹ − I)Uᵀ for orthonormal U,
//! p = diag(1/σ)(I + U(Λ^{-½} − I)Uᵀ)z with z ~ N(0, I) has covariance
//! diag(1/σ)(I + U(Λ⁻¹ − I)Uᵀ)diag(1/σ) = Σ̂⁻¹.

use nalgebra::linalg::{ColPivQR, SymmetricEigen, SVD};
use nalgebra::DMatrix;

/// The ridge γ of step 3 (nuts-rs's `gamma`).
pub const GAMMA: f64 = 1e-5;
/// Eigen-directions with λ > `EIGVAL_CUTOFF` or λ < 1/`EIGVAL_CUTOFF` are kept (nuts-rs's `eigval_cutoff`).
pub const EIGVAL_CUTOFF: f64 = 2.0;
/// The fewest draws the estimate is made from (nuts-rs: 3).
pub const MIN_DRAWS: usize = 3;

/// Σ̂ = diag(σ)(I + U(Λ − I)Uᵀ)diag(σ): an inverse mass matrix, low-rank plus diagonal.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRank {
    /// σ (D), the per-coordinate scale; σ² is Σ̂'s diagonal outside span(U).
    pub sigma: Vec<f64>,
    /// U (D × k) column by column: column j is `u[j*D..(j+1)*D]`; orthonormal.
    pub u: Vec<f64>,
    /// λ (k), the eigenvalues of Σ̂ in the rescaled coordinates along U's columns.
    pub lambda: Vec<f64>,
}

impl LowRank {
    /// Σ̂ = diag(σ)(I + U(Λ − I)Uᵀ)diag(σ). Panics unless `u` holds `lambda.len()` columns of D = `sigma.len()`.
    pub fn new(sigma: Vec<f64>, u: Vec<f64>, lambda: Vec<f64>) -> Self {
        assert_eq!(u.len(), sigma.len() * lambda.len(), "U must be D × k");
        Self { sigma, u, lambda }
    }

    /// D.
    pub fn dim(&self) -> usize {
        self.sigma.len()
    }

    /// k, the number of eigen-directions kept.
    pub fn rank(&self) -> usize {
        self.lambda.len()
    }

    fn column(&self, j: usize) -> &[f64] {
        let d = self.dim();
        &self.u[j * d..(j + 1) * d]
    }

    /// out ← w + U·diag(f(λ))·Uᵀw for each λ (the O(D·k) core of every operation).
    fn apply_inner(&self, w: &[f64], out: &mut [f64], f: impl Fn(f64) -> f64) {
        out.copy_from_slice(w);
        for (j, &l) in self.lambda.iter().enumerate() {
            let u = self.column(j);
            let c = f(l) * dot(u, w);
            out.iter_mut().zip(u).for_each(|(o, ui)| *o += c * ui);
        }
    }

    /// The velocity v = Σ̂p.
    pub fn velocity(&self, p: &[f64], v: &mut [f64]) {
        let w: Vec<f64> = p.iter().zip(&self.sigma).map(|(pi, s)| s * pi).collect();
        self.apply_inner(&w, v, |l| l - 1.0);
        v.iter_mut().zip(&self.sigma).for_each(|(vi, s)| *vi *= s);
    }

    /// The kinetic energy ½pᵀΣ̂p.
    pub fn kinetic(&self, p: &[f64]) -> f64 {
        let w: Vec<f64> = p.iter().zip(&self.sigma).map(|(pi, s)| s * pi).collect();
        let low: f64 = self.lambda.iter().enumerate().map(|(j, l)| (l - 1.0) * dot(self.column(j), &w).powi(2)).sum();
        0.5 * (dot(&w, &w) + low)
    }

    /// p = diag(1/σ)(I + U(Λ^{-½} − I)Uᵀ)z: a N(0, Σ̂⁻¹) momentum from z ~ N(0, I).
    pub fn momentum_from_normal(&self, z: &[f64], p: &mut [f64]) {
        self.apply_inner(z, p, |l| 1.0 / l.sqrt() - 1.0);
        p.iter_mut().zip(&self.sigma).for_each(|(pi, s)| *pi /= s);
    }

    /// The diagonal of Σ̂: σ_i²(1 + Σ_j (λ_j − 1)U_ij²).
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.dim())
            .map(|i| {
                let low: f64 = self.lambda.iter().enumerate().map(|(j, l)| (l - 1.0) * self.column(j)[i].powi(2)).sum();
                self.sigma[i].powi(2) * (1.0 + low)
            })
            .collect()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// What [`estimate`] returns: the metric, and the translation nuts-rs's
/// transformation also carries (the dynamics do not depend on it).
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Σ̂.
    pub metric: LowRank,
    /// μ* = x̄ + σ²⊙ḡ (step 1).
    pub mean_star: Vec<f64>,
    /// nuts-rs's mean term in the rescaled coordinates, x̃̄ + g̃̄ + U(Λ − I)Uᵀg̃̄ (step 6).
    pub mean_term: Vec<f64>,
}

/// The low-rank plus diagonal estimate (the module doc's steps 1–5) from n
/// draws and their scores, each `draws[t*D..(t+1)*D]` / `grads[t*D..(t+1)*D]`.
/// `None` with fewer than [`MIN_DRAWS`] draws, if a decomposition fails to
/// converge, or if any value of the result is not finite.
pub fn estimate(draws: &[f64], grads: &[f64], d: usize) -> Option<Estimate> {
    assert!(d > 0 && draws.len() == grads.len() && draws.len().is_multiple_of(d), "draws and scores must be n × D");
    let n = draws.len() / d;
    if n < MIN_DRAWS || !draws.iter().chain(grads).all(|v| v.is_finite()) {
        return None;
    }
    // Column t is draw t: the slices are already in column-major D × n order.
    let mut x = DMatrix::from_column_slice(d, n, draws);
    let mut g = DMatrix::from_column_slice(d, n, grads);
    let nf = n as f64;

    // 1. Rescale and centre.
    let (mut sigma, mut mean_star) = (vec![0.0; d], vec![0.0; d]);
    let (mut x_mean, mut g_mean) = (vec![0.0; d], vec![0.0; d]);
    for i in 0..d {
        let (xm, gm) = (x.row(i).sum() / nf, g.row(i).sum() / nf);
        let xv = x.row(i).iter().map(|v| (v - xm).powi(2)).sum::<f64>() / nf;
        let gv = g.row(i).iter().map(|v| (v - gm).powi(2)).sum::<f64>() / nf;
        let s = (xv / gv).sqrt().sqrt().clamp(1e-10, 1e10);
        (sigma[i], mean_star[i]) = (s, xm + s * s * gm);
        x.row_mut(i).iter_mut().for_each(|v| *v = (*v - mean_star[i]) / s);
        g.row_mut(i).iter_mut().for_each(|v| *v *= s);
        (x_mean[i], g_mean[i]) = (x.row(i).sum() / nf, g.row(i).sum() / nf);
        x.row_mut(i).iter_mut().for_each(|v| *v -= x_mean[i]);
        g.row_mut(i).iter_mut().for_each(|v| *v -= g_mean[i]);
    }
    if !sigma.iter().chain(&mean_star).all(|v| v.is_finite()) {
        return None;
    }

    // 2. The subspace spanned by both sets of left singular vectors.
    let max_niter = 100 * d.min(n).max(10);
    let eps = f64::EPSILON * 5.0;
    let ux = SVD::try_new_unordered(x.clone(), true, false, eps, max_niter)?.u?;
    let ug = SVD::try_new_unordered(g.clone(), true, false, eps, max_niter)?.u?;
    let mut both = DMatrix::zeros(d, ux.ncols() + ug.ncols());
    both.columns_mut(0, ux.ncols()).copy_from(&ux);
    both.columns_mut(ux.ncols(), ug.ncols()).copy_from(&ug);
    let q = ColPivQR::new(both).q();
    // Qᵀ once, so that both products go through the blocked matrix product.
    let qt = q.transpose();
    let (px, pg) = (&qt * &x, &qt * &g);

    // 3. Regularised scatters.
    let k = q.ncols();
    let a = &px * px.transpose() / GAMMA + DMatrix::identity(k, k);
    let b = &pg * pg.transpose() / GAMMA + DMatrix::identity(k, k);

    // 4. The SPD mean of A and B⁻¹, then 5. its eigenpairs, filtered.
    let sigma_q = spd_mean(a, b, max_niter)?;
    let eig = SymmetricEigen::try_new(sigma_q, f64::EPSILON, max_niter)?;
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&i, &j| eig.eigenvalues[i].total_cmp(&eig.eigenvalues[j]));
    let kept: Vec<usize> = order.into_iter().filter(|&j| eig.eigenvalues[j] > EIGVAL_CUTOFF || eig.eigenvalues[j] < EIGVAL_CUTOFF.recip()).collect();
    let lambda: Vec<f64> = kept.iter().map(|&j| eig.eigenvalues[j].clamp(1e-20, 1e20)).collect();
    let v_kept = eig.eigenvectors.select_columns(&kept);
    let metric = LowRank::new(sigma, (&q * v_kept).as_slice().to_vec(), lambda);

    // 6. nuts-rs's mean term x̃̄ + g̃̄ + U(Λ − I)Uᵀg̃̄.
    let mut mean_term = vec![0.0; d];
    metric.apply_inner(&g_mean, &mut mean_term, |l| l - 1.0);
    mean_term.iter_mut().zip(&x_mean).for_each(|(m, xm)| *m += xm);

    let finite = metric.u.iter().chain(&metric.lambda).chain(&mean_term).all(|v| v.is_finite());
    finite.then_some(Estimate { metric, mean_star, mean_term })
}

/// B^{−½}(B^{½}AB^{½})^{½}B^{−½} for SPD A and B.
fn spd_mean(a: DMatrix<f64>, b: DMatrix<f64>, max_niter: usize) -> Option<DMatrix<f64>> {
    let eb = SymmetricEigen::try_new(b, f64::EPSILON, max_niter)?;
    let b_half = sym_fn(&eb, f64::sqrt);
    let b_inv_half = sym_fn(&eb, |l| 1.0 / l.sqrt());
    let m = &b_half * a * &b_half;
    let m = (&m + m.transpose()) * 0.5;
    let m_half = sym_fn(&SymmetricEigen::try_new(m, f64::EPSILON, max_niter)?, f64::sqrt);
    Some(&b_inv_half * m_half * b_inv_half)
}

/// V·diag(f(λ))·Vᵀ.
fn sym_fn(e: &SymmetricEigen<f64, nalgebra::Dyn>, f: impl Fn(f64) -> f64) -> DMatrix<f64> {
    let v = &e.eigenvectors;
    let scaled = DMatrix::from_fn(v.nrows(), v.ncols(), |i, j| v[(i, j)] * f(e.eigenvalues[j]));
    scaled * v.transpose()
}

/// One chain's draws and scores of the current adaptation window, for [`estimate`].
#[derive(Debug, Clone, Default)]
pub struct Window {
    d: usize,
    draws: Vec<f64>,
    grads: Vec<f64>,
}

impl Window {
    /// An empty window in D = `d` dimensions.
    pub fn new(d: usize) -> Self {
        Self { d, draws: Vec::new(), grads: Vec::new() }
    }

    /// Adds a draw and its score ∇log π.
    pub fn push(&mut self, x: &[f64], grad: &[f64]) {
        self.draws.extend_from_slice(x);
        self.grads.extend_from_slice(grad);
    }

    /// Draws held.
    pub fn len(&self) -> usize {
        self.draws.len() / self.d.max(1)
    }

    /// Whether it holds no draw.
    pub fn is_empty(&self) -> bool {
        self.draws.is_empty()
    }

    /// The estimate from the window's draws (see [`estimate`]).
    pub fn estimate(&self) -> Option<Estimate> {
        estimate(&self.draws, &self.grads, self.d)
    }

    /// Empties the window (its memory is kept for the next).
    pub fn clear(&mut self) {
        self.draws.clear();
        self.grads.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;
    use crate::testing::{floats as v, reference_vectors_2 as reference};
    use lh_plugin_api::ChainRng;
    use nalgebra::DVector;

    fn rows(x: &serde_json::Value) -> Vec<Vec<f64>> {
        x.as_array().unwrap().iter().map(v).collect()
    }

    /// Σ̂ as a dense D × D matrix.
    fn dense(l: &LowRank) -> DMatrix<f64> {
        let d = l.dim();
        let u = DMatrix::from_column_slice(d, l.rank(), &l.u);
        let inner = DMatrix::identity(d, d) + &u * DMatrix::from_diagonal(&DVector::from_iterator(l.rank(), l.lambda.iter().map(|x| x - 1.0))) * u.transpose();
        let s = DMatrix::from_diagonal(&DVector::from_vec(l.sigma.clone()));
        &s * inner * &s
    }

    /// nuts-rs 0.19.1's own `compute_update` on 12 exact draw/score pairs of
    /// a 4-D Gaussian (`nutsrs_mass_matrix_estimators.low_rank`): σ, μ* and
    /// the mean term to 1e-12 relative (they are sums and square roots of the
    /// same numbers); the four kept eigenvalues to 1e-9 relative and their
    /// eigenvectors to 1e-8 up to sign (the SVD/QR/eigen solvers differ from
    /// faer's, and the SPD mean passes through two square roots of matrices
    /// scaled by 1/γ = 1e5); and Σ̂ recovers the true Σ to 1e-5 of its
    /// largest entry (measured: 1.05e-5 absolute, Σ's largest entry is 4).
    #[test]
    fn estimate_matches_nuts_rs() {
        let r = &reference()["nutsrs_mass_matrix_estimators"];
        let (draws, grads) = (rows(&r["inputs"]["draws"]).concat(), rows(&r["inputs"]["grads"]).concat());
        let want = &r["low_rank"];
        let e = estimate(&draws, &grads, 4).expect("an estimate");
        let close = |a: &[f64], b: &[f64], tol: f64| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()));
        assert!(close(&e.metric.sigma, &v(&want["stds"]), 1e-12), "σ {:?}", e.metric.sigma);
        assert!(close(&e.mean_star, &v(&want["mean_star"]), 1e-12), "μ* {:?}", e.mean_star);
        assert!(close(&e.mean_term, &v(&want["mean_low_rank"]), 1e-8), "mean term {:?}", e.mean_term);
        assert!(close(&e.metric.lambda, &v(&want["kept_eigenvalues"]), 1e-9), "λ {:?}", e.metric.lambda);
        for (j, want_u) in rows(&want["kept_eigenvectors_columns"]).iter().enumerate() {
            let got = &e.metric.u[j * 4..(j + 1) * 4];
            let sign = dot(got, want_u).signum();
            assert!(got.iter().zip(want_u).all(|(a, b)| (sign * a - b).abs() < 1e-8), "u_{j} {got:?} vs {want_u:?}");
        }
        let truth = rows(&r["inputs"]["Sigma"]);
        let got = dense(&e.metric);
        let err = (0..16).map(|k| (got[(k / 4, k % 4)] - truth[k / 4][k % 4]).abs()).fold(0.0, f64::max);
        eprintln!("max |Σ̂ − Σ| = {err:.3e}");
        assert!(err < 1e-5 * 4.0, "max |Σ̂ − Σ| = {err}");
    }

    /// Isotropic draws with exact scores g = −x: the Fisher estimate is the
    /// identity, so no eigen-direction passes the filter; too few draws or a
    /// non-finite value give no estimate.
    #[test]
    fn estimate_of_a_standard_normal_and_refusals() {
        let mut rng = ChainRng::seed_from_u64(3);
        let (d, n) = (6, 40);
        let draws: Vec<f64> = (0..d * n).map(|_| rng.standard_normal()).collect();
        let grads: Vec<f64> = draws.iter().map(|x| -x).collect();
        let e = estimate(&draws, &grads, d).unwrap();
        // var x / var g = 1 exactly, so σ = 1 up to rounding; λ ≈ 1 (to γ-sized terms) everywhere.
        assert!(e.metric.sigma.iter().all(|s| (s - 1.0).abs() < 1e-12), "{:?}", e.metric.sigma);
        assert_eq!(e.metric.rank(), 0, "{:?}", e.metric.lambda);
        assert!(estimate(&draws[..2 * d], &grads[..2 * d], d).is_none());
        let mut bad = grads.clone();
        bad[5] = f64::NAN;
        assert!(estimate(&draws, &bad, d).is_none());
        // More dimensions than draws (D = 30, n = 8): U has at most 2n columns and stays orthonormal.
        let (d, n) = (30, 8);
        let scales: Vec<f64> = (0..d).map(|i| 1.0 + i as f64).collect();
        let draws: Vec<f64> = (0..d * n).map(|k| scales[k % d] * rng.standard_normal()).collect();
        let grads: Vec<f64> = draws.iter().enumerate().map(|(k, x)| -x / scales[k % d].powi(2)).collect();
        let e = estimate(&draws, &grads, d).unwrap();
        let k = e.metric.rank();
        assert!(k <= 2 * n, "{k}");
        for a in 0..k {
            for b in 0..k {
                let g = dot(e.metric.column(a), e.metric.column(b));
                assert!((g - f64::from(u8::from(a == b))).abs() < 1e-10, "UᵀU[{a},{b}] = {g}");
            }
        }
    }

    /// A random metric with D = 7, k = 3, λ spread over [0.05, 20].
    fn random_metric(rng: &mut ChainRng) -> LowRank {
        let (d, k) = (7, 3);
        let sigma: Vec<f64> = (0..d).map(|_| (0.7 * rng.standard_normal()).exp()).collect();
        let raw = DMatrix::from_fn(d, k, |_, _| rng.standard_normal());
        let q = nalgebra::linalg::QR::new(raw).q();
        LowRank::new(sigma, q.as_slice().to_vec(), vec![0.05, 3.0, 20.0])
    }

    /// Σ̂p and ½pᵀΣ̂p against the dense Σ̂ to 1e-12 relative, the diagonal to
    /// 1e-12, and the momentum map T (p = Tz) against the dense inverse:
    /// TTᵀ = Σ̂⁻¹ to 1e-10, exact algebra up to rounding.
    #[test]
    fn low_rank_operations_match_the_dense_matrix() {
        let mut rng = ChainRng::seed_from_u64(17);
        let l = random_metric(&mut rng);
        let d = l.dim();
        let s = dense(&l);
        for _ in 0..5 {
            let p: Vec<f64> = (0..d).map(|_| rng.standard_normal()).collect();
            let want = &s * DVector::from_vec(p.clone());
            let mut got = vec![0.0; d];
            l.velocity(&p, &mut got);
            assert!(got.iter().zip(want.iter()).all(|(a, b)| (a - b).abs() < 1e-12 * (1.0 + b.abs())), "{got:?} vs {want}");
            let k_want = 0.5 * dot(&p, want.as_slice());
            assert!((l.kinetic(&p) - k_want).abs() < 1e-12 * k_want, "{} vs {k_want}", l.kinetic(&p));
        }
        assert!(l.diagonal().iter().enumerate().all(|(i, v)| (v - s[(i, i)]).abs() < 1e-12 * s[(i, i)]));
        let t = DMatrix::from_fn(d, d, |i, j| {
            let mut e = vec![0.0; d];
            e[j] = 1.0;
            let mut p = vec![0.0; d];
            l.momentum_from_normal(&e, &mut p);
            p[i]
        });
        let inv = s.clone().try_inverse().unwrap();
        let err = (&t * t.transpose() - &inv).abs().max();
        assert!(err < 1e-10 * inv.abs().max(), "|TTᵀ − Σ̂⁻¹| = {err}");
    }

    /// Momenta drawn through [`Metric`]: their empirical covariance C over
    /// 40 000 draws, whitened, Σ̂^½CΣ̂^½ ≈ I to 0.05 per entry (the whitened
    /// entries have standard errors ≈ √(2/40000) ≈ 0.007 on the diagonal,
    /// 0.005 off it).
    #[test]
    fn momentum_draws_have_covariance_the_inverse_metric() {
        let mut rng = ChainRng::seed_from_u64(23);
        let l = random_metric(&mut rng);
        let (d, s) = (l.dim(), dense(&l));
        let m = Metric::LowRank(l);
        let n = 40_000;
        let mut c = DMatrix::<f64>::zeros(d, d);
        let mut p = vec![0.0; d];
        for _ in 0..n {
            m.draw_momentum(&mut p, &mut rng);
            let pv = DVector::from_column_slice(&p);
            c += &pv * pv.transpose();
        }
        c /= n as f64;
        let half = sym_fn(&SymmetricEigen::new(s), f64::sqrt);
        let err = (&half * c * &half - DMatrix::identity(d, d)).abs().max();
        eprintln!("|Σ̂^½CΣ̂^½ − I| = {err:.4}");
        assert!(err < 0.05, "|Σ̂^½CΣ̂^½ − I| = {err}");
    }
}
