//! Host evaluations for samplers that reject non-finite proposals themselves:
//! a recoverable error leaves the non-finite values in the outputs (for the
//! energy check to reject); a fatal one stops the run.

use lh_plugin_api::{ModelMut, SamplerError};

/// Evaluates all chains at `x` (C × D): log π, ∇log π and L_n.
pub fn all(model: &mut ModelMut<'_>, x: &[f64], grad: &mut [f64], logp: &mut [f64], loss: &mut [f64]) -> Result<(), SamplerError> {
    keep_recoverable(model.logdensity_and_grad(x.into(), grad.into(), logp.into(), loss.into()).into_result())
}

/// Evaluates the chains `ids` at their positions `x` (K × D, in the order of `ids`).
pub fn chains(model: &mut ModelMut<'_>, ids: &[u32], x: &[f64], grad: &mut [f64], logp: &mut [f64], loss: &mut [f64]) -> Result<(), SamplerError> {
    keep_recoverable(model.logdensity_and_grad_chains(ids.into(), x.into(), grad.into(), logp.into(), loss.into()).into_result())
}

fn keep_recoverable(r: Result<(), SamplerError>) -> Result<(), SamplerError> {
    match r {
        Err(e) if !e.is_recoverable() => Err(e),
        _ => Ok(()),
    }
}
