//! Finite-difference and brute-force checks of every hand-written derivative and density.

use super::*;

fn rng(seed: u64) -> ChainRng {
    chain_rngs(seed, 1).remove(0)
}

fn gaussian(rng: &mut ChainRng, n: usize) -> Vec<f64> {
    let mut v = vec![0.0; n];
    vi::normals(rng, &mut v);
    v
}

/// Initial parameters pushed off the identity (noise of scale 0.3 on every entry),
/// so that every block has a non-trivial gradient.
fn perturbed(family: &FlowFamily, seed: u64) -> Vec<f64> {
    let mut r = rng(seed);
    let phi = family.init(&mut r);
    let noise = gaussian(&mut r, phi.len());
    phi.iter().zip(&noise).map(|(p, e)| p + 0.3 * e).collect()
}

/// A family with D = `dim`, d = `d`, random whitening scales and centre.
fn family(dim: usize, d: usize, sigma: SigmaPerp, seed: u64) -> FlowFamily {
    family_with(dim, d, false, sigma, seed)
}

/// As [`family`], with learnt per-coordinate scale multipliers when `learn_scales`.
fn family_with(dim: usize, d: usize, learn_scales: bool, sigma: SigmaPerp, seed: u64) -> FlowFamily {
    let mut r = rng(seed);
    let center = gaussian(&mut r, dim);
    let scales: Vec<f64> = gaussian(&mut r, dim).iter().map(|g| (0.3 * g).exp()).collect();
    FlowFamily::new(center, scales, d, 3, &[6, 5], learn_scales, sigma, &mut r)
}

/// log|det A| of a row-major n×n matrix by LU with partial pivoting.
fn log_abs_det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut log_det = 0.0;
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs())).unwrap();
        for j in 0..n {
            a.swap(col * n + j, piv * n + j);
        }
        let p = a[col * n + col];
        log_det += p.abs().ln();
        for row in col + 1..n {
            let f = a[row * n + col] / p;
            for j in col..n {
                a[row * n + j] -= f * a[col * n + j];
            }
        }
    }
    log_det
}

/// Central-difference Jacobian (row-major, out × in) of `f` at `x`.
fn fd_jacobian(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f64], h: f64) -> Vec<f64> {
    let n_out = f(x).len();
    let mut jac = vec![0.0; n_out * x.len()];
    for i in 0..x.len() {
        let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
        xp[i] += h;
        xm[i] -= h;
        let (fp, fm) = (f(&xp), f(&xm));
        for o in 0..n_out {
            jac[o * x.len() + i] = (fp[o] - fm[o]) / (2.0 * h);
        }
    }
    jac
}

/// Asserts that `grad` matches the central difference of `f` at `phi` in
/// every coordinate: |fd − g| ≤ tol·(1 + |g|).
fn assert_gradient(f: impl Fn(&[f64]) -> f64, phi: &[f64], grad: &[f64], h: f64, tol: f64) {
    for i in 0..phi.len() {
        let (mut pp, mut pm) = (phi.to_vec(), phi.to_vec());
        pp[i] += h;
        pm[i] -= h;
        let fd = (f(&pp) - f(&pm)) / (2.0 * h);
        assert!((fd - grad[i]).abs() <= tol * (1.0 + grad[i].abs()), "parameter {i}: backprop {} vs finite difference {fd}", grad[i]);
    }
}

#[test]
fn the_default_config_parses_and_unknown_keys_are_refused() {
    let cfg: Config = parse_config(DEFAULTS).unwrap();
    assert_eq!((cfg.d_latent, cfg.flow_depth, cfg.flow_hidden.as_slice()), (8, 4, &[64, 64][..]));
    assert!(check(&cfg).is_ok());
    let e = parse_config::<Config>(&DEFAULTS.replace("d_latent", "d_lat")).unwrap_err();
    assert!(e.message.contains("d_lat"), "{}", e.message);
    let bad = Config { flow_hidden: vec![64, 0], ..cfg.clone() };
    assert!(check(&bad).unwrap_err().message.contains("flow_hidden"));
    let bad = Config { sigma_perp: 0.0, ..cfg };
    assert!(check(&bad).unwrap_err().message.contains("sigma_perp"));
}

