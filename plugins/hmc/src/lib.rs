//! HMC as an lh-host sampler plugin: velocity Verlet with a diagonal mass
//! matrix, Stan-style window adaptation as BlackJAX 1.2.5 does it (see
//! `lh_mcmc_common::adaptation`), run for all chains in lockstep (one host evaluation per
//! leapfrog step covers every chain; each chain adapts its own step size and
//! mass matrix). Differences from the original Lambda-Hat usage, on purpose:
//! chains continue from their adapted state (the original threw it away and
//! restarted from θ* + jitter), and the sampling step size is jittered
//! uniformly by ±`step_size_jitter` per transition (a fixed ε·L can resonate).

// `!(x > 0.0)` on purpose: it refuses NaN as well.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use lh_mcmc_common::adaptation::{schedule, WindowAdaptation};
use lh_mcmc_common::eval;
use lh_mcmc_common::leapfrog::{draw_momentum, drift, half_kick, kinetic};
use lh_plugin_api::*;

/// HMC's config; every key has a default and unknown keys are errors.
#[derive(Deserialize, Debug, Clone)]
#[serde(crate = "lh_plugin_api::serde", deny_unknown_fields)]
pub struct Config {
    /// Recorded transitions per chain after warm-up.
    pub draws: usize,
    /// Window-adaptation transitions (recorded, excluded from λ̂). 0 = no adaptation.
    pub warmup: usize,
    /// Leapfrog steps per transition (one gradient evaluation each).
    pub num_integration_steps: usize,
    /// Target acceptance rate of the dual averaging.
    pub target_accept: f64,
    /// Step size the adaptation starts from (BlackJAX: 1.0).
    pub initial_step_size: f64,
    /// Step size used when `warmup` is 0.
    pub step_size: f64,
    /// Sampling step sizes are ε·U(1 − j, 1 + j); 0 turns the jitter off.
    pub step_size_jitter: f64,
    /// Chains start at θ* + init_jitter·N(0, I).
    pub init_jitter: f64,
    /// A transition whose energy error exceeds this is divergent.
    pub divergence_threshold: f64,
}

const DEFAULTS: &str = "(draws: 1000, warmup: 500, num_integration_steps: 10, target_accept: 0.8, initial_step_size: 1.0, \
                        step_size: 0.01, step_size_jitter: 0.5, init_jitter: 0.01, divergence_threshold: 1000.0)";

/// The HMC sampler.
#[derive(Default)]
pub struct Hmc;

impl Sampler for Hmc {
    fn describe(&self) -> Description {
        Description {
            name: "hmc".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            help: "Full-batch HMC (velocity Verlet, diagonal mass matrix) with Stan-style window adaptation of \
                   the step size (dual averaging to `target_accept`) and the mass matrix, exactly as BlackJAX \
                   1.2.5; every chain adapts its own and continues from its adapted state. Warm-up draws are \
                   recorded and excluded from λ̂. Sampling step sizes are jittered by ±step_size_jitter. \
                   Records acceptance_rate, step_size, energy and is_divergent per draw."
                .into(),
            default_config: DEFAULTS.into(),
        }
    }

    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: &str, seed: u64) -> Result<RunSummary, SamplerError> {
        run(model, sink, &parse_config(config)?, seed)
    }
}

/// All chains' state: positions, log-densities, gradients and losses.
#[derive(Clone)]
struct State {
    x: Vec<f64>,
    logp: Vec<f64>,
    grad: Vec<f64>,
    loss: Vec<f64>,
}

