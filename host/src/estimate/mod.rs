//! The estimator, shared by Stage B (λ̂ in the run manifest) and Stage C
//! (analysis.json): λ̂ from L_n traces ([`llc`]) and the MCMC statistics
//! behind its error bars ([`mcmc`]: ArviZ's R̂ and ESS, MCSE, autocorrelation,
//! BFMI, bootstrap SEs). Traces (C × T arrays) flow in; numbers flow out. A leaf.

pub mod llc;
pub mod mcmc;

pub use self::llc::{llc, llc_draws, Estimate};