/// UᵀU = I to 1e-13 and U spans the Gaussian matrix it came from (residual
/// A − UUᵀA below 1e-12 relative), for a small and a tall case.
#[test]
fn thin_qr_is_orthonormal_and_spans_its_input() {
    for (rows, cols) in [(50, 8), (3000, 8), (5, 5)] {
        let a = gaussian(&mut rng(rows as u64), rows * cols);
        let mut q = a.clone();
        orthonormalise(&mut q, rows, cols);
        for j in 0..cols {
            for k in 0..cols {
                let dot: f64 = (0..rows).map(|i| q[i * cols + j] * q[i * cols + k]).sum();
                let want = if j == k { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-13, "{rows}×{cols}: (UᵀU)[{j},{k}] = {dot}");
            }
        }
        for j in 0..cols {
            let col: Vec<f64> = (0..rows).map(|i| a[i * cols + j]).collect();
            let norm = col.iter().map(|x| x * x).sum::<f64>().sqrt();
            let coef: Vec<f64> = (0..cols).map(|k| (0..rows).map(|i| q[i * cols + k] * col[i]).sum()).collect();
            let resid = (0..rows).map(|i| col[i] - (0..cols).map(|k| q[i * cols + k] * coef[k]).sum::<f64>()).map(|r| r * r).sum::<f64>().sqrt();
            assert!(resid < 1e-12 * norm, "{rows}×{cols}: column {j} leaves the span by {resid}");
        }
    }
}

/// Uᵀ(I − UUᵀ)ε = 0 (to 1e-12·‖ε‖), the projection keeps the complement
/// part of ε intact (‖Pε‖² + ‖Uᵀε‖² = ‖ε‖²), and with d = D there is no noise.
#[test]
fn complement_noise_is_orthogonal_to_the_basis() {
    let fam = family(40, 6, SigmaPerp::Fixed(1e-3), 3);
    let mut draw = FlowDraw::default();
    let mut r = rng(9);
    fam.draw_noise(&mut r, &mut draw);
    // The same stream again, for ε itself (u first, then ε).
    let mut r2 = rng(9);
    let _ = gaussian(&mut r2, 6);
    let eps = gaussian(&mut r2, 40);
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let along = fam.project_down(&draw.perp);
    assert!(norm(&along) < 1e-12 * norm(&eps), "Uᵀ(I − UUᵀ)ε = {along:?}");
    let coef = fam.project_down(&eps);
    assert!((norm(&draw.perp).powi(2) + norm(&coef).powi(2) - norm(&eps).powi(2)).abs() < 1e-10);
    let square = family(5, 8, SigmaPerp::Learnt, 4);
    assert_eq!((square.d, square.n_params()), (5, square.flow.n_params()), "no σ⊥ parameter when d = D");
    square.draw_noise(&mut r, &mut draw);
    assert!(draw.perp.iter().all(|&p| p == 0.0));
}

/// At initialisation the flow is the identity: z = u (base scale 1, shift 0, identity couplings).
#[test]
fn the_flow_starts_at_the_identity() {
    let fam = family(10, 6, SigmaPerp::Fixed(1e-3), 5);
    let phi = fam.init(&mut rng(1));
    let u = gaussian(&mut rng(2), 6);
    let mut z = vec![0.0; 6];
    let log_det = fam.flow.forward(&phi, &u, &mut z, &mut FlowTape::default());
    // Couplings permute, so compare as multisets.
    let mut got = z.clone();
    let mut want = u.clone();
    got.sort_by(f64::total_cmp);
    want.sort_by(f64::total_cmp);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{z:?} vs {want:?}");
    }
    assert!(log_det.abs() < 1e-12);
}

/// One coupling's log|det| against the log|det| of its finite-difference
/// Jacobian (h = 1e-5, agreement to 1e-7), for odd and even d.
#[test]
fn coupling_log_det_matches_the_jacobian() {
    for d in [5, 4, 1] {
        let fam = family(12, d, SigmaPerp::Fixed(1e-3), 6);
        let phi = perturbed(&fam, 7);
        let x = gaussian(&mut rng(8), d);
        for layer in &fam.flow.couplings {
            let apply = |x: &[f64]| {
                let mut y = x.to_vec();
                layer.forward(&phi, &mut y, &mut CouplingTape::default());
                y
            };
            let log_det = layer.forward(&phi, &mut x.clone(), &mut CouplingTape::default());
            let want = log_abs_det(fd_jacobian(apply, &x, 1e-5), d);
            assert!((log_det - want).abs() < 1e-7, "d = {d}: log|det| {log_det} vs {want}");
        }
    }
}

/// Backprop through the whole flow (base, every coupling's conditioner
/// weights and biases, permutations) against central differences of
/// J(φ) = ⟨w, z⟩ + 0.7·log|det| (h = 1e-5, |fd − g| ≤ 1e-6·(1 + |g|)); every
/// parameter block gets a non-zero gradient.
#[test]
fn flow_backprop_matches_finite_differences() {
    for d in [5, 6, 2] {
        let fam = family(12, d, SigmaPerp::Fixed(1e-3), 10 + d as u64);
        let flow = &fam.flow;
        let phi = perturbed(&fam, 11);
        let u = gaussian(&mut rng(12), d);
        let w = gaussian(&mut rng(13), d);
        let objective = |p: &[f64]| {
            let mut z = vec![0.0; d];
            let log_det = flow.forward(p, &u, &mut z, &mut FlowTape::default());
            z.iter().zip(&w).map(|(z, w)| z * w).sum::<f64>() + 0.7 * log_det
        };
        let mut tape = FlowTape::default();
        flow.forward(&phi, &u, &mut vec![0.0; d], &mut tape);
        let mut grad = vec![0.0; flow.n_params()];
        flow.backward(&phi, &tape, &w, 0.7, &mut grad);
        assert_gradient(objective, &phi, &grad, 1e-5, 1e-6);
        let blocks = [0..d, d..2 * d].into_iter().chain(flow.couplings.iter().flat_map(|c| c.mlp.iter().flat_map(|l| [l.w..l.b, l.b..l.b + l.n_out])));
        for block in blocks.filter(|b| !b.is_empty()) {
            assert!(grad[block.clone()].iter().any(|g| g.abs() > 1e-8), "d = {d}: block {block:?} has no gradient");
        }
    }
}

