//! MAMS (Metropolis-adjusted microcanonical sampler; Robnik, Cohn-Gordon &
//! Seljak 2025) as an lh-host sampler plugin, as BlackJAX 1.2.5's
//! `adjusted_mclmc_dynamic`: a full momentum refresh, N isokinetic McLachlan
//! steps (2 gradient evaluations each) with N = ⌈U·s(L/ε)⌉ random per chain
//! and transition (mean L/ε), optional partial refreshes, and a Metropolis
//! test ([`proposal`]); tuned by `adjusted_mclmc_find_L_and_step_size`
//! ([`tuner`]) to a target acceptance of 0.9 with diagonal preconditioning.
//!
//! Chains move in lockstep: each round updates every chain with steps left
//! and evaluates exactly those (`logdensity_and_grad_chains`), so a chain
//! that drew few steps waits at no cost. Tuning transitions are recorded as
//! burn-in. Deliberate change from BlackJAX: the starting L = √D and
//! ε = 0.2·√D are scaled by σ = 1/√(nβ + γ), the posterior's scale (BlackJAX
//! assumes unit scale; as for `mclmc`).

// `!(x > 0.0)` on purpose: it refuses NaN as well.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod proposal;
pub mod tuner;

use lh_mcmc_common::eval;
use lh_plugin_api::*;
use proposal::{num_steps, Info, Transition};
use tuner::{Kernel, Params, TuneConfig};

/// MAMS's config; every key has a default and unknown keys are errors.
#[derive(Deserialize, Debug, Clone)]
#[serde(crate = "lh_plugin_api::serde", deny_unknown_fields)]
pub struct Config {
    /// Recorded transitions per chain after tuning.
    pub draws: usize,
    /// Run the tuner (else use `L` and `step_size` as given).
    pub tune: bool,
    /// The tuner's step budget N (stage i takes ⌊N·frac_tune_i⌋ transitions);
    /// `None` = 2000·max(1, (D/100)^¼), which grows with D (`lh_mcmc_common::tuning_steps`).
    pub num_steps: Option<usize>,
    pub frac_tune1: f64,
    pub frac_tune2: f64,
    pub frac_tune3: f64,
    /// Target acceptance rate of the tuner's dual averaging.
    pub target_accept: f64,
    pub diagonal_preconditioning: bool,
    /// Stage 2's factor on √Σvar.
    pub tuning_factor: f64,
    /// Partial refresh length as a multiple of the trajectory length N·ε; `None` = ∞ (no partial refresh).
    #[serde(rename = "L_proposal_factor")]
    pub l_proposal_factor: Option<f64>,
    /// Initial (or, untuned, fixed) trajectory length; `None` = √D·σ.
    #[serde(rename = "L")]
    pub l: Option<f64>,
    /// Initial (or, untuned, fixed) step size; `None` = 0.2·√D·σ.
    pub step_size: Option<f64>,
    /// Chains start at θ* + init_jitter·N(0, I).
    pub init_jitter: f64,
    /// A transition whose −δ exceeds this is divergent.
    pub divergence_threshold: f64,
}

/// The default config.
pub const DEFAULTS: &str = "(draws: 1000, tune: true, num_steps: None, frac_tune1: 0.1, frac_tune2: 0.1, frac_tune3: 0.1, target_accept: 0.9, \
                            diagonal_preconditioning: true, tuning_factor: 1.3, L_proposal_factor: None, L: None, step_size: None, \
                            init_jitter: 0.01, divergence_threshold: 1000.0)";

/// The MAMS sampler.
#[derive(Default)]
pub struct Mams;

impl Sampler for Mams {
    fn describe(&self) -> Description {
        Description {
            name: "mams".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            help: "Metropolis-adjusted microcanonical sampler (adjusted MCLMC) as BlackJAX 1.2.5: full momentum refresh, \
                   N ~ ⌈U·s(L/ε)⌉ isokinetic McLachlan steps (2 gradients each, mean L/ε), optional partial refresh \
                   (L_proposal_factor), Metropolis test on the energy error. Tuned by adjusted_mclmc_find_L_and_step_size \
                   (dual averaging to target_accept 0.9, diagonal preconditioning, L from the ESS in stage 3) on a budget \
                   of num_steps, by default 2000·max(1, (D/100)^¼), starting \
                   from L = √D·σ, ε = 0.2·√D·σ with σ = 1/√(nβ + γ); every chain tunes its own. Tuning transitions are \
                   recorded as burn-in. Records acceptance_rate, step_size, L, num_integration_steps and is_divergent."
                .into(),
            default_config: DEFAULTS.into(),
        }
    }

    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: &str, seed: u64) -> Result<RunSummary, SamplerError> {
        run(model, sink, &parse_config(config)?, seed)
    }
}

