//! The built-in sampler plugins on exact oracles, through the real binary.

use lh_host::store::npz::Npz;
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
    assert_posterior_spread(&m, want, "hmc");
    // Every leapfrog step is one gradient evaluation per chain, counted by the host:
    // 1300 transitions × 10 steps + the initial evaluation.
    assert_eq!(m["work"]["grad_evals_fge"], 13001.0);
    assert_eq!(m["burn_in"], 300);
    assert_eq!(m["draws"], 1300);
    let mean_acc = m["tuned"]["step_size_mean"].as_f64().unwrap();
    assert!(mean_acc > 0.0);
}

/// On the quadratic target (D = 20, every curvature 1) nβ(L_n − L0) is
/// ½Σaᵢzᵢ² with aᵢ = a = nβ/(nβ + γ) and zᵢ i.i.d. standard normal: its mean is
/// λ = 10a and its variance exactly 10a², which the manifest's `variance`
/// must match within 15 % (its sampling error at these ESSs is about 5 %).
fn assert_posterior_spread(m: &serde_json::Value, lambda: f64, plugin: &str) {
    let a = lambda / 10.0;
    let (got, want) = (m["llc"]["variance"].as_f64().unwrap(), 10.0 * a * a);
    eprintln!("quadratic, {plugin}: Var(nβ·L_n) = {got}, exact {want}");
    assert!((got / want - 1.0).abs() < 0.15, "{plugin}: Var(nβ·L_n) = {got}, exact {want}");
}

/// NUTS and MAMS (their defaults) on the quadratic oracle: within 3 standard
/// errors, and the host's gradient count is exactly what the plugins report
/// per draw (NUTS: its leapfrog steps; MAMS: 2 per integration step), though
/// every draw's chains took different numbers of them: subset evaluations
/// count K/C per chain.
#[test]
fn nuts_and_mams_on_the_quadratic_oracle() {
    let h = Home::new();
    let (id, want) = quadratic_target(&h);
    for (plugin, grads_per_step) in [("nuts", 1.0), ("mams", 2.0)] {
        let out = h.ok(&["sample", "--target", &id, "--plugin", plugin, "--seed", "1"]);
        let m = manifest(&out);
        let (got, se) = llc_of(&m);
        eprintln!("quadratic, {plugin}: λ̂ = {got} ± {se}, exact {want}, ESS {}", m["llc"]["ess_bulk"]);
        assert!((got - want).abs() < 3.0 * se, "{plugin}: λ̂ = {got} ± {se}, exact {want}");
        assert!(se < 0.03 * want && m["llc"]["rhat"].as_f64().unwrap() < 1.05, "{plugin}: se {se}");
        assert_posterior_spread(&m, want, plugin);
        let dir = out.lines().find_map(|l| l.strip_prefix("run: ")).unwrap().trim();
        let (_, steps) = Npz::open(&std::path::Path::new(dir).join("traces.npz")).unwrap().f64("num_integration_steps").unwrap();
        let counted = 1.0 + grads_per_step * steps.iter().sum::<f64>() / 4.0;
        assert_eq!(m["work"]["grad_evals_fge"].as_f64().unwrap(), counted, "{plugin}");
        assert!(m["work"]["subset_grad_calls"].as_u64().unwrap() > 0);
    }
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
/// eigenvalues hᵢ at w*, i.e. ½(D − γ·tr((nβH + γI)⁻¹)) (≈ D/2). HMC, NUTS,
/// MAMS and MCLMC, all with their defaults, within 3 %.
#[test]
fn mcmc_plugins_on_a_regular_model() {
    let h = Home::new();
    let (id, want) = regular_target(&h);
    for plugin in ["hmc", "nuts", "mams", "mclmc"] {
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

/// Three deep linear networks (identity activation, no biases, n = 5000,
/// f64) with rank-1 teachers, built in `h`: (shape, id, Aoyagi's λ from `lh-host truth`).
fn deep_linear_targets(h: &Home) -> Vec<(String, String, f64)> {
    h.write("d.ron", "(n: 5000, n_test: 0, input: gauss_iso, noise: gauss(scale: 0.1))");
    let shapes = [(4, "7, 5", 3, 1), (5, "4", 5, 1), (3, "5, 4", 4, 1)];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (d_in, widths, d_out, rank))| {
            h.write(&format!("m{i}.ron"), &format!("(in_dim: {d_in}, out_dim: {d_out}, widths: [{widths}], activation: identity, bias: false)"));
            let exp = format!(
                r#"(name: "dln", targets: [(model: "m{i}.ron", data: "d.ron", seed: {},
                    overrides: (teacher: deep_linear(widths: [{widths}], rank: {rank}), training: (precision: f64, lr: 0.01, steps: 5000)))])"#,
                i + 1
            );
            let id = first_token(&h.ok(&["build", "--config", &h.write(&format!("e{i}.ron"), &exp)]));
            let truth: f64 = h.ok(&["truth", "--target", &id]).trim().parse().unwrap();
            (format!("{d_in}-[{widths}]-{d_out} r{rank}"), id, truth)
        })
        .collect()
}

