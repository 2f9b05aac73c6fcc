//! NUTS as an lh-host sampler plugin: BlackJAX 1.2.5's multinomial No-U-Turn
//! sampler with the generalised U-turn criterion (see [`tree`]), a diagonal
//! mass matrix, and Stan/BlackJAX window adaptation of the step size and the
//! mass matrix (the shared `lh_mcmc_common::adaptation`, as `hmc` uses).
//!
//! Written here rather than through nuts-rs: nuts-rs runs one chain per call
//! and cannot reproduce BlackJAX's NUTS or window adaptation (ALGORITHMS-2
//! §13.4), while the batch interface pays off when the chains build their
//! trees in lockstep. Each leapfrog step evaluates every chain still building
//! its tree in one host call (`logdensity_and_grad_chains`); a chain whose
//! tree is finished waits for the others at no cost, and each draw is
//! recorded for all chains together. Every chain adapts its own step size
//! and mass matrix and continues from its adapted state.

// `!(x > 0.0)` on purpose: it refuses NaN as well.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod tree;

use lh_mcmc_common::adaptation::{schedule, WindowAdaptation};
use lh_mcmc_common::eval;
use lh_mcmc_common::leapfrog::draw_momentum;
use lh_plugin_api::*;
use tree::Transition;

/// NUTS's config; every key has a default and unknown keys are errors.
#[derive(Deserialize, Debug, Clone)]
#[serde(crate = "lh_plugin_api::serde", deny_unknown_fields)]
pub struct Config {
    /// Recorded transitions per chain after warm-up.
    pub draws: usize,
    /// Window-adaptation transitions (recorded, excluded from λ̂). 0 = no adaptation.
    pub warmup: usize,
    /// At most this many trajectory doublings (2^depth − 1 leapfrog steps).
    pub max_tree_depth: usize,
    /// Target acceptance statistic of the dual averaging.
    pub target_accept: f64,
    /// Step size the adaptation starts from (BlackJAX: 1.0).
    pub initial_step_size: f64,
    /// Step size used when `warmup` is 0.
    pub step_size: f64,
    /// Chains start at θ* + init_jitter·N(0, I).
    pub init_jitter: f64,
    /// A state whose energy error exceeds this is divergent (it ends the transition).
    pub divergence_threshold: f64,
}

/// The default config.
pub const DEFAULTS: &str = "(draws: 1000, warmup: 1000, max_tree_depth: 10, target_accept: 0.8, initial_step_size: 1.0, step_size: 0.01, \
                            init_jitter: 0.01, divergence_threshold: 1000.0)";

/// The NUTS sampler.
#[derive(Default)]
pub struct Nuts;

impl Sampler for Nuts {
    fn describe(&self) -> Description {
        Description {
            name: "nuts".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            help: "The No-U-Turn sampler as BlackJAX 1.2.5: multinomial trajectory sampling, the generalised U-turn \
                   criterion, at most max_tree_depth doublings, divergence at an energy error above \
                   divergence_threshold; diagonal mass matrix and step size from Stan/BlackJAX window adaptation \
                   (dual averaging to target_accept). Chains build their trees in lockstep and only the chains still \
                   building are evaluated. Warm-up draws are recorded and excluded from λ̂. Records acceptance_rate, \
                   step_size, tree_depth, num_integration_steps, energy and is_divergent per draw."
                .into(),
            default_config: DEFAULTS.into(),
        }
    }

    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: &str, seed: u64) -> Result<RunSummary, SamplerError> {
        run(model, sink, &parse_config(config)?, seed)
    }
}

/// The evaluation buffers of one lockstep step, for up to C chains.
struct Batch {
    ids: Vec<u32>,
    x: Vec<f64>,
    grad: Vec<f64>,
    logp: Vec<f64>,
    loss: Vec<f64>,
}

/// One NUTS transition of every chain, trees built in lockstep: each round
/// drifts every chain still building and evaluates exactly those.
fn transition_all(
    model: &mut ModelMut<'_>,
    trees: &mut [Transition],
    rngs: &mut [ChainRng],
    eps: &[f64],
    inv_mass: &[f64],
    p0: &mut [f64],
    b: &mut Batch,
) -> Result<(), SamplerError> {
    let d = p0.len() / trees.len();
    for (k, t) in trees.iter_mut().enumerate() {
        let (imm, p) = (&inv_mass[k * d..(k + 1) * d], &mut p0[k * d..(k + 1) * d]);
        draw_momentum(p, imm, &mut rngs[k]);
        t.begin(p, eps[k], imm, &mut rngs[k]);
    }
    loop {
        b.ids.clear();
        b.ids.extend((0..trees.len() as u32).filter(|&k| !trees[k as usize].done()));
        let n = b.ids.len();
        if n == 0 {
            return Ok(());
        }
        for (slot, &k) in b.ids.iter().enumerate() {
            let k = k as usize;
            b.x[slot * d..(slot + 1) * d].copy_from_slice(trees[k].drift(&inv_mass[k * d..(k + 1) * d]));
        }
        eval::chains(model, &b.ids, &b.x[..n * d], &mut b.grad[..n * d], &mut b.logp[..n], &mut b.loss[..n])?;
        for (slot, &k) in b.ids.iter().enumerate() {
            let k = k as usize;
            trees[k].land(&b.grad[slot * d..(slot + 1) * d], b.logp[slot], b.loss[slot], &inv_mass[k * d..(k + 1) * d], &mut rngs[k]);
        }
    }
}

