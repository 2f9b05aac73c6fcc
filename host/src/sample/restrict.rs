//! Weight-restricted posteriors (`--restrict`): only some coordinates of θ
//! move, the others stay at θ*. A [`RestrictSpec`] is resolved against the
//! target into its free coordinates ([`Restriction`]); [`Restricted`] shows
//! the plugin the posterior of those D′ coordinates — its positions, θ* and
//! gradients are D′ long — scattering each position into the full θ for the
//! backend and gathering the gradient back. The localisation term is then
//! (γ/2)‖θ′ − θ*′‖², and the work is counted as before (one backend call is
//! one gradient evaluation).

use lh_plugin_api::{Model, RSlice, RSliceMut, SResult, SamplerError};
use serde::{Deserialize, Serialize};

use super::posterior::{check_buffers, Posterior};
use crate::error::{Error, Result};
use crate::model::restrict::{part_coords, RestrictSpec};
use crate::store::npz::{npy_from_bytes, Kind};
use crate::store::sha256_hex;
use crate::target::{Target, TargetModel};

/// What a run's manifest records about its restriction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestrictionInfo {
    /// The restriction as given (`layer:2`, `W1,b1`, a mask path).
    pub spec: String,
    /// D′: the number of free coordinates, the plugin's `dim()`.
    pub dim: usize,
    /// D of the whole network.
    pub full_dim: usize,
    /// sha256 of the mask file, when the restriction is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_sha256: Option<String>,
}

/// A restriction resolved against a target: which coordinates move.
#[derive(Debug, Clone, PartialEq)]
pub struct Restriction {
    /// Indices into θ of the free coordinates, ascending.
    pub free: Vec<usize>,
    pub info: RestrictionInfo,
}

impl Restriction {
    /// Resolves `spec` against `target`: layers and parts by the model's
    /// layout, a mask by reading its `.npy` (D bools). An error naming the
    /// spec for a layer or bias the model lacks, a quadratic target's layers,
    /// a mask of the wrong length or dtype, and a restriction that frees nothing.
    pub fn resolve(spec: &RestrictSpec, target: &Target) -> Result<Self> {
        let d = target.w_star.len();
        let bad = |why: String| Error::invalid(format!("restriction `{spec}`: {why}"));
        let (free, mask_sha256) = match (spec, &target.model) {
            (RestrictSpec::EachLayer, _) => return Err(bad("stands for one run per layer; expand it into `layer:K` restrictions first".into())),
            (RestrictSpec::Parts(_), TargetModel::Quadratic) => {
                return Err(bad(format!("target {} is quadratic and has no layers; give a .npy mask of its D = {d} coordinates", target.meta.target_id)))
            }
            (RestrictSpec::Parts(parts), TargetModel::Mlp { spec: mlp, .. }) => (part_coords(parts, mlp).map_err(bad)?, None),
            (RestrictSpec::Mask(path), _) => {
                let bytes = std::fs::read(path).map_err(|e| bad(Error::io(path, e).to_string()))?;
                let mask = npy_from_bytes(&bytes, path).map_err(|e| bad(e.to_string()))?;
                if mask.kind != Kind::Bool {
                    return Err(bad(format!("the mask must be an array of bools, not {:?} values", mask.kind)));
                }
                if mask.shape != [d] {
                    return Err(bad(format!("the mask has shape {:?}; the target has D = {d} coordinates", mask.shape)));
                }
                (mask.values.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, _)| i).collect(), Some(sha256_hex(&bytes)))
            }
        };
        if free.is_empty() {
            return Err(bad("frees no coordinates".into()));
        }
        Ok(Self { info: RestrictionInfo { spec: spec.to_string(), dim: free.len(), full_dim: d, mask_sha256 }, free })
    }

    /// The restricted posterior over `posterior`, as plugins see it.
    pub fn model<'p>(&'p self, posterior: &'p mut Posterior) -> Restricted<'p> {
        let center: Vec<f64> = self.free.iter().map(|&i| posterior.center()[i]).collect();
        let full: Vec<f64> = posterior.center().iter().copied().cycle().take(posterior.n_chains() * self.info.full_dim).collect();
        let full_grad = vec![0.0; full.len()];
        Restricted { inner: posterior, free: &self.free, full_dim: self.info.full_dim, center, full, full_grad }
    }
}

