//! MCLMC (microcanonical Langevin Monte Carlo, unadjusted) as an lh-host
//! sampler plugin: the isokinetic McLachlan integrator with partial momentum
//! refresh (`lh_mcmc_common::isokinetic`) and BlackJAX 1.2.5's three-stage
//! `mclmc_find_L_and_step_size` tuner with diagonal preconditioning, **on by
//! default** (the original silently ran L = 1, ε = 0.1). Every chain tunes its
//! own L, ε and mass matrix, in lockstep. Deliberate fixes: the tuner's
//! "ε_new == ε_max gives ε = 0" quirk becomes min(ε_new, ε_max), work is
//! 2 gradient evaluations per step (counted by the host), and the tuner's
//! starting L and ε are scaled by 1/√(nβ + γ), the posterior's scale (BlackJAX
//! assumes unit scale; unscaled, short tuning runs on `base` diverged).

use lh_mcmc_common::ess::ess;
use lh_mcmc_common::eval;
use lh_mcmc_common::isokinetic::{mclachlan_step, partial_refresh, random_unit, Chains, Params};
use lh_plugin_api::*;

/// MCLMC's config; every key has a default and unknown keys are errors.
#[derive(Deserialize, Debug, Clone)]
#[serde(crate = "lh_plugin_api::serde", deny_unknown_fields)]
pub struct Config {
    /// Recorded steps per chain after tuning.
    pub draws: usize,
    /// Run the tuner (else use `L` and `step_size` as given).
    pub tune: bool,
    /// The tuner's step budget N (stages take N·frac_tune1, N·frac_tune2, N·frac_tune3);
    /// `None` = 2000·max(1, (D/100)^¼), which grows with D (`lh_mcmc_common::tuning_steps`).
    pub num_steps: Option<usize>,
    pub frac_tune1: f64,
    pub frac_tune2: f64,
    pub frac_tune3: f64,
    pub desired_energy_var: f64,
    pub trust_in_estimate: f64,
    pub num_effective_samples: f64,
    pub diagonal_preconditioning: bool,
    /// Initial (or, untuned, fixed) momentum decoherence length; `None` = √D·σ.
    #[serde(rename = "L")]
    pub l: Option<f64>,
    /// Initial (or, untuned, fixed) step size; `None` = 0.25·√D·σ.
    pub step_size: Option<f64>,
    /// Chains start at θ* + init_jitter·N(0, I).
    pub init_jitter: f64,
}

const DEFAULTS: &str = "(draws: 1000, tune: true, num_steps: None, frac_tune1: 0.1, frac_tune2: 0.1, frac_tune3: 0.1, \
                        desired_energy_var: 5e-4, trust_in_estimate: 1.5, num_effective_samples: 150, \
                        diagonal_preconditioning: true, L: None, step_size: None, init_jitter: 0.01)";

/// The MCLMC sampler.
#[derive(Default)]
pub struct Mclmc;

impl Sampler for Mclmc {
    fn describe(&self) -> Description {
        Description {
            name: "mclmc".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            help: "Unadjusted microcanonical Langevin Monte Carlo: isokinetic McLachlan integrator (2 gradients \
                   per step) with ESH momentum updates and partial refresh, tuned by BlackJAX 1.2.5's three-stage \
                   L/step-size tuner with diagonal preconditioning (on by default; it starts from L = √D·σ, ε = 0.25·√D·σ with \
                   σ = 1/√(nβ + γ), or from L and step_size when given; tune: false fixes them) on a budget of num_steps steps, \
                   by default 2000·max(1, (D/100)^¼). Each chain tunes its own; a step that produces non-finite values is \
                   undone and caps ε at 0.8× its value. Tuning steps are recorded as burn-in. Records \
                   energy_change, step_size and L."
                .into(),
            default_config: DEFAULTS.into(),
        }
    }

    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: &str, seed: u64) -> Result<RunSummary, SamplerError> {
        run(model, sink, &parse_config(config)?, seed)
    }
}

/// Everything one run carries between steps.
struct Run<'m, 's> {
    model: ModelMut<'m>,
    sink: SinkMut<'s>,
    chains: Chains,
    rngs: Vec<ChainRng>,
    l: Vec<f64>,
    eps: Vec<f64>,
    sqrt_imm: Vec<f64>,
    c: usize,
    d: usize,
    draw: usize,
    total: usize,
}

/// Per chain, the ε-weighted mean of x and of x² (D each).
type Moments = Vec<(Vec<f64>, Vec<f64>)>;

/// The outcome of one step for one chain.
struct StepInfo {
    energy_change: Vec<f64>,
    ok: Vec<bool>,
}

