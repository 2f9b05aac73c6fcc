//! VI-MFA: variational inference with a mixture of factor analysers, as an
//! lh-host sampler plugin (ALGORITHMS.md §5.4, with the original's defects fixed).
//!
//! # Family
//! In whitened coordinates ṽ (θ = θ* + s ⊙ ṽ, s from the optional whitening
//! pre-pass), M components of rank r, all centred at θ*:
//! ```text
//! q(ṽ) = Σ_m π_m N(ṽ; 0, Σ_m),   Σ_m = diag(d)(I + A_m A_mᵀ)diag(d)
//! d = clip(softplus(ρ), 1e-4, 1e2),  π = softmax(α),  A_m ∈ R^{D×r}
//! draw: m ~ π, z ~ N(0, I_r), ε ~ N(0, I_D), ṽ = d ⊙ (A_m z + ε)
//! ```
//! log N_m by Woodbury and the determinant lemma with x = ṽ/d,
//! C_m = I_r + A_mᵀA_m: −½(D ln 2π + 2Σ ln d + ln|C_m| + xᵀx − gᵀC_m⁻¹g),
//! g = A_mᵀx. log q(θ) includes the whitening Jacobian −Σ ln s.
//!
//! # Objective (fixes of the original)
//! Maximises ELBO = E_q[−nβL_B(θ) − (γ/2)‖θ − θ*‖²] + H(q) (the original
//! minimised it and had no entropy term). ρ and A get the sticking-the-landing
//! pathwise gradient of log π̂(θ) − log q_φ̄(θ) (φ̄ held fixed), through the
//! sampled component; α gets the Rao–Blackwellised score gradient
//! (r(ṽ) − π)·(log π̂ − log q − baseline), r the responsibilities.
//!
//! # Estimate
//! S = `eval_samples` i.i.d. draws per chain, each recorded as a control-
//! variate-adjusted L_n (when `control_variate`): L_n(θ_s) − ½v_sᵀHv_s +
//! ½[Σ_m π_m Σ_j k_mjᵀHk_mj + uᵀHu], with v_s = θ_s − θ*, k_mj = s ⊙ d ⊙ A_m[:, j]
//! and u = s ⊙ d ⊙ ξ for a fresh Rademacher ξ per draw (Hutchinson for the
//! diagonal part: the original dropped it). Each recorded value is then an
//! unbiased estimate of E_q[L_n] on its own, so the host's λ̂ and its SE
//! (independent draws) stay honest. H is L_n's Hessian at θ*, applied by
//! central differences of the host's full-batch gradients (step `cv_fd_step`).

use lh_plugin_api::*;
use lh_vi_common::{self as vi, sigmoid, softplus, Evaluation, Family};

vi::vi_config!(
    /// VI-MFA's config: the shared optimisation keys and the family's own; unknown keys are errors.
    Config {
        /// Mixture components M.
        components: usize,
        /// Rank r of each component's factor loading.
        rank: usize,
        /// Initial diagonal scale as a multiple of 1/√(nβ + γ) (the posterior's
        /// scale when the Hessian is the identity).
        init_scale: f64,
        /// Record control-variate-adjusted L_n values (see the crate docs).
        control_variate: bool,
        /// Finite-difference step (in θ units) of the Hessian-vector products.
        cv_fd_step: f64,
    }
);

const DEFAULTS: &str = "(components: 8, rank: 2, steps: 5000, batch_size: 256, lr: 0.01, lr_schedule: cosine, \
                        lr_warmup_frac: 0.05, clip_global_norm: 1000.0, eval_every: 50, eval_samples: 64, whitening: none, \
                        whitening_decay: 0.99, init_scale: 1.0, control_variate: true, cv_fd_step: 1e-3)";

/// The VI-MFA sampler.
#[derive(Default)]
pub struct ViMfa;