/// Every chain's transitions, moved in lockstep, each recorded as a draw.
struct Chains<'m, 's> {
    model: ModelMut<'m>,
    sink: SinkMut<'s>,
    chains: Vec<Transition>,
    rngs: Vec<ChainRng>,
    /// Partial refresh length per unit of trajectory length (∞: none).
    refresh_factor: f64,
    /// Evaluation buffers for up to C chains.
    ids: Vec<u32>,
    x: Vec<f64>,
    grad: Vec<f64>,
    logp: Vec<f64>,
    loss: Vec<f64>,
    d: usize,
    draw: usize,
    total: usize,
    stop: bool,
    /// Sampling-phase divergences and integration steps, for the summary.
    divergences: usize,
    steps: usize,
}

impl Chains<'_, '_> {
    /// One transition of every chain at `p`, recorded as the next draw.
    fn transition(&mut self, p: &Params) -> Result<Vec<Info>, SamplerError> {
        let d = self.d;
        for (k, (t, rng)) in self.chains.iter_mut().zip(&mut self.rngs).enumerate() {
            let n = num_steps(rng.uniform(), p.l[k] / p.eps[k]);
            t.begin(n, p.eps[k], self.refresh_factor * n as f64 * p.eps[k], rng);
        }
        loop {
            self.ids.clear();
            self.ids.extend((0..self.chains.len() as u32).filter(|&k| !self.chains[k as usize].done()));
            let n = self.ids.len();
            if n == 0 {
                break;
            }
            for (slot, &k) in self.ids.iter().enumerate() {
                let k = k as usize;
                let x = self.chains[k].drift(&p.sqrt_imm[k * d..(k + 1) * d], &mut self.rngs[k]);
                self.x[slot * d..(slot + 1) * d].copy_from_slice(x);
            }
            eval::chains(&mut self.model, &self.ids, &self.x[..n * d], &mut self.grad[..n * d], &mut self.logp[..n], &mut self.loss[..n])?;
            for (slot, &k) in self.ids.iter().enumerate() {
                let k = k as usize;
                self.chains[k].land(&self.grad[slot * d..(slot + 1) * d], self.logp[slot], self.loss[slot], &p.sqrt_imm[k * d..(k + 1) * d], &mut self.rngs[k]);
            }
        }
        let infos: Vec<Info> = self.chains.iter().map(Transition::info).collect();
        let per_chain = |f: fn(&Info) -> f64| -> Vec<f64> { infos.iter().map(f).collect() };
        let (acc, steps, divergent) =
            (per_chain(|i| i.acceptance_rate), per_chain(|i| i.num_integration_steps as f64), per_chain(|i| f64::from(u8::from(i.is_divergent))));
        let loss: Vec<f64> = self.chains.iter().map(|t| t.state().loss).collect();
        let stats = [
            Stat::new(stat_names::ACCEPTANCE_RATE, &acc),
            Stat::new(stat_names::STEP_SIZE, &p.eps),
            Stat::new("L", &p.l),
            Stat::new(stat_names::NUM_INTEGRATION_STEPS, &steps),
            Stat::new(stat_names::IS_DIVERGENT, &divergent),
        ];
        self.sink.record(self.draw, loss.as_slice().into(), stats.as_slice().into()).into_result()?;
        self.draw += 1;
        self.sink.progress(self.draw, self.total);
        self.stop = self.sink.should_stop();
        Ok(infos)
    }
}

impl Kernel for Chains<'_, '_> {
    fn step(&mut self, p: &Params) -> Result<Vec<f64>, SamplerError> {
        Ok(self.transition(p)?.iter().map(|i| i.acceptance_rate).collect())
    }
    fn position(&self, k: usize) -> &[f64] {
        &self.chains[k].state().x
    }
    fn should_stop(&self) -> bool {
        self.stop
    }
}

