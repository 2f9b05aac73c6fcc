//! BlackJAX 1.2.5's `adjusted_mclmc_find_L_and_step_size` (ALGORITHMS-2
//! §12.5) for every chain in lockstep, each chain tuning its own L, ε and
//! diagonal preconditioner:
//!
//! 1. n₁ transitions of dual averaging of ε towards the target acceptance
//!    at fixed L, then n₂ with ε frozen that collect the ε-weighted moments
//!    of the positions; ε becomes the averaged iterate;
//! 2. from the variances: L and ε scaled by r = clamp(1.3·√Σvar / L, 0, 2);
//!    with preconditioning M⁻¹ = var and L = √D; then n₁ more transitions of
//!    dual averaging from the new ε;
//! 3. (when frac_tune3 > 0) n₃ transitions at fixed parameters, L =
//!    min(0.5·L/(ESS/n₃), 2L) from the mean ESS of the coordinates, and n₁
//!    transitions of dual averaging at the new L.
//!
//! n_i = ⌊num_steps·frac_tune_i⌋ (no "+1", unlike the unadjusted tuner).
//! BlackJAX's quirks are kept (L fixed during every dual averaging; the
//! frozen iterate, not the average, during the n₂ transitions; the final
//! average not clamped; tuning_factor not applied to L = √D), except that a
//! zero variance is floored at 1e-12 so the preconditioner stays invertible.

use lh_mcmc_common::adaptation::DualAveraging;
use lh_mcmc_common::ess::ess;
use lh_plugin_api::SamplerError;

/// The tuner's settings.
#[derive(Debug, Clone, Copy)]
pub struct TuneConfig {
    /// The step budget N: stage i takes ⌊N·frac_tune_i⌋ transitions (stage 1 and 2 twice n₁ + n₂).
    pub num_steps: usize,
    pub frac_tune1: f64,
    pub frac_tune2: f64,
    pub frac_tune3: f64,
    /// Target acceptance rate of the dual averaging.
    pub target: f64,
    pub diagonal_preconditioning: bool,
    /// The factor on √Σvar in stage 2 (1.3).
    pub tuning_factor: f64,
}

impl TuneConfig {
    fn n(&self, frac: f64) -> usize {
        (self.num_steps as f64 * frac) as usize
    }

    /// Transitions the tuner takes in all (recorded as burn-in).
    pub fn transitions(&self) -> usize {
        let (n1, n2, n3) = (self.n(self.frac_tune1), self.n(self.frac_tune2), self.n(self.frac_tune3));
        n1 + n2 + if n2 > 0 { n1 } else { 0 } + if n3 > 0 { n3 + n1 } else { 0 }
    }
}

/// Every chain's parameters: L and ε (C each) and √M⁻¹ (C × D).
#[derive(Debug, Clone)]
pub struct Params {
    pub l: Vec<f64>,
    pub eps: Vec<f64>,
    pub sqrt_imm: Vec<f64>,
}

/// What the tuner drives: one recorded transition of every chain at a time.
pub trait Kernel {
    /// One transition of every chain at `p`; each chain's acceptance rate.
    fn step(&mut self, p: &Params) -> Result<Vec<f64>, SamplerError>;
    /// Chain k's position after the last transition.
    fn position(&self, k: usize) -> &[f64];
    /// True when the run should stop (then the tuner returns at once).
    fn should_stop(&self) -> bool;
}

/// Tunes `p` in place with `cfg.transitions()` transitions (fewer if the run is stopped).
pub fn tune(kernel: &mut impl Kernel, p: &mut Params, cfg: &TuneConfig) -> Result<(), SamplerError> {
    let (n1, n2, n3) = (cfg.n(cfg.frac_tune1), cfg.n(cfg.frac_tune2), cfg.n(cfg.frac_tune3));
    let moments = adapt(kernel, p, cfg, n1, n2)?;
    if n2 > 0 && !kernel.should_stop() {
        rescale_from_variance(p, &moments, cfg);
        adapt(kernel, p, cfg, n1, 0)?;
    }
    if n3 > 0 && !kernel.should_stop() {
        l_from_ess(kernel, p, n3)?;
        adapt(kernel, p, cfg, n1, 0)?;
    }
    Ok(())
}

/// ε-weighted sums of x and x² per chain: (Σw, Σw·x (C × D), Σw·x² (C × D)).
type Moments = (Vec<f64>, Vec<f64>, Vec<f64>);

