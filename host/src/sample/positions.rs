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

/// How many of the latest evaluations are candidates for a draw, besides
/// each chain's previous draw (RWM evaluates `thin` proposals per draw).
pub const RECENT: usize = 8;

/// The latest evaluations of every chain, and each chain's position at its previous draw.
pub struct PositionLog {
    chains: usize,
    dim: usize,
    /// (positions C × D, losses C), newest first.
    recent: VecDeque<(Vec<f64>, Vec<f64>)>,
    /// C × D: each chain's position at its previous draw.
    held: Vec<f64>,
    /// The loss bits of `held`, per chain (none before its first evaluation).
    held_loss: Vec<Option<u64>>,
}

impl PositionLog {
    /// An empty log for `chains` chains of `dim` (full) coordinates.
    pub fn new(chains: usize, dim: usize) -> Self {
        Self { chains, dim, recent: VecDeque::with_capacity(RECENT), held: vec![0.0; chains * dim], held_loss: vec![None; chains] }
    }

    /// Notes one evaluation of every chain: `positions` C × D, `loss` C.
    pub fn seen(&mut self, positions: &[f64], loss: &[f64]) {
        let d = self.dim;
        for (c, l) in loss.iter().enumerate() {
            if self.held_loss[c].is_none() {
                self.held[c * d..(c + 1) * d].copy_from_slice(&positions[c * d..(c + 1) * d]);
                self.held_loss[c] = Some(l.to_bits());
            }
        }
        let (mut p, mut l) =
            if self.recent.len() == RECENT { self.recent.pop_back().expect("the log is full") } else { (vec![0.0; self.chains * d], vec![0.0; self.chains]) };
        p.copy_from_slice(positions);
        l.copy_from_slice(loss);
        self.recent.push_front((p, l));
    }

    /// Every chain's position (C × D) at the draw whose recorded losses are
    /// `loss`: the latest evaluation that returned exactly that loss, else the
    /// chain's previous draw if it had that loss. It becomes the previous draw
    /// for the next call. `Err(c)` names the first chain neither fits.
    pub fn locate(&mut self, loss: &[f64]) -> Result<&[f64], usize> {
        let d = self.dim;
        for (c, l) in loss.iter().enumerate() {
            let bits = l.to_bits();
            if let Some((p, _)) = self.recent.iter().find(|(_, ls)| ls[c].to_bits() == bits) {
                self.held[c * d..(c + 1) * d].copy_from_slice(&p[c * d..(c + 1) * d]);
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
    }
}
