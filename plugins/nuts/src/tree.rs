//! One chain's NUTS transition exactly as BlackJAX 1.2.5's iterative
//! multinomial NUTS (ALGORITHMS-2 §11): trajectory doublings in a random
//! direction, progressive multinomial sampling within each subtree and
//! biased progressive sampling between them, the generalised U-turn
//! criterion on every complete sub-subtree (numpyro's iterative checkpoints)
//! and on the whole trajectory, divergence at an energy error above the
//! threshold, and at most `max_depth` doublings.
//!
//! The transition is a state machine driven one leapfrog step at a time
//! ([`Transition::drift`] moves the current point, the caller evaluates it,
//! [`Transition::land`] finishes the step), so that the plugin can build
//! every chain's tree in lockstep and evaluate only the chains still
//! building.
//!
//! The inverse mass matrix is a [`Metric`], diagonal or low-rank plus
//! diagonal, behind one code path: every point carries its velocity M⁻¹p
//! (computed once per leapfrog step), from which come the kinetic energy
//! ½pᵀM⁻¹p and the U-turn criterion; checkpoints keep their velocities too,
//! so a check costs O(D) whatever the metric.

use lh_mcmc_common::leapfrog::half_kick;
use lh_mcmc_common::metric::Metric;

/// Where a transition's randomness comes from, in BlackJAX's order: one
/// direction per doubling, one uniform per subtree step after its first, one
/// uniform per subtree that neither diverged nor turned.
pub trait Coins {
    /// True to extend the trajectory forward in time.
    fn forward(&mut self) -> bool;
    /// A uniform draw from [0, 1).
    fn uniform(&mut self) -> f64;
}

impl Coins for lh_plugin_api::ChainRng {
    fn forward(&mut self) -> bool {
        self.uniform() < 0.5
    }
    fn uniform(&mut self) -> f64 {
        lh_plugin_api::ChainRng::uniform(self)
    }
}

/// A state with its momentum, velocity M⁻¹p, gradient, log-density and loss.
#[derive(Clone, Debug, Default)]
pub struct Point {
    pub x: Vec<f64>,
    pub p: Vec<f64>,
    pub v: Vec<f64>,
    pub grad: Vec<f64>,
    pub logp: f64,
    pub loss: f64,
}

impl Point {
    fn zeros(d: usize) -> Self {
        Self { x: vec![0.0; d], p: vec![0.0; d], v: vec![0.0; d], grad: vec![0.0; d], logp: 0.0, loss: 0.0 }
    }
}

/// The kinetic energy ½pᵀM⁻¹p from the momentum and its velocity v = M⁻¹p
/// (for a diagonal M⁻¹ the same bits as ½Σ(M⁻¹)_i p_i²).
fn kinetic(p: &[f64], v: &[f64]) -> f64 {
    0.5 * v.iter().zip(p).map(|(vi, pi)| vi * pi).sum::<f64>()
}

/// A candidate sample: its point (momentum unused), energy H, log of the
/// summed weights Σe^{H0−H} and log of the summed acceptance Σmin(1, e^{H0−H}).
#[derive(Clone, Debug, Default)]
struct Proposal {
    point: Point,
    energy: f64,
    log_weight: f64,
    log_accept: f64,
}

fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        m
    } else {
        m + ((a - m).exp() + (b - m).exp()).ln()
    }
}

/// The generalised U-turn criterion (BlackJAX): with ρ = Σp − (p_L + p_R)/2,
/// the trajectory turns when v_L·ρ ≤ 0 or v_R·ρ ≤ 0, with the velocities
/// v = M⁻¹p of the two ends. `sum(i)` is the momentum sum's i-th entry.
pub fn is_turning(p_left: &[f64], v_left: &[f64], p_right: &[f64], v_right: &[f64], sum: impl Fn(usize) -> f64) -> bool {
    let (mut left, mut right) = (0.0, 0.0);
    for i in 0..p_left.len() {
        let rho = sum(i) - 0.5 * (p_left[i] + p_right[i]);
        left += v_left[i] * rho;
        right += v_right[i] * rho;
    }
    left <= 0.0 || right <= 0.0
}

