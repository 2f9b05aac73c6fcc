//! Where each chain is when the plugin records a draw, found on the host
//! side (for `--observe`, which evaluates more losses there): the
//! [`Posterior`](super::posterior::Posterior) notes every evaluation (full θ
//! and the losses it returned), and a recorded loss is matched, bit for bit,
//! with an evaluation of that chain since its previous draw, or else with the
//! position of that previous draw (a rejected proposal keeps the old state).
//! Before the first draw, that previous position is the chain's first
//! evaluation (its starting point).
//!
//! This fits every plugin that records L_n (or a minibatch loss) of a state
//! it evaluated since its previous draw: HMC, MAMS and RWM (the accepted
//! proposal, or the old state), NUTS (the point drawn from the trajectory),
//! MCLMC (the end of each step), SGLD and the variational plugins without a
//! control variate. A recorded value no evaluation produced (VI-MFA's
//! control-variate-adjusted L_n) cannot be placed, and says so.

use std::collections::VecDeque;

/// At most this many bytes of positions are kept (all chains together);
/// [`PositionLog::capacity`] is how many evaluations per chain that is.
pub const MAX_BYTES: usize = 256 << 20;

/// Every chain's evaluations since its previous draw, and its position there.
pub struct PositionLog {
    dim: usize,
    /// Evaluations kept per chain; beyond it the oldest since the previous draw is dropped.
    capacity: usize,
    /// Per chain: (position D, loss bits) since its previous draw, newest first.
    since: Vec<VecDeque<(Vec<f64>, u64)>>,
    /// Position buffers of evaluations let go, for reuse.
    spare: Vec<Vec<f64>>,
    /// C × D: each chain's position at its previous draw.
    held: Vec<f64>,
    /// The loss bits of `held`, per chain (none before its first evaluation).
    held_loss: Vec<Option<u64>>,
}

impl PositionLog {
    /// An empty log for `chains` chains of `dim` (full) coordinates.
    pub fn new(chains: usize, dim: usize) -> Self {
        let capacity = (MAX_BYTES / (chains.max(1) * dim.max(1) * std::mem::size_of::<f64>())).clamp(16, 4096);
        Self {
            dim,
            capacity,
            since: (0..chains).map(|_| VecDeque::new()).collect(),
            spare: Vec::new(),
            held: vec![0.0; chains * dim],
            held_loss: vec![None; chains],
        }
    }

    /// How many evaluations per chain between two draws can be matched (4096,
    /// or fewer where that many positions would pass [`MAX_BYTES`]: 845 for 4 chains at D = 9921).
    pub fn capacity(&self) -> usize {
        self.capacity
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
        let q = &mut self.since[c];
        let mut p = if q.len() == self.capacity { q.pop_back().map(|e| e.0) } else { self.spare.pop() }.unwrap_or_else(|| vec![0.0; d]);
        p.copy_from_slice(position);
        q.push_front((p, loss.to_bits()));
    }

    /// Every chain's position (C × D) at the draw whose recorded losses are
    /// `loss`: the chain's latest evaluation since its previous draw that
    /// returned exactly that loss, else that previous draw if it had that
    /// loss. It becomes the previous draw for the next call. `Err(c)` names
    /// the first chain neither fits.
    pub fn locate(&mut self, loss: &[f64]) -> Result<&[f64], usize> {
        let d = self.dim;
        for (c, l) in loss.iter().enumerate() {
            let bits = l.to_bits();
            if let Some((p, _)) = self.since[c].iter().find(|(_, b)| *b == bits) {
                self.held[c * d..(c + 1) * d].copy_from_slice(p);
            } else if self.held_loss[c] != Some(bits) {
                return Err(c);
            }
            self.held_loss[c] = Some(bits);
            self.spare.extend(self.since[c].drain(..).map(|e| e.0));
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
        // A trajectory of many evaluations (NUTS), chain 0 drawing its first point.
        for k in 0..500 {
            log.seen(&[10.0 + k as f64, 20.0], &[(10.0 + k as f64).powi(2), 400.0]);
        }
        assert_eq!(log.locate(&[100.0, 400.0]).unwrap(), [10.0, 20.0]);
        // Chain 0 rejected every proposal since: it is still where its previous draw was.
        log.seen(&[7.0, 21.0], &[49.0, 441.0]);
        assert_eq!(log.locate(&[100.0, 441.0]).unwrap(), [10.0, 21.0]);
        // An evaluation before the previous draw is no longer a candidate.
        log.seen(&[8.0, 22.0], &[64.0, 484.0]);
        assert_eq!(log.locate(&[49.0, 484.0]), Err(0));
        assert_eq!(log.locate(&[100.0, 7.0]), Err(1));

        // Subset evaluations (NUTS): each chain keeps its own evaluations.
        let mut log = PositionLog::new(2, 1);
        log.seen(&[1.0, 2.0], &[1.0, 4.0]);
        log.seen_chains(&[1], &[3.0], &[9.0]);
        for k in 0..50 {
            log.seen_chains(&[0], &[10.0 + k as f64], &[(10.0 + k as f64).powi(2)]);
        }
        assert_eq!(log.locate(&[100.0, 9.0]).unwrap(), [10.0, 3.0]);
    }

    #[test]
    fn at_capacity_the_oldest_evaluation_goes() {
        let mut log = PositionLog::new(1, 1);
        let cap = log.capacity();
        assert_eq!(cap, 4096);
        for k in 0..cap + 2 {
            log.seen(&[k as f64], &[k as f64]);
        }
        // Evaluation 0 was the start (the previous draw); evaluation 1 has been dropped.
        assert_eq!(log.locate(&[1.0]), Err(0));
        assert_eq!(log.locate(&[2.0]).unwrap(), [2.0]);
        assert_eq!(PositionLog::new(4, 9921).capacity(), 845);
    }
}
