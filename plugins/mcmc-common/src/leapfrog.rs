//! Velocity Verlet pieces with a diagonal inverse mass matrix M⁻¹:
//! p ← p + (h/2)∇log π(x); x ← x + h·M⁻¹p; p ← p + (h/2)∇log π(x'), for a
//! signed step h (negative to integrate backwards in time).

/// A half kick: p ← p + (h/2)·∇log π.
pub fn half_kick(p: &mut [f64], grad: &[f64], h: f64) {
    for (pi, g) in p.iter_mut().zip(grad) {
        *pi += 0.5 * h * g;
    }
}

/// A drift: x ← x + h·M⁻¹p.
pub fn drift(x: &mut [f64], p: &[f64], inv_mass: &[f64], h: f64) {
    for ((xi, pi), m) in x.iter_mut().zip(p).zip(inv_mass) {
        *xi += h * m * pi;
    }
}

/// The kinetic energy ½ pᵀM⁻¹p.
pub fn kinetic(p: &[f64], inv_mass: &[f64]) -> f64 {
    0.5 * p.iter().zip(inv_mass).map(|(pi, m)| m * pi * pi).sum::<f64>()
}

/// A momentum draw p ~ N(0, M): p_i = z_i/√(M⁻¹)_i.
pub fn draw_momentum(p: &mut [f64], inv_mass: &[f64], rng: &mut lh_plugin_api::ChainRng) {
    for (pi, m) in p.iter_mut().zip(inv_mass) {
        *pi = rng.standard_normal() / m.sqrt();
    }
}