impl Sampler for ViMfa {
    fn describe(&self) -> Description {
        Description {
            name: "vi-mfa".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            help: "Variational inference with a mixture of `components` factor analysers of rank `rank` centred at θ* \
                   (diagonal + low-rank covariances, mixture weights), fitted by maximising the ELBO with \
                   sticking-the-landing gradients, a Rao–Blackwellised score gradient for the weights, Adam, \
                   warm-up + schedule and global-norm clipping on minibatches. λ̂ from eval_samples i.i.d. draws per \
                   chain on the full data, with a Hessian control variate (control_variate). Draws are independent."
                .into(),
            default_config: DEFAULTS.into(),
        }
    }

    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: &str, seed: u64) -> Result<RunSummary, SamplerError> {
        run(model, sink, &parse_config(config)?, seed)
    }
}

/// The mixture of factor analysers for one problem size. φ = [ρ (D) | A (M·D·r, A_m[i, j] at (m·D + i)·r + j) | α (M)].
pub struct Mfa {
    pub dim: usize,
    pub components: usize,
    pub rank: usize,
    /// Whitening scales s.
    pub scales: Vec<f64>,
    /// Initial ρ (the same for every coordinate of ṽ's diagonal).
    pub rho0: f64,
    /// θ*.
    pub center: Vec<f64>,
}

/// What one draw keeps for its gradient.
#[derive(Default, Clone)]
pub struct Draw {
    component: usize,
    z: Vec<f64>,
    /// x = A_m z + ε, so ṽ = d ⊙ x.
    x: Vec<f64>,
    /// Responsibilities r_m(ṽ).
    resp: Vec<f64>,
    /// −∇_ṽ log q(ṽ) = Σ_m r_m Σ_m⁻¹ ṽ.
    neg_score: Vec<f64>,
}

fn log_softmax(a: &[f64]) -> Vec<f64> {
    let mx = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = mx + a.iter().map(|x| (x - mx).exp()).sum::<f64>().ln();
    a.iter().map(|x| x - lse).collect()
}

/// Cholesky factor (lower, row-major k×k) of a symmetric positive definite matrix.
fn cholesky(a: &[f64], k: usize) -> Vec<f64> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s = a[i * k + j] - (0..j).map(|p| l[i * k + p] * l[j * k + p]).sum::<f64>();
            l[i * k + j] = if i == j { s.sqrt() } else { s / l[j * k + j] };
        }
    }
    l
}

/// Solves L Lᵀ y = b for y.
fn chol_solve(l: &[f64], k: usize, b: &[f64]) -> Vec<f64> {
    let mut y = b.to_vec();
    for i in 0..k {
        y[i] = (y[i] - (0..i).map(|p| l[i * k + p] * y[p]).sum::<f64>()) / l[i * k + i];
    }
    for i in (0..k).rev() {
        y[i] = (y[i] - (i + 1..k).map(|p| l[p * k + i] * y[p]).sum::<f64>()) / l[i * k + i];
    }
    y
}

impl Mfa {
    fn a_offset(&self, m: usize) -> usize {
        self.dim + m * self.dim * self.rank
    }

