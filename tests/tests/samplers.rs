//! The built-in sampler plugins on exact oracles, through the real binary.

use std::path::PathBuf;

use lh_tests::Home;

fn first_token(s: &str) -> String {
    s.split_whitespace().next().expect("output has a token").to_string()
}

fn manifest(stdout: &str) -> serde_json::Value {
    let dir = PathBuf::from(stdout.lines().find_map(|l| l.strip_prefix("run: ")).expect("run dir printed").trim());
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Quadratic target: λ̂ = D·nβ/(2(nβ + γ)) exactly. HMC (seed fixed) must be
/// within 3 standard errors, and the standard error small enough to matter.
#[test]
fn hmc_on_the_quadratic_oracle() {
    let h = Home::new();
    let exp = r#"(name: "quad", targets: [(quadratic: (dim: 20, n: 1000), overrides: (posterior: (gamma: 50.0)))])"#;
    let id = first_token(&h.ok(&["build", "--config", &h.write("q.ron", exp)]));
    let out = h.ok(&["sample", "--target", &id, "--plugin", "hmc", "--seed", "1", "--set", "draws=1000", "--set", "warmup=300"]);
    let m = manifest(&out);
    let nb = 1000.0 / 1000f64.ln();
    let want = 20.0 * nb / (2.0 * (nb + 50.0));
    let (got, se) = (m["llc"]["mean"].as_f64().unwrap(), m["llc"]["se"].as_f64().unwrap());
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