/// The posterior of the free coordinates θ′, the others held at θ*.
pub struct Restricted<'p> {
    inner: &'p mut Posterior,
    free: &'p [usize],
    full_dim: usize,
    /// θ*′.
    center: Vec<f64>,
    /// C × D: the full positions (θ* outside `free`).
    full: Vec<f64>,
    /// C × D: the full gradients.
    full_grad: Vec<f64>,
}

impl Restricted<'_> {
    /// Writes the chains' D′-long positions into their full θ.
    fn scatter(&mut self, positions: &[f64]) {
        let (d, dr) = (self.full_dim, self.free.len());
        for (c, p) in positions.chunks_exact(dr).enumerate() {
            let full = &mut self.full[c * d..(c + 1) * d];
            for (&i, v) in self.free.iter().zip(p) {
                full[i] = *v;
            }
        }
    }

    /// Reads the free coordinates of the full gradients into `grads`.
    fn gather(&self, grads: &mut [f64]) {
        let (d, dr) = (self.full_dim, self.free.len());
        for (c, g) in grads.chunks_exact_mut(dr).enumerate() {
            let full = &self.full_grad[c * d..(c + 1) * d];
            for (&i, gi) in self.free.iter().zip(g) {
                *gi = full[i];
            }
        }
    }
}

