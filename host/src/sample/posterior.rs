//! The tempered, localised posterior over a backend, as plugins see it:
//! log π(θ) = −nβ·L_n(θ) − (γ/2)‖θ − θ*‖². Implements the plugin-api
//! [`Model`] and counts the work done through it.

use std::cell::RefCell;
use std::rc::Rc;

use lh_plugin_api::{Model, RSlice, RSliceMut, SResult, SamplerError};
use serde::{Deserialize, Serialize};

use super::positions::PositionLog;
use crate::backend::{Backend, Batch};
use crate::error::{Error, Result};

/// Work done through the model, counted by the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Work {
    /// Gradient evaluations per chain in full-batch equivalents: the total
    /// over all chains divided by C (a minibatch of b rows counts b/n, a
    /// call for K of the C chains K/C).
    pub grad_evals_fge: f64,
    /// Full-batch loss-only evaluations per chain.
    pub loss_evals: u64,
    /// Calls of `logdensity_and_grad`.
    pub full_grad_calls: u64,
    /// Calls of `logdensity_and_grad_chains` (a subset of the chains).
    #[serde(default)]
    pub subset_grad_calls: u64,
    /// Calls of `minibatch_grad`.
    pub minibatch_grad_calls: u64,
    /// Evaluations that returned a non-finite value (counted as divergences).
    pub non_finite: u64,
    /// Loss evaluations on the `--observe` subsets: one per subset per
    /// recorded draw, all chains at once (forward passes only; not in
    /// `grad_evals_fge`).
    #[serde(default)]
    pub observe_loss_evals: u64,
}

/// Checks a call's buffers for K chains of D coordinates: `positions` values,
/// and each output's length (`got`) against what it must be (`want`).
pub(super) fn check_buffers(k: usize, d: usize, positions: usize, want: &[usize], got: &[usize]) -> std::result::Result<(), SamplerError> {
    if positions != k * d {
        return Err(SamplerError::fatal(format!("positions has {positions} values, expected {k}·D = {k}·{d}")));
    }
    for (&w, &g) in want.iter().zip(got) {
        if g != w {
            return Err(SamplerError::fatal(format!("an output buffer has {g} values, expected {w}")));
        }
    }
    Ok(())
}

/// The posterior of one run.
pub struct Posterior {
    backend: Box<dyn Backend>,
    center: Vec<f64>,
    beta: f64,
    gamma: f64,
    l0: f64,
    /// The work counters, shared with the recorder (which checkpoints them and checks budgets against them).
    pub work: Rc<RefCell<Work>>,
    /// Notes every evaluation, when draws are to be located (`--observe`).
    log: Option<Rc<RefCell<PositionLog>>>,
    /// Scratch for a subset call: which chains it named (C flags, allocated once).
    named: Vec<bool>,
}

/// A subset call's chain list: every index < C and none twice.
fn check_subset(chains: &[u32], named: &mut [bool]) -> std::result::Result<(), SamplerError> {
    named.iter_mut().for_each(|f| *f = false);
    let c = named.len();
    for &k in chains {
        let slot = named.get_mut(k as usize).ok_or_else(|| SamplerError::fatal(format!("chain {k} is out of range (C = {c})")))?;
        if std::mem::replace(slot, true) {
            return Err(SamplerError::fatal(format!("chain {k} is listed twice")));
        }
    }
    if chains.is_empty() {
        return Err(SamplerError::fatal("an evaluation of no chains"));
    }
    Ok(())
}

impl Posterior {
    /// Wraps `backend` (for C chains) with centre θ*, β and γ; evaluates L0 = L_n(θ*) in the backend's precision.
    pub fn new(mut backend: Box<dyn Backend>, center: Vec<f64>, beta: f64, gamma: f64) -> Result<Self> {
        let (c, d) = (backend.chains(), backend.dim());
        crate::ensure!(center.len() == d, "θ* has {} values, the model D = {d}", center.len());
        let mut loss = [0.0];
        backend.loss_grad(&center, Batch::Full, &mut loss, None)?;
        Ok(Self { backend, center, beta, gamma, l0: loss[0], work: Rc::default(), log: None, named: vec![false; c] })
    }

