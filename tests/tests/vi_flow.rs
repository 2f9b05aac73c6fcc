//! The flow VI plugin on exact oracles, through the real binary.

use lh_tests::{llc_of, quadratic_target, regular_target, sample, Home};

/// Quadratic target: the family contains the posterior N(θ*, I/(nβ + γ))
/// (identity flow, base scale and σ⊥ both 1/√(nβ + γ)), so with σ⊥ learnt λ̂
/// is within 5 % of D·nβ/(2(nβ + γ)) (seed fixed). With σ⊥ fixed at the
/// original's 1e-3 (and no learnt per-coordinate scales, as the original) the
/// D − d = 12 complement directions are frozen and λ̂ is that of the d = 8
/// latent ones only, 8/20 of the exact value (within 10 %).
#[test]
fn vi_flow_on_the_quadratic_oracle() {
    let h = Home::new();
    let (id, want) = quadratic_target(&h);
    let base = ["--seed", "1", "--set", "steps=1000", "--set", "eval_samples=32"];
    let m = sample(&h, &id, "vi-flow", &base);
    let got = llc_of(&m).0;
    eprintln!("quadratic, vi-flow: λ̂ = {got} ± {}, exact {want}, tuned {}", m["llc"]["se"], m["tuned"]);
    assert!((got - want).abs() < 0.05 * want, "λ̂ = {got}, exact {want}");
    assert_eq!(m["independent_draws"], true);
    assert_eq!(m["burn_in"], 20, "1000 steps / eval_every 50 optimisation records");
    assert_eq!(m["draws"], 52);
    assert!(m["llc"]["rhat"].is_null(), "no R̂ for independent draws");
    // One minibatch gradient of 256 of the 1000 rows per step, counted by the host.
    assert!((m["work"]["grad_evals_fge"].as_f64().unwrap() - 1000.0 * 0.256).abs() < 1e-6, "{}", m["work"]);

    let frozen = sample(&h, &id, "vi-flow", &[&base[..], &["--set", "learn_sigma_perp=false", "--set", "learn_scales=false"]].concat());
    let got = llc_of(&frozen).0;
    eprintln!("quadratic, vi-flow, σ⊥ fixed at 1e-3: λ̂ = {got}, exact {want}");
    assert!((got - 0.4 * want).abs() < 0.1 * 0.4 * want, "λ̂ = {got}, latent-only value {}", 0.4 * want);
}

/// A regular model (linear 6 → 3, n = 3000): its Gaussian posterior is
/// nearly isotropic; the flow in d = 8 of D = 21 dimensions plus learnt
/// complement noise gets within 5 % of the exact λ̂.
#[test]
fn vi_flow_on_a_regular_model() {
    let h = Home::new();
    let (id, want) = regular_target(&h);
    let m = sample(&h, &id, "vi-flow", &["--seed", "2", "--set", "steps=1000", "--set", "eval_samples=32"]);
    let got = llc_of(&m).0;
    eprintln!("regular, vi-flow: λ̂ = {got} ± {}, exact {want}, tuned {}", m["llc"]["se"], m["tuned"]);
    assert!((got - want).abs() < 0.05 * want, "λ̂ = {got} ± {}, exact {want}", m["llc"]["se"]);
}
