//! The isokinetic McLachlan integrator with ESH momentum updates and the
//! partial momentum refresh, as BlackJAX 1.2.5 (ALGORITHMS.md §5.2.2,
//! ALGORITHMS-2 §12.3), with a diagonal preconditioner s = √(M⁻¹). The
//! per-chain pieces ([`esh_update`], [`position_update`], [`partial_refresh`])
//! serve MAMS, whose chains take different numbers of steps;
//! [`mclachlan_step`] moves every chain in lockstep for MCLMC (one host
//! evaluation per position update, so one step costs 2 gradient evaluations).

use lh_plugin_api::SamplerError;

/// McLachlan's b₁.
pub const B1: f64 = 0.193_183_327_503_783_6;
/// Coefficients [b₁, a₁, b₂, a₁, b₁]: even entries update the momentum (B),
/// odd entries the position (A).
pub const MCLACHLAN: [f64; 5] = [B1, 0.5, 1.0 - 2.0 * B1, 0.5, B1];

/// All chains' positions, unit momenta, log-densities and gradients (C × D).
#[derive(Clone, Debug)]
pub struct Chains {
    pub x: Vec<f64>,
    pub u: Vec<f64>,
    pub logp: Vec<f64>,
    pub grad: Vec<f64>,
    pub loss: Vec<f64>,
}

/// Per-chain integration parameters: step size ε and √(inverse mass) (C × D).
pub struct Params<'a> {
    pub eps: &'a [f64],
    pub sqrt_imm: &'a [f64],
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// The ESH momentum update of one chain's unit momentum `u` over a time
/// `step` (ε times the integrator coefficient), with g = ∇log π ⊙ s; returns
/// the kinetic energy change (D − 1)·ln(cosh δ + (u·ĝ) sinh δ).
pub fn esh_update(u: &mut [f64], grad: &[f64], sqrt_imm: &[f64], step: f64) -> f64 {
    let d = u.len() as f64;
    let gn = grad.iter().zip(sqrt_imm).map(|(g, s)| (g * s) * (g * s)).sum::<f64>().sqrt();
    let scale = if gn > 1e-13 { 1.0 / gn } else { 1.0 };
    let e = |i: usize| grad[i] * sqrt_imm[i] * scale;
    let delta = step * gn / (d - 1.0);
    let zeta = (-delta).exp();
    let mu: f64 = (0..u.len()).map(|i| u[i] * e(i)).sum();
    for (i, ui) in u.iter_mut().enumerate() {
        *ui = e(i) * (1.0 - zeta) * (1.0 + zeta + mu * (1.0 - zeta)) + 2.0 * zeta * *ui;
    }
    let un = norm(u);
    u.iter_mut().for_each(|v| *v /= un);
    (delta - std::f64::consts::LN_2 + (1.0 + mu + (1.0 - mu) * zeta * zeta).ln()) * (d - 1.0)
}

/// The position update of one chain over a time `step`: x ← x + step·(u ⊙ s).
pub fn position_update(x: &mut [f64], u: &[f64], sqrt_imm: &[f64], step: f64) {
    for ((xi, ui), s) in x.iter_mut().zip(u).zip(sqrt_imm) {
        *xi += step * ui * s;
    }
}

/// The partial refresh of one chain's unit momentum over a time `step` with
/// decoherence length `l`: u ← (u + νz)/‖u + νz‖, ν = √((e^{2·step/l} − 1)/D),
/// z standard normal from `normal`. No change (and no draw) when l = ∞.
pub fn partial_refresh(u: &mut [f64], step: f64, l: f64, normal: &mut impl FnMut() -> f64) {
    if l.is_infinite() {
        return;
    }
    let nu = (((2.0 * step / l).exp() - 1.0) / u.len() as f64).sqrt();
    u.iter_mut().for_each(|v| *v += nu * normal());
    let n = norm(u);
    u.iter_mut().for_each(|v| *v /= n);
}

/// A uniformly random unit vector into `u` (a full momentum refresh).
pub fn random_unit(rng: &mut lh_plugin_api::ChainRng, u: &mut [f64]) {
    rng.fill_standard_normal(u);
    let n = norm(u);
    u.iter_mut().for_each(|v| *v /= n);
}

