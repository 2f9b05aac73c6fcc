//! Random-walk Metropolis as an lh-host sampler plugin: the worked example
//! of "Write your own sampler plugin" in the lh-host README.
//!
//! Every chain starts at θ* and proposes θ' = θ + σ·N(0, I). The scale σ of
//! each chain is adapted during burn-in (Robbins–Monro on log σ towards
//! `target_accept`) and then frozen. One host call evaluates the proposals of
//! all chains at once; only L_n is needed (no gradient), and log π is formed
//! here from L_n, nβ, γ and θ*.

use lh_plugin_api::*;

/// The plugin's config: every key has a default, unknown keys are errors.
#[derive(Deserialize, Debug, Clone)]
#[serde(crate = "lh_plugin_api::serde", deny_unknown_fields)]
struct Config {
    /// Draws per chain, burn-in included.
    draws: usize,
    /// Leading draws used to adapt σ and excluded from λ̂.
    burn_in: usize,
    /// Metropolis steps per recorded draw.
    thin: usize,
    /// Initial proposal scale σ.
    step_size: f64,
    /// Acceptance rate σ is adapted towards during burn-in.
    target_accept: f64,
}

const DEFAULTS: &str = "(draws: 2000, burn_in: 500, thin: 5, step_size: 0.05, target_accept: 0.3)";

/// Random-walk Metropolis.
#[derive(Default)]
pub struct Rwm;

impl Sampler for Rwm {
    fn describe(&self) -> Description {
        Description {
            name: "rwm".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            help: "Random-walk Metropolis with a per-chain Gaussian proposal whose scale is adapted during \
                   burn-in towards `target_accept`, then frozen. Needs only L_n (no gradients). The worked \
                   example of a third-party plugin."
                .into(),
            default_config: DEFAULTS.into(),
        }
    }

    fn run(&mut self, model: ModelMut<'_>, sink: SinkMut<'_>, config: &str, seed: u64) -> Result<RunSummary, SamplerError> {
        // Unknown keys are errors; export_sampler! turns a panic into an error.
        run(model, sink, &parse_config(config)?, seed)
    }
}

/// log π from L_n: −nβ·L − (γ/2)‖θ − θ*‖².
fn log_density(loss: f64, theta: &[f64], center: &[f64], n_beta: f64, gamma: f64) -> f64 {
    let sq: f64 = theta.iter().zip(center).map(|(t, c)| (t - c) * (t - c)).sum();
    -n_beta * loss - 0.5 * gamma * sq
}

fn run(mut model: ModelMut<'_>, mut sink: SinkMut<'_>, cfg: &Config, seed: u64) -> Result<RunSummary, SamplerError> {
    if cfg.burn_in > cfg.draws || cfg.thin == 0 || !(cfg.step_size > 0.0) {
        return Err(SamplerError::fatal("need burn_in ≤ draws, thin ≥ 1 and step_size > 0"));
    }
    let (c, d) = (model.n_chains(), model.dim());
    let center = model.center().to_vec();
    let n_beta = model.n_data() as f64 * model.beta();
    let gamma = model.gamma();
    let mut rngs = chain_rngs(seed, c);

    let mut theta: Vec<f64> = center.iter().copied().cycle().take(c * d).collect();
    let mut loss = vec![0.0; c];
    model.loss(theta.as_slice().into(), loss.as_mut_slice().into()).into_result()?;
    let mut logp: Vec<f64> = (0..c).map(|k| log_density(loss[k], &theta[k * d..(k + 1) * d], &center, n_beta, gamma)).collect();
    let mut sigma = vec![cfg.step_size; c];
    let (mut accepted, mut tried) = (vec![0.0; c], 0.0);
    let mut proposal = theta.clone();
    let mut prop_loss = vec![0.0; c];

    sink.begin(Plan { draws: cfg.draws, burn_in: cfg.burn_in, independent: false }.into()).into_result()?;
    sink.phase("warmup".into());
    for draw in 0..cfg.draws {
        if draw == cfg.burn_in {
            sink.phase("sampling".into());
            accepted.iter_mut().for_each(|a| *a = 0.0);
            tried = 0.0;
        }
        for _ in 0..cfg.thin {
            for k in 0..c {
                for i in 0..d {
                    proposal[k * d + i] = theta[k * d + i] + sigma[k] * rngs[k].standard_normal();
                }
            }
            // A non-finite proposal is simply rejected (the host counts it).
            let ok = model.loss(proposal.as_slice().into(), prop_loss.as_mut_slice().into()).is_ok();
            tried += 1.0;
            for k in 0..c {
                let lp = log_density(prop_loss[k], &proposal[k * d..(k + 1) * d], &center, n_beta, gamma);
                let accept_prob = if ok && lp.is_finite() { (lp - logp[k]).exp().min(1.0) } else { 0.0 };
                if rngs[k].uniform() < accept_prob {
                    theta[k * d..(k + 1) * d].copy_from_slice(&proposal[k * d..(k + 1) * d]);
                    logp[k] = lp;
                    loss[k] = prop_loss[k];
                    accepted[k] += 1.0;
                }
                if draw < cfg.burn_in {
                    // Robbins–Monro on log σ, step size decaying with the draw number.
                    let rate = 1.0 / (1.0 + draw as f64).sqrt();
                    sigma[k] *= (rate * (accept_prob - cfg.target_accept)).exp();
                }
            }
        }
        let acc: Vec<f64> = accepted.iter().map(|a| a / tried).collect();
        let stats = [Stat::new(stat_names::ACCEPTANCE_RATE, &acc), Stat::new(stat_names::STEP_SIZE, &sigma)];
        sink.record(draw, loss.as_slice().into(), stats.as_slice().into()).into_result()?;
        sink.progress(draw + 1, cfg.draws);
        if sink.should_stop() {
            break;
        }
    }
    let mean_sigma = sigma.iter().sum::<f64>() / c as f64;
    Ok(RunSummary { tuned: vec![Tuned::new("step_size_mean", mean_sigma)].into(), notes: RString::new() })
}

export_sampler!(Rwm);
