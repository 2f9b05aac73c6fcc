//! The inverse mass matrix M⁻¹ of a Hamiltonian sampler as one type, so that
//! the trajectory code has one path for a diagonal and a low-rank plus
//! diagonal ([`LowRank`]) metric: the velocity M⁻¹p, the kinetic energy
//! ½pᵀM⁻¹p, the drift x ← x + h·M⁻¹p and momentum draws p ~ N(0, M).
//!
//! The diagonal case computes exactly what [`leapfrog`]
//! computes, in the same floating-point order (velocity (M⁻¹)_i·p_i, drift
//! x_i + (h·(M⁻¹)_i)·p_i, one standard normal per coordinate), so a sampler
//! that moves from `&[f64]` inverse masses to [`Metric::Diag`] keeps its
//! draws bit for bit.

use crate::leapfrog;
pub use crate::low_rank::LowRank;

/// An inverse mass matrix.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// A diagonal M⁻¹.
    Diag(Vec<f64>),
    /// Σ̂ = diag(σ)(I + U(Λ − I)Uᵀ)diag(σ).
    LowRank(LowRank),
}

impl Metric {
    /// The identity in D = `d` dimensions.
    pub fn identity(d: usize) -> Self {
        Metric::Diag(vec![1.0; d])
    }

    /// D.
    pub fn dim(&self) -> usize {
        match self {
            Metric::Diag(m) => m.len(),
            Metric::LowRank(l) => l.dim(),
        }
    }

    /// The eigen-directions of the low-rank part (0 for a diagonal).
    pub fn rank(&self) -> usize {
        match self {
            Metric::Diag(_) => 0,
            Metric::LowRank(l) => l.rank(),
        }
    }

    /// The velocity v = M⁻¹p.
    pub fn velocity(&self, p: &[f64], v: &mut [f64]) {
        match self {
            Metric::Diag(m) => v.iter_mut().zip(m).zip(p).for_each(|((vi, mi), pi)| *vi = mi * pi),
            Metric::LowRank(l) => l.velocity(p, v),
        }
    }

    /// The kinetic energy ½pᵀM⁻¹p.
    pub fn kinetic(&self, p: &[f64]) -> f64 {
        match self {
            Metric::Diag(m) => leapfrog::kinetic(p, m),
            Metric::LowRank(l) => l.kinetic(p),
        }
    }

    /// A drift x ← x + h·M⁻¹p; `scratch` (D) may be overwritten.
    pub fn drift(&self, x: &mut [f64], p: &[f64], h: f64, scratch: &mut [f64]) {
        match self {
            Metric::Diag(m) => leapfrog::drift(x, p, m, h),
            Metric::LowRank(l) => {
                l.velocity(p, scratch);
                x.iter_mut().zip(scratch.iter()).for_each(|(xi, vi)| *xi += h * vi);
            }
        }
    }

    /// A momentum draw p ~ N(0, M), D standard normals from `rng` in coordinate order.
    pub fn draw_momentum(&self, p: &mut [f64], rng: &mut lh_plugin_api::ChainRng) {
        match self {
            Metric::Diag(m) => leapfrog::draw_momentum(p, m, rng),
            Metric::LowRank(l) => {
                let z: Vec<f64> = (0..l.dim()).map(|_| rng.standard_normal()).collect();
                l.momentum_from_normal(&z, p);
            }
        }
    }

    /// The diagonal of M⁻¹.
    pub fn diagonal(&self) -> Vec<f64> {
        match self {
            Metric::Diag(m) => m.clone(),
            Metric::LowRank(l) => l.diagonal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lh_plugin_api::ChainRng;

    /// The diagonal metric computes what `leapfrog` computes, bit for bit.
    #[test]
    fn diagonal_metric_is_leapfrog() {
        let mut rng = ChainRng::seed_from_u64(5);
        let imm: Vec<f64> = (0..5).map(|_| rng.uniform() + 0.1).collect();
        let m = Metric::Diag(imm.clone());
        let p: Vec<f64> = (0..5).map(|_| rng.standard_normal()).collect();
        let (mut x1, mut x2, mut scratch) = (vec![0.3; 5], vec![0.3; 5], vec![0.0; 5]);
        crate::leapfrog::drift(&mut x1, &p, &imm, -0.37);
        m.drift(&mut x2, &p, -0.37, &mut scratch);
        assert_eq!(x1, x2);
        assert_eq!(m.kinetic(&p).to_bits(), crate::leapfrog::kinetic(&p, &imm).to_bits());
        let mut v = vec![0.0; 5];
        m.velocity(&p, &mut v);
        let kin = 0.5 * v.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>();
        assert_eq!(kin.to_bits(), m.kinetic(&p).to_bits(), "½ vᵀp is the diagonal kinetic energy exactly");
        let (mut r1, mut r2) = (ChainRng::seed_from_u64(9), ChainRng::seed_from_u64(9));
        let (mut p1, mut p2) = (vec![0.0; 5], vec![0.0; 5]);
        crate::leapfrog::draw_momentum(&mut p1, &imm, &mut r1);
        m.draw_momentum(&mut p2, &mut r2);
        assert_eq!(p1, p2);
    }
}
