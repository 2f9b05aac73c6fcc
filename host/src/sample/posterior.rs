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
    /// Gradient evaluations per chain in full-batch equivalents (a minibatch
    /// of b rows counts b/n).
    pub grad_evals_fge: f64,
    /// Full-batch loss-only evaluations per chain.
    pub loss_evals: u64,
    /// Calls of `logdensity_and_grad`.
    pub full_grad_calls: u64,
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

/// Checks a call's buffers for C chains of D coordinates: `positions` values,
/// and each output's length against what it must be.
pub(super) fn check_buffers(c: usize, d: usize, positions: usize, want: &[usize], got: &[usize]) -> std::result::Result<(), SamplerError> {
    if positions != c * d {
        return Err(SamplerError::fatal(format!("positions has {positions} values, expected C·D = {c}·{d}")));
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
    /// The work counters, shared with the recorder (which checkpoints them).
    pub work: Rc<RefCell<Work>>,
    /// Notes every evaluation, when draws are to be located (`--observe`).
    log: Option<Rc<RefCell<PositionLog>>>,
}

impl Posterior {
    /// Wraps `backend` (for C chains) with centre θ*, β and γ; evaluates L0 = L_n(θ*) in the backend's precision.
    pub fn new(mut backend: Box<dyn Backend>, center: Vec<f64>, beta: f64, gamma: f64) -> Result<Self> {
        let (c, d) = (backend.chains(), backend.dim());
        crate::ensure!(center.len() == d, "θ* has {} values, the model D = {d}", center.len());
        let mut loss = vec![0.0; c];
        let positions: Vec<f64> = center.iter().copied().cycle().take(c * d).collect();
        backend.loss_grad(&positions, Batch::Full, &mut loss, None)?;
        Ok(Self { backend, center, beta, gamma, l0: loss[0], work: Rc::default(), log: None })
    }

    /// Notes every later evaluation (positions and losses) in `log`.
    pub fn track(&mut self, log: Rc<RefCell<PositionLog>>) {
        self.log = Some(log);
    }

    fn note(&self, positions: &[f64], loss: &[f64]) {
        if let Some(log) = &self.log {
            log.borrow_mut().seen(positions, loss);
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

    /// Maps a backend error: a non-finite value is recoverable (a divergence), anything else fatal.
    fn map_err(&mut self, e: Error) -> SamplerError {
        match e {
            Error::Numerical(m) => {
                self.work.borrow_mut().non_finite += 1;
                SamplerError::recoverable(m)
            }
            other => SamplerError::fatal(other.to_string()),
        }
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
        self.work.borrow_mut().grad_evals_fge += 1.0;
        let r = self.backend.loss_grad(&positions, Batch::Full, &mut loss, Some(&mut grads));
        self.to_log_density(&positions, &mut grads, &loss, Some(&mut logp));
        self.note(&positions, &loss);
        r.map_err(|e| self.map_err(e)).into()
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
        self.work.borrow_mut().grad_evals_fge += rows.len() as f64 / self.backend.n_data() as f64;
        let r = self.backend.loss_grad(&positions, Batch::Rows(&rows), &mut loss, Some(&mut grads));
        self.to_log_density(&positions, &mut grads, &loss, None);
        self.note(&positions, &loss);
        r.map_err(|e| self.map_err(e)).into()
    }

    fn loss(&mut self, positions: RSlice<'_, f64>, mut loss: RSliceMut<'_, f64>) -> SResult<()> {
        let (c, d) = (self.backend.chains(), self.backend.dim());
        if let Err(e) = check_buffers(c, d, positions.len(), &[c], &[loss.len()]) {
            return Err(e).into();
        }
        self.work.borrow_mut().loss_evals += 1;
        let r = self.backend.loss_grad(&positions, Batch::Full, &mut loss, None);
        self.note(&positions, &loss);
        r.map_err(|e| self.map_err(e)).into()
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
}