/// The checkpoints a subtree's step k (0-based) reads, (idx_min, idx_max):
/// idx_max = popcount(k >> 1), idx_min = idx_max − popcount((¬k & (k+1)) − 1) + 1.
/// An even k stores its momentum at idx_max (and checks nothing: idx_min > idx_max).
pub fn checkpoint_indices(k: usize) -> (usize, usize) {
    let idx_max = (k >> 1).count_ones() as usize;
    let trailing_ones = ((!k & (k + 1)) - 1).count_ones() as usize;
    (idx_max + 1 - trailing_ones, idx_max)
}

/// What a finished transition reports (BlackJAX's `NUTSInfo`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Info {
    /// Mean of min(1, e^{H0−H}) over every state integrated (Stan's accept_stat__).
    pub acceptance_rate: f64,
    /// Leapfrog steps (gradient evaluations), rejected subtrees included.
    pub num_integration_steps: usize,
    /// Trajectory doublings, a rejected last one included.
    pub tree_depth: usize,
    /// The energy H of the sampled state.
    pub energy: f64,
    pub is_divergent: bool,
    pub is_turning: bool,
}

/// One chain's NUTS transition, and the chain's state between transitions.
pub struct Transition {
    d: usize,
    max_depth: usize,
    divergence_threshold: f64,
    eps: f64,
    h0: f64,
    left: Point,
    right: Point,
    /// Σp over the trajectory (p0 included) and its states (z0 excluded).
    sum_p: Vec<f64>,
    n: usize,
    /// The trajectory's sample: after a transition, the chain's state.
    sample: Proposal,
    depth: usize,
    /// The subtree being built: its direction (±1), size 2^depth, next step,
    /// the point being integrated, Σp and its sample.
    dir: f64,
    size: usize,
    k: usize,
    cur: Point,
    sub_sum_p: Vec<f64>,
    sub: Proposal,
    /// Momenta, their velocities and momentum sums at the iterative
    /// checkpoints, max_depth × D each.
    ckpt_p: Vec<f64>,
    ckpt_v: Vec<f64>,
    ckpt_sum: Vec<f64>,
    done: bool,
    info: Info,
}

impl Transition {
    /// A chain in D = `d` dimensions, at most `max_depth` doublings per transition.
    pub fn new(d: usize, max_depth: usize, divergence_threshold: f64) -> Self {
        let prop = || Proposal { point: Point::zeros(d), ..Proposal::default() };
        Self {
            d,
            max_depth,
            divergence_threshold,
            eps: 0.0,
            h0: 0.0,
            left: Point::zeros(d),
            right: Point::zeros(d),
            sum_p: vec![0.0; d],
            n: 0,
            sample: prop(),
            depth: 0,
            dir: 1.0,
            size: 1,
            k: 0,
            cur: Point::zeros(d),
            sub_sum_p: vec![0.0; d],
            sub: prop(),
            ckpt_p: vec![0.0; max_depth.max(1) * d],
            ckpt_v: vec![0.0; max_depth.max(1) * d],
            ckpt_sum: vec![0.0; max_depth.max(1) * d],
            done: true,
            info: Info::default(),
        }
    }

    /// Sets the chain's state (position, gradient, log-density, loss).
    pub fn set_state(&mut self, x: &[f64], grad: &[f64], logp: f64, loss: f64) {
        let s = &mut self.sample.point;
        s.x.copy_from_slice(x);
        s.grad.copy_from_slice(grad);
        (s.logp, s.loss) = (logp, loss);
    }

    /// The chain's state: the last transition's sample.
    pub fn state(&self) -> &Point {
        &self.sample.point
    }

    /// Whether the transition has finished (and [`info`](Self::info) is its report).
    pub fn done(&self) -> bool {
        self.done
    }

    /// The last finished transition's report.
    pub fn info(&self) -> Info {
        self.info
    }

    /// The step size of the current (or last) transition.
    pub fn step_size(&self) -> f64 {
        self.eps
    }

    /// The trajectory's left and right ends (for tests).
    pub fn ends(&self) -> (&Point, &Point) {
        (&self.left, &self.right)
    }

