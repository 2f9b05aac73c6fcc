//! `bench --abi-overhead`: what one call through the plugin ABI costs the
//! host, against calling the backend directly.

use serde::Serialize;

use super::posterior::Posterior;
use crate::backend::quadratic::QuadraticBackend;
use crate::backend::{Backend, Batch};
use crate::error::Result;

/// Host-side cost of one `logdensity_and_grad` call through the plugin ABI.
#[derive(Debug, Clone, Serialize)]
pub struct AbiOverhead {
    #[serde(rename = "D")]
    pub d: usize,
    pub chains: usize,
    /// Microseconds per call of the backend's `loss_grad` directly.
    pub direct_us: f64,
    /// Microseconds per call of `Model::logdensity_and_grad` through the abi_stable trait object.
    pub via_abi_us: f64,
}

/// Times `calls` evaluations of the quadratic target (so the evaluation
/// itself is cheap) directly and through the ABI trait object a plugin sees.
pub fn abi_overhead(d: usize, chains: usize, calls: usize) -> Result<AbiOverhead> {
    use lh_plugin_api::abi_stable::sabi_trait::TD_Opaque;
    use lh_plugin_api::{Model_TO, RMut, RSlice, RSliceMut};
    let center = vec![0.0; d];
    let pos: Vec<f64> = (0..chains * d).map(|i| (i % 7) as f64 * 0.1).collect();
    let (mut g, mut lp, mut l) = (vec![0.0; chains * d], vec![0.0; chains], vec![0.0; chains]);
    let mut direct = QuadraticBackend::new(center.clone(), 1000, chains);
    let t = std::time::Instant::now();
    for _ in 0..calls {
        direct.loss_grad(&pos, Batch::Full, &mut l, Some(&mut g))?;
    }
    let direct_us = t.elapsed().as_secs_f64() * 1e6 / calls as f64;
    let mut post = Posterior::new(Box::new(QuadraticBackend::new(center.clone(), 1000, chains)), center, 0.1, 1.0)?;
    let mut model = Model_TO::from_ptr(RMut::new(&mut post), TD_Opaque);
    let t = std::time::Instant::now();
    for _ in 0..calls {
        model
            .logdensity_and_grad(
                RSlice::from_slice(&pos),
                RSliceMut::from_mut_slice(&mut g),
                RSliceMut::from_mut_slice(&mut lp),
                RSliceMut::from_mut_slice(&mut l),
            )
            .into_result()
            .map_err(|e| crate::error::Error::Numerical(e.message.into()))?;
    }
    let via_abi_us = t.elapsed().as_secs_f64() * 1e6 / calls as f64;
    Ok(AbiOverhead { d, chains, direct_us, via_abi_us })
}
