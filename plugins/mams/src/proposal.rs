//! One chain's MAMS transition as BlackJAX 1.2.5's `adjusted_mclmc_dynamic`
//! (ALGORITHMS-2 §12.1–12.4): a full momentum refresh u0 = ξ/‖ξ‖, N
//! isokinetic McLachlan steps, each between two partial refreshes over ε/2
//! (none when the refresh length is ∞), and a Metropolis test on
//! δ = log π(x_N) − log π(x_0) − ΣΔK.
//!
//! Like NUTS's tree, the transition is driven one position update at a time
//! ([`Transition::drift`], then the caller evaluates, then
//! [`Transition::land`]; two of each per step), so that the plugin can move
//! every chain in lockstep and evaluate only those with steps left: the
//! number of steps N is random per chain and transition.

use lh_mcmc_common::isokinetic::{esh_update, partial_refresh, position_update, random_unit, B1};

/// Where a transition's randomness comes from.
pub trait Noise {
    /// A uniformly random unit vector (the full refresh).
    fn unit(&mut self, u: &mut [f64]);
    /// A standard normal draw (the partial refreshes).
    fn normal(&mut self) -> f64;
    /// A uniform draw from [0, 1) (the Metropolis test).
    fn uniform(&mut self) -> f64;
}

impl Noise for lh_plugin_api::ChainRng {
    fn unit(&mut self, u: &mut [f64]) {
        random_unit(self, u);
    }
    fn normal(&mut self) -> f64 {
        self.standard_normal()
    }
    fn uniform(&mut self) -> f64 {
        lh_plugin_api::ChainRng::uniform(self)
    }
}

/// BlackJAX's `rescale(μ)`: s = k(k+1)/(2(k+1−μ)) with k = ⌊2μ − 1⌋, so
/// that N = ⌈U·s⌉ with U ~ Uniform[0, 1) has mean μ for μ ≥ 1 (and is 0
/// for μ < 1: no move).
pub fn rescale(mu: f64) -> f64 {
    let k = (2.0 * mu - 1.0).floor();
    if k < 1.0 {
        0.0
    } else {
        k * (k + 1.0) / (2.0 * (k + 1.0 - mu))
    }
}

/// The most integration steps one transition takes on average: μ = L/ε is
/// capped here (BlackJAX does not cap it). A larger μ means the step size
/// collapsed (dual averaging after divergences, say); uncapped, one
/// transition could run for hours and never let the run honour a budget or a
/// stop request, which are checked between draws.
pub const MAX_MEAN_STEPS: f64 = 1024.0;

/// The number of integration steps for a uniform draw `u` and mean μ = L/ε
/// (μ at most [`MAX_MEAN_STEPS`]).
pub fn num_steps(u: f64, mu: f64) -> usize {
    (u * rescale(mu.min(MAX_MEAN_STEPS))).ceil().max(0.0) as usize
}

/// A chain's state.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub x: Vec<f64>,
    pub grad: Vec<f64>,
    pub logp: f64,
    pub loss: f64,
}

/// What a finished transition reports (BlackJAX's `HMCInfo` for MAMS).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Info {
    /// min(1, e^δ).
    pub acceptance_rate: f64,
    /// δ = log π(x_N) − log π(x_0) − ΣΔK (−∞ for a non-finite proposal).
    pub log_accept_ratio: f64,
    /// ΣΔK over the N steps.
    pub kinetic_energy_change: f64,
    pub accepted: bool,
    /// −δ above the divergence threshold.
    pub is_divergent: bool,
    /// N.
    pub num_integration_steps: usize,
}

/// One chain's MAMS transition, and the chain's state between transitions.
pub struct Transition {
    state: State,
    /// The proposal being integrated: position, unit momentum, gradient, log π, L_n.
    x: Vec<f64>,
    u: Vec<f64>,
    grad: Vec<f64>,
    logp: f64,
    loss: f64,
    eps: f64,
    refresh_length: f64,
    steps: usize,
    /// Position updates done (two per step).
    half: usize,
    sum_dk: f64,
    divergence_threshold: f64,
    done: bool,
    info: Info,
}