    fn alpha<'a>(&self, phi: &'a [f64]) -> &'a [f64] {
        &phi[self.dim + self.components * self.dim * self.rank..]
    }

    /// The diagonal scales d = clip(softplus(ρ), 1e-4, 1e2).
    pub fn diag(&self, phi: &[f64]) -> Vec<f64> {
        phi[..self.dim].iter().map(|&r| softplus(r).clamp(1e-4, 1e2)).collect()
    }

    /// Mixture weights π = softmax(α).
    pub fn weights(&self, phi: &[f64]) -> Vec<f64> {
        log_softmax(self.alpha(phi)).iter().map(|l| l.exp()).collect()
    }

    /// log q(ṽ) (without the whitening Jacobian), the responsibilities and
    /// Σ_m r_m Σ_m⁻¹ṽ, from x = ṽ/d.
    pub fn log_density(&self, phi: &[f64], x: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
        let (dim, r) = (self.dim, self.rank);
        let d = self.diag(phi);
        let log_det_d: f64 = 2.0 * d.iter().map(|v| v.ln()).sum::<f64>();
        let xx: f64 = x.iter().map(|v| v * v).sum();
        let log_pi = log_softmax(self.alpha(phi));
        let mut log_n = vec![0.0; self.components];
        // Per component: (I + A Aᵀ)⁻¹x = x − A C⁻¹ Aᵀx.
        let mut corrections = Vec::with_capacity(self.components);
        for m in 0..self.components {
            let a = &phi[self.a_offset(m)..self.a_offset(m) + dim * r];
            let mut c = vec![0.0; r * r];
            let mut g = vec![0.0; r];
            for i in 0..dim {
                let row = &a[i * r..(i + 1) * r];
                for j in 0..r {
                    g[j] += row[j] * x[i];
                    for k in 0..r {
                        c[j * r + k] += row[j] * row[k];
                    }
                }
            }
            for j in 0..r {
                c[j * r + j] += 1.0;
            }
            let l = cholesky(&c, r);
            let cg = chol_solve(&l, r, &g);
            let quad = xx - g.iter().zip(&cg).map(|(a, b)| a * b).sum::<f64>();
            let log_det_c: f64 = 2.0 * (0..r).map(|j| l[j * r + j].ln()).sum::<f64>();
            log_n[m] = -0.5 * (dim as f64 * (2.0 * std::f64::consts::PI).ln() + log_det_d + log_det_c + quad);
            corrections.push(cg);
        }
        let joint: Vec<f64> = log_n.iter().zip(&log_pi).map(|(n, p)| n + p).collect();
        let mx = joint.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_q = mx + joint.iter().map(|j| (j - mx).exp()).sum::<f64>().ln();
        let resp: Vec<f64> = joint.iter().map(|j| (j - log_q).exp()).collect();
        // Σ_m⁻¹ṽ = (x − A_m C_m⁻¹ A_mᵀ x)/d.
        let mut neg_score = x.to_vec();
        for (m, cg) in corrections.iter().enumerate() {
            let a = &phi[self.a_offset(m)..self.a_offset(m) + dim * r];
            for i in 0..dim {
                neg_score[i] -= resp[m] * (0..r).map(|j| a[i * r + j] * cg[j]).sum::<f64>();
            }
        }
        neg_score.iter_mut().zip(&d).for_each(|(v, d)| *v /= d);
        (log_q, resp, neg_score)
    }
}

impl Family for Mfa {
    type Draw = Draw;

    fn n_params(&self) -> usize {
        self.dim + self.components * (self.dim * self.rank + 1)
    }

    fn init(&self, rng: &mut ChainRng) -> Vec<f64> {
        let mut phi = vec![0.0; self.n_params()];
        phi[..self.dim].fill(self.rho0);
        let a_end = self.dim + self.components * self.dim * self.rank;
        vi::normals(rng, &mut phi[self.dim..a_end]);
        phi[self.dim..a_end].iter_mut().for_each(|a| *a *= 0.05);
        self.project(&mut phi);
        phi
    }

    fn sample(&self, phi: &[f64], rng: &mut ChainRng, theta: &mut [f64], draw: &mut Draw) -> f64 {
        let (dim, r) = (self.dim, self.rank);
        let pi = self.weights(phi);
        let u = rng.uniform();
        let mut acc = 0.0;
        draw.component = pi
            .iter()
            .position(|p| {
                acc += p;
                u < acc
            })
            .unwrap_or(self.components - 1);
        draw.z.resize(r, 0.0);
        vi::normals(rng, &mut draw.z);
        draw.x.resize(dim, 0.0);
        vi::normals(rng, &mut draw.x);
        let a = &phi[self.a_offset(draw.component)..self.a_offset(draw.component) + dim * r];
        for i in 0..dim {
            draw.x[i] += (0..r).map(|j| a[i * r + j] * draw.z[j]).sum::<f64>();
        }
        let d = self.diag(phi);
        for i in 0..dim {
            theta[i] = self.center[i] + self.scales[i] * d[i] * draw.x[i];
        }
        let (log_q, resp, neg_score) = self.log_density(phi, &draw.x);
        draw.resp = resp;
        draw.neg_score = neg_score;
        log_q - self.scales.iter().map(|s| s.ln()).sum::<f64>()
    }