impl Model for Restricted<'_> {
    fn dim(&self) -> usize {
        self.free.len()
    }
    fn n_data(&self) -> usize {
        self.inner.n_data()
    }
    fn n_chains(&self) -> usize {
        self.inner.n_chains()
    }
    fn center(&self) -> RSlice<'_, f64> {
        RSlice::from_slice(&self.center)
    }
    fn beta(&self) -> f64 {
        self.inner.beta()
    }
    fn gamma(&self) -> f64 {
        self.inner.gamma()
    }
    fn l0(&self) -> f64 {
        self.inner.l0()
    }

    fn logdensity_and_grad(
        &mut self,
        positions: RSlice<'_, f64>,
        mut grads: RSliceMut<'_, f64>,
        logp: RSliceMut<'_, f64>,
        loss: RSliceMut<'_, f64>,
    ) -> SResult<()> {
        let (c, d) = (self.n_chains(), self.dim());
        if let Err(e) = check_buffers(c, d, positions.len(), &[c * d, c, c], &[grads.len(), logp.len(), loss.len()]) {
            return Err(e).into();
        }
        self.scatter(&positions);
        let r = self.inner.logdensity_and_grad(RSlice::from_slice(&self.full), RSliceMut::from_mut_slice(&mut self.full_grad), logp, loss);
        self.gather(&mut grads);
        r
    }

    fn minibatch_grad(&mut self, positions: RSlice<'_, f64>, rows: RSlice<'_, u32>, mut grads: RSliceMut<'_, f64>, loss: RSliceMut<'_, f64>) -> SResult<()> {
        let (c, d) = (self.n_chains(), self.dim());
        if let Err(e) = check_buffers(c, d, positions.len(), &[c * d, c], &[grads.len(), loss.len()]) {
            return Err(e).into();
        }
        self.scatter(&positions);
        let r = self.inner.minibatch_grad(RSlice::from_slice(&self.full), rows, RSliceMut::from_mut_slice(&mut self.full_grad), loss);
        self.gather(&mut grads);
        r
    }

    /// The K listed chains: their positions go to the first K rows of the
    /// full positions (every row holds θ* outside the free coordinates).
    fn logdensity_and_grad_chains(
        &mut self,
        chains: RSlice<'_, u32>,
        positions: RSlice<'_, f64>,
        mut grads: RSliceMut<'_, f64>,
        logp: RSliceMut<'_, f64>,
        loss: RSliceMut<'_, f64>,
    ) -> SResult<()> {
        let (k, d, full_d) = (chains.len(), self.dim(), self.full_dim);
        if k > self.n_chains() {
            return Err(SamplerError::fatal(format!("an evaluation of {k} chains, more than C = {}", self.n_chains()))).into();
        }
        if let Err(e) = check_buffers(k, d, positions.len(), &[k * d, k, k], &[grads.len(), logp.len(), loss.len()]) {
            return Err(e).into();
        }
        self.scatter(&positions);
        let r = self.inner.logdensity_and_grad_chains(
            chains,
            RSlice::from_slice(&self.full[..k * full_d]),
            RSliceMut::from_mut_slice(&mut self.full_grad[..k * full_d]),
            logp,
            loss,
        );
        self.gather(&mut grads);
        r
    }

    fn loss(&mut self, positions: RSlice<'_, f64>, loss: RSliceMut<'_, f64>) -> SResult<()> {
        let (c, d) = (self.n_chains(), self.dim());
        if let Err(e) = check_buffers(c, d, positions.len(), &[c], &[loss.len()]) {
            return Err(e).into();
        }
        self.scatter(&positions);
        self.inner.loss(RSlice::from_slice(&self.full), loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::quadratic::QuadraticBackend;

    #[test]
    fn the_plugin_sees_only_the_free_coordinates() {
        // L = ½‖θ − θ*‖², θ* = (1, 2, 3), nβ = 100·0.5 = 50, γ = 3, two chains, coordinates 0 and 2 free.
        let center = vec![1.0, 2.0, 3.0];
        let mut p = Posterior::new(Box::new(QuadraticBackend::new(center.clone(), 100, 2)), center, 0.5, 3.0).unwrap();
        let r = Restriction { free: vec![0, 2], info: RestrictionInfo { spec: "m.npy".into(), dim: 2, full_dim: 3, mask_sha256: None } };
        let mut m = r.model(&mut p);
        assert_eq!((m.dim(), m.center().to_vec()), (2, vec![1.0, 3.0]));
        let pos = [2.0, 3.0, 1.0, 5.0];
        let (mut g, mut lp, mut l) = ([0.0; 4], [0.0; 2], [0.0; 2]);
        m.logdensity_and_grad(
            RSlice::from_slice(&pos),
            RSliceMut::from_mut_slice(&mut g),
            RSliceMut::from_mut_slice(&mut lp),
            RSliceMut::from_mut_slice(&mut l),
        )
        .unwrap();
        // Chain 0 at θ = (2, 2, 3): L = ½; chain 1 at (1, 2, 5): L = 2; ∇log π = −53(θ′ − θ*′).
        assert_eq!(l, [0.5, 2.0]);
        assert_eq!(lp, [-53.0 * 0.5, -53.0 * 2.0]);
        assert_eq!(g, [-53.0, 0.0, 0.0, -106.0]);
        let bad = m.loss(RSlice::from_slice(&pos[..3]), RSliceMut::from_mut_slice(&mut l)).unwrap_err();
        assert!(bad.message.contains("positions has 3 values, expected 2·D = 2·2"), "{}", bad.message);
        // Chain 1 alone (a NUTS-style subset call): the same values as in the full call.
        let (mut g1, mut lp1, mut l1) = ([0.0; 2], [0.0; 1], [0.0; 1]);
        m.logdensity_and_grad_chains(
            RSlice::from_slice(&[1]),
            RSlice::from_slice(&pos[2..]),
            RSliceMut::from_mut_slice(&mut g1),
            RSliceMut::from_mut_slice(&mut lp1),
            RSliceMut::from_mut_slice(&mut l1),
        )
        .unwrap();
        assert_eq!((l1, lp1, g1), ([2.0], [-53.0 * 2.0], [0.0, -106.0]));
        assert_eq!(p.work.borrow().full_grad_calls, 1);
        assert_eq!(p.work.borrow().subset_grad_calls, 1);
    }
}