impl Transition {
    /// A chain in D = `d` dimensions.
    pub fn new(d: usize, divergence_threshold: f64) -> Self {
        let z = || vec![0.0; d];
        Self {
            state: State { x: z(), grad: z(), logp: 0.0, loss: 0.0 },
            x: z(),
            u: z(),
            grad: z(),
            logp: 0.0,
            loss: 0.0,
            eps: 0.0,
            refresh_length: f64::INFINITY,
            steps: 0,
            half: 0,
            sum_dk: 0.0,
            divergence_threshold,
            done: true,
            info: Info::default(),
        }
    }

    /// Sets the chain's state.
    pub fn set_state(&mut self, x: &[f64], grad: &[f64], logp: f64, loss: f64) {
        self.state.x.copy_from_slice(x);
        self.state.grad.copy_from_slice(grad);
        (self.state.logp, self.state.loss) = (logp, loss);
    }

    /// The chain's state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether the transition is finished.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The last finished transition's report.
    pub fn info(&self) -> Info {
        self.info
    }

    /// The last proposal's end: position, momentum and log π (for tests).
    pub fn proposal(&self) -> (&[f64], &[f64], f64) {
        (&self.x, &self.u, self.logp)
    }

    /// Starts a transition of `steps` steps of size `eps` with partial
    /// refreshes of length `refresh_length` (∞: none) from a fresh unit
    /// momentum. With 0 steps the chain stays (accepted, δ = 0).
    pub fn begin(&mut self, steps: usize, eps: f64, refresh_length: f64, noise: &mut impl Noise) {
        self.x.copy_from_slice(&self.state.x);
        self.grad.copy_from_slice(&self.state.grad);
        (self.logp, self.loss) = (self.state.logp, self.state.loss);
        noise.unit(&mut self.u);
        (self.eps, self.refresh_length, self.steps, self.half, self.sum_dk) = (eps, refresh_length, steps, 0, 0.0);
        self.done = false;
        if steps == 0 {
            self.finish(noise);
        }
    }

    /// The next position update (with the momentum updates and refresh
    /// before it); returns the position to evaluate.
    pub fn drift(&mut self, sqrt_imm: &[f64], noise: &mut impl Noise) -> &[f64] {
        let coef = if self.half.is_multiple_of(2) {
            partial_refresh(&mut self.u, self.eps / 2.0, self.refresh_length, &mut || noise.normal());
            B1
        } else {
            1.0 - 2.0 * B1
        };
        self.sum_dk += esh_update(&mut self.u, &self.grad, sqrt_imm, self.eps * coef);
        position_update(&mut self.x, &self.u, sqrt_imm, self.eps * 0.5);
        &self.x
    }

    /// Takes the evaluation at the drifted position; at the end of a step,
    /// the last momentum update and refresh; after the last step, the
    /// Metropolis test.
    pub fn land(&mut self, grad: &[f64], logp: f64, loss: f64, sqrt_imm: &[f64], noise: &mut impl Noise) {
        self.grad.copy_from_slice(grad);
        (self.logp, self.loss) = (logp, loss);
        if !self.half.is_multiple_of(2) {
            self.sum_dk += esh_update(&mut self.u, &self.grad, sqrt_imm, self.eps * B1);
            partial_refresh(&mut self.u, self.eps / 2.0, self.refresh_length, &mut || noise.normal());
        }
        self.half += 1;
        if self.half == 2 * self.steps {
            self.finish(noise);
        }
    }

