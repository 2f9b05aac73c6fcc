//! SGLD and preconditioned SGLD as an lh-host sampler plugin, as Lambda-Hat's
//! own kernel (ALGORITHMS.md §5.3), with two deliberate changes: minibatches
//! are drawn by a per-epoch reshuffle without replacement, and burn-in is
//! honoured (the original recorded from step 0 and ignored `warmup`).
//!
//! One step, per chain, with g = ∇L_B(θ) the minibatch-mean loss gradient:
//! ```text
//! none:    P = 1,                      drift = g
//! rmsprop: v ← β₂v + (1−β₂)g²,  P = 1/(√v̂ + eps),   drift = g
//! adam:    m ← β₁m + (1−β₁)g,   v as above,  P = 1/(√v̂ + eps),  drift = m̂
//! θ ← θ − ½ε·P ⊙ (γ(θ − θ*) + nβ·drift) + √(εP) ⊙ ξ
//! ```
//! with v₀ = 1, m₀ = 0 and optional bias correction (v̂ = v/(1−β₂ᵗ)). The
//! `rmsprop_devinterp` variant is devinterp's: v₀ = 0, no bias correction,
//! α = `beta2`, and the localisation term is preconditioned too (it always is
//! here). Every `eval_every` steps the full-batch L_n of each chain is recorded.
//!
//! Known bias, kept as the original defines it: Adam-SGLD drives with the
//! momentum m̂, which is not a Langevin diffusion of π; on the quadratic
//! oracle it over-estimates λ̂ by 11–16 % whatever the step size.

use lh_plugin_api::*;

/// The preconditioner.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(crate = "lh_plugin_api::serde", rename_all = "snake_case")]
pub enum Precond {
    None,
    Rmsprop,
    Adam,
    RmspropDevinterp,
}

/// Which loss the recorded trace holds.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(crate = "lh_plugin_api::serde", rename_all = "snake_case")]
pub enum TraceLoss {
    /// Full-batch L_n at the recorded states (one extra loss evaluation per record).
    Full,
    /// The last minibatch's loss (no extra work, noisier).
    Minibatch,
}

/// SGLD's config; every key has a default and unknown keys are errors.
#[derive(Deserialize, Debug, Clone)]
#[serde(crate = "lh_plugin_api::serde", deny_unknown_fields)]
pub struct Config {
    /// SGLD steps per chain, burn-in included.
    pub steps: usize,
    /// Leading steps excluded from λ̂ (rounded to whole records).
    pub burn_in: usize,
    /// Minibatch size (capped at n).
    pub batch_size: usize,
    /// Step size ε.
    pub step_size: f64,
    pub precond: Precond,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub bias_correction: bool,
    /// Record every this many steps (thinning).
    pub eval_every: usize,
    pub trace_loss: TraceLoss,
    /// Chains start at θ* + init_jitter·N(0, I).
    pub init_jitter: f64,
}

const DEFAULTS: &str = "(steps: 20000, burn_in: 2000, batch_size: 256, step_size: 1e-5, precond: none, beta1: 0.9, \
                        beta2: 0.999, eps: 1e-8, bias_correction: true, eval_every: 10, trace_loss: full, init_jitter: 0.0)";

/// The SGLD sampler.
#[derive(Default)]
pub struct Sgld;

impl Sampler for Sgld {
    fn describe(&self) -> Description {
        Description {
            name: "sgld".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            help: "Stochastic-gradient Langevin dynamics, plain or preconditioned (precond: none | rmsprop | adam, \
                   Lambda-Hat's pSGLD with v0 = 1 and bias correction; or rmsprop_devinterp: v0 = 0, no bias \
                   correction, eps 0.1 recommended). Minibatches reshuffled every epoch, without replacement; \
                   the preconditioner sees the loss gradient only. Records full-batch L_n every eval_every \
                   steps (or the minibatch loss, trace_loss: minibatch); burn_in steps are excluded from λ̂."
                .into(),
            default_config: DEFAULTS.into(),
        }
    }

    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: &str, seed: u64) -> Result<RunSummary, SamplerError> {
        run(model, sink, &parse_config(config)?, seed)
    }
}