/// `plugin` (with the extra `sample` arguments) on each of the three deep
/// linear networks: within 10 % of Aoyagi's λ plus 2 standard errors. The 10 %
/// is the finite-nβ gap the posterior itself has (its λ̂ at n = 5000 sits
/// 4–8 % below the asymptotic λ: 3-5-4-4 r1 gives 5.07 against 5.5 with HMC,
/// 3000 draws, two seeds, and with NUTS), the 2 SE the sampling noise of a
/// short run, which a fixed 10 % band on a −8 % target would leave to chance.
fn on_deep_linear_networks(plugin: &str, extra: &[&str]) {
    let h = Home::new();
    for (shape, id, truth) in deep_linear_targets(&h) {
        let m = sample(&h, &id, plugin, &[&["--seed", "7"][..], extra].concat());
        let (got, se) = llc_of(&m);
        eprintln!("DLN {shape}, {plugin}: λ̂ = {got:.3} ± {se:.3}, truth {truth}, {} gradients per chain", m["work"]["grad_evals_fge"]);
        assert!((got - truth).abs() < 0.10 * truth + 2.0 * se, "{plugin} on {shape}: λ̂ = {got} ± {se}, truth {truth}");
    }
}

/// HMC with its defaults (15 000 gradients per chain). Measured (seed 7):
/// 5.72 ± 0.08 vs 6, 8.92 ± 0.10 vs 9.5, 5.03 ± 0.07 vs 5.5.
#[test]
fn hmc_on_deep_linear_networks() {
    on_deep_linear_networks("hmc", &[]);
}

/// NUTS, lean for a debug build: 150 warm-up + 200 draws, trees of at most
/// 2⁵ − 1 steps (about 10 500 gradients per chain). Measured: 5.70 ± 0.17,
/// 8.97 ± 0.16, 4.93 ± 0.15. With its defaults NUTS goes to depth 7 (140 steps
/// per draw) on these posteriors: 5-4-5 r1 gives 9.15 ± 0.07 with 290 000
/// gradients per chain, against HMC's 8.92 ± 0.09 with 15 000.
#[test]
fn nuts_on_deep_linear_networks() {
    on_deep_linear_networks("nuts", &["--set", "warmup=150", "--set", "draws=200", "--set", "max_tree_depth=5"]);
}

/// MAMS, lean for a debug build: a tuning budget of 300 (150 transitions) and
/// 300 draws (4 000 to 15 000 gradients per chain). Measured: 5.66 ± 0.10,
/// 9.13 ± 0.13, 5.14 ± 0.12. With its defaults, 5-4-5 r1 gives 9.03 ± 0.07
/// with 36 000 gradients per chain.
#[test]
fn mams_on_deep_linear_networks() {
    on_deep_linear_networks("mams", &["--set", "num_steps=300", "--set", "draws=300"]);
}