/// Dual averaging of ε for `n1` transitions, then `n2` more with ε frozen
/// collecting the moments; ε ends at the averaged iterate.
fn adapt(kernel: &mut impl Kernel, p: &mut Params, cfg: &TuneConfig, n1: usize, n2: usize) -> Result<Moments, SamplerError> {
    let (c, d) = (p.eps.len(), p.sqrt_imm.len() / p.eps.len());
    let mut da: Vec<DualAveraging> = p.eps.iter().map(|&e| DualAveraging::new(e)).collect();
    let mut m: Moments = (vec![0.0; c], vec![0.0; c * d], vec![0.0; c * d]);
    for i in 0..n1 + n2 {
        let adapting = i < n1;
        let acc = kernel.step(p)?;
        for k in 0..c {
            if adapting {
                da[k].update(acc[k], cfg.target);
            }
            let eps_new = da[k].log_step.exp().clamp(1e-5, p.l[k] / 1.1);
            da[k].log_step = eps_new.ln();
            if adapting {
                p.eps[k] = eps_new;
            } else {
                m.0[k] += eps_new;
                for (j, x) in kernel.position(k).iter().enumerate() {
                    m.1[k * d + j] += eps_new * x;
                    m.2[k * d + j] += eps_new * x * x;
                }
            }
        }
        if kernel.should_stop() {
            return Ok(m);
        }
    }
    for (e, a) in p.eps.iter_mut().zip(&da) {
        *e = a.final_step_size();
    }
    Ok(m)
}

/// Stage 2's rescaling of L and ε from the positions' variances (and the preconditioner).
fn rescale_from_variance(p: &mut Params, (w, m1, m2): &Moments, cfg: &TuneConfig) {
    let (c, d) = (p.eps.len(), p.sqrt_imm.len() / p.eps.len());
    for k in 0..c {
        let var: Vec<f64> = (0..d).map(|j| (m2[k * d + j] / w[k] - (m1[k * d + j] / w[k]).powi(2)).max(0.0)).collect();
        let r = (var.iter().sum::<f64>().sqrt() * cfg.tuning_factor / p.l[k]).clamp(0.0, 2.0);
        p.l[k] *= r;
        p.eps[k] *= r;
        if cfg.diagonal_preconditioning {
            for (s, v) in p.sqrt_imm[k * d..(k + 1) * d].iter_mut().zip(&var) {
                *s = v.max(1e-12).sqrt();
            }
            p.l[k] = (d as f64).sqrt();
        }
    }
}

/// Stage 3: `n3` transitions at fixed parameters; L = min(0.5·L/(ESS/n₃), 2L)
/// from each chain's mean ESS over the coordinates.
fn l_from_ess(kernel: &mut impl Kernel, p: &mut Params, n3: usize) -> Result<(), SamplerError> {
    let (c, d) = (p.eps.len(), p.sqrt_imm.len() / p.eps.len());
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(n3 * d); c];
    for _ in 0..n3 {
        kernel.step(p)?;
        for (k, s) in samples.iter_mut().enumerate() {
            s.extend_from_slice(kernel.position(k));
        }
        if kernel.should_stop() {
            return Ok(());
        }
    }
    for (k, s) in samples.iter().enumerate() {
        let mean_ess = (0..d).map(|j| ess(&[(0..n3).map(|t| s[t * d + j]).collect()])).sum::<f64>() / d as f64;
        p.l[k] = (0.5 * p.l[k] / (mean_ess / n3 as f64)).min(2.0 * p.l[k]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Acceptance falls with ε as e^{−ε}: dual averaging to 0.9 finds ε ≈ 0.105.
    struct Toy {
        x: Vec<f64>,
        steps: usize,
    }

    impl Kernel for Toy {
        fn step(&mut self, p: &Params) -> Result<Vec<f64>, SamplerError> {
            self.steps += 1;
            self.x = vec![(self.steps % 3) as f64, 2.0 * (self.steps % 2) as f64];
            Ok(p.eps.iter().map(|e| (-e).exp()).collect())
        }
        fn position(&self, _: usize) -> &[f64] {
            &self.x
        }
        fn should_stop(&self) -> bool {
            false
        }
    }

    #[test]
    fn stages_count_tune_and_precondition() {
        let cfg =
            TuneConfig { num_steps: 2000, frac_tune1: 0.1, frac_tune2: 0.1, frac_tune3: 0.0, target: 0.9, diagonal_preconditioning: true, tuning_factor: 1.3 };
        assert_eq!(cfg.transitions(), 600);
        assert_eq!(TuneConfig { frac_tune3: 0.1, ..cfg }.transitions(), 1000);
        assert_eq!(TuneConfig { frac_tune2: 0.0, ..cfg }.transitions(), 200);
        let mut toy = Toy { x: vec![0.0; 2], steps: 0 };
        let mut p = Params { l: vec![50.0], eps: vec![10.0], sqrt_imm: vec![1.0; 2] };
        tune(&mut toy, &mut p, &cfg).unwrap();
        assert_eq!(toy.steps, 600);
        assert!((p.eps[0] - (1.0f64 / 0.9).ln()).abs() < 0.02, "ε = {}", p.eps[0]);
        // Preconditioner from the positions' (equally weighted) variances: 2/3 and 1.
        assert!((p.sqrt_imm[0] - (2.0f64 / 3.0).sqrt()).abs() < 0.02 && (p.sqrt_imm[1] - 1.0).abs() < 0.02, "{:?}", p.sqrt_imm);
        assert_eq!(p.l[0], 2f64.sqrt());
    }
}
