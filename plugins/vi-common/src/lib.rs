//! The optimisation driver shared by Lambda-Hat's variational plugins.
//!
//! A variational family q_φ (one φ per chain, fitted independently) is fitted
//! by stochastic gradient ascent on
//!
//! ```text
//! ELBO(φ) = E_q[log π̂(θ)] + H(q),   log π̂(θ) = −nβ·L_B(θ) − (γ/2)‖θ − θ*‖²
//! ```
//!
//! with one draw per chain per step, all chains' draws evaluated in one host
//! call. A family implements [`Family`]: how to draw θ, log q of that draw, and
//! the ELBO gradient of one draw given ∇_θ log π̂. [`run`] does the rest:
//! the optional whitening pre-pass, minibatches, learning-rate schedule,
//! global-norm clipping, Adam, recording, and the final S i.i.d. draws of q.
//!
//! What the host records (`Plan::independent` is true):
//! - `steps / eval_every` optimisation records, the burn-in: `loss` is the
//!   minibatch L_B of the last step's draw, `elbo` the mean single-draw ELBO
//!   estimate over the last `eval_every` steps, `grad_norm` the last
//!   pre-clip gradient norm;
//! - then `eval_samples` draws θ_s ~ q per chain with the full-batch L_n(θ_s)
//!   (or a control-variate-adjusted value, see [`Evaluation`]); their `elbo`
//!   is the full-batch ELBO estimate of that draw.

use lh_plugin_api::*;

/// Learning-rate schedule after the linear warm-up.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(crate = "lh_plugin_api::serde", rename_all = "snake_case")]
pub enum Schedule {
    /// lr after warm-up.
    Constant,
    /// lr·½(1 + cos(πt)) over the steps after warm-up.
    Cosine,
    /// lr·(1 − t) over the steps after warm-up.
    LinearDecay,
}

/// The diagonal pre-conditioning of parameter space (ALGORITHMS.md §5.4.1).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(crate = "lh_plugin_api::serde", rename_all = "snake_case")]
pub enum Whitening {
    /// θ = θ* + ṽ.
    None,
    /// θ = θ* + s ⊙ ṽ with s = (v + 1e-8)^(−1/4), v the RMSProp average of
    /// squared minibatch loss gradients at θ* (decay `whitening_decay`, v₀ = 1).
    Rmsprop,
}

/// Declares a variational plugin's config struct: the optimisation keys every
/// variational plugin shares, then the family's own fields, all required and
/// unknown keys refused; `opt()` returns the shared part as an [`OptConfig`].
///
/// ```ignore
/// lh_vi_common::vi_config!(
///     /// My plugin's config.
///     Config {
///         /// Mixture components.
///         components: usize,
///     }
/// );
/// ```
#[macro_export]
macro_rules! vi_config {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(::lh_plugin_api::Deserialize, Debug, Clone)]
        #[serde(crate = "lh_plugin_api::serde", deny_unknown_fields)]
        pub struct $name {
            /// Optimisation steps per chain (one draw of q and one minibatch gradient each).
            pub steps: usize,
            /// Minibatch size (capped at n).
            pub batch_size: usize,
            /// Adam's peak learning rate.
            pub lr: f64,
            /// The learning-rate schedule after the warm-up.
            pub lr_schedule: $crate::Schedule,
            /// Fraction of `steps` with a linear 0 → lr warm-up.
            pub lr_warmup_frac: f64,
            /// Global-norm clip of each chain's gradient. Keep it a guard against
            /// blow-ups: a clip below the typical norm rescales nearly every step by
            /// a draw-dependent factor, which biases q towards over-dispersion.
            pub clip_global_norm: f64,
            /// Record the optimisation every this many steps.
            pub eval_every: usize,
            /// i.i.d. draws of q per chain for the final estimate.
            pub eval_samples: usize,
            /// Diagonal pre-conditioning of parameter space.
            pub whitening: $crate::Whitening,
            /// RMSProp decay of the whitening pre-pass.
            pub whitening_decay: f64,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// The shared optimisation settings.
            pub fn opt(&self) -> $crate::OptConfig {
                $crate::OptConfig {
                    steps: self.steps, batch_size: self.batch_size, lr: self.lr, lr_schedule: self.lr_schedule,
                    lr_warmup_frac: self.lr_warmup_frac, clip_global_norm: self.clip_global_norm, eval_every: self.eval_every,
                    eval_samples: self.eval_samples, whitening: self.whitening, whitening_decay: self.whitening_decay,
                }
            }
        }
    };
}

