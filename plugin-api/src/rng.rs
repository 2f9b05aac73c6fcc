//! Random streams for plugins, with their own methods so that no `rand`
//! version couples a plugin to the host.

use rand::seq::SliceRandom;
use rand::{Rng as _, RngExt as _, SeedableRng as _};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A chain's random stream: Xoshiro256++ (the same seed gives the same
/// numbers on every platform and for every plugin built against this minor
/// version of the API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainRng(Xoshiro256PlusPlus);

impl ChainRng {
    /// The stream seeded from `seed` (SplitMix64 expansion of the u64).
    pub fn seed_from_u64(seed: u64) -> Self {
        Self(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// Jumps 2^128 draws ahead: the way to split off an independent stream.
    pub fn jump(&mut self) {
        self.0.jump();
    }

    /// 64 uniformly random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform draw from [0, 1) (53 random bits).
    pub fn uniform(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// A uniform integer in 0..n (n ≥ 1), without modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n >= 1, "ChainRng::below(0)");
        self.0.random_range(0..n)
    }

    /// A standard normal draw N(0, 1).
    pub fn standard_normal(&mut self) -> f64 {
        StandardNormal.sample(&mut self.0)
    }

    /// Fills `out` with independent standard normal draws.
    pub fn fill_standard_normal(&mut self, out: &mut [f64]) {
        out.iter_mut().for_each(|v| *v = StandardNormal.sample(&mut self.0));
    }

    /// Shuffles `v` uniformly (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        v.shuffle(&mut self.0);
    }
}

/// One independent stream per chain from the run seed: chain c gets the
/// seeded generator jumped c + 1 times (2^128 draws apart), so a chain's
/// numbers do not depend on how many chains run beside it.
pub fn chain_rngs(seed: u64, chains: usize) -> Vec<ChainRng> {
    let mut r = ChainRng::seed_from_u64(seed);
    (0..chains)
        .map(|_| {
            r.jump();
            r.clone()
        })
        .collect()
}

/// Starting positions for every chain: θ* + `scale`·N(0, I), C × D, drawing
/// from each chain's own stream.
pub fn jittered_start(center: &[f64], scale: f64, rngs: &mut [ChainRng]) -> Vec<f64> {
    rngs.iter_mut().flat_map(|rng| center.iter().map(move |c| c + scale * rng.standard_normal())).collect()
}

/// Minibatch rows for all chains: the rows 0..n reshuffled every epoch and
/// handed out `batch` at a time, without replacement within an epoch (a
/// partial last batch of an epoch is skipped). Give it a stream of its own so
/// the batches do not depend on the chain count.
pub struct Minibatches {
    order: Vec<u32>,
    cursor: usize,
    batch: usize,
    rng: ChainRng,
}

impl Minibatches {
    /// Batches of `batch` rows (capped at n) out of n, shuffled with `rng`.
    pub fn new(n: usize, batch: usize, rng: ChainRng) -> Self {
        Self { order: (0..n as u32).collect(), cursor: n, batch: batch.clamp(1, n.max(1)), rng }
    }

    /// The next batch of row indices.
    pub fn next_batch(&mut self) -> &[u32] {
        if self.cursor + self.batch > self.order.len() {
            self.rng.shuffle(&mut self.order);
            self.cursor = 0;
        }
        self.cursor += self.batch;
        &self.order[self.cursor - self.batch..self.cursor]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_streams_are_independent_of_the_chain_count() {
        let mut a = chain_rngs(7, 2);
        let mut b = chain_rngs(7, 5);
        assert_eq!(a[1].next_u64(), b[1].next_u64());
        assert_ne!(b[0].next_u64(), b[2].next_u64());
    }

    #[test]
    fn draws_have_the_right_moments_and_ranges() {
        let mut r = ChainRng::seed_from_u64(3);
        let n = 20000;
        let u: Vec<f64> = (0..n).map(|_| r.uniform()).collect();
        assert!(u.iter().all(|v| (0.0..1.0).contains(v)));
        assert!((u.iter().sum::<f64>() / n as f64 - 0.5).abs() < 0.01);
        let mut z = vec![0.0; n];
        r.fill_standard_normal(&mut z);
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.03, "{mean} {var}");
        assert!((0..1000).all(|_| r.below(7) < 7));
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..50).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn minibatches_cover_every_row_once_per_epoch() {
        let mut b = Minibatches::new(10, 3, chain_rngs(1, 1).remove(0));
        let mut seen: Vec<u32> = (0..3).flat_map(|_| b.next_batch().to_vec()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9, "three batches of an epoch are disjoint");
        assert_eq!(b.next_batch().len(), 3);
        assert_eq!(Minibatches::new(2, 5, chain_rngs(1, 1).remove(0)).next_batch().len(), 2);
    }
}
