//! The quadratic test target L(θ) = ½‖θ − θ*‖²: an exact oracle for every
//! sampler (λ̂ = D·nβ / (2(nβ + γ))). There is no data; a minibatch gives the
//! same value as the full batch.

use super::interface::{check_shapes, Backend, BackendInfo, Batch};
use crate::error::Result;
use crate::model::Precision;

/// Evaluates ½‖θ − θ*‖² and θ − θ* for up to C chains, in f64.
pub struct QuadraticBackend {
    center: Vec<f64>,
    n: usize,
    chains: usize,
}

impl QuadraticBackend {
    /// Centre θ*, the n that sets β, and the number of chains.
    pub fn new(center: Vec<f64>, n: usize, chains: usize) -> Self {
        Self { center, n, chains }
    }
}

impl Backend for QuadraticBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo { backend: "cpu".into(), adapter: "analytic quadratic".into(), precision: Precision::F64 }
    }
    fn dim(&self) -> usize {
        self.center.len()
    }
    fn n_data(&self) -> usize {
        self.n
    }
    fn chains(&self) -> usize {
        self.chains
    }
    fn loss_grad(&mut self, positions: &[f64], _batch: Batch<'_>, loss: &mut [f64], mut grads: Option<&mut [f64]>) -> Result<()> {
        check_shapes(self, positions, loss, grads.as_deref())?;
        let d = self.dim();
        for (c, l) in loss.iter_mut().enumerate() {
            let theta = &positions[c * d..(c + 1) * d];
            *l = 0.5 * theta.iter().zip(&self.center).map(|(t, m)| (t - m) * (t - m)).sum::<f64>();
            if let Some(g) = grads.as_deref_mut() {
                for ((gi, t), m) in g[c * d..(c + 1) * d].iter_mut().zip(theta).zip(&self.center) {
                    *gi = t - m;
                }
            }
        }
        Ok(())
    }
}