    /// Notes every later evaluation (positions and losses) in `log`.
    pub fn track(&mut self, log: Rc<RefCell<PositionLog>>) {
        self.log = Some(log);
    }

    /// Notes an evaluation of the chains `ids` (all chains when `None`).
    fn note(&self, ids: Option<&[u32]>, positions: &[f64], loss: &[f64]) {
        if let Some(log) = &self.log {
            match ids {
                None => log.borrow_mut().seen(positions, loss),
                Some(ids) => log.borrow_mut().seen_chains(ids, positions, loss),
            }
        }
    }

    /// nβ.
    pub fn n_beta(&self) -> f64 {
        self.backend.n_data() as f64 * self.beta
    }

    /// The backend's description.
    pub fn backend_info(&self) -> crate::backend::BackendInfo {
        self.backend.info()
    }

    fn count_grads(&mut self, per_chain: f64) {
        self.work.borrow_mut().grad_evals_fge += per_chain;
    }

    /// Turns the L_n gradient in `grads` into ∇log π in place; returns log π per chain into `logp`.
    fn to_log_density(&self, positions: &[f64], grads: &mut [f64], loss: &[f64], mut logp: Option<&mut [f64]>) {
        let (d, nb) = (self.backend.dim(), self.n_beta());
        for (c, l) in loss.iter().enumerate() {
            let theta = &positions[c * d..(c + 1) * d];
            let g = &mut grads[c * d..(c + 1) * d];
            let mut sq = 0.0;
            for ((gi, t), m) in g.iter_mut().zip(theta).zip(&self.center) {
                let dt = t - m;
                sq += dt * dt;
                *gi = -nb * *gi - self.gamma * dt;
            }
            if let Some(lp) = logp.as_deref_mut() {
                lp[c] = -nb * l - 0.5 * self.gamma * sq;
            }
        }
    }

    /// The outcome of one backend evaluation of K chains (`ids[k]` the global
    /// index of the k-th, `None` for 0..K): a non-finite value anywhere in a
    /// chain's outputs is a recoverable error listing those chains; any other
    /// backend error is fatal.
    fn outcome(&mut self, r: Result<()>, ids: Option<&[u32]>, loss: &[f64], logp: Option<&[f64]>, grads: Option<&[f64]>) -> SResult<()> {
        let d = self.backend.dim();
        let finite = |k: usize| {
            loss[k].is_finite() && logp.is_none_or(|lp| lp[k].is_finite()) && grads.is_none_or(|g| g[k * d..(k + 1) * d].iter().all(|v| v.is_finite()))
        };
        let r = match r {
            Ok(()) if (0..loss.len()).all(finite) => Ok(()),
            Ok(()) | Err(Error::Numerical(_)) => {
                self.work.borrow_mut().non_finite += 1;
                let chains: Vec<u32> = (0..loss.len()).filter(|&k| !finite(k)).map(|k| ids.map_or(k as u32, |ids| ids[k])).collect();
                let list = chains.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
                Err(SamplerError::non_finite(chains, format!("non-finite log-density, loss or gradient for chain(s) {list}")))
            }
            Err(e) => Err(SamplerError::fatal(e.to_string())),
        };
        r.into()
    }
}