    /// Starts a transition from the chain's state with momentum `p0` and step size `eps`.
    pub fn begin(&mut self, p0: &[f64], eps: f64, metric: &Metric, coins: &mut impl Coins) {
        self.eps = eps;
        self.left.clone_from(&self.sample.point);
        self.left.p.copy_from_slice(p0);
        metric.velocity(p0, &mut self.left.v);
        self.right.clone_from(&self.left);
        self.sum_p.copy_from_slice(p0);
        self.n = 0;
        self.h0 = -self.left.logp + kinetic(p0, &self.left.v);
        self.sample.energy = self.h0;
        self.sample.log_weight = 0.0;
        self.sample.log_accept = f64::NEG_INFINITY;
        self.depth = 0;
        self.done = false;
        self.start_subtree(coins);
    }

    fn start_subtree(&mut self, coins: &mut impl Coins) {
        self.dir = if coins.forward() { 1.0 } else { -1.0 };
        self.size = 1 << self.depth;
        self.k = 0;
        self.cur.clone_from(if self.dir > 0.0 { &self.right } else { &self.left });
    }

    /// The first half of the next leapfrog step (half kick, drift); returns the
    /// position to evaluate. Call only while not [`done`](Self::done).
    pub fn drift(&mut self, metric: &Metric) -> &[f64] {
        let h = self.dir * self.eps;
        half_kick(&mut self.cur.p, &self.cur.grad, h);
        // `cur.v` is scratch here; `land` sets it to the full step's velocity.
        metric.drift(&mut self.cur.x, &self.cur.p, h, &mut self.cur.v);
        &self.cur.x
    }

    /// Finishes the step with the evaluation at the drifted position, and
    /// advances the tree (which may finish the transition).
    pub fn land(&mut self, grad: &[f64], logp: f64, loss: f64, metric: &Metric, coins: &mut impl Coins) {
        self.cur.grad.copy_from_slice(grad);
        (self.cur.logp, self.cur.loss) = (logp, loss);
        half_kick(&mut self.cur.p, &self.cur.grad, self.dir * self.eps);
        metric.velocity(&self.cur.p, &mut self.cur.v);
        let energy = -logp + kinetic(&self.cur.p, &self.cur.v);
        let mut delta = self.h0 - energy;
        if delta.is_nan() {
            delta = f64::NEG_INFINITY;
        }
        let divergent = -delta > self.divergence_threshold;
        let k = self.k;
        if k == 0 {
            self.sub_sum_p.copy_from_slice(&self.cur.p);
            self.sub.point.clone_from(&self.cur);
            self.sub.energy = energy;
            self.sub.log_weight = delta;
            self.sub.log_accept = delta.min(0.0);
        } else {
            self.sub_sum_p.iter_mut().zip(&self.cur.p).for_each(|(s, p)| *s += p);
            // Progressive uniform sampling: the new state with probability w_new/(w_new + w_subtree).
            if coins.uniform() < sigmoid(delta - self.sub.log_weight) {
                self.sub.point.clone_from(&self.cur);
                self.sub.energy = energy;
            }
            self.sub.log_weight = log_add_exp(self.sub.log_weight, delta);
            self.sub.log_accept = log_add_exp(self.sub.log_accept, delta.min(0.0));
        }
        let turning = self.iterative_uturn(k);
        self.k += 1;
        if divergent || turning || self.k == self.size {
            self.finish_subtree(divergent, turning, coins);
        }
    }

    /// Stores step k's checkpoint (k even) or checks every complete
    /// sub-subtree ending at k (k odd).
    fn iterative_uturn(&mut self, k: usize) -> bool {
        let d = self.d;
        let (idx_min, idx_max) = checkpoint_indices(k);
        if k.is_multiple_of(2) {
            self.ckpt_p[idx_max * d..(idx_max + 1) * d].copy_from_slice(&self.cur.p);
            self.ckpt_v[idx_max * d..(idx_max + 1) * d].copy_from_slice(&self.cur.v);
            self.ckpt_sum[idx_max * d..(idx_max + 1) * d].copy_from_slice(&self.sub_sum_p);
            return false;
        }
        (idx_min..=idx_max).rev().any(|i| {
            let at = i * d..(i + 1) * d;
            let (r, r_v, r_sum) = (&self.ckpt_p[at.clone()], &self.ckpt_v[at.clone()], &self.ckpt_sum[at]);
            is_turning(r, r_v, &self.cur.p, &self.cur.v, |j| self.sub_sum_p[j] - r_sum[j] + r[j])
        })
    }