    fn elbo_grad(&self, phi: &[f64], draw: &Draw, grad_logp: &[f64], payoff: f64, grad: &mut [f64]) {
        let (dim, r) = (self.dim, self.rank);
        grad.fill(0.0);
        let d = self.diag(phi);
        // a = ∇_ṽ [log π̂ − log q_φ̄] = s ⊙ ∇_θ log π̂ + Σ_m r_m Σ_m⁻¹ṽ.
        let a: Vec<f64> = (0..dim).map(|i| self.scales[i] * grad_logp[i] + draw.neg_score[i]).collect();
        for i in 0..dim {
            // ṽ_i = d_i x_i; d_i = softplus(ρ_i) inside the clip.
            let sp = softplus(phi[i]);
            if (1e-4..=1e2).contains(&sp) {
                grad[i] = a[i] * sigmoid(phi[i]) * draw.x[i];
            }
        }
        let off = self.a_offset(draw.component);
        for i in 0..dim {
            for j in 0..r {
                grad[off + i * r + j] = a[i] * d[i] * draw.z[j];
            }
        }
        let pi = self.weights(phi);
        let alpha_off = self.dim + self.components * dim * r;
        for m in 0..self.components {
            grad[alpha_off + m] = (draw.resp[m] - pi[m]) * payoff;
        }
    }

    /// Caps every column of every A_m at norm 10.
    fn project(&self, phi: &mut [f64]) {
        let (dim, r) = (self.dim, self.rank);
        for m in 0..self.components {
            let a = &mut phi[self.dim + m * dim * r..self.dim + (m + 1) * dim * r];
            for j in 0..r {
                let norm = (0..dim).map(|i| a[i * r + j] * a[i * r + j]).sum::<f64>().sqrt();
                let scale = (10.0 / (norm + 1e-8)).min(1.0);
                (0..dim).for_each(|i| a[i * r + j] *= scale);
            }
        }
    }
}

/// The Hessian control variate (see the crate docs), with its bookkeeping.
struct ControlVariate<'a> {
    mfa: &'a Mfa,
    h: f64,
    rngs: Vec<ChainRng>,
    /// ½ Σ_m π_m Σ_j k_mjᵀHk_mj per chain, computed at the first call.
    low_rank_half_trace: Option<Vec<f64>>,
    /// Sums of the plain and adjusted values and their squares, for the variance reduction.
    plain: Vec<f64>,
    adjusted: Vec<f64>,
}

fn quad_forms(dirs: &[f64], hv: &[f64], d: usize) -> Vec<f64> {
    dirs.chunks(d).zip(hv.chunks(d)).map(|(v, h)| v.iter().zip(h).map(|(a, b)| a * b).sum()).collect()
}

impl ControlVariate<'_> {
    fn low_rank_half_trace(&self, model: &mut ModelMut<'_>, phis: &[Vec<f64>]) -> Result<Vec<f64>, SamplerError> {
        let (mfa, d) = (self.mfa, self.mfa.dim);
        let mut half = vec![0.0; phis.len()];
        for m in 0..mfa.components {
            for j in 0..mfa.rank {
                let dirs: Vec<f64> = phis
                    .iter()
                    .flat_map(|phi| {
                        let diag = mfa.diag(phi);
                        let a = &phi[mfa.a_offset(m)..];
                        (0..d).map(move |i| mfa.scales[i] * diag[i] * a[i * mfa.rank + j]).collect::<Vec<_>>()
                    })
                    .collect();
                let q = quad_forms(&dirs, &vi::hvp(model, &dirs, self.h)?, d);
                for (k, phi) in phis.iter().enumerate() {
                    half[k] += 0.5 * mfa.weights(phi)[m] * q[k];
                }
            }
        }
        Ok(half)
    }
}