impl Model for Posterior {
    fn dim(&self) -> usize {
        self.backend.dim()
    }
    fn n_data(&self) -> usize {
        self.backend.n_data()
    }
    fn n_chains(&self) -> usize {
        self.backend.chains()
    }
    fn center(&self) -> RSlice<'_, f64> {
        RSlice::from_slice(&self.center)
    }
    fn beta(&self) -> f64 {
        self.beta
    }
    fn gamma(&self) -> f64 {
        self.gamma
    }
    fn l0(&self) -> f64 {
        self.l0
    }

    fn logdensity_and_grad(
        &mut self,
        positions: RSlice<'_, f64>,
        mut grads: RSliceMut<'_, f64>,
        mut logp: RSliceMut<'_, f64>,
        mut loss: RSliceMut<'_, f64>,
    ) -> SResult<()> {
        let (c, d) = (self.backend.chains(), self.backend.dim());
        if let Err(e) = check_buffers(c, d, positions.len(), &[c * d, c, c], &[grads.len(), logp.len(), loss.len()]) {
            return Err(e).into();
        }
        self.work.borrow_mut().full_grad_calls += 1;
        self.count_grads(1.0);
        let r = self.backend.loss_grad(&positions, Batch::Full, &mut loss, Some(&mut grads));
        self.to_log_density(&positions, &mut grads, &loss, Some(&mut logp));
        self.note(None, &positions, &loss);
        self.outcome(r, None, &loss, Some(&logp), Some(&grads))
    }

    fn logdensity_and_grad_chains(
        &mut self,
        chains: RSlice<'_, u32>,
        positions: RSlice<'_, f64>,
        mut grads: RSliceMut<'_, f64>,
        mut logp: RSliceMut<'_, f64>,
        mut loss: RSliceMut<'_, f64>,
    ) -> SResult<()> {
        let (c, d, k) = (self.backend.chains(), self.backend.dim(), chains.len());
        let checked =
            check_subset(&chains, &mut self.named).and_then(|()| check_buffers(k, d, positions.len(), &[k * d, k, k], &[grads.len(), logp.len(), loss.len()]));
        if let Err(e) = checked {
            return Err(e).into();
        }
        self.work.borrow_mut().subset_grad_calls += 1;
        self.count_grads(k as f64 / c as f64);
        let r = self.backend.loss_grad(&positions, Batch::Full, &mut loss, Some(&mut grads));
        self.to_log_density(&positions, &mut grads, &loss, Some(&mut logp));
        self.note(Some(&chains), &positions, &loss);
        self.outcome(r, Some(&chains), &loss, Some(&logp), Some(&grads))
    }

    fn minibatch_grad(
        &mut self,
        positions: RSlice<'_, f64>,
        rows: RSlice<'_, u32>,
        mut grads: RSliceMut<'_, f64>,
        mut loss: RSliceMut<'_, f64>,
    ) -> SResult<()> {
        let (c, d) = (self.backend.chains(), self.backend.dim());
        if let Err(e) = check_buffers(c, d, positions.len(), &[c * d, c], &[grads.len(), loss.len()]) {
            return Err(e).into();
        }
        self.work.borrow_mut().minibatch_grad_calls += 1;
        self.count_grads(rows.len() as f64 / self.backend.n_data() as f64);
        let r = self.backend.loss_grad(&positions, Batch::Rows(&rows), &mut loss, Some(&mut grads));
        self.to_log_density(&positions, &mut grads, &loss, None);
        self.note(None, &positions, &loss);
        self.outcome(r, None, &loss, None, Some(&grads))
    }

    fn loss(&mut self, positions: RSlice<'_, f64>, mut loss: RSliceMut<'_, f64>) -> SResult<()> {
        let (c, d) = (self.backend.chains(), self.backend.dim());
        if let Err(e) = check_buffers(c, d, positions.len(), &[c], &[loss.len()]) {
            return Err(e).into();
        }
        self.work.borrow_mut().loss_evals += 1;
        let r = self.backend.loss_grad(&positions, Batch::Full, &mut loss, None);
        self.note(None, &positions, &loss);
        self.outcome(r, None, &loss, None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::quadratic::QuadraticBackend;

    #[test]
    fn log_density_and_gradient_of_the_quadratic() {
        // L = ½‖θ − θ*‖², so log π = −(nβ + γ)/2 ‖θ − θ*‖² and ∇ = −(nβ + γ)(θ − θ*).
        let center = vec![1.0, -2.0];
        let mut p = Posterior::new(Box::new(QuadraticBackend::new(center.clone(), 100, 2)), center, 0.5, 3.0).unwrap();
        assert_eq!(p.l0(), 0.0);
        let pos = [2.0, -2.0, 1.0, 0.0];
        let (mut g, mut lp, mut l) = ([0.0; 4], [0.0; 2], [0.0; 2]);
        p.logdensity_and_grad(
            RSlice::from_slice(&pos),
            RSliceMut::from_mut_slice(&mut g),
            RSliceMut::from_mut_slice(&mut lp),
            RSliceMut::from_mut_slice(&mut l),
        )
        .unwrap();
        assert_eq!(l, [0.5, 2.0]);
        assert_eq!(lp, [-53.0 * 0.5, -53.0 * 2.0]);
        assert_eq!(g, [-53.0, 0.0, 0.0, -106.0]);
        assert_eq!(p.work.borrow().full_grad_calls, 1);
        let bad = p.loss(RSlice::from_slice(&pos[..2]), RSliceMut::from_mut_slice(&mut l)).unwrap_err();
        assert!(bad.message.contains("positions has 2 values"));
    }

    fn subset(p: &mut Posterior, chains: &[u32], pos: &[f64]) -> (SResult<()>, Vec<f64>, Vec<f64>) {
        let (k, d) = (chains.len(), p.dim());
        let (mut g, mut lp, mut l) = (vec![0.0; k * d], vec![0.0; k], vec![0.0; k]);
        let r = p.logdensity_and_grad_chains(
            RSlice::from_slice(chains),
            RSlice::from_slice(pos),
            RSliceMut::from_mut_slice(&mut g),
            RSliceMut::from_mut_slice(&mut lp),
            RSliceMut::from_mut_slice(&mut l),
        );
        (r, lp, g)
    }

    /// A call for K of the C chains evaluates those K only, counts K/C
    /// gradient evaluations per chain, and names non-finite chains by their
    /// global index, as data.
    #[test]
    fn subset_evaluations_count_and_report_their_chains() {
        let center = vec![0.0, 0.0];
        let mut p = Posterior::new(Box::new(QuadraticBackend::new(center.clone(), 100, 4)), center, 0.5, 3.0).unwrap();
        let work = p.work.clone();
        let (r, lp, g) = subset(&mut p, &[3, 1], &[1.0, 0.0, 0.0, 2.0]);
        r.unwrap();
        assert_eq!(lp, [-53.0 * 0.5, -53.0 * 2.0]);
        assert_eq!(g, [-53.0, 0.0, 0.0, -106.0]);
        assert_eq!(p.work.borrow().grad_evals_fge, 0.5);
        assert_eq!(work.borrow().grad_evals_fge, 0.5, "a shared view");
        assert_eq!(p.work.borrow().subset_grad_calls, 1);
        let (r, ..) = subset(&mut p, &[2, 0], &[f64::NAN, 0.0, 1.0, 1.0]);
        let e = r.unwrap_err();
        assert!(e.is_recoverable());
        assert_eq!(e.chains.as_slice(), &[2]);
        assert!(e.message.contains("chain(s) 2"), "{}", e.message);
        assert_eq!(p.work.borrow().non_finite, 1);
        assert!(subset(&mut p, &[1, 1], &[0.0; 4]).0.unwrap_err().message.contains("listed twice"));
        assert!(subset(&mut p, &[4], &[0.0; 2]).0.unwrap_err().message.contains("out of range"));
        assert!(subset(&mut p, &[0], &[0.0; 4]).0.unwrap_err().message.contains("positions has 4 values"));
        assert_eq!(p.work.borrow().grad_evals_fge, 1.0, "refused calls count nothing");
    }
}