    fn finish_subtree(&mut self, divergent: bool, turning: bool, coins: &mut impl Coins) {
        if divergent || turning {
            // The subtree's sample is discarded; its states still count in the acceptance.
            self.sample.log_accept = log_add_exp(self.sample.log_accept, self.sub.log_accept);
        } else {
            // Biased progressive sampling: favours the new subtree.
            if coins.uniform() < (self.sub.log_weight - self.sample.log_weight).exp().min(1.0) {
                std::mem::swap(&mut self.sample.point, &mut self.sub.point);
                self.sample.energy = self.sub.energy;
            }
            self.sample.log_weight = log_add_exp(self.sample.log_weight, self.sub.log_weight);
            self.sample.log_accept = log_add_exp(self.sample.log_accept, self.sub.log_accept);
        }
        self.sum_p.iter_mut().zip(&self.sub_sum_p).for_each(|(s, p)| *s += p);
        self.n += self.k;
        if self.dir > 0.0 {
            std::mem::swap(&mut self.right, &mut self.cur);
        } else {
            std::mem::swap(&mut self.left, &mut self.cur);
        }
        let turning = turning || is_turning(&self.left.p, &self.left.v, &self.right.p, &self.right.v, |i| self.sum_p[i]);
        self.depth += 1;
        if self.depth >= self.max_depth || divergent || turning {
            self.done = true;
            self.info = Info {
                acceptance_rate: self.sample.log_accept.exp() / self.n as f64,
                num_integration_steps: self.n,
                tree_depth: self.depth,
                energy: self.sample.energy,
                is_divergent: divergent,
                is_turning: turning,
            };
        } else {
            self.start_subtree(coins);
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lh_mcmc_common::metric::LowRank;
    use lh_mcmc_common::testing::{floats as v, reference_vectors_2 as reference};
    use lh_plugin_api::ChainRng;

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
    }

    #[test]
    fn uturn_criterion_matches_blackjax() {
        let r = reference();
        for case in r["nuts_uturn_criterion"]["cases"].as_array().unwrap() {
            let (imm, pl, pr, sum) = (v(&case["inverse_mass_matrix"]), v(&case["p_left"]), v(&case["p_right"]), v(&case["p_sum"]));
            let m = Metric::Diag(imm);
            let (mut vl, mut vr) = (vec![0.0; pl.len()], vec![0.0; pr.len()]);
            m.velocity(&pl, &mut vl);
            m.velocity(&pr, &mut vr);
            assert_eq!(is_turning(&pl, &vl, &pr, &vr, |i| sum[i]), case["blackjax_is_turning"].as_bool().unwrap(), "{case}");
        }
    }

    #[test]
    fn checkpoint_indices_match_blackjax() {
        let r = reference();
        for row in r["nuts_iterative_uturn"]["ckpt_idxs_table"]["rows"].as_array().unwrap() {
            let row: Vec<usize> = row.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
            assert_eq!(checkpoint_indices(row[0]), (row[1], row[2]), "step {}", row[0]);
        }
    }

    /// Replays injected directions and uniforms; panics if the transition draws more than given.
    struct Injected {
        directions: std::vec::IntoIter<f64>,
        uniforms: std::vec::IntoIter<f64>,
    }

    impl Coins for Injected {
        fn forward(&mut self) -> bool {
            self.directions.next().expect("a direction") > 0.0
        }
        fn uniform(&mut self) -> f64 {
            self.uniforms.next().expect("a uniform")
        }
    }

    /// A transition on N(0, diag(var)) driven to the end, one chain.
    fn run_transition(var: &[f64], imm: &Metric, x0: &[f64], p0: &[f64], eps: f64, max_depth: usize, coins: &mut impl Coins) -> Transition {
        let d = var.len();
        let eval = |x: &[f64]| -> (Vec<f64>, f64) {
            (x.iter().zip(var).map(|(a, s)| -a / s).collect(), -0.5 * x.iter().zip(var).map(|(a, s)| a * a / s).sum::<f64>())
        };
        let mut t = Transition::new(d, max_depth, 1000.0);
        let (g0, lp0) = eval(x0);
        t.set_state(x0, &g0, lp0, 0.0);
        t.begin(p0, eps, imm, coins);
        while !t.done() {
            let x = t.drift(imm).to_vec();
            let (g, lp) = eval(&x);
            t.land(&g, lp, 0.0, imm, coins);
        }
        t
    }

    #[test]
    fn transitions_match_blackjax_with_injected_randomness() {
        let r = reference();
        for (name, case) in r["nuts_transition_injected"]["cases"].as_object().unwrap() {
            let i = &case["inputs"];
            let mut coins = Injected { directions: v(&i["directions_supplied"]).into_iter(), uniforms: v(&i["uniforms_supplied"]).into_iter() };
            let max_depth = i["max_num_doublings"].as_u64().unwrap() as usize;
            let imm = Metric::Diag(v(&i["inverse_mass_matrix"]));
            let t = run_transition(&v(&i["target_variances"]), &imm, &v(&i["x0"]), &v(&i["p0"]), i["step_size"].as_f64().unwrap(), max_depth, &mut coins);
            assert!(coins.directions.next().is_none() && coins.uniforms.next().is_none(), "{name}: every draw used");
            let o = &case["outputs"];
            let info = t.info();
            assert!(close(&t.state().x, &v(&o["position"]), 1e-12), "{name}: position {:?}", t.state().x);
            assert!((t.state().logp - o["logdensity"].as_f64().unwrap()).abs() < 1e-12, "{name}");
            assert!((info.acceptance_rate - o["acceptance_rate"].as_f64().unwrap()).abs() < 1e-12, "{name}: {info:?}");
            assert!((info.energy - o["energy_of_sampled_state"].as_f64().unwrap()).abs() < 1e-12, "{name}: {info:?}");
            assert_eq!(info.num_integration_steps as u64, o["num_integration_steps"].as_u64().unwrap(), "{name}");
            assert_eq!(info.tree_depth as u64, o["num_trajectory_expansions"].as_u64().unwrap(), "{name}");
            assert_eq!(info.is_turning, o["is_turning"].as_bool().unwrap(), "{name}");
            assert_eq!(info.is_divergent, o["is_divergent"].as_bool().unwrap(), "{name}");
            let (left, right) = t.ends();
            for (got, key) in
                [(&left.x, "leftmost_position"), (&left.p, "leftmost_momentum"), (&right.x, "rightmost_position"), (&right.p, "rightmost_momentum")]
            {
                assert!(close(got, &v(&o[key]), 1e-12), "{name}: {key} {got:?}");
            }
            assert!((t.h0 - case["initial_energy_H0"].as_f64().unwrap()).abs() < 1e-12);
        }
    }

    /// A 12-step forward subtree on N(0, I₂): the iterative check turns at
    /// step 7 (the sub-subtree of steps 0–7), as BlackJAX's flags say; and
    /// the example where only Stan's extra checks would turn does not turn.
    #[test]
    fn iterative_checks_match_blackjax() {
        let r = reference();
        let s = &r["nuts_iterative_uturn"]["subtree_sequence"];
        let imm = Metric::Diag(v(&s["imm"]));
        let mut t = Transition::new(2, 10, 1000.0);
        for step in s["steps"].as_array().unwrap() {
            let k = step["step"].as_u64().unwrap() as usize;
            t.cur.p = v(&step["momentum"]);
            imm.velocity(&t.cur.p, &mut t.cur.v);
            t.sub_sum_p = v(&step["subtree_momentum_sum"]);
            assert_eq!(t.iterative_uturn(k), step["turning"].as_bool().unwrap(), "step {k}");
        }
        let e = &r["nuts_stan_extra_checks_example"];
        let imm = Metric::identity(2);
        let mut t = Transition::new(2, 10, 1000.0);
        let mut sum = vec![0.0; 2];
        for (k, (p, want)) in e["momenta"].as_array().unwrap().iter().zip(e["iterative_turning_flags_per_step"].as_array().unwrap()).enumerate() {
            t.cur.p = v(p);
            imm.velocity(&t.cur.p, &mut t.cur.v);
            sum.iter_mut().zip(&t.cur.p).for_each(|(s, p)| *s += p);
            t.sub_sum_p.clone_from(&sum);
            assert_eq!(t.iterative_uturn(k), want.as_bool().unwrap(), "Stan example step {k}");
        }
        assert!(!e["recursive_plain_is_turning"].as_bool().unwrap());
    }

    /// A low-rank metric with no direction kept is the diagonal diag(σ²):
    /// the same transitions (same coins) up to rounding (σ·(σ·p) against
    /// σ²·p), checked to 1e-12 over 30 transitions.
    #[test]
    fn low_rank_without_directions_is_the_diagonal() {
        let var = [0.3, 2.0, 5.0, 0.8];
        let sigma = [0.5f64, 1.3, 2.1, 0.9];
        let diag = Metric::Diag(sigma.iter().map(|s| s * s).collect());
        let low = Metric::LowRank(LowRank::new(sigma.to_vec(), vec![], vec![]));
        let (mut ra, mut rb) = (ChainRng::seed_from_u64(4), ChainRng::seed_from_u64(4));
        let (mut xa, mut xb) = (vec![0.1; 4], vec![0.1; 4]);
        for _ in 0..30 {
            let (mut pa, mut pb) = (vec![0.0; 4], vec![0.0; 4]);
            diag.draw_momentum(&mut pa, &mut ra);
            low.draw_momentum(&mut pb, &mut rb);
            assert!(close(&pb, &pa, 1e-12), "{pa:?} vs {pb:?}");
            let a = run_transition(&var, &diag, &xa, &pa, 0.4, 10, &mut ra);
            let b = run_transition(&var, &low, &xb, &pb, 0.4, 10, &mut rb);
            assert_eq!(a.info().num_integration_steps, b.info().num_integration_steps);
            assert!((a.info().acceptance_rate - b.info().acceptance_rate).abs() < 1e-12);
            assert!(close(&b.state().x, &a.state().x, 1e-12), "{:?} vs {:?}", a.state().x, b.state().x);
            (xa, xb) = (a.state().x.clone(), b.state().x.clone());
        }
    }

    /// On N(0, Σ) with the metric M⁻¹ = Σ exactly (a low-rank Σ with
    /// eigenvalues 0.01 and 100 in the rescaled coordinates, condition ≈ 10⁴
    /// before the scales), the dynamics are a unit-frequency rotation: with
    /// ε = 0.2 over 200 transitions the mean acceptance is above 0.95 and the
    /// trees stay short (mean steps below 40; a half period is π/ε ≈ 16).
    #[test]
    fn low_rank_metric_equal_to_the_covariance_whitens_the_target() {
        let d = 6;
        let sigma = vec![0.5, 1.0, 2.0, 0.7, 1.5, 3.0];
        let mut u = vec![0.0; 2 * d];
        // Two orthonormal directions: (1,1,1,1,1,1)/√6 and (1,−1,1,−1,1,−1)/√6.
        for i in 0..d {
            u[i] = 1.0 / 6f64.sqrt();
            u[d + i] = if i % 2 == 0 { 1.0 } else { -1.0 } / 6f64.sqrt();
        }
        let cov = LowRank::new(sigma.clone(), u.clone(), vec![0.01, 100.0]);
        let precision = LowRank::new(sigma.iter().map(|s| 1.0 / s).collect(), u, vec![100.0, 0.01]);
        let metric = Metric::LowRank(cov);
        let eval = |x: &[f64]| -> (Vec<f64>, f64) {
            let mut g = vec![0.0; d];
            precision.velocity(x, &mut g);
            let lp = -0.5 * g.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
            (g.iter().map(|v| -v).collect(), lp)
        };
        let mut rng = ChainRng::seed_from_u64(8);
        let mut t = Transition::new(d, 10, 1000.0);
        let (g0, lp0) = eval(&[0.1; 6]);
        t.set_state(&[0.1; 6], &g0, lp0, 0.0);
        let (mut acc, mut steps) = (0.0, 0.0);
        let mut p = vec![0.0; d];
        for _ in 0..200 {
            metric.draw_momentum(&mut p, &mut rng);
            t.begin(&p, 0.2, &metric, &mut rng);
            while !t.done() {
                let x = t.drift(&metric).to_vec();
                let (g, lp) = eval(&x);
                t.land(&g, lp, 0.0, &metric, &mut rng);
            }
            acc += t.info().acceptance_rate / 200.0;
            steps += t.info().num_integration_steps as f64 / 200.0;
        }
        eprintln!("mean acceptance {acc:.4}, mean steps {steps:.1}");
        assert!(acc > 0.95 && steps < 40.0, "mean acceptance {acc}, mean steps {steps}");
    }
}
