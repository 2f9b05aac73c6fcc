//! Random streams: Xoshiro256++ seeded from a u64, one independent stream per
//! purpose (or per chain) obtained by `jump()` (2^128 draws apart).

use rand::SeedableRng;
pub use rand_xoshiro::Xoshiro256PlusPlus as Rng;

/// Stream number `index` of `seed`: the seeded generator jumped `index` times.
pub fn stream(seed: u64, index: usize) -> Rng {
    let mut r = Rng::seed_from_u64(seed);
    for _ in 0..index {
        r.jump();
    }
    r
}

/// The streams of a target build, by purpose.
pub mod purpose {
    /// Inputs X (train and test).
    pub const INPUTS: usize = 0;
    /// The teacher's weights (and dropout mask).
    pub const TEACHER: usize = 1;
    /// Observation noise.
    pub const NOISE: usize = 2;
    /// The student's initial weights.
    pub const INIT: usize = 3;
    /// Minibatch order during training.
    pub const BATCHES: usize = 4;
}