impl Run<'_, '_> {
    /// One MCLMC step of every chain (refresh ε/2, integrate ε, refresh ε/2).
    /// A chain whose step produced non-finite values is put back where it was.
    fn step(&mut self) -> Result<StepInfo, SamplerError> {
        let (c, d) = (self.c, self.d);
        let before = self.chains.clone();
        self.refresh_half_step();
        let model = &mut self.model;
        let kinetic = mclachlan_step(&mut self.chains, &Params { eps: &self.eps, sqrt_imm: &self.sqrt_imm }, &mut |x, g, lp, l| eval::all(model, x, g, lp, l))?;
        self.refresh_half_step();
        let mut info = StepInfo { energy_change: vec![0.0; c], ok: vec![true; c] };
        for (k, kin) in kinetic.iter().enumerate() {
            let r = k * d..(k + 1) * d;
            let finite = self.chains.x[r.clone()].iter().chain(&self.chains.u[r.clone()]).all(|v| v.is_finite()) && self.chains.logp[k].is_finite();
            if finite {
                info.energy_change[k] = kin - self.chains.logp[k] + before.logp[k];
            } else {
                info.ok[k] = false;
                self.chains.x[r.clone()].copy_from_slice(&before.x[r.clone()]);
                self.chains.grad[r.clone()].copy_from_slice(&before.grad[r.clone()]);
                self.chains.logp[k] = before.logp[k];
                self.chains.loss[k] = before.loss[k];
                // A fresh random direction, as BlackJAX does after a NaN.
                random_unit(&mut self.rngs[k], &mut self.chains.u[r]);
            }
        }
        Ok(info)
    }

    /// The partial refresh of every chain's momentum over ε/2.
    fn refresh_half_step(&mut self) {
        let d = self.d;
        for (k, rng) in self.rngs.iter_mut().enumerate() {
            partial_refresh(&mut self.chains.u[k * d..(k + 1) * d], self.eps[k] / 2.0, self.l[k], &mut || rng.standard_normal());
        }
    }

    fn record(&mut self, info: &StepInfo) -> Result<(), SamplerError> {
        let stats = [Stat::new(stat_names::ENERGY_CHANGE, &info.energy_change), Stat::new(stat_names::STEP_SIZE, &self.eps), Stat::new("L", &self.l)];
        self.sink.record(self.draw, self.chains.loss.as_slice().into(), stats.as_slice().into()).into_result()?;
        self.draw += 1;
        self.sink.progress(self.draw, self.total);
        Ok(())
    }

    /// Stages 1–2 step-size adaptation for `n` steps; when `collect` is set, also
    /// the ε-weighted streaming moments of the positions (for the mass matrix).
    fn adapt_step_size(&mut self, n: usize, collect_from: usize, cfg: &Config) -> Result<Moments, SamplerError> {
        let (c, d) = (self.c, self.d);
        let decay = (cfg.num_effective_samples - 1.0) / (cfg.num_effective_samples + 1.0);
        let (mut time, mut x_avg, mut eps_max) = (vec![0.0; c], vec![0.0; c], vec![f64::INFINITY; c]);
        let mut weight = vec![0.0; c];
        let mut moments: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![0.0; d], vec![0.0; d]); c];
        for i in 0..n {
            let info = self.step()?;
            for k in 0..c {
                let de = if info.ok[k] { info.energy_change[k] } else { 0.0 };
                if !info.ok[k] {
                    eps_max[k] = 0.8 * self.eps[k];
                }
                let xi = de * de / (d as f64 * cfg.desired_energy_var) + 1e-8;
                let w = (-0.5 * (xi.ln() / (6.0 * cfg.trust_in_estimate)).powi(2)).exp();
                x_avg[k] = decay * x_avg[k] + w * xi / self.eps[k].powi(6);
                time[k] = decay * time[k] + w;
                self.eps[k] = (x_avg[k] / time[k]).powf(-1.0 / 6.0).min(eps_max[k]);
                let ws = if i >= collect_from && info.ok[k] { self.eps[k] } else { 0.0 };
                if ws > 0.0 {
                    let (m1, m2) = &mut moments[k];
                    let total = weight[k] + ws;
                    for j in 0..d {
                        let x = self.chains.x[k * d + j];
                        m1[j] = (weight[k] * m1[j] + ws * x) / total;
                        m2[j] = (weight[k] * m2[j] + ws * x * x) / total;
                    }
                    weight[k] = total;
                }
            }
            self.record(&info)?;
            if self.sink.should_stop() {
                break;
            }
        }
        Ok(moments)
    }
}

/// nβ + γ: the curvature scale of the tempered, localised posterior.
fn posterior_curvature(model: &ModelMut<'_>) -> f64 {
    model.n_data() as f64 * model.beta() + model.gamma()
}

