//! What Lambda-Hat's MCMC sampler plugins (`hmc`, `nuts`, `mams`, `mclmc`)
//! share, as a small rlib each of them links in:
//!
//! - [`adaptation`]: Stan-style window adaptation exactly as BlackJAX 1.2.5
//!   (dual averaging, Welford with shrinkage, the 75/25·2ᵏ/50 schedule);
//! - [`leapfrog`]: the half-kick and drift of velocity Verlet with a
//!   diagonal inverse mass matrix, and the kinetic energy;
//! - [`metric`]: the inverse mass matrix as one type, diagonal or
//!   [`low_rank`] (nutpie's low-rank plus diagonal Fisher estimate), with
//!   the velocity, kinetic energy, drift and momentum draws;
//! - [`eval`]: host evaluations that let a recoverable (non-finite) error
//!   through as values for the sampler's energy check to reject;
//! - [`isokinetic`]: the isokinetic McLachlan integrator with ESH momentum
//!   updates and the partial refresh (MCLMC, MAMS);
//! - [`ess`]: the effective sample size of a few chains (MCLMC's and MAMS's
//!   third tuning stage);
//! - [`testing`]: a correlated Gaussian behind the plugin [`Model`](lh_plugin_api::Model)
//!   interface and an in-memory trace sink, to check a plugin's moments
//!   without the host;
//! - [`tuning_steps`]: the default tuning budget of MCLMC and MAMS.

#[cfg(test)]
mod tests {
    #[test]
    fn tuning_steps_grow_as_the_fourth_root_of_d() {
        assert_eq!(super::tuning_steps(20), 2000);
        assert_eq!(super::tuning_steps(100), 2000);
        assert_eq!(super::tuning_steps(1600), 4000);
        assert_eq!(super::tuning_steps(9921), 6312);
    }
}

/// The default step budget N of the MCLMC and MAMS tuners in D dimensions:
/// 2000·max(1, (D/100)^¼) — 2000 up to D = 100, about 6300 at D = 10⁴.
/// Each tuning stage needs about the same number of effective samples
/// whatever D is, and the steps an isokinetic sampler takes per effective
/// sample grow as D^¼ (Robnik et al.), so a fixed budget that suffices at
/// D ≈ 50 leaves the stages at D ≈ 10⁴ short: the preconditioner from a
/// handful of effective samples, the ε and L from noisy estimates.
pub fn tuning_steps(d: usize) -> usize {
    (2000.0 * (d as f64 / 100.0).powf(0.25).max(1.0)).round() as usize
}

pub mod adaptation;
pub mod ess;
pub mod eval;
pub mod isokinetic;
pub mod leapfrog;
pub mod low_rank;
pub mod metric;
pub mod testing;
