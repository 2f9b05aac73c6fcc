//! The VI-MFA plugin on exact oracles, through the real binary.

use lh_tests::{llc_of, manifest, quadratic_target, regular_target, sample, Home};

/// Quadratic target: the family contains the posterior N(θ*, I/(nβ + γ)), and
/// with the Hessian control variate each recorded value is ½tr(HΣ_q) + L0
/// exactly, so λ̂ measures how well the optimisation converged: within 5 % of
/// D·nβ/(2(nβ + γ)) (seed fixed). Draws are independent and say so.
#[test]
fn vi_mfa_on_the_quadratic_oracle() {
    let h = Home::new();
    let (id, want) = quadratic_target(&h);
    let m = sample(&h, &id, "vi-mfa", &["--seed", "1", "--set", "steps=1500", "--set", "eval_samples=16"]);
    let got = llc_of(&m).0;
    eprintln!("quadratic, vi-mfa: λ̂ = {got} ± {}, exact {want}, tuned {}", m["llc"]["se"], m["tuned"]);
    assert!((got - want).abs() < 0.05 * want, "λ̂ = {got}, exact {want}");
    assert_eq!(m["independent_draws"], true);
    assert_eq!(m["burn_in"], 30, "1500 steps / eval_every 50 optimisation records");
    assert_eq!(m["draws"], 46);
    assert!(m["llc"]["rhat"].is_null(), "no R̂ for independent draws");
    // The RMSProp whitening pre-pass changes the coordinates q lives in, not the answer.
    let out = h.ok(&[
        "sample",
        "--target",
        &id,
        "--plugin",
        "vi-mfa",
        "--seed",
        "1",
        "--set",
        "steps=1500",
        "--set",
        "eval_samples=16",
        "--set",
        "whitening=rmsprop",
    ]);
    let got = manifest(&out)["llc"]["mean"].as_f64().unwrap();
    assert!((got - want).abs() < 0.05 * want, "whitened: λ̂ = {got}, exact {want}");
}

/// A regular model (linear 6 → 3, n = 3000): its posterior is Gaussian with an
/// anisotropic covariance; rank-2 factors plus the diagonal get within 5 % of
/// the exact λ̂.
#[test]
fn vi_mfa_on_a_regular_model() {
    let h = Home::new();
    let (id, want) = regular_target(&h);
    let m = sample(&h, &id, "vi-mfa", &["--seed", "2", "--set", "steps=2000", "--set", "eval_samples=16"]);
    let got = llc_of(&m).0;
    eprintln!("regular, vi-mfa: λ̂ = {got} ± {}, exact {want}, tuned {}", m["llc"]["se"], m["tuned"]);
    assert!((got - want).abs() < 0.05 * want, "λ̂ = {got} ± {}, exact {want}", m["llc"]["se"]);
}

/// A bad value is a one-line error naming the key; nothing is half-written.
#[test]
fn vi_mfa_names_a_bad_config_value() {
    let h = Home::new();
    let (id, _) = quadratic_target(&h);
    for (set, key) in [("rank=0", "rank"), ("eval_every=0", "eval_every"), ("lr_warmup_frac=1.5", "lr_warmup_frac")] {
        let err = h.fails(&["sample", "--target", &id, "--plugin", "vi-mfa", "--set", set]);
        assert!(err.contains(&format!("`{key}`")), "{set}: {err}");
    }
}