impl Evaluation for ControlVariate<'_> {
    fn adjust(&mut self, model: &mut ModelMut<'_>, phis: &[Vec<f64>], theta: &[f64], loss: &mut [f64]) -> Result<(), SamplerError> {
        let d = self.mfa.dim;
        if self.low_rank_half_trace.is_none() {
            self.low_rank_half_trace = Some(self.low_rank_half_trace(model, phis)?);
        }
        let v: Vec<f64> = theta.chunks(d).flat_map(|t| t.iter().zip(&self.mfa.center).map(|(a, b)| a - b)).collect();
        let q_s = quad_forms(&v, &vi::hvp(model, &v, self.h)?, d);
        let probes: Vec<f64> = phis
            .iter()
            .zip(self.rngs.iter_mut())
            .flat_map(|(phi, rng)| {
                let diag = self.mfa.diag(phi);
                (0..d).map(|i| if rng.uniform() < 0.5 { 1.0 } else { -1.0 } * self.mfa.scales[i] * diag[i]).collect::<Vec<_>>()
            })
            .collect();
        let q_u = quad_forms(&probes, &vi::hvp(model, &probes, self.h)?, d);
        let low_rank = self.low_rank_half_trace.as_ref().expect("computed above");
        for k in 0..loss.len() {
            let adjusted = loss[k] - 0.5 * q_s[k] + low_rank[k] + 0.5 * q_u[k];
            self.plain.push(loss[k]);
            self.adjusted.push(adjusted);
            loss[k] = adjusted;
        }
        Ok(())
    }
}

fn variance(x: &[f64]) -> f64 {
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (x.len() as f64 - 1.0)
}

fn run(mut model: ModelMut<'_>, mut sink: SinkMut<'_>, cfg: &Config, seed: u64) -> Result<RunSummary, SamplerError> {
    let positive = [("components", cfg.components > 0), ("rank", cfg.rank > 0), ("init_scale", cfg.init_scale > 0.0), ("cv_fd_step", cfg.cv_fd_step > 0.0)];
    if let Some((key, _)) = positive.iter().find(|p| !p.1) {
        return Err(SamplerError::fatal(format!("config key `{key}` must be positive")));
    }
    let opt = cfg.opt();
    let (c, n) = (model.n_chains(), model.n_data());
    let n_beta = n as f64 * model.beta();
    let mut batches = Minibatches::new(n, cfg.batch_size, chain_rngs(seed ^ 0x9e37_79b9_7f4a_7c15, 1).remove(0));
    sink.phase("whitening".into());
    let scales = vi::whitening_scales(&mut model, &opt, &mut batches)?;
    // d starts at init_scale/√(nβ + γ) in θ units, i.e. divided by the mean whitening scale.
    let mean_scale = scales.iter().sum::<f64>() / scales.len() as f64;
    let d0 = cfg.init_scale / (n_beta + model.gamma()).sqrt() / mean_scale;
    let mfa = Mfa { dim: model.dim(), components: cfg.components, rank: cfg.rank, scales, rho0: d0.exp_m1().ln(), center: model.center().to_vec() };
    let mut rngs = chain_rngs(seed, c);
    let mut summary = RunSummary::default();
    let fit = if cfg.control_variate {
        let mut cv = ControlVariate {
            mfa: &mfa,
            h: cfg.cv_fd_step,
            rngs: chain_rngs(seed ^ 0x5851_f42d_4c95_7f2d, c),
            low_rank_half_trace: None,
            plain: Vec::new(),
            adjusted: Vec::new(),
        };
        let fit = vi::run(&mut model, &mut sink, &mfa, &opt, &mut batches, &mut rngs, &mut cv)?;
        if cv.plain.len() > 1 {
            let plain_llc = n_beta * (cv.plain.iter().sum::<f64>() / cv.plain.len() as f64 - model.l0());
            let reduction = variance(&cv.plain) / variance(&cv.adjusted).max(1e-300);
            summary.tuned.push(Tuned::new("llc_without_cv", plain_llc));
            summary.tuned.push(Tuned::new("cv_variance_reduction", reduction));
        }
        summary.notes = "independent draws of q; the recorded L_n values are Hessian-control-variate adjusted (unbiased for E_q[L_n])".into();
        fit
    } else {
        summary.notes = "independent draws of q; the recorded L_n values are plain".into();
        vi::run(&mut model, &mut sink, &mfa, &opt, &mut batches, &mut rngs, &mut vi::Plain)?
    };
    summary.tuned.push(Tuned::new("elbo_final", fit.elbo.iter().sum::<f64>() / c as f64));
    Ok(summary)
}

export_sampler!(ViMfa);

#[cfg(test)]
mod tests {
    use super::*;

