//! The isokinetic McLachlan integrator with ESH momentum updates and the
//! partial momentum refresh, as BlackJAX 1.2.5 (ALGORITHMS.md §5.2.2), for
//! all chains in lockstep: one host evaluation per position update covers
//! every chain, so one step costs 2 gradient evaluations.

/// McLachlan's b₁.
const B1: f64 = 0.193_183_327_503_783_6;
/// Coefficients [b₁, a₁, b₂, a₁, b₁]: even entries update the momentum (B),
/// odd entries the position (A).
const MCLACHLAN: [f64; 5] = [B1, 0.5, 1.0 - 2.0 * B1, 0.5, B1];

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

/// ESH momentum update of chain slice `u` with coefficient `c`; returns the kinetic energy change.
fn momentum_update(u: &mut [f64], grad: &[f64], sqrt_imm: &[f64], eps: f64, c: f64) -> f64 {
    let d = u.len() as f64;
    let g: Vec<f64> = grad.iter().zip(sqrt_imm).map(|(g, s)| g * s).collect();
    let gn = norm(&g);
    let e: Vec<f64> = if gn > 1e-13 { g.iter().map(|v| v / gn).collect() } else { g };
    let delta = eps * c * gn / (d - 1.0);
    let zeta = (-delta).exp();
    let mu: f64 = u.iter().zip(&e).map(|(a, b)| a * b).sum();
    for (ui, ei) in u.iter_mut().zip(&e) {
        *ui = ei * (1.0 - zeta) * (1.0 + zeta + mu * (1.0 - zeta)) + 2.0 * zeta * *ui;
    }
    let un = norm(u);
    u.iter_mut().for_each(|v| *v /= un);
    (delta - std::f64::consts::LN_2 + (1.0 + mu + (1.0 - mu) * zeta * zeta).ln()) * (d - 1.0)
}

/// One isokinetic McLachlan step of every chain. `eval(x, grad, logp, loss)`
/// evaluates all chains. Returns each chain's kinetic energy change.
pub fn mclachlan_step<E>(s: &mut Chains, p: &Params<'_>, eval: &mut E) -> Result<Vec<f64>, lh_plugin_api::SamplerError>
where
    E: FnMut(&[f64], &mut [f64], &mut [f64], &mut [f64]) -> Result<(), lh_plugin_api::SamplerError>,
{
    let c = p.eps.len();
    let d = s.x.len() / c;
    let mut kinetic = vec![0.0; c];
    for (i, coef) in MCLACHLAN.iter().enumerate() {
        if i % 2 == 0 {
            for k in 0..c {
                let r = k * d..(k + 1) * d;
                kinetic[k] += momentum_update(&mut s.u[r.clone()], &s.grad[r.clone()], &p.sqrt_imm[r], p.eps[k], *coef);
            }
        } else {
            for k in 0..c {
                for j in k * d..(k + 1) * d {
                    s.x[j] += p.eps[k] * coef * s.u[j] * p.sqrt_imm[j];
                }
            }
            eval(&s.x, &mut s.grad, &mut s.logp, &mut s.loss)?;
        }
    }
    Ok(kinetic)
}

/// Partial refresh of every chain's momentum over a time `step[k]`:
/// u ← (u + νξ)/‖u + νξ‖ with ν = √((e^{2·step/L} − 1)/D).
pub fn partial_refresh(u: &mut [f64], step: &[f64], l: &[f64], normals: &mut impl FnMut(usize) -> f64) {
    let c = step.len();
    let d = u.len() / c;
    for k in 0..c {
        let nu = (((2.0 * step[k] / l[k]).exp() - 1.0) / d as f64).sqrt();
        let uk = &mut u[k * d..(k + 1) * d];
        for v in uk.iter_mut() {
            *v += nu * normals(k);
        }
        let n = norm(uk);
        uk.iter_mut().for_each(|v| *v /= n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> serde_json::Value {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference_vectors.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    fn v(r: &serde_json::Value, k: &str) -> Vec<f64> {
        r[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    }

    fn step_on_gaussian(imm: [f64; 3]) -> (Chains, Vec<f64>) {
        let r = reference();
        let r0 = &r["isokinetic_mclachlan_step"];
        let var = [1.0, 4.0, 9.0];
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

    #[test]
    fn mclachlan_step_matches_blackjax() {
        let r = reference();
        let r0 = &r["isokinetic_mclachlan_step"];
        let (s, k) = step_on_gaussian([1.0; 3]);
        for (got, want) in s.x.iter().zip(v(r0, "x1")).chain(s.u.iter().zip(v(r0, "u1"))) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert!((s.logp[0] - r0["logdensity1"].as_f64().unwrap()).abs() < 1e-12);
        assert!((k[0] - r0["kinetic_change"].as_f64().unwrap()).abs() < 1e-12);
    }

    #[test]
    fn mclachlan_step_with_a_mass_matrix_matches_blackjax() {
        let r = reference();
        let r1 = &r["isokinetic_mclachlan_step_imm_[1,4,9]"];
        let (s, k) = step_on_gaussian([1.0, 4.0, 9.0]);
        for (got, want) in s.x.iter().zip(v(r1, "x1")).chain(s.u.iter().zip(v(r1, "u1"))) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert!((k[0] - r1["kinetic_change"].as_f64().unwrap()).abs() < 1e-12);
    }

    #[test]
    fn partial_refresh_keeps_unit_norm() {
        let mut u = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let mut z = [0.3, -0.2, 0.5, 0.1, 0.9, -0.4].into_iter().cycle();
        partial_refresh(&mut u, &[0.1, 0.2], &[1.0, 1.0], &mut |_| z.next().unwrap());
        for k in 0..2 {
            assert!((norm(&u[k * 3..k * 3 + 3]) - 1.0).abs() < 1e-12);
        }
    }
}