vi_config!(
    /// The optimisation settings every variational plugin shares.
    OptConfig {}
);

impl OptConfig {
    /// The first key with an invalid value, named in a fatal error.
    fn check(&self) -> Result<(), SamplerError> {
        let rules = [
            ("steps", self.steps > 0, "must be ≥ 1"),
            ("batch_size", self.batch_size > 0, "must be ≥ 1"),
            ("eval_every", self.eval_every > 0 && self.eval_every <= self.steps, "must be between 1 and steps"),
            ("eval_samples", self.eval_samples > 1, "must be ≥ 2"),
            ("lr", self.lr > 0.0 && self.lr.is_finite(), "must be positive"),
            ("clip_global_norm", self.clip_global_norm > 0.0, "must be positive"),
            ("lr_warmup_frac", (0.0..1.0).contains(&self.lr_warmup_frac), "must be in [0, 1)"),
            ("whitening_decay", (0.0..1.0).contains(&self.whitening_decay), "must be in [0, 1)"),
        ];
        match rules.iter().find(|r| !r.1) {
            Some((key, _, why)) => Err(SamplerError::fatal(format!("config key `{key}` {why}"))),
            None => Ok(()),
        }
    }

    /// The learning rate at `step` (0-based).
    pub fn learning_rate(&self, step: usize) -> f64 {
        let warmup = (self.lr_warmup_frac * self.steps as f64) as usize;
        if step < warmup {
            return self.lr * (step + 1) as f64 / warmup as f64;
        }
        let t = (step - warmup) as f64 / (self.steps - warmup).max(1) as f64;
        match self.lr_schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
            Schedule::LinearDecay => self.lr * (1.0 - t),
        }
    }
}