/// `steps` velocity-Verlet steps for every chain; chain c uses step size
/// `eps[c]` and inverse mass `inv_mass[c·D..]`. `eval` evaluates all chains at `s.x`.
pub fn velocity_verlet<E>(s: &mut StateView<'_>, p: &mut [f64], eps: &[f64], inv_mass: &[f64], steps: usize, eval: &mut E) -> Result<(), SamplerError>
where
    E: FnMut(&mut StateView<'_>) -> Result<(), SamplerError>,
{
    let d = p.len() / eps.len();
    for _ in 0..steps {
        for (c, &e) in eps.iter().enumerate() {
            let r = c * d..(c + 1) * d;
            half_kick(&mut p[r.clone()], &s.grad[r.clone()], e);
            drift(&mut s.x[r.clone()], &p[r.clone()], &inv_mass[r], e);
        }
        eval(s)?;
        for (c, &e) in eps.iter().enumerate() {
            half_kick(&mut p[c * d..(c + 1) * d], &s.grad[c * d..(c + 1) * d], e);
        }
    }
    Ok(())
}

/// Mutable views of positions and gradients, for [`velocity_verlet`].
pub struct StateView<'a> {
    pub x: &'a mut [f64],
    pub grad: &'a mut [f64],
}

fn run(mut model: ModelMut<'_>, mut sink: SinkMut<'_>, cfg: &Config, seed: u64) -> Result<RunSummary, SamplerError> {
    if cfg.num_integration_steps == 0 || !(cfg.initial_step_size > 0.0) || !(cfg.step_size > 0.0) {
        return Err(SamplerError::fatal("need num_integration_steps ≥ 1 and positive step sizes"));
    }
    if !(0.0..1.0).contains(&cfg.step_size_jitter) || !(0.0..1.0).contains(&cfg.target_accept) {
        return Err(SamplerError::fatal("need 0 ≤ step_size_jitter < 1 and 0 < target_accept < 1"));
    }
    let (c, d) = (model.n_chains(), model.dim());
    let center = model.center().to_vec();
    let mut rngs = chain_rngs(seed, c);
    let x = jittered_start(&center, cfg.init_jitter, &mut rngs);
    let mut state = State { x, logp: vec![0.0; c], grad: vec![0.0; c * d], loss: vec![0.0; c] };
    eval::all(&mut model, &state.x, &mut state.grad, &mut state.logp, &mut state.loss)?;
    if let Some(k) = state.logp.iter().position(|v| !v.is_finite()) {
        return Err(SamplerError::fatal(format!("the log-density is not finite at chain {k}'s starting point")));
    }

    let mut adapt: Vec<WindowAdaptation> = (0..c).map(|_| WindowAdaptation::new(d, cfg.initial_step_size)).collect();
    let plan = schedule(cfg.warmup);
    let total = cfg.warmup + cfg.draws;
    sink.begin(Plan { draws: total, burn_in: cfg.warmup, independent: false }.into()).into_result()?;
    sink.phase("warmup".into());
    let mut eps = vec![if cfg.warmup > 0 { cfg.initial_step_size } else { cfg.step_size }; c];
    let mut inv_mass = vec![1.0; c * d];
    let mut proposal = state.clone();
    let mut p = vec![0.0; c * d];
    let mut eps_used = vec![0.0; c];
    let (mut acc, mut energy, mut divergent) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    let mut n_divergent = 0usize;

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
        let sampling = t >= cfg.warmup;
        let mut h0 = vec![0.0; c];
        for k in 0..c {
            let rng = &mut rngs[k];
            draw_momentum(&mut p[k * d..(k + 1) * d], &inv_mass[k * d..(k + 1) * d], rng);
            h0[k] = -state.logp[k] + kinetic(&p[k * d..(k + 1) * d], &inv_mass[k * d..(k + 1) * d]);
            let jitter = if sampling && cfg.step_size_jitter > 0.0 { 1.0 + cfg.step_size_jitter * (2.0 * rng.uniform() - 1.0) } else { 1.0 };
            eps_used[k] = eps[k] * jitter;
        }
        proposal.clone_from(&state);
        {
            let State { x, grad, logp, loss } = &mut proposal;
            let mut view = StateView { x, grad };
            let mut evaluate = |v: &mut StateView<'_>| eval::all(&mut model, v.x, v.grad, logp, loss);
            velocity_verlet(&mut view, &mut p, &eps_used, &inv_mass, cfg.num_integration_steps, &mut evaluate)?;
        }
        for k in 0..c {
            let h1 = -proposal.logp[k] + kinetic(&p[k * d..(k + 1) * d], &inv_mass[k * d..(k + 1) * d]);
            let mut delta = h0[k] - h1;
            if delta.is_nan() {
                delta = f64::NEG_INFINITY;
            }
            acc[k] = delta.exp().min(1.0);
            // The Hamiltonian of the state kept (Stan's energy__), as the energy plot and BFMI expect.
            energy[k] = h0[k];
            let div = -delta > cfg.divergence_threshold;
            divergent[k] = f64::from(u8::from(div));
            n_divergent += usize::from(div && sampling);
            if rngs[k].uniform() < acc[k] {
                energy[k] = h1;
                state.x[k * d..(k + 1) * d].copy_from_slice(&proposal.x[k * d..(k + 1) * d]);
                state.grad[k * d..(k + 1) * d].copy_from_slice(&proposal.grad[k * d..(k + 1) * d]);
                state.logp[k] = proposal.logp[k];
                state.loss[k] = proposal.loss[k];
            }
            if let Some(&stage) = plan.get(t) {
                adapt[k].update(stage, &state.x[k * d..(k + 1) * d], acc[k], cfg.target_accept);
                eps[k] = adapt[k].step_size;
                inv_mass[k * d..(k + 1) * d].copy_from_slice(&adapt[k].inverse_mass);
            }
        }
        let stats = [
            Stat::new(stat_names::ACCEPTANCE_RATE, &acc),
            Stat::new(stat_names::STEP_SIZE, &eps_used),
            Stat::new(stat_names::ENERGY, &energy),
            Stat::new(stat_names::IS_DIVERGENT, &divergent),
        ];
        sink.record(t, state.loss.as_slice().into(), stats.as_slice().into()).into_result()?;
        sink.progress(t + 1, total);
        if sink.should_stop() {
            break;
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let tuned = vec![Tuned::new("step_size_mean", mean(&eps)), Tuned::new("inverse_mass_mean", mean(&inv_mass)), Tuned::new("divergences", n_divergent as f64)];
    Ok(RunSummary { tuned: tuned.into(), notes: RString::new() })
}

export_sampler!(Hmc);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn velocity_verlet_matches_blackjax() {
        // reference_vectors.json: 5 steps of ε = 0.2, identity mass, on
        // log p = −½ Σ x²/[1, 4, 9].
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference_vectors.json")).unwrap()).unwrap();
        let r = &r["velocity_verlet_5steps_eps0.2_identity_mass"];
        let v = |k: &str| r[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
        let var = [1.0, 4.0, 9.0];
        let mut x = v("x0");
        let mut p = v("p0");
        let mut grad: Vec<f64> = x.iter().zip(&var).map(|(xi, s)| -xi / s).collect();
        let mut view = StateView { x: &mut x, grad: &mut grad };
        let mut eval = |s: &mut StateView<'_>| {
            for ((g, x), v) in s.grad.iter_mut().zip(s.x.iter()).zip(&var) {
                *g = -x / v;
            }
            Ok(())
        };
        velocity_verlet(&mut view, &mut p, &[0.2], &[1.0; 3], 5, &mut eval).unwrap();
        for (got, want) in x.iter().zip(v("x5")) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        for (got, want) in p.iter().zip(v("p5")) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
    }
}
