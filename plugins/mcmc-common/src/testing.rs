//! Checking a sampler plugin on densities with known moments without the
//! host (a correlated [`Gaussian`], a curved [`Banana`]): a [`TestModel`]
//! behind the plugin [`Model`] interface, an in-memory
//! [`TraceSink`], and the sample moments with their Monte Carlo standard
//! errors.
//!
//! A plugin records only L_n per draw, not positions. So the test model
//! returns, in the `loss` slot, the index of each evaluation, and keeps every
//! position it evaluated: a plugin records the loss of the state it keeps, so
//! each recorded "loss" names the position the chain was at. This works for
//! samplers that carry the loss of their state along and never compute with
//! it (HMC, NUTS, MAMS, MCLMC), which is what log π, not L_n, drives.

use std::collections::BTreeMap;

use crate::ess::ess;

use lh_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use lh_plugin_api::{Model, Model_TO, Plan, PlanRef, RMut, RResult, RSlice, RSliceMut, RStr, SResult, Sampler, SamplerError, Stat, TraceSink, TraceSink_TO};

/// A log-density with known first and second moments.
pub trait Density {
    /// D.
    fn dim(&self) -> usize;
    /// log π(x) (up to a constant), with ∇log π(x) into `grad`.
    fn logp_grad(&self, x: &[f64], grad: &mut [f64]) -> f64;
    /// The exact mean.
    fn mean(&self) -> Vec<f64>;
    /// The exact variances.
    fn variances(&self) -> Vec<f64>;
}

/// N(μ, Σ) with Σ_ij = s_i s_j ρ^|i−j| (an AR(1) correlation).
pub struct Gaussian {
    mean: Vec<f64>,
    cov: Vec<f64>,
    precision: Vec<f64>,
}

impl Gaussian {
    /// Mean `mean`, scales `scales` and correlation `rho` between neighbours.
    pub fn ar1(mean: Vec<f64>, scales: &[f64], rho: f64) -> Self {
        let d = mean.len();
        let cov: Vec<f64> = (0..d * d).map(|k| scales[k / d] * scales[k % d] * rho.powi((k / d).abs_diff(k % d) as i32)).collect();
        let precision = invert(&cov, d);
        Self { mean, cov, precision }
    }

    /// The plugins' correlated test Gaussian: D = 10, means −4.5 … 4.5, scales
    /// 0.5 to 2 (geometric), neighbour correlation 0.7.
    pub fn correlated_10d() -> Self {
        let scales: Vec<f64> = (0..10).map(|i| 0.5 * 4f64.powf(i as f64 / 9.0)).collect();
        Self::ar1((0..10).map(|i| i as f64 - 4.5).collect(), &scales, 0.7)
    }

    /// Mean `mean` and a symmetric positive definite covariance `cov` (D × D, row by row).
    pub fn with_covariance(mean: Vec<f64>, cov: Vec<f64>) -> Self {
        let d = mean.len();
        assert_eq!(cov.len(), d * d, "the covariance must be D × D");
        let precision = invert(&cov, d);
        Self { mean, cov, precision }
    }
}

impl Density for Gaussian {
    fn dim(&self) -> usize {
        self.mean.len()
    }
    fn logp_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let d = self.mean.len();
        let dev: Vec<f64> = x.iter().zip(&self.mean).map(|(a, m)| a - m).collect();
        let mut quad = 0.0;
        for i in 0..d {
            let g: f64 = (0..d).map(|j| self.precision[i * d + j] * dev[j]).sum();
            grad[i] = -g;
            quad += dev[i] * g;
        }
        -0.5 * quad
    }
    fn mean(&self) -> Vec<f64> {
        self.mean.clone()
    }
    fn variances(&self) -> Vec<f64> {
        let d = self.mean.len();
        (0..d).map(|i| self.cov[i * d + i]).collect()
    }
}

/// A banana in the first two of D coordinates, standard normal in the rest:
/// a ~ N(0, 1), b | a ~ N(κ(a² − 1), 1), so E b = 0 and Var b = 1 + 2κ²: a
/// curved, non-Gaussian ridge.
pub struct Banana {
    pub dim: usize,
    pub kappa: f64,
}

impl Density for Banana {
    fn dim(&self) -> usize {
        self.dim
    }
    fn logp_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let (a, b) = (x[0], x[1]);
        let r = b - self.kappa * (a * a - 1.0);
        grad[0] = -a + 2.0 * self.kappa * a * r;
        grad[1] = -r;
        let mut lp = -0.5 * (a * a + r * r);
        for i in 2..self.dim {
            grad[i] = -x[i];
            lp -= 0.5 * x[i] * x[i];
        }
        lp
    }
    fn mean(&self) -> Vec<f64> {
        vec![0.0; self.dim]
    }
    fn variances(&self) -> Vec<f64> {
        (0..self.dim).map(|i| if i == 1 { 1.0 + 2.0 * self.kappa * self.kappa } else { 1.0 }).collect()
    }
}

