//! Stage C end to end: `diagnose --mode full`, `diagnose-experiment`,
//! `compare`, `diagnose-target(s)` through the real binary, on tiny targets
//! and short runs of two plugins.

use std::path::{Path, PathBuf};

use lh_tests::{first_token, tiny_experiment, Home};

fn run_dir(stdout: &str) -> PathBuf {
    PathBuf::from(stdout.lines().find_map(|l| l.strip_prefix("run: ")).unwrap_or_else(|| panic!("no run dir in:\n{stdout}")).trim())
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Asserts `path` is a PNG of a plausible size with some ink on it: the
/// signature, the IHDR dimensions, and more bytes than a blank canvas compresses to.
fn assert_png(path: &Path) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    assert_eq!(&b[12..16], b"IHDR");
    let (w, h) = (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()));
    assert!((600..5000).contains(&w) && (400..2000).contains(&h), "{}: {w}×{h}", path.display());
    assert!(b.len() > 8_000, "{}: only {} bytes (blank?)", path.display(), b.len());
}

#[test]
fn diagnose_experiment_and_compare_two_plugins() {
    let h = Home::new();
    let exp = r#"(name: "quad", targets: [(quadratic: (dim: 5, n: 1000), overrides: (posterior: (gamma: 50.0)))])"#;
    let id = first_token(&h.ok(&["build", "--config", &h.write("q.ron", exp)]));
    let common = ["--target", id.as_str(), "--experiment", "quad", "--chains", "2", "--seed", "4", "--backend", "cpu"];
    let hmc = run_dir(&h.ok(&[&["sample", "--plugin", "hmc", "--set", "draws=200", "--set", "warmup=100"][..], &common].concat()));
    let mclmc = run_dir(&h.ok(&[&["sample", "--plugin", "mclmc", "--set", "draws=200", "--set", "num_steps=200"][..], &common].concat()));

    let out = h.ok(&["diagnose-experiment", "--experiment", "quad", "--mode", "full"]);
    assert!(out.contains("diagnosed 2 of 2 runs"), "{out}");
    for (dir, own) in [(&hmc, "acceptance_hist.png"), (&mclmc, "energy_change_hist.png")] {
        for f in ["trace.png", "rank.png", "autocorr.png", "llc_convergence_combined.png", "wnv.png", own] {
            assert_png(&dir.join("diagnostics").join(f));
        }
        let a = json(&dir.join("analysis.json"));
        assert_eq!(a["mode"], "full");
        let (llc, se) = (a["llc"]["mean"].as_f64().unwrap(), a["llc"]["se"].as_f64().unwrap());
        assert!(llc > 0.0 && se > 0.0 && se < llc, "{a}");
        assert_eq!(a["llc"]["per_chain"].as_array().unwrap().len(), 2);
        let boot = a["llc_bootstrap"]["se"].as_f64().unwrap_or_else(|| panic!("no bootstrap SE: {a}"));
        assert!(boot > 0.2 * se && boot < 5.0 * se, "bootstrap SE {boot} vs MCSE {se}");
        assert!(a["llc_bootstrap"]["block_len"].as_u64().unwrap() >= 6); // ⌈200^{1/3}⌉
        assert!(a["llc"]["rhat"].as_f64().unwrap() > 0.9);
        assert!(a["work"]["grad_evals_fge"].as_f64().unwrap() > 0.0 && a["work"]["seconds"].as_f64().unwrap() > 0.0);
        let wnv = a["wnv"]["grad_evals"].as_f64().unwrap();
        assert!((wnv - se * se * a["work"]["grad_evals_fge"].as_f64().unwrap()).abs() < 1e-9 * wnv, "{a}");
        assert!(a["wnv"]["seconds"].as_f64().unwrap() > 0.0 && a["ess_per_second"].as_f64().unwrap() > 0.0);
        assert!(a["plots"].as_array().unwrap().iter().any(|p| p == own), "{a}");
    }
    let a = json(&hmc.join("analysis.json"));
    let acc = a["acceptance"]["mean"].as_f64().unwrap();
    assert!(acc > 0.0 && acc <= 1.0 && a["divergences"].is_u64(), "{a}");
    assert!(a["energy"]["bfmi_min"].as_f64().unwrap() > 0.0 && a["energy"]["bfmi_per_chain"].as_array().unwrap().len() == 2, "{a}");
    assert_png(&hmc.join("diagnostics/energy.png"));
    assert!(a["energy_change"].is_null() && a["elbo"].is_null());
    let a = json(&mclmc.join("analysis.json"));
    assert!(a["energy_change"]["sd"].as_f64().unwrap() >= 0.0 && a["acceptance"].is_null(), "{a}");

    // --samplers keeps only the named plugins' runs; light mode draws no WNV curve.
    std::fs::remove_file(hmc.join("diagnostics/wnv.png")).unwrap();
    let out = h.ok(&["diagnose-experiment", "--experiment", "quad", "--samplers", "hmc"]);
    assert!(out.contains("diagnosed 1 of 1 runs") && out.contains("-hmc-"), "{out}");
    assert!(!hmc.join("diagnostics/wnv.png").exists());
    let err = h.fails(&["diagnose-experiment", "--experiment", "quad", "--samplers", "sgld"]);
    assert!(err.contains("no runs of plugin(s) sgld"), "{err}");

    let out = h.ok(&["compare", "--experiment", "quad"]);
    assert!(out.contains("hmc") && out.contains("mclmc") && out.contains(&id), "{out}");
    let csv = std::fs::read_to_string(h.path().join("artifacts/experiments/quad/compare.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "one row per (target, plugin, restriction):\n{csv}");
    assert!(
        lines[0].starts_with("target_id,plugin,restriction,dim,runs,run_id,chains,draws_used,llc,se,se_bootstrap,rhat,ess_bulk,ess_per_second,wnv_grad_evals")
    );
    assert!(lines[1].starts_with(&format!("{id},hmc,,,1,")) && lines[2].starts_with(&format!("{id},mclmc,,,1,")), "{csv}");
    assert_png(&h.path().join("artifacts/experiments/quad/compare.png"));

    // Unknown experiments are named.
    for cmd in ["diagnose-experiment", "compare", "diagnose-targets"] {
        let err = h.fails(&[cmd, "--experiment", "nosuch"]);
        assert!(err.contains("no experiment `nosuch`") && err.contains("quad"), "{err}");
    }
    // A quadratic target has no teacher: one failure line and the count, exit 1 (README: Exit codes).
    let r = h.run(&["diagnose-targets", "--experiment", "quad"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let out = r.stdout;
    assert!(out.contains(&format!("[1/1] FAILED: {id} - target {id} has no teacher")), "{out}");
    assert!(out.contains("Completed: 0 success, 1 failed out of 1 targets"), "{out}");
    let err = h.fails(&["diagnose-target", "--target", &id]);
    assert!(err.contains("has no teacher") && err.contains("cannot generate teacher diagnostics"), "{err}");
}

/// A variational run: independent draws get an ELBO figure and SE = sd/√N, and
/// no R̂, rank or autocorrelation figure.
#[test]
fn diagnose_a_variational_run() {
    let h = Home::new();
    let exp = r#"(name: "quad", targets: [(quadratic: (dim: 5, n: 1000), overrides: (posterior: (gamma: 50.0)))])"#;
    let id = first_token(&h.ok(&["build", "--config", &h.write("q.ron", exp)]));
    let out = h.ok(&["sample", "--target", &id, "--plugin", "vi-mfa", "--chains", "2", "--set", "steps=400", "--set", "eval_samples=20", "--diagnose"]);
    let dir = run_dir(&out);
    for f in ["trace.png", "llc_convergence_combined.png", "elbo.png"] {
        assert_png(&dir.join("diagnostics").join(f));
    }
    for f in ["rank.png", "autocorr.png"] {
        assert!(!dir.join("diagnostics").join(f).exists(), "{f} drawn for independent draws");
    }
    let a = json(&dir.join("analysis.json"));
    assert!(a["llc"]["rhat"].is_null(), "{a}");
    assert_eq!(a["elbo"]["final_per_chain"].as_array().map(Vec::len), Some(2), "{a}");
    assert_eq!(a["llc_bootstrap"]["block_len"], 20, "whole chains are resampled");
    assert!(a["llc_bootstrap"]["se"].as_f64().is_some(), "{a}");
    let (per_chain, se) = (a["llc"]["per_chain"].as_array().unwrap().len(), a["llc"]["se"].as_f64().unwrap());
    assert!(per_chain == 2 && se > 0.0, "{a}");
}

#[test]
fn target_diagnostics_compare_student_and_teacher() {
    let h = Home::new();
    let id = first_token(&h.ok(&["build", "--config", &h.write("e.ron", &tiny_experiment(11, ""))]));
    let out = h.ok(&["diagnose-targets", "--experiment", "t"]);
    assert!(out.contains("Processing 1 targets in experiment 't'") && out.contains("Completed: 1 success, 0 failed out of 1 targets"), "{out}");
    let dir = h.path().join("artifacts/target-diagnostics").join(&id);
    for f in ["target_train_test_loss.png", "target_pred_vs_teacher_train.png", "target_pred_vs_teacher_test.png"] {
        assert_png(&dir.join(f));
    }
    let out = h.ok(&["diagnose-target", "--target", &id]);
    assert!(out.contains("student vs teacher MSE train"), "{out}");
}
