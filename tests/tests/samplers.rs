//! The built-in sampler plugins on exact oracles, through the real binary.

use lh_tests::{first_token, llc_of, manifest, quadratic_target, regular_target, sample, Home};

/// Quadratic target: λ̂ = D·nβ/(2(nβ + γ)) exactly. HMC (seed fixed) must be
/// within 3 standard errors, and the standard error small enough to matter.
#[test]
fn hmc_on_the_quadratic_oracle() {
    let h = Home::new();
    let (id, want) = quadratic_target(&h);
    let m = sample(&h, &id, "hmc", &["--seed", "1", "--set", "draws=1000", "--set", "warmup=300"]);
    let (got, se) = llc_of(&m);
    assert!((got - want).abs() < 3.0 * se, "λ̂ = {got} ± {se}, exact {want}");
    assert!(se < 0.03 * want, "se {se}");
    assert!(m["llc"]["rhat"].as_f64().unwrap() < 1.05);
    // Every leapfrog step is one gradient evaluation per chain, counted by the host:
    // 1300 transitions × 10 steps + the initial evaluation.
    assert_eq!(m["work"]["grad_evals_fge"], 13001.0);
    assert_eq!(m["burn_in"], 300);
    assert_eq!(m["draws"], 1300);
    let mean_acc = m["tuned"]["step_size_mean"].as_f64().unwrap();
    assert!(mean_acc > 0.0);
}

/// The main job: `run --plugin hmc` on the default target gives a trustworthy
/// answer (R̂ < 1.05 on the L_n trace).
#[test]
fn run_hmc_on_the_default_target() {
    let h = Home::new();
    let out = h.ok(&["run", "--plugin", "hmc"]);
    let m = manifest(&out);
    assert_eq!(m["status"], "complete");
    let rhat = m["llc"]["rhat"].as_f64().unwrap();
    assert!(rhat < 1.05, "R̂ = {rhat}\n{out}");
    let llc = m["llc"]["mean"].as_f64().unwrap();
    // D = 45: λ̂ is positive and well below D/2.
    assert!(llc > 0.0 && llc < 22.5, "{llc}");
}

/// A regular model (a linear layer 6 → 3 with bias, n = 3000, γ = 1): the exact
/// λ̂ of its Gaussian posterior is Σᵢ nβhᵢ/(2(nβhᵢ + γ)) over the Hessian's
/// eigenvalues hᵢ at w*, i.e. ½(D − γ·tr((nβH + γI)⁻¹)) (≈ D/2). HMC and
/// MCLMC (default tuning) within 3 %.
#[test]
fn hmc_and_mclmc_on_a_regular_model() {
    let h = Home::new();
    let (id, want) = regular_target(&h);
    for plugin in ["hmc", "mclmc"] {
        let m = manifest(&h.ok(&["sample", "--target", &id, "--plugin", plugin, "--seed", "2"]));
        let got = m["llc"]["mean"].as_f64().unwrap();
        eprintln!("regular model, {plugin}: λ̂ = {got} ± {}, exact {want}", m["llc"]["se"]);
        assert!((got - want).abs() < 0.03 * want, "{plugin}: λ̂ = {got} ± {}, exact {want}", m["llc"]["se"]);
        assert!(m["llc"]["rhat"].as_f64().unwrap() < 1.05);
    }
}

/// SGLD on the quadratic oracle: within 5 % of D·nβ/(2(nβ + γ)). The Euler
/// discretisation bias is about εPκ/4 (κ = nβ + γ ≈ 195), so the step sizes
/// are chosen to keep it near 1 %: P ≈ 1 for plain SGLD, P ≈ 1/√E[g²] ≈ 14 for
/// the RMSProp and Adam preconditioners here. Adam-SGLD drives with the
/// momentum m̂ instead of the gradient, which is not a Langevin diffusion of
/// π: it over-disperses by 11–16 % here at every step size tried (1.5e-6 to
/// 1.5e-5), so it is held to 20 % and the bias is stated, not hidden.
#[test]
fn sgld_on_the_quadratic_oracle() {
    let h = Home::new();
    let (id, want) = quadratic_target(&h);
    for (precond, step, tol) in [("none", "2e-4", 0.05), ("rmsprop", "1.5e-5", 0.05), ("adam", "1.5e-5", 0.20)] {
        let out = h.ok(&[
            "sample",
            "--target",
            &id,
            "--plugin",
            "sgld",
            "--seed",
            "5",
            "--set",
            &format!("precond={precond}"),
            "--set",
            &format!("step_size={step}"),
            "--set",
            "batch_size=32",
            "--set",
            "steps=20000",
        ]);
        let m = manifest(&out);
        let got = m["llc"]["mean"].as_f64().unwrap();
        assert!((got - want).abs() < tol * want, "{precond}: λ̂ = {got}, exact {want}");
        // 20000 steps × 32/1000 rows, in full-batch equivalents, counted by the host.
        assert!((m["work"]["grad_evals_fge"].as_f64().unwrap() - 640.0).abs() < 1e-6);
        assert_eq!(m["burn_in"], 200);
    }
}