/// The per-chain preconditioner state.
pub struct Preconditioner {
    kind: Precond,
    t: i32,
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Preconditioner {
    pub fn new(kind: Precond, d: usize) -> Self {
        let v0 = if kind == Precond::RmspropDevinterp { 0.0 } else { 1.0 };
        Self { kind, t: 0, m: vec![0.0; d], v: vec![v0; d] }
    }

    /// Updates with the loss gradient `g`; writes the preconditioner P into `p`
    /// and the drift into `drift`.
    pub fn step(&mut self, g: &[f64], cfg: &Config, p: &mut [f64], drift: &mut [f64]) {
        self.t += 1;
        if self.kind == Precond::None {
            p.fill(1.0);
            drift.copy_from_slice(g);
            return;
        }
        let bc = cfg.bias_correction && self.kind != Precond::RmspropDevinterp;
        let (c1, c2) = if bc { (1.0 - cfg.beta1.powi(self.t), 1.0 - cfg.beta2.powi(self.t)) } else { (1.0, 1.0) };
        for i in 0..g.len() {
            self.v[i] = cfg.beta2 * self.v[i] + (1.0 - cfg.beta2) * g[i] * g[i];
            p[i] = 1.0 / ((self.v[i] / c2).sqrt() + cfg.eps);
            drift[i] = if self.kind == Precond::Adam {
                self.m[i] = cfg.beta1 * self.m[i] + (1.0 - cfg.beta1) * g[i];
                self.m[i] / c1
            } else {
                g[i]
            };
        }
    }
}

fn run(mut model: ModelMut<'_>, mut sink: SinkMut<'_>, cfg: &Config, seed: u64) -> Result<RunSummary, SamplerError> {
    if cfg.steps == 0 || cfg.eval_every == 0 || cfg.batch_size == 0 || !(cfg.step_size > 0.0) || cfg.burn_in > cfg.steps {
        return Err(SamplerError::fatal("need steps, eval_every, batch_size ≥ 1, step_size > 0 and burn_in ≤ steps"));
    }
    let (c, d, n) = (model.n_chains(), model.dim(), model.n_data());
    let center = model.center().to_vec();
    let (n_beta, gamma) = (n as f64 * model.beta(), model.gamma());
    let mut rngs = chain_rngs(seed, c);
    // The minibatch order has a stream of its own, not tied to the chain count.
    let mut batches = Minibatches::new(n, cfg.batch_size, chain_rngs(seed ^ 0x9e37_79b9_7f4a_7c15, 1).remove(0));
    let mut theta = jittered_start(&center, cfg.init_jitter, &mut rngs);
    let mut precond: Vec<Preconditioner> = (0..c).map(|_| Preconditioner::new(cfg.precond, d)).collect();
    let (mut grad, mut batch_loss, mut loss) = (vec![0.0; c * d], vec![0.0; c], vec![0.0; c]);
    let (mut pvec, mut drift, mut g_loss) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let draws = cfg.steps / cfg.eval_every;
    let burn_in = cfg.burn_in.div_ceil(cfg.eval_every).min(draws);
    sink.begin(Plan { draws, burn_in, independent: false }.into()).into_result()?;
    sink.phase("sampling".into());
    let mut p_mean = vec![0.0; c];

    for step in 0..draws * cfg.eval_every {
        let rows = batches.next_batch();
        model.minibatch_grad(theta.as_slice().into(), rows.into(), grad.as_mut_slice().into(), batch_loss.as_mut_slice().into()).into_result()?;
        for k in 0..c {
            let th = &mut theta[k * d..(k + 1) * d];
            // The host returns ∇ log π̂ = −nβ∇L_B − γ(θ − θ*); the preconditioner wants ∇L_B.
            for i in 0..d {
                g_loss[i] = -(grad[k * d + i] + gamma * (th[i] - center[i])) / n_beta;
            }
            precond[k].step(&g_loss, cfg, &mut pvec, &mut drift);
            let rng = &mut rngs[k];
            for i in 0..d {
                let total = gamma * (th[i] - center[i]) + n_beta * drift[i];
                th[i] += -0.5 * cfg.step_size * pvec[i] * total + (cfg.step_size * pvec[i]).sqrt() * rng.standard_normal();
            }
            p_mean[k] = pvec.iter().sum::<f64>() / d as f64;
        }
        if (step + 1) % cfg.eval_every == 0 {
            let draw = step / cfg.eval_every;
            let recorded = match cfg.trace_loss {
                TraceLoss::Full => {
                    model.loss(theta.as_slice().into(), loss.as_mut_slice().into()).into_result()?;
                    &loss
                }
                TraceLoss::Minibatch => &batch_loss,
            };
            let stats = [Stat::new("precond_mean", &p_mean)];
            sink.record(draw, recorded.as_slice().into(), stats.as_slice().into()).into_result()?;
            sink.progress(draw + 1, draws);
            if sink.should_stop() {
                break;
            }
        }
    }
    Ok(RunSummary::default())
}

export_sampler!(Sgld);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(precond: Precond) -> Config {
        parse_config::<Config>(DEFAULTS).map(|c| Config { precond, ..c }).unwrap()
    }

    #[test]
    fn rmsprop_starts_from_v0_one_with_bias_correction() {
        // v̂₁ = (β₂ + (1−β₂)g²)/(1−β₂): with g = 2, (0.999 + 0.004)/0.001 = 1003.
        let c = cfg(Precond::Rmsprop);
        let mut p = Preconditioner::new(Precond::Rmsprop, 1);
        let (mut pv, mut dr) = ([0.0], [0.0]);
        p.step(&[2.0], &c, &mut pv, &mut dr);
        assert!((pv[0] - 1.0 / (1003f64.sqrt() + 1e-8)).abs() < 1e-12);
        assert_eq!(dr[0], 2.0);
    }

    #[test]
    fn adam_drift_is_the_bias_corrected_first_moment() {
        let c = cfg(Precond::Adam);
        let mut p = Preconditioner::new(Precond::Adam, 1);
        let (mut pv, mut dr) = ([0.0], [0.0]);
        p.step(&[2.0], &c, &mut pv, &mut dr);
        assert!((dr[0] - 2.0).abs() < 1e-12, "m̂₁ = g");
        p.step(&[4.0], &c, &mut pv, &mut dr);
        let m2 = 0.9 * 0.2 + 0.1 * 4.0;
        assert!((dr[0] - m2 / (1.0 - 0.81)).abs() < 1e-12);
    }

    #[test]
    fn devinterp_rmsprop_starts_from_zero_without_correction() {
        let c = Config { beta2: 0.99, eps: 0.1, ..cfg(Precond::RmspropDevinterp) };
        let mut p = Preconditioner::new(Precond::RmspropDevinterp, 1);
        let (mut pv, mut dr) = ([0.0], [0.0]);
        p.step(&[2.0], &c, &mut pv, &mut dr);
        assert!((pv[0] - 1.0 / ((0.01f64 * 4.0).sqrt() + 0.1)).abs() < 1e-12);
    }
}