/// A smooth, non-Gaussian stand-in for log π̂ and its gradient.
fn log_target(theta: &[f64], grad: &mut [f64]) -> f64 {
    let mut lp = 0.0;
    for (i, (t, g)) in theta.iter().zip(grad.iter_mut()).enumerate() {
        let h = 1.0 + i as f64 * 0.3;
        lp += -0.5 * h * t * t + t.sin();
        *g = -h * t + t.cos();
    }
    lp
}

/// The complete `elbo_grad` against central differences of the single-draw
/// objective log π̂(θ(φ)) − log q_φ(θ(φ)) with u and ε held fixed, σ⊥ learnt
/// and fixed, per-coordinate scales learnt and not (h = 1e-5, |fd − g| ≤ 1e-6·(1 + |g|)).
#[test]
fn elbo_grad_matches_finite_differences() {
    for (learn_scales, sigma) in [(true, SigmaPerp::Learnt), (false, SigmaPerp::Fixed(0.05)), (false, SigmaPerp::Learnt)] {
        let fam = family_with(12, 4, learn_scales, sigma, 20);
        let phi = perturbed(&fam, 21);
        let mut draw = FlowDraw::default();
        fam.draw_noise(&mut rng(22), &mut draw);
        let objective = |p: &[f64]| {
            let mut theta = vec![0.0; 12];
            let log_q = fam.transform(p, &draw, &mut theta, &mut FlowTape::default());
            log_target(&theta, &mut [0.0; 12]) - log_q
        };
        let mut theta = vec![0.0; 12];
        fam.transform(&phi, &draw, &mut theta, &mut FlowTape::default());
        let mut g_theta = vec![0.0; 12];
        log_target(&theta, &mut g_theta);
        let mut grad = vec![0.0; fam.n_params()];
        fam.elbo_grad(&phi, &draw, &g_theta, 0.0, &mut grad);
        assert_gradient(objective, &phi, &grad, 1e-5, 1e-6);
        let extra = if learn_scales { 12 } else { 0 } + usize::from(sigma == SigmaPerp::Learnt);
        assert_eq!(grad.len(), fam.flow.n_params() + extra);
    }
}

/// log q against the change-of-variables density of the map (u, c) ↦ θ with
/// an explicit orthonormal complement basis E⊥ (completing U by the same QR):
/// log N(u) + log N(c) − log|det ∂θ/∂(u, c)| from a finite-difference
/// Jacobian (agreement to 1e-6), for d < D and d = D.
#[test]
fn log_q_matches_a_brute_force_density() {
    for (dim, d) in [(5, 2), (4, 3), (3, 3)] {
        let fam = family_with(dim, d, true, SigmaPerp::Learnt, 30 + dim as u64);
        let phi = perturbed(&fam, 31);
        // [U | Gaussian] → orthonormal [U | E⊥]; MGS leaves the orthonormal U unchanged.
        let mut r = rng(32);
        let mut full = vec![0.0; dim * dim];
        for i in 0..dim {
            for j in 0..dim {
                full[i * dim + j] = if j < d { fam.basis[i * d + j] } else { r.standard_normal() };
            }
        }
        orthonormalise(&mut full, dim, dim);
        let lift = |x: &[f64]| FlowDraw { u: x[..d].to_vec(), perp: (0..dim).map(|i| (d..dim).map(|j| full[i * dim + j] * x[j]).sum()).collect() };
        let map = |x: &[f64]| {
            let mut theta = vec![0.0; dim];
            fam.transform(&phi, &lift(x), &mut theta, &mut FlowTape::default());
            theta
        };
        let x = gaussian(&mut rng(33), dim);
        let log_normal: f64 = x.iter().map(|v| -0.5 * v * v - 0.5 * (2.0 * std::f64::consts::PI).ln()).sum();
        let want = log_normal - log_abs_det(fd_jacobian(map, &x, 1e-5), dim);
        let got = fam.transform(&phi, &lift(&x), &mut vec![0.0; dim], &mut FlowTape::default());
        assert!((got - want).abs() < 1e-6, "D = {dim}, d = {d}: log q {got} vs brute force {want}");
    }
}