/// A [`Density`] behind the plugin [`Model`] interface, for C chains,
/// centred at its mean, that keeps every position it evaluates.
pub struct TestModel<T> {
    target: T,
    center: Vec<f64>,
    chains: usize,
    /// Every position evaluated (D values each); evaluation i reports loss i.
    seen: Vec<f64>,
}

impl<T: Density> TestModel<T> {
    /// `target` for `chains` chains.
    pub fn new(target: T, chains: usize) -> Self {
        Self { center: target.mean(), target, chains, seen: Vec::new() }
    }

    /// The density.
    pub fn target(&self) -> &T {
        &self.target
    }

    /// The position evaluation `id` was at.
    fn position(&self, id: f64) -> &[f64] {
        let d = self.center.len();
        let i = id as usize;
        &self.seen[i * d..(i + 1) * d]
    }

    /// log π, ∇log π and the evaluation's id for each position in `x`.
    fn eval(&mut self, x: &[f64], grads: &mut [f64], logp: &mut [f64], loss: &mut [f64]) {
        let d = self.center.len();
        for (k, xk) in x.chunks(d).enumerate() {
            logp[k] = self.target.logp_grad(xk, &mut grads[k * d..(k + 1) * d]);
            loss[k] = (self.seen.len() / d) as f64;
            self.seen.extend_from_slice(xk);
        }
    }
}

/// The inverse of a symmetric positive definite k × k matrix (Gauss–Jordan).
fn invert(a: &[f64], k: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..k * k).map(|i| f64::from(u8::from(i / k == i % k))).collect();
    for col in 0..k {
        let piv = m[col * k + col];
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
    inv
}

impl<T: Density> Model for TestModel<T> {
    fn dim(&self) -> usize {
        self.center.len()
    }
    fn n_data(&self) -> usize {
        1
    }
    fn n_chains(&self) -> usize {
        self.chains
    }
    fn center(&self) -> RSlice<'_, f64> {
        self.center.as_slice().into()
    }
    fn beta(&self) -> f64 {
        1.0
    }
    fn gamma(&self) -> f64 {
        0.0
    }
    fn l0(&self) -> f64 {
        0.0
    }
    fn logdensity_and_grad(&mut self, x: RSlice<'_, f64>, mut g: RSliceMut<'_, f64>, mut lp: RSliceMut<'_, f64>, mut l: RSliceMut<'_, f64>) -> SResult<()> {
        self.eval(&x, &mut g, &mut lp, &mut l);
        RResult::ROk(())
    }
    fn minibatch_grad(&mut self, _: RSlice<'_, f64>, _: RSlice<'_, u32>, _: RSliceMut<'_, f64>, _: RSliceMut<'_, f64>) -> SResult<()> {
        RResult::RErr(SamplerError::fatal("the test model has no minibatches"))
    }
    fn loss(&mut self, _: RSlice<'_, f64>, _: RSliceMut<'_, f64>) -> SResult<()> {
        RResult::RErr(SamplerError::fatal("the test model has no loss-only evaluation"))
    }
    fn logdensity_and_grad_chains(
        &mut self,
        _chains: RSlice<'_, u32>,
        x: RSlice<'_, f64>,
        mut g: RSliceMut<'_, f64>,
        mut lp: RSliceMut<'_, f64>,
        mut l: RSliceMut<'_, f64>,
    ) -> SResult<()> {
        self.eval(&x, &mut g, &mut lp, &mut l);
        RResult::ROk(())
    }
}

/// Keeps every record in memory.
#[derive(Default)]
struct Memory {
    plan: Option<Plan>,
    loss: Vec<Vec<f64>>,
    stats: BTreeMap<String, Vec<Vec<f64>>>,
}