/// MCLMC (unadjusted, tuned) on the quadratic oracle. Its bias shrinks with the
/// tuner's energy-variance target: −2.2 % at the default 5e-4, −0.5 % at 2e-5
/// (measured, seed 3); at 2e-5 it must be within 3 standard errors.
#[test]
fn mclmc_on_the_quadratic_oracle() {
    let h = Home::new();
    let (id, want) = quadratic_target(&h);
    let out = h.ok(&["sample", "--target", &id, "--plugin", "mclmc", "--seed", "3", "--set", "desired_energy_var=2e-5"]);
    let m = manifest(&out);
    let (got, se) = (m["llc"]["mean"].as_f64().unwrap(), m["llc"]["se"].as_f64().unwrap());
    assert!((got - want).abs() < 3.0 * se, "λ̂ = {got} ± {se}, exact {want}");
    assert!(se < 0.03 * want);
    // Tuning is on by default and recorded as burn-in: 201 + 201 + 67 + 200 steps.
    assert_eq!(m["burn_in"], 669);
    // Two gradient evaluations per step, plus the initial one.
    assert_eq!(m["work"]["grad_evals_fge"], (2 * 1669 + 1) as f64);
    assert!(m["tuned"]["L_mean"].as_f64().unwrap() > 0.0);
}

/// Deep linear networks (identity activation, no biases) with a rank-r
/// teacher: HMC within 10 % of Aoyagi's λ (`lh-host truth`) for three shapes,
/// n = 5000, f64. Measured: 4-7-5-3 r1 5.52 vs 6, 5-4-5 r1 8.77 vs 9.5,
/// 3-5-4-4 r1 5.43 vs 5.5 (HMC sits a few % low at this nβ).
#[test]
fn hmc_on_deep_linear_networks() {
    let h = Home::new();
    h.write("d.ron", "(n: 5000, n_test: 0, input: gauss_iso, noise: gauss(scale: 0.1))");
    for (i, (d_in, widths, d_out, rank)) in [(4, "7, 5", 3, 1), (5, "4", 5, 1), (3, "5, 4", 4, 1)].into_iter().enumerate() {
        h.write(&format!("m{i}.ron"), &format!("(in_dim: {d_in}, out_dim: {d_out}, widths: [{widths}], activation: identity, bias: false)"));
        let exp = format!(
            r#"(name: "dln", targets: [(model: "m{i}.ron", data: "d.ron", seed: {},
                overrides: (teacher: deep_linear(widths: [{widths}], rank: {rank}), training: (precision: f64, lr: 0.01, steps: 5000)))])"#,
            i + 1
        );
        let id = first_token(&h.ok(&["build", "--config", &h.write(&format!("e{i}.ron"), &exp)]));
        let truth: f64 = h.ok(&["truth", "--target", &id]).trim().parse().unwrap();
        let out = h.ok(&["sample", "--target", &id, "--plugin", "hmc", "--seed", "7"]);
        let got = manifest(&out)["llc"]["mean"].as_f64().unwrap();
        eprintln!("DLN {d_in}-[{widths}]-{d_out} rank {rank}: λ̂ = {got}, truth {truth}");
        assert!((got - truth).abs() < 0.10 * truth, "{d_in}-[{widths}]-{d_out} r{rank}: λ̂ = {got}, truth {truth}");
    }
}
