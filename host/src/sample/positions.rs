//! Where each chain is when the plugin records a draw, found on the host
//! side (for `--observe`, which evaluates more losses there): the
//! [`Posterior`](super::posterior::Posterior) notes every evaluation (full θ
//! and the losses it returned), and a recorded loss is matched, bit for bit,
//! with the evaluation that produced it — one of the latest few, or else the
//! position of the chain's previous draw (a rejected proposal keeps the old
//! state). Before the first draw, that previous position is the chain's first
//! evaluation (its starting point).
//!
//! This fits every plugin that records L_n (or a minibatch loss) of a state
//! it evaluated: HMC and RWM (the accepted proposal, or the old state), MCLMC
//! (the end of each step), SGLD and the variational plugins without a control
//! variate. A recorded value no evaluation produced (VI-MFA's
//! control-variate-adjusted L_n) cannot be placed, and says so.

use std::collections::VecDeque;

/// How many of each chain's latest evaluations are candidates for its draw,
/// besides its previous draw (RWM evaluates `thin` proposals per draw). A
/// sampler that records a state evaluated longer ago than that (NUTS' point
/// drawn from a whole trajectory) cannot be placed, and says so.
pub const RECENT: usize = 8;

/// Every chain's latest evaluations, and its position at its previous draw.
pub struct PositionLog {
    dim: usize,
    /// Per chain: (position D, loss bits), newest first.
    recent: Vec<VecDeque<(Vec<f64>, u64)>>,
    /// C × D: each chain's position at its previous draw.
    held: Vec<f64>,
    /// The loss bits of `held`, per chain (none before its first evaluation).
    held_loss: Vec<Option<u64>>,
}

impl PositionLog {
    /// An empty log for `chains` chains of `dim` (full) coordinates.
    pub fn new(chains: usize, dim: usize) -> Self {
        Self { dim, recent: (0..chains).map(|_| VecDeque::with_capacity(RECENT)).collect(), held: vec![0.0; chains * dim], held_loss: vec![None; chains] }
    }

    /// Notes one evaluation of every chain: `positions` C × D, `loss` C.
    pub fn seen(&mut self, positions: &[f64], loss: &[f64]) {
        for (c, (p, l)) in positions.chunks_exact(self.dim).zip(loss).enumerate() {
            self.note(c, p, *l);
        }
    }

    /// Notes one evaluation of the chains `ids`: `positions` K × D, `loss` K, in the order of `ids`.
    pub fn seen_chains(&mut self, ids: &[u32], positions: &[f64], loss: &[f64]) {
        for ((&c, p), l) in ids.iter().zip(positions.chunks_exact(self.dim)).zip(loss) {
            self.note(c as usize, p, *l);
        }
    }

    fn note(&mut self, c: usize, position: &[f64], loss: f64) {
        let d = self.dim;
        if self.held_loss[c].is_none() {
            self.held[c * d..(c + 1) * d].copy_from_slice(position);
            self.held_loss[c] = Some(loss.to_bits());
        }
        let q = &mut self.recent[c];
        let mut p = if q.len() == RECENT { q.pop_back().expect("the log is full").0 } else { vec![0.0; d] };
        p.copy_from_slice(position);
        q.push_front((p, loss.to_bits()));
    }

    /// Every chain's position (C × D) at the draw whose recorded losses are
    /// `loss`: the chain's latest evaluation that returned exactly that loss,
    /// else its previous draw if it had that loss. It becomes the previous
    /// draw for the next call. `Err(c)` names the first chain neither fits.
    pub fn locate(&mut self, loss: &[f64]) -> Result<&[f64], usize> {
        let d = self.dim;
        for (c, l) in loss.iter().enumerate() {
            let bits = l.to_bits();
            if let Some((p, _)) = self.recent[c].iter().find(|(_, b)| *b == bits) {
                self.held[c * d..(c + 1) * d].copy_from_slice(p);
            } else if self.held_loss[c] != Some(bits) {
                return Err(c);
            }
            self.held_loss[c] = Some(bits);
        }
        Ok(&self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_rejected_and_unknown_draws() {
        // Two chains of one coordinate; the loss of position x is x².
        let mut log = PositionLog::new(2, 1);
        log.seen(&[1.0, 2.0], &[1.0, 4.0]); // the start
        log.seen(&[3.0, 5.0], &[9.0, 25.0]); // a proposal
                                             // Chain 0 accepts it, chain 1 keeps its start.
        assert_eq!(log.locate(&[9.0, 4.0]).unwrap(), [3.0, 2.0]);
        for k in 0..RECENT + 1 {
            log.seen(&[10.0 + k as f64, 20.0], &[(10.0 + k as f64).powi(2), 400.0]);
        }
        // Chain 0 rejected every proposal since: it is still where its previous draw was.
        assert_eq!(log.locate(&[9.0, 400.0]).unwrap(), [3.0, 20.0]);
        // The first proposal has left the window of RECENT evaluations.
        assert_eq!(log.locate(&[100.0, 400.0]), Err(0));
        assert_eq!(log.locate(&[9.0, 7.0]), Err(1));

        // Subset evaluations (NUTS): each chain keeps its own window.
        let mut log = PositionLog::new(2, 1);
        log.seen(&[1.0, 2.0], &[1.0, 4.0]);
        log.seen_chains(&[1], &[3.0], &[9.0]);
        for k in 0..RECENT {
            log.seen_chains(&[0], &[10.0 + k as f64], &[(10.0 + k as f64).powi(2)]);
        }
        assert_eq!(log.locate(&[100.0, 9.0]).unwrap(), [10.0, 3.0]);
    }
}