fn run(model: ModelMut<'_>, mut sink: SinkMut<'_>, cfg: &Config, seed: u64) -> Result<RunSummary, SamplerError> {
    let (c, d) = (model.n_chains(), model.dim());
    if d < 2 {
        return Err(SamplerError::fatal("MCLMC needs D ≥ 2"));
    }
    for f in [cfg.frac_tune1, cfg.frac_tune2, cfg.frac_tune3] {
        if !(0.0..=1.0).contains(&f) {
            return Err(SamplerError::fatal("frac_tune1..3 must lie in [0, 1]"));
        }
    }
    let center = model.center().to_vec();
    let mut rngs = chain_rngs(seed, c);
    let x = jittered_start(&center, cfg.init_jitter, &mut rngs);
    let mut u = vec![0.0; c * d];
    for (rng, uk) in rngs.iter_mut().zip(u.chunks_mut(d)) {
        random_unit(rng, uk);
    }
    let n = cfg.num_steps.unwrap_or_else(|| lh_mcmc_common::tuning_steps(d)) as f64;
    let (n1, n2) = ((n * cfg.frac_tune1) as usize + 1, (n * cfg.frac_tune2) as usize + 1);
    let n2b = if cfg.diagonal_preconditioning && n2 > 1 { n2 / 3 } else { 0 };
    let n3 = if cfg.frac_tune3 > 0.0 { (n * cfg.frac_tune3) as usize } else { 0 };
    let tuning = if cfg.tune { n1 + n2 + n2b + n3 } else { 0 };
    let total = tuning + cfg.draws;
    sink.begin(Plan { draws: total, burn_in: tuning, independent: false }.into()).into_result()?;
    // BlackJAX starts from L = √D, ε = 0.25·√D, which assumes a posterior of unit
    // scale. This one has scale about σ = 1/√(nβ + γ) (exactly, for the quadratic),
    // so the defaults are scaled by σ; with nβ ≈ 2000 (the `base` target) the
    // unscaled start ε ≈ 25 made short tuning runs diverge.
    let sigma = 1.0 / (posterior_curvature(&model)).sqrt();
    let l0 = cfg.l.unwrap_or((d as f64).sqrt() * sigma);
    let e0 = cfg.step_size.unwrap_or(0.25 * (d as f64).sqrt() * sigma);
    if !(l0 > 0.0 && e0 > 0.0) {
        return Err(SamplerError::fatal("L and step_size must be > 0"));
    }
    let chains = Chains { x, u, logp: vec![0.0; c], grad: vec![0.0; c * d], loss: vec![0.0; c] };
    let mut r = Run { model, sink, chains, rngs, l: vec![l0; c], eps: vec![e0; c], sqrt_imm: vec![1.0; c * d], c, d, draw: 0, total };
    {
        let Chains { x, grad, logp, loss, .. } = &mut r.chains;
        eval::all(&mut r.model, x, grad, logp, loss)?;
    }
    if let Some(k) = r.chains.logp.iter().position(|v| !v.is_finite()) {
        return Err(SamplerError::fatal(format!("the log-density is not finite at chain {k}'s starting point")));
    }

    if cfg.tune {
        r.sink.phase("tuning".into());
        // Stages 1 and 2: ε from the energy variance; moments over stage 2.
        let moments = r.adapt_step_size(n1 + n2, n1, cfg)?;
        if n2 > 1 {
            for (k, (m1, m2)) in moments.iter().enumerate() {
                let var: Vec<f64> = m1.iter().zip(m2).map(|(a, b)| (b - a * a).max(0.0)).collect();
                if cfg.diagonal_preconditioning {
                    for (s, v) in r.sqrt_imm[k * d..(k + 1) * d].iter_mut().zip(&var) {
                        *s = v.max(1e-12).sqrt();
                    }
                    r.l[k] = (d as f64).sqrt();
                } else {
                    r.l[k] = var.iter().sum::<f64>().sqrt().max(1e-12);
                }
            }
            if n2b > 0 {
                r.adapt_step_size(n2b, usize::MAX, cfg)?;
            }
        }
        // Stage 3: L from the ESS of each coordinate over n3 steps.
        if n3 > 0 {
            let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(n3 * d); c];
            for _ in 0..n3 {
                let info = r.step()?;
                for (k, s) in samples.iter_mut().enumerate() {
                    s.extend_from_slice(&r.chains.x[k * d..(k + 1) * d]);
                }
                r.record(&info)?;
            }
            for (k, s) in samples.iter().enumerate() {
                let mean_ratio = (0..d)
                    .map(|j| {
                        let coord: Vec<f64> = (0..n3).map(|t| s[t * d + j]).collect();
                        n3 as f64 / ess(&[coord])
                    })
                    .sum::<f64>()
                    / d as f64;
                r.l[k] = 0.4 * r.eps[k] * mean_ratio;
            }
        }
    }
    r.sink.phase("sampling".into());
    while r.draw < total && !r.sink.should_stop() {
        let info = r.step()?;
        r.record(&info)?;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let tuned = vec![Tuned::new("L_mean", mean(&r.l)), Tuned::new("step_size_mean", mean(&r.eps))];
    Ok(RunSummary { tuned: tuned.into(), notes: RString::new() })
}

export_sampler!(Mclmc);