/// One isokinetic McLachlan step of every chain. `eval(x, grad, logp, loss)`
/// evaluates all chains. Returns each chain's kinetic energy change.
pub fn mclachlan_step<E>(s: &mut Chains, p: &Params<'_>, eval: &mut E) -> Result<Vec<f64>, SamplerError>
where
    E: FnMut(&[f64], &mut [f64], &mut [f64], &mut [f64]) -> Result<(), SamplerError>,
{
    let c = p.eps.len();
    let d = s.x.len() / c;
    let mut kinetic = vec![0.0; c];
    for (i, coef) in MCLACHLAN.iter().enumerate() {
        for (k, kin) in kinetic.iter_mut().enumerate() {
            let r = k * d..(k + 1) * d;
            if i % 2 == 0 {
                *kin += esh_update(&mut s.u[r.clone()], &s.grad[r.clone()], &p.sqrt_imm[r], p.eps[k] * coef);
            } else {
                position_update(&mut s.x[r.clone()], &s.u[r.clone()], &p.sqrt_imm[r], p.eps[k] * coef);
            }
        }
        if i % 2 == 1 {
            eval(&s.x, &mut s.grad, &mut s.logp, &mut s.loss)?;
        }
    }
    Ok(kinetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(file: &str) -> serde_json::Value {
        let p = format!("{}/../../tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    fn v(r: &serde_json::Value, k: &str) -> Vec<f64> {
        r[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    }

    /// One step on N(0, diag(var)) from (x0, u0) at ε = 0.3 with inverse mass `imm`.
    fn step_on_gaussian(r0: &serde_json::Value, var: &[f64], imm: &[f64]) -> (Chains, Vec<f64>) {
        let mut eval = |x: &[f64], g: &mut [f64], lp: &mut [f64], _l: &mut [f64]| {
            for i in 0..3 {
                g[i] = -x[i] / var[i];
            }
            lp[0] = -0.5 * (0..3).map(|i| x[i] * x[i] / var[i]).sum::<f64>();
            Ok(())
        };
        let x = v(r0, "x0");
        let mut s = Chains { x: x.clone(), u: v(r0, "u0"), logp: vec![0.0], grad: vec![0.0; 3], loss: vec![0.0] };
        eval(&x, &mut s.grad, &mut s.logp, &mut s.loss).unwrap();
        let sqrt_imm: Vec<f64> = imm.iter().map(|m| m.sqrt()).collect();
        let k = mclachlan_step(&mut s, &Params { eps: &[0.3], sqrt_imm: &sqrt_imm }, &mut eval).unwrap();
        (s, k)
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn mclachlan_steps_match_blackjax() {
        let r = reference("reference_vectors.json");
        for (key, imm) in [("isokinetic_mclachlan_step", [1.0; 3]), ("isokinetic_mclachlan_step_imm_[1,4,9]", [1.0, 4.0, 9.0])] {
            let (s, k) = step_on_gaussian(&r["isokinetic_mclachlan_step"], &[1.0, 4.0, 9.0], &imm);
            let r1 = &r[key];
            assert_close(&s.x, &v(r1, "x1"));
            assert_close(&s.u, &v(r1, "u1"));
            assert!((k[0] - r1["kinetic_change"].as_f64().unwrap()).abs() < 1e-12, "{key}");
        }
        let r0 = &r["isokinetic_mclachlan_step"];
        let (s, _) = step_on_gaussian(r0, &[1.0, 4.0, 9.0], &[1.0; 3]);
        assert!((s.logp[0] - r0["logdensity1"].as_f64().unwrap()).abs() < 1e-12);
        // reference_vectors_2: imm = (0.5, 2, 1.5), which is not the target's variance.
        let r2 = &reference("reference_vectors_2.json")["isokinetic_steps_with_imm"][0];
        let (s, k) = step_on_gaussian(r2, &v(r2, "target_variances"), &v(r2, "inverse_mass_matrix"));
        assert_close(&s.x, &v(r2, "x1"));
        assert_close(&s.u, &v(r2, "u1"));
        assert_close(&s.grad, &v(r2, "grad1"));
        assert!((s.logp[0] - r2["logdensity1"].as_f64().unwrap()).abs() < 1e-12);
        assert!((k[0] - r2["kinetic_energy_change"].as_f64().unwrap()).abs() < 1e-12);
    }

    #[test]
    fn partial_refresh_matches_blackjax() {
        let r = &reference("reference_vectors_2.json")["partial_refresh"];
        let mut u = v(r, "u");
        let mut z = v(r, "z").into_iter();
        partial_refresh(&mut u, r["step_size_arg"].as_f64().unwrap(), r["L"].as_f64().unwrap(), &mut || z.next().unwrap());
        assert_close(&u, &v(r, "u_new"));
        assert!((norm(&u) - 1.0).abs() < 1e-12);
        let mut same = vec![0.6, 0.0, 0.8];
        partial_refresh(&mut same, 0.1, f64::INFINITY, &mut || unreachable!("no draw when L = ∞"));
        assert_eq!(same, [0.6, 0.0, 0.8]);
    }
}