    fn mfa(dim: usize, components: usize, rank: usize) -> Mfa {
        Mfa { dim, components, rank, scales: (0..dim).map(|i| 0.5 + 0.25 * i as f64).collect(), rho0: -0.3, center: vec![0.1; dim] }
    }

    fn random_phi(f: &Mfa, seed: u64) -> Vec<f64> {
        let mut rng = chain_rngs(seed, 1).remove(0);
        let mut phi = vec![0.0; f.n_params()];
        vi::normals(&mut rng, &mut phi);
        phi.iter_mut().for_each(|p| *p *= 0.5);
        phi
    }

    /// log det and inverse of a small dense SPD matrix by Gauss–Jordan.
    fn logdet_inverse(a: &[f64], k: usize) -> (f64, Vec<f64>) {
        let mut m = a.to_vec();
        let mut inv: Vec<f64> = (0..k * k).map(|i| f64::from(u8::from(i / k == i % k))).collect();
        let mut logdet = 0.0;
        for col in 0..k {
            let piv = m[col * k + col];
            logdet += piv.ln();
            for j in 0..k {
                m[col * k + j] /= piv;
                inv[col * k + j] /= piv;
            }
            for row in (0..k).filter(|&r| r != col) {
                let f = m[row * k + col];
                for j in 0..k {
                    m[row * k + j] -= f * m[col * k + j];
                    inv[row * k + j] -= f * inv[col * k + j];
                }
            }
        }
        (logdet, inv)
    }

    /// log q(ṽ) from the dense covariances diag(d)(I + A_m A_mᵀ)diag(d).
    fn dense_log_q(f: &Mfa, phi: &[f64], v: &[f64]) -> f64 {
        let (dim, r) = (f.dim, f.rank);
        let d = f.diag(phi);
        let pi = f.weights(phi);
        let mut q = 0.0;
        for m in 0..f.components {
            let a = &phi[f.a_offset(m)..];
            let sigma: Vec<f64> = (0..dim * dim)
                .map(|ij| {
                    let (i, j) = (ij / dim, ij % dim);
                    let low: f64 = (0..r).map(|k| a[i * r + k] * a[j * r + k]).sum();
                    d[i] * d[j] * (low + f64::from(u8::from(i == j)))
                })
                .collect();
            let (logdet, inv) = logdet_inverse(&sigma, dim);
            let quad: f64 = (0..dim * dim).map(|ij| v[ij / dim] * inv[ij] * v[ij % dim]).sum();
            q += pi[m] * (-0.5 * (dim as f64 * (2.0 * std::f64::consts::PI).ln() + logdet + quad)).exp();
        }
        q.ln()
    }