impl TraceSink for Memory {
    fn begin(&mut self, plan: PlanRef) -> SResult<()> {
        self.plan = Some(plan.to_plan());
        RResult::ROk(())
    }
    fn phase(&mut self, _: RStr<'_>) {}
    fn record(&mut self, draw: usize, loss: RSlice<'_, f64>, stats: RSlice<'_, Stat<'_>>) -> SResult<()> {
        assert_eq!(draw, self.loss.len(), "draws in order");
        self.loss.push(loss.to_vec());
        for s in stats.iter() {
            self.stats.entry(s.name.to_string()).or_default().push(s.values.to_vec());
        }
        RResult::ROk(())
    }
    fn progress(&mut self, _: usize, _: usize) {}
    fn should_stop(&self) -> bool {
        false
    }
}

/// What a run on a [`TestModel`] recorded.
pub struct Draws {
    /// The announced burn-in.
    pub burn_in: usize,
    /// Positions after burn-in, `x[chain][draw]` (D values each).
    pub x: Vec<Vec<Vec<f64>>>,
    /// Every statistic over all draws, `stats[name][draw][chain]`.
    pub stats: BTreeMap<String, Vec<Vec<f64>>>,
}

/// Runs `sampler` with the full RON `config` on `target`.
pub fn sample<T: Density>(sampler: &mut impl Sampler, target: &mut TestModel<T>, config: &str, seed: u64) -> Result<Draws, SamplerError> {
    let mut sink = Memory::default();
    {
        let model = Model_TO::from_ptr(RMut::new(&mut *target), TD_Opaque);
        let sink = TraceSink_TO::from_ptr(RMut::new(&mut sink), TD_Opaque);
        sampler.run(model, sink, config, seed)?;
    }
    let burn_in = sink.plan.expect("the plugin announced a plan").burn_in;
    let x = (0..target.chains).map(|c| sink.loss[burn_in..].iter().map(|row| target.position(row[c]).to_vec()).collect()).collect();
    Ok(Draws { burn_in, x, stats: sink.stats })
}

/// For every coordinate i, the errors of the sample mean and variance from
/// μ_i and Σ_ii in units of their Monte Carlo standard errors (sd/√ESS of
/// x_i and of (x_i − x̄_i)² over the chains).
pub fn moment_errors(draws: &Draws, target: &impl Density) -> Vec<(f64, f64)> {
    let (d, mu, var) = (target.dim(), target.mean(), target.variances());
    (0..d)
        .map(|i| {
            let xi: Vec<Vec<f64>> = draws.x.iter().map(|c| c.iter().map(|x| x[i]).collect()).collect();
            let (mean, mcse) = mean_and_mcse(&xi);
            let sq: Vec<Vec<f64>> = xi.iter().map(|c| c.iter().map(|v| (v - mean).powi(2)).collect()).collect();
            let (v, v_mcse) = mean_and_mcse(&sq);
            ((mean - mu[i]) / mcse, (v - var[i]) / v_mcse)
        })
        .collect()
}

/// Runs `sampler` with `config` on 4 chains of `target`, asserts that every
/// mean and variance is within 4 Monte Carlo standard errors, and returns
/// the mean acceptance rate after the announced burn-in (which must be `burn_in`).
pub fn check_moments<T: Density>(sampler: &mut impl Sampler, target: T, config: &str, burn_in: usize, seed: u64) -> f64 {
    let mut model = TestModel::new(target, 4);
    let draws = sample(sampler, &mut model, config, seed).unwrap();
    assert_eq!(draws.burn_in, burn_in);
    for (i, (m, v)) in moment_errors(&draws, model.target()).into_iter().enumerate() {
        eprintln!("coordinate {i}: mean error {m:+.2} MCSE, variance error {v:+.2} MCSE");
        assert!(m.abs() < 4.0 && v.abs() < 4.0, "coordinate {i}: mean off by {m:.2} MCSE, variance by {v:.2} MCSE");
    }
    let acc = &draws.stats[lh_plugin_api::stat_names::ACCEPTANCE_RATE][burn_in..];
    acc.iter().flatten().sum::<f64>() / (acc.len() * 4) as f64
}

/// tests/data/reference_vectors_2.json of the workspace (BlackJAX and nuts-rs values for exact tests).
pub fn reference_vectors_2() -> serde_json::Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference_vectors_2.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("read reference_vectors_2.json")).expect("parse reference_vectors_2.json")
}

/// A JSON array of numbers.
pub fn floats(x: &serde_json::Value) -> Vec<f64> {
    x.as_array().expect("an array").iter().map(|a| a.as_f64().expect("a number")).collect()
}

fn mean_and_mcse(x: &[Vec<f64>]) -> (f64, f64) {
    let flat: Vec<f64> = x.concat();
    let n = flat.len() as f64;
    let mean = flat.iter().sum::<f64>() / n;
    let sd = (flat.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    (mean, sd / ess(x).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_densities_have_the_right_gradients_and_ids() {
        let mut g = TestModel::new(Gaussian::ar1(vec![1.0, -1.0], &[1.0, 2.0], 0.5), 1);
        // Σ = [[1, 1], [1, 4]], Σ⁻¹ = [[4, −1], [−1, 1]]/3.
        let (mut grad, mut lp, mut l) = ([0.0; 2], [0.0], [0.0]);
        g.eval(&[2.0, -1.0], &mut grad, &mut lp, &mut l);
        assert!((grad[0] + 4.0 / 3.0).abs() < 1e-12 && (grad[1] - 1.0 / 3.0).abs() < 1e-12, "{grad:?}");
        assert!((lp[0] + 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(g.target().variances(), [1.0, 4.0]);
        g.eval(&[5.0, 6.0], &mut grad, &mut lp, &mut l);
        assert_eq!((l[0], g.position(1.0)), (1.0, &[5.0, 6.0][..]));
        // The banana's gradient against central differences.
        let b = Banana { dim: 3, kappa: 0.8 };
        let x = [0.7, -0.2, 0.4];
        let mut g0 = [0.0; 3];
        b.logp_grad(&x, &mut g0);
        for i in 0..3 {
            let (mut xp, mut xm, mut scratch) = (x, x, [0.0; 3]);
            xp[i] += 1e-6;
            xm[i] -= 1e-6;
            let fd = (b.logp_grad(&xp, &mut scratch) - b.logp_grad(&xm, &mut scratch)) / 2e-6;
            assert!((fd - g0[i]).abs() < 1e-6, "{i}: {fd} vs {}", g0[i]);
        }
    }
}