fn run(mut model: ModelMut<'_>, mut sink: SinkMut<'_>, cfg: &Config, seed: u64) -> Result<RunSummary, SamplerError> {
    if cfg.max_tree_depth == 0 || !(cfg.initial_step_size > 0.0) || !(cfg.step_size > 0.0) || !(cfg.divergence_threshold > 0.0) {
        return Err(SamplerError::fatal("need max_tree_depth ≥ 1 and positive step sizes and divergence_threshold"));
    }
    if !(cfg.target_accept > 0.0 && cfg.target_accept < 1.0) {
        return Err(SamplerError::fatal("need 0 < target_accept < 1"));
    }
    let (c, d) = (model.n_chains(), model.dim());
    let center = model.center().to_vec();
    let mut rngs = chain_rngs(seed, c);
    let x = jittered_start(&center, cfg.init_jitter, &mut rngs);
    let (mut grad, mut logp, mut loss) = (vec![0.0; c * d], vec![0.0; c], vec![0.0; c]);
    eval::all(&mut model, &x, &mut grad, &mut logp, &mut loss)?;
    if let Some(k) = logp.iter().position(|v| !v.is_finite()) {
        return Err(SamplerError::fatal(format!("the log-density is not finite at chain {k}'s starting point")));
    }
    let mut trees: Vec<Transition> = (0..c).map(|_| Transition::new(d, cfg.max_tree_depth, cfg.divergence_threshold)).collect();
    for (k, t) in trees.iter_mut().enumerate() {
        t.set_state(&x[k * d..(k + 1) * d], &grad[k * d..(k + 1) * d], logp[k], loss[k]);
    }
    let mut b = Batch { ids: Vec::with_capacity(c), x, grad, logp, loss };

    let mut adapt: Vec<WindowAdaptation> = (0..c).map(|_| WindowAdaptation::new(d, cfg.initial_step_size)).collect();
    let stages = schedule(cfg.warmup);
    let total = cfg.warmup + cfg.draws;
    sink.begin(Plan { draws: total, burn_in: cfg.warmup, independent: false }.into()).into_result()?;
    sink.phase("warmup".into());
    let mut eps = vec![if cfg.warmup > 0 { cfg.initial_step_size } else { cfg.step_size }; c];
    let mut inv_mass = vec![1.0; c * d];
    let mut p0 = vec![0.0; c * d];
    let stat = |f: fn(&tree::Info) -> f64, trees: &[Transition]| -> Vec<f64> { trees.iter().map(|t| f(&t.info())).collect() };
    let (mut n_divergent, mut steps_sampling) = (0usize, 0usize);
    let mut state_loss = vec![0.0; c];

    for t in 0..total {
        if t == cfg.warmup {
            sink.phase("sampling".into());
            if cfg.warmup > 0 {
                for (k, a) in adapt.iter().enumerate() {
                    eps[k] = a.final_step_size();
                    inv_mass[k * d..(k + 1) * d].copy_from_slice(&a.inverse_mass);
                }
            }
        }
        transition_all(&mut model, &mut trees, &mut rngs, &eps, &inv_mass, &mut p0, &mut b)?;
        let sampling = t >= cfg.warmup;
        let acc = stat(|i| i.acceptance_rate, &trees);
        if let Some(&stage) = stages.get(t) {
            for (k, a) in adapt.iter_mut().enumerate() {
                a.update(stage, &trees[k].state().x, acc[k], cfg.target_accept);
                eps[k] = a.step_size;
                inv_mass[k * d..(k + 1) * d].copy_from_slice(&a.inverse_mass);
            }
        }
        let (depth, steps) = (stat(|i| i.tree_depth as f64, &trees), stat(|i| i.num_integration_steps as f64, &trees));
        let (energy, divergent) = (stat(|i| i.energy, &trees), stat(|i| f64::from(u8::from(i.is_divergent)), &trees));
        if sampling {
            n_divergent += divergent.iter().filter(|v| **v > 0.0).count();
            steps_sampling += steps.iter().sum::<f64>() as usize;
        }
        // The step size the transition used (adaptation has moved `eps` on already during warm-up).
        let used: Vec<f64> = trees.iter().map(Transition::step_size).collect();
        let stats = [
            Stat::new(stat_names::ACCEPTANCE_RATE, &acc),
            Stat::new(stat_names::STEP_SIZE, &used),
            Stat::new(stat_names::TREE_DEPTH, &depth),
            Stat::new(stat_names::NUM_INTEGRATION_STEPS, &steps),
            Stat::new(stat_names::ENERGY, &energy),
            Stat::new(stat_names::IS_DIVERGENT, &divergent),
        ];
        state_loss.iter_mut().zip(&trees).for_each(|(l, tr)| *l = tr.state().loss);
        sink.record(t, state_loss.as_slice().into(), stats.as_slice().into()).into_result()?;
        sink.progress(t + 1, total);
        if sink.should_stop() {
            break;
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sampled = (cfg.draws * c).max(1) as f64;
    let tuned = vec![
        Tuned::new("step_size_mean", mean(&eps)),
        Tuned::new("inverse_mass_mean", mean(&inv_mass)),
        Tuned::new("divergences", n_divergent as f64),
        Tuned::new("steps_per_draw_mean", steps_sampling as f64 / sampled),
    ];
    Ok(RunSummary { tuned: tuned.into(), notes: RString::new() })
}

export_sampler!(Nuts);

#[cfg(test)]
mod tests {
    use super::*;
    use lh_mcmc_common::testing::{moment_errors, sample, Banana, Density, Gaussian, TestModel};

    /// Every mean and variance within 4 Monte Carlo standard errors, and the
    /// mean acceptance rate.
    fn check_moments<T: Density>(target: T, seed: u64) -> f64 {
        let mut model = TestModel::new(target, 4);
        let cfg = DEFAULTS.replace("draws: 1000, warmup: 1000", "draws: 1500, warmup: 500");
        let draws = sample(&mut Nuts, &mut model, &cfg, seed).unwrap();
        assert_eq!(draws.burn_in, 500);
        for (i, (m, v)) in moment_errors(&draws, model.target()).into_iter().enumerate() {
            eprintln!("coordinate {i}: mean error {m:+.2} MCSE, variance error {v:+.2} MCSE");
            assert!(m.abs() < 4.0 && v.abs() < 4.0, "coordinate {i}: mean off by {m:.2} MCSE, variance by {v:.2} MCSE");
        }
        let acc = &draws.stats[stat_names::ACCEPTANCE_RATE][500..];
        acc.iter().flatten().sum::<f64>() / (acc.len() * 4) as f64
    }

    /// A correlated 10-D Gaussian: scales 0.5 to 2, neighbour correlation 0.7.
    #[test]
    fn moments_of_a_correlated_gaussian() {
        let scales: Vec<f64> = (0..10).map(|i| 0.5 * 4f64.powf(i as f64 / 9.0)).collect();
        let acc = check_moments(Gaussian::ar1((0..10).map(|i| i as f64 - 4.5).collect(), &scales, 0.7), 11);
        eprintln!("mean acceptance {acc:.3}");
        assert!((0.75..0.98).contains(&acc), "mean acceptance {acc}");
    }

    /// The default (diagonal) mass matrix reproduces the plugin as it was
    /// before `mass_matrix` existed bit for bit: a fingerprint of every
    /// recorded position and statistic of a short run (warm-up 150 so that
    /// slow windows and mass-matrix updates happen), taken with that code.
    #[test]
    fn default_diag_is_bit_for_bit_unchanged() {
        const FINGERPRINT: u64 = 0x9bbd_8528_c876_89f7;
        let scales: Vec<f64> = (0..5).map(|i| 0.5 + 0.3 * i as f64).collect();
        let mut model = TestModel::new(Gaussian::ar1(vec![0.5; 5], &scales, 0.6), 3);
        let cfg = DEFAULTS.replace("draws: 1000, warmup: 1000", "draws: 60, warmup: 150");
        let draws = sample(&mut Nuts, &mut model, &cfg, 5).unwrap();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |v: f64| {
            for b in v.to_bits().to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        draws.x.iter().flatten().flatten().for_each(|&v| eat(v));
        draws.stats.values().flatten().flatten().for_each(|&v| eat(v));
        eprintln!("fingerprint {h:#018x}");
        assert_eq!(h, FINGERPRINT);
    }

    /// A curved ridge (a banana, κ = 1, in 5-D): non-Gaussian, as the
    /// posteriors of singular models are.
    #[test]
    fn moments_of_a_banana() {
        check_moments(Banana { dim: 5, kappa: 1.0 }, 11);
    }
}