    #[test]
    fn woodbury_log_density_matches_the_dense_one() {
        let f = mfa(4, 3, 2);
        let phi = random_phi(&f, 3);
        let d = f.diag(&phi);
        let v = [0.3, -0.2, 0.5, 0.1];
        let x: Vec<f64> = v.iter().zip(&d).map(|(v, d)| v / d).collect();
        let (log_q, resp, _) = f.log_density(&phi, &x);
        let dense = dense_log_q(&f, &phi, &v);
        assert!((log_q - dense).abs() < 1e-10, "{log_q} vs {dense}");
        assert!((resp.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    /// −∇_ṽ log q against central differences of the dense log q (h = 1e-5, abs. 1e-7).
    #[test]
    fn score_matches_finite_differences() {
        let f = mfa(4, 3, 2);
        let phi = random_phi(&f, 5);
        let d = f.diag(&phi);
        let v = [0.2, 0.4, -0.3, 0.6];
        let x: Vec<f64> = v.iter().zip(&d).map(|(v, d)| v / d).collect();
        let (_, _, neg_score) = f.log_density(&phi, &x);
        for i in 0..4 {
            let mut vp = v;
            let mut vm = v;
            vp[i] += 1e-5;
            vm[i] -= 1e-5;
            let fd = -(dense_log_q(&f, &phi, &vp) - dense_log_q(&f, &phi, &vm)) / 2e-5;
            assert!((neg_score[i] - fd).abs() < 1e-7, "coordinate {i}: {} vs {fd}", neg_score[i]);
        }
    }

    /// The single-draw STL objective log π̂(θ(φ)) − log q_φ̄(θ(φ)) with the noise
    /// (component, z, ε) held fixed, on log π̂(θ) = −½Σ b_i(θ_i − c_i)²: its
    /// central differences in ρ and A (h = 1e-6, rel. 1e-6) equal `elbo_grad`;
    /// the α gradient is (∇_α log q)·payoff, checked against differences of log q.
    #[test]
    fn elbo_gradient_matches_finite_differences() {
        let f = mfa(5, 2, 2);
        let phi = random_phi(&f, 11);
        let b: Vec<f64> = (0..5).map(|i| 1.0 + i as f64).collect();
        let mut rng = chain_rngs(2, 1).remove(0);
        let mut theta = vec![0.0; 5];
        let mut draw = Draw::default();
        f.sample(&phi, &mut rng, &mut theta, &mut draw);
        // θ(φ) with the draw's noise: ε = x − A_m z.
        let theta_of = |p: &[f64]| -> Vec<f64> {
            let d = f.diag(p);
            let a_old = &phi[f.a_offset(draw.component)..];
            let a_new = &p[f.a_offset(draw.component)..];
            (0..5)
                .map(|i| {
                    let eps = draw.x[i] - (0..2).map(|j| a_old[i * 2 + j] * draw.z[j]).sum::<f64>();
                    let x = eps + (0..2).map(|j| a_new[i * 2 + j] * draw.z[j]).sum::<f64>();
                    f.center[i] + f.scales[i] * d[i] * x
                })
                .collect()
        };
        let log_target = |t: &[f64]| -0.5 * (0..5).map(|i| b[i] * (t[i] - f.center[i]).powi(2)).sum::<f64>();
        let objective = |p: &[f64]| {
            let t = theta_of(p);
            let v: Vec<f64> = (0..5).map(|i| (t[i] - f.center[i]) / f.scales[i]).collect();
            let d = f.diag(&phi);
            let x: Vec<f64> = v.iter().zip(&d).map(|(v, d)| v / d).collect();
            log_target(&t) - (f.log_density(&phi, &x).0 - f.scales.iter().map(|s| s.ln()).sum::<f64>())
        };
        let grad_logp: Vec<f64> = (0..5).map(|i| -b[i] * (theta[i] - f.center[i])).collect();
        let payoff = 0.7;
        let mut grad = vec![0.0; f.n_params()];
        f.elbo_grad(&phi, &draw, &grad_logp, payoff, &mut grad);
        let alpha_off = f.n_params() - f.components;
        for p in 0..alpha_off {
            let (mut up, mut dn) = (phi.clone(), phi.clone());
            up[p] += 1e-6;
            dn[p] -= 1e-6;
            let fd = (objective(&up) - objective(&dn)) / 2e-6;
            assert!((grad[p] - fd).abs() < 1e-6 * (1.0 + fd.abs()), "parameter {p}: {} vs {fd}", grad[p]);
        }
        for m in 0..f.components {
            let p = alpha_off + m;
            let (mut up, mut dn) = (phi.clone(), phi.clone());
            up[p] += 1e-6;
            dn[p] -= 1e-6;
            let fd = (f.log_density(&up, &draw.x).0 - f.log_density(&dn, &draw.x).0) / 2e-6 * payoff;
            assert!((grad[p] - fd).abs() < 1e-7, "α_{m}: {} vs {fd}", grad[p]);
        }
    }

    #[test]
    fn projection_caps_column_norms() {
        let f = mfa(3, 2, 2);
        let mut phi = vec![100.0; f.n_params()];
        f.project(&mut phi);
        let a = &phi[f.a_offset(1)..f.a_offset(1) + 6];
        let norm = (0..3).map(|i| a[i * 2] * a[i * 2]).sum::<f64>().sqrt();
        assert!((norm - 10.0).abs() < 1e-6, "{norm}");
    }

    #[test]
    fn defaults_parse() {
        let c: Config = parse_config(DEFAULTS).unwrap();
        assert_eq!((c.components, c.rank), (8, 2));
    }
}