/// Adam (β₁ = 0.9, β₂ = 0.999, ε = 1e-8, bias-corrected), stepping *up* the gradient.
pub struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Adam {
    /// State for `n` parameters.
    pub fn new(n: usize) -> Self {
        Self { m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// params ← params + lr·m̂/(√v̂ + ε).
    pub fn ascend(&mut self, params: &mut [f64], grad: &[f64], lr: f64) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for i in 0..params.len() {
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * grad[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * grad[i] * grad[i];
            params[i] += lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
        }
    }
}

/// Scales `g` down to global norm ≤ `max`; returns the norm before clipping.
pub fn clip_global_norm(g: &mut [f64], max: f64) -> f64 {
    let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > max {
        let s = max / (norm + 1e-8);
        g.iter_mut().for_each(|x| *x *= s);
    }
    norm
}

/// One variational family. Parameters φ are a flat vector per chain; θ is
/// written in absolute coordinates.
pub trait Family {
    /// What one draw remembers for its gradient (noise, component, …).
    type Draw: Default + Clone;
    /// Number of variational parameters per chain.
    fn n_params(&self) -> usize;
    /// Initial parameters of one chain.
    fn init(&self, rng: &mut ChainRng) -> Vec<f64>;
    /// Draws θ ~ q_φ into `theta` (D values) and returns log q_φ(θ).
    fn sample(&self, phi: &[f64], rng: &mut ChainRng, theta: &mut [f64], draw: &mut Self::Draw) -> f64;
    /// Writes into `grad` the ascent direction of the ELBO w.r.t. φ estimated
    /// from one draw: `grad_logp` is ∇_θ log π̂ at the drawn θ and `payoff`
    /// = log π̂ − log q − baseline (for score-function terms).
    fn elbo_grad(&self, phi: &[f64], draw: &Self::Draw, grad_logp: &[f64], payoff: f64, grad: &mut [f64]);
    /// Keeps φ in its admissible set after an update (e.g. column norms).
    fn project(&self, _phi: &mut [f64]) {}
}

/// Per-coordinate whitening scales s (θ = θ* + s ⊙ ṽ), all ones for
/// [`Whitening::None`]. The pre-pass costs min(1000, max(500, steps/10))
/// minibatch gradients at θ*, evaluated for chain 0 only.
pub fn whitening_scales(model: &mut ModelMut<'_>, cfg: &OptConfig, batches: &mut Minibatches) -> Result<Vec<f64>, SamplerError> {
    let (c, d) = (model.n_chains(), model.dim());
    if cfg.whitening == Whitening::None {
        return Ok(vec![1.0; d]);
    }
    let center = model.center().to_vec();
    let n_beta = model.n_data() as f64 * model.beta();
    let positions: Vec<f64> = center.iter().copied().cycle().take(c * d).collect();
    let (mut grad, mut loss) = (vec![0.0; c * d], vec![0.0; c]);
    let mut v = vec![1.0; d];
    for _ in 0..(cfg.steps / 10).clamp(500, 1000) {
        let rows = batches.next_batch();
        model.minibatch_grad(positions.as_slice().into(), rows.into(), grad.as_mut_slice().into(), loss.as_mut_slice().into()).into_result()?;
        // At θ* the localisation term vanishes: ∇L_B = −∇log π̂ / nβ.
        for (vi, g) in v.iter_mut().zip(&grad[..d]) {
            let g = -g / n_beta;
            *vi = cfg.whitening_decay * *vi + (1.0 - cfg.whitening_decay) * g * g;
        }
    }
    Ok(v.iter().map(|v| (v + 1e-8).powf(-0.25)).collect())
}

/// The final-draw hook: lets a family turn each evaluation draw's L_n into a
/// lower-variance unbiased estimate of E_q[L_n] (a control variate). Called
/// once per evaluation round with all chains' draws θ (C × D, absolute) and
/// their full-batch L_n, it overwrites `loss` in place.
pub trait Evaluation {
    fn adjust(&mut self, model: &mut ModelMut<'_>, phis: &[Vec<f64>], theta: &[f64], loss: &mut [f64]) -> Result<(), SamplerError>;
}

/// No control variate: the recorded values are the plain L_n(θ_s).
pub struct Plain;

impl Evaluation for Plain {
    fn adjust(&mut self, _: &mut ModelMut<'_>, _: &[Vec<f64>], _: &[f64], _: &mut [f64]) -> Result<(), SamplerError> {
        Ok(())
    }
}

/// The fitted parameters of every chain, returned by [`run`].
pub struct Fit {
    pub phis: Vec<Vec<f64>>,
    /// Mean final full-batch ELBO estimate per chain.
    pub elbo: Vec<f64>,
}

/// log π̂ of one chain from its loss and position: −nβ·L − (γ/2)‖θ − θ*‖².
fn log_target(n_beta: f64, gamma: f64, loss: f64, theta: &[f64], center: &[f64]) -> f64 {
    -n_beta * loss - 0.5 * gamma * theta.iter().zip(center).map(|(t, c)| (t - c) * (t - c)).sum::<f64>()
}

/// Fits `family` for every chain and records the optimisation trace and the
/// final draws (see the crate docs). `family` is built by the caller, after
/// [`whitening_scales`] if it uses them.
pub fn run<F: Family>(
    model: &mut ModelMut<'_>,
    sink: &mut SinkMut<'_>,
    family: &F,
    cfg: &OptConfig,
    batches: &mut Minibatches,
    rngs: &mut [ChainRng],
    evaluation: &mut dyn Evaluation,
) -> Result<Fit, SamplerError> {
    cfg.check()?;
    let (c, d) = (model.n_chains(), model.dim());
    let center = model.center().to_vec();
    let (n_beta, gamma) = (model.n_data() as f64 * model.beta(), model.gamma());
    let records = cfg.steps / cfg.eval_every;
    sink.begin(Plan { draws: records + cfg.eval_samples, burn_in: records, independent: true }.into()).into_result()?;

    let mut phis: Vec<Vec<f64>> = rngs.iter_mut().map(|r| family.init(r)).collect();
    let mut adams: Vec<Adam> = (0..c).map(|_| Adam::new(family.n_params())).collect();
    let mut draws = vec![F::Draw::default(); c];
    let (mut theta, mut grad, mut loss) = (vec![0.0; c * d], vec![0.0; c * d], vec![0.0; c]);
    let (mut log_q, mut baseline, mut elbo_sum, mut norms) = (vec![0.0; c], vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    let mut g_phi = vec![0.0; family.n_params()];

    sink.phase("optimise".into());
    for step in 0..records * cfg.eval_every {
        for k in 0..c {
            log_q[k] = family.sample(&phis[k], &mut rngs[k], &mut theta[k * d..(k + 1) * d], &mut draws[k]);
        }
        let rows = batches.next_batch();
        model.minibatch_grad(theta.as_slice().into(), rows.into(), grad.as_mut_slice().into(), loss.as_mut_slice().into()).into_result()?;
        let lr = cfg.learning_rate(step);
        for k in 0..c {
            let elbo = log_target(n_beta, gamma, loss[k], &theta[k * d..(k + 1) * d], &center) - log_q[k];
            if !elbo.is_finite() {
                return Err(SamplerError::fatal(format!("non-finite ELBO estimate for chain {k} at step {step} (lower lr?)")));
            }
            if step == 0 {
                baseline[k] = elbo;
            }
            family.elbo_grad(&phis[k], &draws[k], &grad[k * d..(k + 1) * d], elbo - baseline[k], &mut g_phi);
            baseline[k] = 0.99 * baseline[k] + 0.01 * elbo;
            norms[k] = clip_global_norm(&mut g_phi, cfg.clip_global_norm);
            adams[k].ascend(&mut phis[k], &g_phi, lr);
            family.project(&mut phis[k]);
            elbo_sum[k] += elbo;
        }
        if (step + 1) % cfg.eval_every == 0 {
            let draw = step / cfg.eval_every;
            let elbo: Vec<f64> = elbo_sum.iter().map(|e| e / cfg.eval_every as f64).collect();
            elbo_sum.fill(0.0);
            sink.record(draw, loss.as_slice().into(), [Stat::new(stat_names::ELBO, &elbo), Stat::new("grad_norm", &norms)].as_slice().into()).into_result()?;
            sink.progress(draw + 1, records);
            if sink.should_stop() {
                return Ok(Fit { phis, elbo });
            }
        }
    }

    sink.phase("evaluate".into());
    let mut final_elbo = vec![0.0; c];
    for s in 0..cfg.eval_samples {
        for k in 0..c {
            log_q[k] = family.sample(&phis[k], &mut rngs[k], &mut theta[k * d..(k + 1) * d], &mut draws[k]);
        }
        model.loss(theta.as_slice().into(), loss.as_mut_slice().into()).into_result()?;
        let elbo: Vec<f64> = (0..c).map(|k| log_target(n_beta, gamma, loss[k], &theta[k * d..(k + 1) * d], &center) - log_q[k]).collect();
        for k in 0..c {
            final_elbo[k] += elbo[k] / cfg.eval_samples as f64;
        }
        evaluation.adjust(model, &phis, &theta, &mut loss)?;
        sink.record(records + s, loss.as_slice().into(), [Stat::new(stat_names::ELBO, &elbo), Stat::new("grad_norm", &norms)].as_slice().into())
            .into_result()?;
        if sink.should_stop() {
            break;
        }
    }
    Ok(Fit { phis, elbo: final_elbo })
}

/// Hessian-vector products of L_n at θ* for one direction per chain, by
/// central differences of the host's full-batch gradients (two evaluations):
/// with u = v/‖v‖ and h = `h`, Hv ≈ ‖v‖·(∇L(θ* + hu) − ∇L(θ* − hu))/(2h),
/// where ∇L = −(∇log π + γ(θ − θ*))/nβ. `dirs` and the result are C × D.
pub fn hvp(model: &mut ModelMut<'_>, dirs: &[f64], h: f64) -> Result<Vec<f64>, SamplerError> {
    let (c, d) = (model.n_chains(), model.dim());
    let center = model.center().to_vec();
    let (n_beta, gamma) = (model.n_data() as f64 * model.beta(), model.gamma());
    let norms: Vec<f64> = dirs.chunks(d).map(|v| v.iter().map(|x| x * x).sum::<f64>().sqrt()).collect();
    let mut grads = [vec![0.0; c * d], vec![0.0; c * d]];
    let (mut logp, mut loss) = (vec![0.0; c], vec![0.0; c]);
    for (sign, g) in [1.0, -1.0].into_iter().zip(grads.iter_mut()) {
        let pos: Vec<f64> = (0..c * d)
            .map(|i| {
                let (k, j) = (i / d, i % d);
                center[j] + if norms[k] > 0.0 { sign * h * dirs[i] / norms[k] } else { 0.0 }
            })
            .collect();
        model.logdensity_and_grad(pos.as_slice().into(), g.as_mut_slice().into(), logp.as_mut_slice().into(), loss.as_mut_slice().into()).into_result()?;
        // ∇L = −(∇log π + γ(θ − θ*))/nβ.
        for i in 0..c * d {
            g[i] = -(g[i] + gamma * (pos[i] - center[i % d])) / n_beta;
        }
    }
    Ok((0..c * d).map(|i| norms[i / d] * (grads[0][i] - grads[1][i]) / (2.0 * h)).collect())
}

/// log(1 + eˣ), without overflow.
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// 1/(1 + e⁻ˣ), the derivative of [`softplus`].
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// A standard normal vector of length `n` from `rng`.
pub fn normals(rng: &mut ChainRng, out: &mut [f64]) {
    rng.fill_standard_normal(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(schedule: Schedule) -> OptConfig {
        OptConfig {
            steps: 100,
            batch_size: 8,
            lr: 0.1,
            lr_schedule: schedule,
            lr_warmup_frac: 0.1,
            clip_global_norm: 5.0,
            eval_every: 10,
            eval_samples: 4,
            whitening: Whitening::None,
            whitening_decay: 0.99,
        }
    }

    #[test]
    fn schedules_warm_up_then_decay() {
        let c = cfg(Schedule::Cosine);
        assert!((c.learning_rate(0) - 0.01).abs() < 1e-15);
        assert!((c.learning_rate(9) - 0.1).abs() < 1e-15);
        assert!((c.learning_rate(10) - 0.1).abs() < 1e-15);
        assert!((c.learning_rate(55) - 0.05).abs() < 1e-12, "half-way through the decay");
        assert!((cfg(Schedule::LinearDecay).learning_rate(55) - 0.05).abs() < 1e-12);
        assert_eq!(cfg(Schedule::Constant).learning_rate(99), 0.1);
    }

    #[test]
    fn clipping_keeps_direction_and_caps_norm() {
        let mut g = vec![3.0, 4.0];
        assert_eq!(clip_global_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-8 && (g[1] - 0.8).abs() < 1e-8);
        let mut small = vec![0.3, 0.4];
        clip_global_norm(&mut small, 1.0);
        assert_eq!(small, vec![0.3, 0.4]);
    }

    /// L(θ) = Σ aᵢθᵢ²/2 + Σ θᵢ⁴/4 around θ* = 0.3 (n = 10, β = 1, γ = 2), two chains.
    struct Quartic {
        center: Vec<f64>,
    }

    impl Quartic {
        fn value(&self, t: &[f64]) -> f64 {
            t.iter().enumerate().map(|(i, t)| (1.0 + i as f64) * t * t / 2.0 + t.powi(4) / 4.0).sum()
        }
    }

    impl Model for Quartic {
        fn dim(&self) -> usize {
            self.center.len()
        }
        fn n_data(&self) -> usize {
            10
        }
        fn n_chains(&self) -> usize {
            2
        }
        fn center(&self) -> RSlice<'_, f64> {
            self.center.as_slice().into()
        }
        fn beta(&self) -> f64 {
            1.0
        }
        fn gamma(&self) -> f64 {
            2.0
        }
        fn l0(&self) -> f64 {
            self.value(&self.center)
        }
        fn logdensity_and_grad(&mut self, x: RSlice<'_, f64>, mut g: RSliceMut<'_, f64>, mut lp: RSliceMut<'_, f64>, mut l: RSliceMut<'_, f64>) -> SResult<()> {
            let d = self.center.len();
            for k in 0..2 {
                let t = &x[k * d..(k + 1) * d];
                l[k] = self.value(t);
                lp[k] = -10.0 * l[k];
                for i in 0..d {
                    let dl = (1.0 + i as f64) * t[i] + t[i].powi(3);
                    g[k * d + i] = -10.0 * dl - 2.0 * (t[i] - self.center[i]);
                    lp[k] -= (t[i] - self.center[i]).powi(2);
                }
            }
            RResult::ROk(())
        }
        fn minibatch_grad(&mut self, _: RSlice<'_, f64>, _: RSlice<'_, u32>, _: RSliceMut<'_, f64>, _: RSliceMut<'_, f64>) -> SResult<()> {
            unreachable!("hvp uses full-batch gradients")
        }
        fn loss(&mut self, _: RSlice<'_, f64>, _: RSliceMut<'_, f64>) -> SResult<()> {
            unreachable!("hvp uses full-batch gradients")
        }
        fn logdensity_and_grad_chains(
            &mut self,
            _: RSlice<'_, u32>,
            _: RSlice<'_, f64>,
            _: RSliceMut<'_, f64>,
            _: RSliceMut<'_, f64>,
            _: RSliceMut<'_, f64>,
        ) -> SResult<()> {
            unreachable!("hvp evaluates every chain")
        }
    }

    /// The central-difference HVP against the exact Hessian diag(aᵢ + 3θᵢ*²):
    /// relative error below 1e-6 at h = 1e-3 (central differences: truncation ≈ h²·θ*·‖v‖).
    #[test]
    fn hvp_matches_the_exact_hessian() {
        let mut q = Quartic { center: vec![0.3; 3] };
        let mut model = Model_TO::from_ptr(RMut::new(&mut q), abi_stable::sabi_trait::TD_Opaque);
        let dirs = [0.5, -1.0, 2.0, 0.0, 0.0, 0.0];
        let hv = hvp(&mut model, &dirs, 1e-3).unwrap();
        for i in 0..3 {
            let exact = (1.0 + i as f64 + 3.0 * 0.09) * dirs[i];
            assert!((hv[i] - exact).abs() < 1e-6 * exact.abs().max(1.0), "{i}: {} vs {exact}", hv[i]);
        }
        assert!(hv[3..].iter().all(|&x| x == 0.0), "a zero direction gives zero");
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let mut a = Adam::new(2);
        let mut p = vec![0.0, 0.0];
        a.ascend(&mut p, &[2.0, -0.5], 0.1);
        assert!((p[0] - 0.1).abs() < 1e-7 && (p[1] + 0.1).abs() < 1e-7, "{p:?}");
    }
}
