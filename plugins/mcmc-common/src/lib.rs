//! What Lambda-Hat's MCMC sampler plugins (`hmc`, `nuts`, `mams`, `mclmc`)
//! share, as a small rlib each of them links in:
//!
//! - [`adaptation`]: Stan-style window adaptation exactly as BlackJAX 1.2.5
//!   (dual averaging, Welford with shrinkage, the 75/25·2ᵏ/50 schedule);
//! - [`leapfrog`]: the half-kick and drift of velocity Verlet with a
//!   diagonal inverse mass matrix, and the kinetic energy;
//! - [`eval`]: host evaluations that let a recoverable (non-finite) error
//!   through as values for the sampler's energy check to reject;
//! - [`isokinetic`]: the isokinetic McLachlan integrator with ESH momentum
//!   updates and the partial refresh (MCLMC, MAMS);
//! - [`ess`]: the effective sample size of a few chains (MCLMC's and MAMS's
//!   third tuning stage);
//! - [`testing`]: a correlated Gaussian behind the plugin [`Model`](lh_plugin_api::Model)
//!   interface and an in-memory trace sink, to check a plugin's moments
//!   without the host.

pub mod adaptation;
pub mod ess;
pub mod eval;
pub mod isokinetic;
pub mod leapfrog;
pub mod testing;