    fn finish(&mut self, noise: &mut impl Noise) {
        let mut delta = self.logp - self.state.logp - self.sum_dk;
        if delta.is_nan() || !self.x.iter().all(|v| v.is_finite()) {
            delta = f64::NEG_INFINITY;
        }
        let acceptance_rate = delta.exp().min(1.0);
        let accepted = noise.uniform() < acceptance_rate;
        if accepted {
            self.state.x.copy_from_slice(&self.x);
            self.state.grad.copy_from_slice(&self.grad);
            (self.state.logp, self.state.loss) = (self.logp, self.loss);
        }
        self.info = Info {
            acceptance_rate,
            log_accept_ratio: delta,
            kinetic_energy_change: self.sum_dk,
            accepted,
            is_divergent: -delta > self.divergence_threshold,
            num_integration_steps: self.steps,
        };
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lh_mcmc_common::testing::{floats as v, reference_vectors_2 as reference};

    /// A collapsed step size cannot make one transition endless.
    #[test]
    fn steps_are_capped() {
        for mu in [2048.0, 1e12, f64::INFINITY] {
            let n = num_steps(0.999_999, mu);
            assert!((1..=2 * MAX_MEAN_STEPS as usize).contains(&n), "μ = {mu}: {n} steps");
        }
    }

    #[test]
    fn num_steps_match_blackjax() {
        let r = reference();
        for row in r["mams_num_steps"]["rows"].as_array().unwrap() {
            let mu = row["avg_num_integration_steps"].as_f64().unwrap();
            assert!((rescale(mu) - row["rescale_s"].as_f64().unwrap()).abs() < 1e-12, "μ = {mu}");
            for (u, n) in row["N_for_U"].as_object().unwrap() {
                assert_eq!(num_steps(u.parse().unwrap(), mu) as u64, n.as_u64().unwrap(), "μ = {mu}, U = {u}");
            }
            // The exact mean Σ_j P(N = j)·j from the distribution of ⌈U·s⌉.
            let s = rescale(mu);
            let k = s.floor();
            let mean = if s == 0.0 { 0.0 } else { (1..=k as usize).map(|j| j as f64 / s).sum::<f64>() + (k + 1.0) * (s - k) / s };
            assert!((mean - row["exact_mean_of_ceil_U_s"].as_f64().unwrap()).abs() < 1e-9, "μ = {mu}: {mean}");
        }
    }

    /// Injected initial momentum, refresh noise (in order) and a Metropolis uniform of 0.
    struct Injected(Vec<f64>, std::vec::IntoIter<f64>);

    impl Noise for Injected {
        fn unit(&mut self, u: &mut [f64]) {
            u.copy_from_slice(&self.0);
        }
        fn normal(&mut self) -> f64 {
            self.1.next().expect("an injected normal")
        }
        fn uniform(&mut self) -> f64 {
            0.0
        }
    }

    #[test]
    fn proposals_match_blackjax() {
        let r = reference();
        for (name, case) in r["mams_proposal"]["cases"].as_object().unwrap() {
            let i = &case["inputs"];
            let var = v(&i["target_variances"]);
            let sqrt_imm: Vec<f64> = v(&i["inverse_mass_matrix"]).iter().map(|m| m.sqrt()).collect();
            let refresh = i["L_partial_refresh"].as_f64().unwrap_or(f64::INFINITY);
            let eval = |x: &[f64]| -> (Vec<f64>, f64) {
                (x.iter().zip(&var).map(|(a, s)| -a / s).collect(), -0.5 * x.iter().zip(&var).map(|(a, s)| a * a / s).sum::<f64>())
            };
            // With L = ∞ BlackJAX draws the noise and ignores it; here nothing is drawn.
            let noise: Vec<f64> =
                if refresh.is_finite() { i["noise_vectors_consumed_in_order"].as_array().unwrap().iter().flat_map(v).collect() } else { vec![] };
            let mut noise = Injected(v(&i["u0"]), noise.into_iter());
            let mut t = Transition::new(3, 1000.0);
            let x0 = v(&i["x0"]);
            let (g0, lp0) = eval(&x0);
            t.set_state(&x0, &g0, lp0, 0.0);
            t.begin(i["num_integration_steps"].as_u64().unwrap() as usize, i["step_size"].as_f64().unwrap(), refresh, &mut noise);
            while !t.done() {
                let x = t.drift(&sqrt_imm, &mut noise).to_vec();
                let (g, lp) = eval(&x);
                t.land(&g, lp, 0.0, &sqrt_imm, &mut noise);
            }
            assert!(noise.1.next().is_none(), "{name}: every injected normal used");
            let o = &case["outputs"];
            let (x, u, logp) = t.proposal();
            let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-11 * (1.0 + q.abs()));
            assert!(close(x, &v(&o["end_position"])), "{name}: {x:?}");
            assert!(close(u, &v(&o["end_momentum"])), "{name}: {u:?}");
            let info = t.info();
            for (got, key) in [
                (logp, "end_logdensity"),
                (info.kinetic_energy_change, "sum_kinetic_energy_change"),
                (info.log_accept_ratio, "log_accept_ratio_delta"),
                (info.acceptance_rate, "acceptance_rate"),
                (-logp, "info_energy"),
            ] {
                let want = o[key].as_f64().unwrap();
                assert!((got - want).abs() < 1e-10 * (1.0 + want.abs()), "{name}: {key} {got} vs {want}");
            }
            assert_eq!(info.is_divergent, o["is_divergent"].as_bool().unwrap());
        }
    }
}