fn run(mut model: ModelMut<'_>, mut sink: SinkMut<'_>, cfg: &Config, seed: u64) -> Result<RunSummary, SamplerError> {
    let (c, d) = (model.n_chains(), model.dim());
    if d < 2 {
        return Err(SamplerError::fatal("MAMS needs D ≥ 2"));
    }
    for f in [cfg.frac_tune1, cfg.frac_tune2, cfg.frac_tune3] {
        if !(0.0..=1.0).contains(&f) {
            return Err(SamplerError::fatal("frac_tune1..3 must lie in [0, 1]"));
        }
    }
    let valid = cfg.target_accept > 0.0 && cfg.target_accept < 1.0 && cfg.divergence_threshold > 0.0 && cfg.l_proposal_factor.is_none_or(|f| f > 0.0);
    if !valid {
        return Err(SamplerError::fatal("need 0 < target_accept < 1, divergence_threshold > 0 and L_proposal_factor > 0"));
    }
    let sigma = 1.0 / (model.n_data() as f64 * model.beta() + model.gamma()).sqrt();
    let (l0, e0) = (cfg.l.unwrap_or((d as f64).sqrt() * sigma), cfg.step_size.unwrap_or(0.2 * (d as f64).sqrt() * sigma));
    if !(l0 > 0.0 && e0 > 0.0) {
        return Err(SamplerError::fatal("L and step_size must be > 0"));
    }
    let center = model.center().to_vec();
    let mut rngs = chain_rngs(seed, c);
    let x = jittered_start(&center, cfg.init_jitter, &mut rngs);
    let (mut grad, mut logp, mut loss) = (vec![0.0; c * d], vec![0.0; c], vec![0.0; c]);
    eval::all(&mut model, &x, &mut grad, &mut logp, &mut loss)?;
    if let Some(k) = logp.iter().position(|v| !v.is_finite()) {
        return Err(SamplerError::fatal(format!("the log-density is not finite at chain {k}'s starting point")));
    }
    let mut chains: Vec<Transition> = (0..c).map(|_| Transition::new(d, cfg.divergence_threshold)).collect();
    for (k, t) in chains.iter_mut().enumerate() {
        t.set_state(&x[k * d..(k + 1) * d], &grad[k * d..(k + 1) * d], logp[k], loss[k]);
    }
    let tune_cfg = TuneConfig {
        num_steps: cfg.num_steps.unwrap_or_else(|| lh_mcmc_common::tuning_steps(d)),
        frac_tune1: cfg.frac_tune1,
        frac_tune2: cfg.frac_tune2,
        frac_tune3: cfg.frac_tune3,
        target: cfg.target_accept,
        diagonal_preconditioning: cfg.diagonal_preconditioning,
        tuning_factor: cfg.tuning_factor,
    };
    let tuning = if cfg.tune { tune_cfg.transitions() } else { 0 };
    let total = tuning + cfg.draws;
    sink.begin(Plan { draws: total, burn_in: tuning, independent: false }.into()).into_result()?;
    let refresh_factor = cfg.l_proposal_factor.unwrap_or(f64::INFINITY);
    let mut r = Chains {
        model,
        sink,
        chains,
        rngs,
        refresh_factor,
        ids: Vec::with_capacity(c),
        x,
        grad,
        logp,
        loss,
        d,
        draw: 0,
        total,
        stop: false,
        divergences: 0,
        steps: 0,
    };
    let mut p = Params { l: vec![l0; c], eps: vec![e0; c], sqrt_imm: vec![1.0; c * d] };
    if cfg.tune {
        r.sink.phase("tuning".into());
        tuner::tune(&mut r, &mut p, &tune_cfg)?;
    }
    r.sink.phase("sampling".into());
    while r.draw < total && !r.stop {
        let infos = r.transition(&p)?;
        r.divergences += infos.iter().filter(|i| i.is_divergent).count();
        r.steps += infos.iter().map(|i| i.num_integration_steps).sum::<usize>();
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sampled = (r.draw.saturating_sub(tuning) * c).max(1) as f64;
    let tuned = vec![
        Tuned::new("L_mean", mean(&p.l)),
        Tuned::new("step_size_mean", mean(&p.eps)),
        Tuned::new("inverse_mass_mean", mean(&p.sqrt_imm.iter().map(|s| s * s).collect::<Vec<_>>())),
        Tuned::new("steps_per_draw_mean", r.steps as f64 / sampled),
        Tuned::new("divergences", r.divergences as f64),
    ];
    Ok(RunSummary { tuned: tuned.into(), notes: RString::new() })
}

export_sampler!(Mams);

#[cfg(test)]
mod tests {
    use super::*;
    use lh_mcmc_common::testing::{self, Banana, Density, Gaussian};

    /// Every mean and variance within 4 Monte Carlo standard errors, and the
    /// mean acceptance rate.
    fn check_moments<T: Density>(target: T, seed: u64) -> f64 {
        testing::check_moments(&mut Mams, target, &DEFAULTS.replace("draws: 1000", "draws: 3000"), 1000, seed)
    }

    /// A correlated 10-D Gaussian: scales 0.5 to 2, neighbour correlation 0.7.
    #[test]
    fn moments_of_a_correlated_gaussian() {
        let acc = check_moments(Gaussian::correlated_10d(), 5);
        eprintln!("mean acceptance {acc:.3}");
        assert!((0.75..0.98).contains(&acc), "mean acceptance {acc}");
    }

    /// A curved ridge (a banana, κ = 1, in 5-D): non-Gaussian, as the
    /// posteriors of singular models are.
    #[test]
    fn moments_of_a_banana() {
        check_moments(Banana { dim: 5, kappa: 1.0 }, 5);
    }
}
