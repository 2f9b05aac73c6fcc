//! Weight-restricted (`--restrict`) and data-restricted (`--observe`) λ̂,
//! through the real binary, on exact oracles (fixed seeds).

use std::path::Path;

use lh_tests::{
    first_token, gaussian_lambda, llc_of, manifest_in, payload_array, quadratic_target, regular_model, run_dirs, sample, tiny_experiment, write_mask,
    write_npy, Home,
};

/// (C, T) trace `name` of the run in `dir`, flat.
fn trace(dir: &Path, name: &str) -> Vec<f64> {
    lh_host::store::npz::Npz::open(&dir.join("traces.npz")).unwrap().f64(name).unwrap().1
}

/// The quadratic target (D = 20, nβ = 144.8, γ = 50) restricted to k = 5
/// coordinates by a mask: the posterior of those is N(0, 1/(nβ + γ)) each, so
/// λ = k·nβ/(2(nβ + γ)) = 1.858; HMC within 3 SE. Work is counted as for any
/// run: 1300 transitions × 10 leapfrog steps + 1. A mask of all D coordinates
/// gives λ̂ bit for bit equal to the unrestricted run's with the same seed.
#[test]
fn hmc_on_a_restricted_quadratic() {
    let h = Home::new();
    let (id, whole) = quadratic_target(&h);
    let k = 5;
    let want = whole * k as f64 / 20.0;
    let mask = write_mask(&h, "m.npy", &(0..20).map(|i| i % 4 == 1).collect::<Vec<_>>());
    let m = sample(&h, &id, "hmc", &["--seed", "1", "--set", "draws=1000", "--set", "warmup=300", "--restrict", &mask]);
    let (got, se) = llc_of(&m);
    eprintln!("quadratic restricted to {k} of 20: λ̂ = {got} ± {se}, exact {want}");
    assert!((got - want).abs() < 3.0 * se, "λ̂ = {got} ± {se}, exact {want}");
    assert!(se < 0.05 * want, "se {se}");
    let r = &m["restriction"];
    assert_eq!((r["spec"].as_str().unwrap(), &r["dim"], &r["full_dim"]), (mask.as_str(), &serde_json::json!(5), &serde_json::json!(20)), "{r}");
    assert_eq!(r["mask_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(m["work"]["grad_evals_fge"], 13001.0);

    let all = write_mask(&h, "all.npy", &[true; 20]);
    let short = ["--seed", "3", "--set", "draws=200", "--set", "warmup=100"];
    let full = sample(&h, &id, "hmc", &short);
    let restricted = sample(&h, &id, "hmc", &[&short[..], &["--restrict", &all]].concat());
    assert_eq!(restricted["llc"], full["llc"], "restricting to every coordinate changes nothing");
    assert!(full["restriction"].is_null() && restricted["restriction"]["dim"] == 20);
}

/// The regular linear model (6 → 3 with bias, n = 3000, γ = 1) restricted to
/// its bias b1 (3 coordinates), the weights fixed at w*: the restricted
/// posterior is Gaussian with precision nβH_bb + γI, H_bb = (2/d_out)·I here
/// (the bias block of H = (2/(n·d_out)) X̃ᵀX̃), so λ = ½(3 − γ·tr((nβH_bb + γI)⁻¹))
/// = 1.494. HMC within 3 SE (measured 1.552 ± 0.055, seed 2). `layer:1` is every coordinate of this
/// one-layer model: bit for bit the unrestricted λ̂.
#[test]
fn hmc_on_the_bias_of_a_regular_model() {
    let h = Home::new();
    let r = regular_model(&h);
    let want = r.exact(&[6]);
    let m = sample(&h, &r.id, "hmc", &["--seed", "2", "--set", "draws=600", "--set", "warmup=200", "--restrict", "b1"]);
    let (got, se) = llc_of(&m);
    eprintln!("regular model restricted to b1: λ̂ = {got} ± {se}, exact {want}");
    assert!((got - want).abs() < 3.0 * se && se < 0.05 * want, "λ̂ = {got} ± {se}, exact {want}");
    assert_eq!((&m["restriction"]["spec"], &m["restriction"]["dim"]), (&serde_json::json!("b1"), &serde_json::json!(3)));

    let short = ["--seed", "3", "--set", "draws=50", "--set", "warmup=50"];
    let full = sample(&h, &r.id, "hmc", &short);
    let layer = sample(&h, &r.id, "hmc", &[&short[..], &["--restrict", "layer:1"]].concat());
    assert_eq!(layer["llc"], full["llc"]);
}

/// Observables on the `small` target (n = 100, 100 test rows): `rows:0..100`
/// is the training set itself, so its λ̂_S equals λ̂ exactly (same positions,
/// same evaluation) and its trace is the L_n trace, for HMC, NUTS and MAMS (positions found
/// among the trajectory's evaluations or the previous draw) and SGLD (its
/// full-batch loss evaluation), and for a restricted run (positions are full θ).
/// `test` and an index file run and are counted: one evaluation per subset per draw.
#[test]
fn observables_on_all_rows_equal_the_full_llc() {
    let h = Home::new();
    let id = first_token(&h.ok(&["build", "--config", &h.write("e.ron", &tiny_experiment(1, ""))]));
    let idx: Vec<u8> = (0..50i64).flat_map(|i| (2 * i).to_le_bytes()).collect();
    let even = write_npy(&h, "even.npy", "<i8", 50, &idx);
    let observe = ["--observe", "all=rows:0..100", "--observe", "held_out=test", "--observe", &format!("even={even}")];
    let runs: [(&str, Vec<&str>); 5] = [
        ("hmc", vec!["--set", "draws=100", "--set", "warmup=100"]),
        // NUTS draws a point of its whole trajectory (up to 2¹⁰ evaluations back); MAMS keeps or moves.
        ("nuts", vec!["--set", "draws=100", "--set", "warmup=100"]),
        ("mams", vec!["--set", "draws=100", "--set", "num_steps=200"]),
        ("sgld", vec!["--set", "steps=2000", "--set", "burn_in=500", "--set", "batch_size=50"]),
        ("hmc", vec!["--set", "draws=100", "--set", "warmup=100", "--restrict", "layer:2"]),
    ];
    for (plugin, extra) in runs {
        let out = h.ok(&[&["sample", "--target", &id, "--plugin", plugin, "--seed", "5"], &extra[..], &observe[..]].concat());
        let dir = &run_dirs(&out)[0];
        let m = manifest_in(dir);
        let o = &m["observables"];
        eprintln!(
            "{plugin} {extra:?}: λ̂ = {}, all rows {}, test {}, even rows {}",
            m["llc"]["mean"], o["all"]["llc"]["mean"], o["held_out"]["llc"]["mean"], o["even"]["llc"]["mean"]
        );
        assert_eq!(o["all"]["llc"], m["llc"], "{plugin}");
        assert_eq!(trace(dir, "loss_all"), trace(dir, "loss"), "{plugin}");
        assert_eq!(
            (&o["held_out"]["rows"], &o["even"]["rows"], &o["all"]["spec"]),
            (&serde_json::json!(100), &serde_json::json!(50), &serde_json::json!("all=rows:0..100"))
        );
        for name in ["held_out", "even"] {
            assert!(o[name]["llc"]["mean"].as_f64().unwrap().is_finite() && o[name]["llc"]["rhat"].as_f64().is_some(), "{plugin} {name}: {o}");
        }
        assert_eq!(m["work"]["observe_loss_evals"].as_u64().unwrap(), 3 * m["draws"].as_u64().unwrap());
        assert!(out.contains("λ̂[held_out] (100 rows) = ") && out.contains("R̂(L_all) = "), "{out}");
        h.ok(&["diagnose", "--run-dir", dir.to_str().unwrap()]);
        let a: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("analysis.json")).unwrap()).unwrap();
        assert_eq!(a["observables"]["all"], a["llc"], "{plugin}");
    }
}

/// The exact λ of each layer of the 5 → 4 → 5 linear network (MSE, γ = 1,
/// β = 1/ln n) with the other layer fixed at w*: f = W₂W₁x is linear in either
/// layer alone, so each restricted posterior is Gaussian, λ_l = ½(20 −
/// γ·tr((nβH_l + γI)⁻¹)), with the blocks of the Hessian (s = 2/(n·d_out))
/// H₁[(a,j),(b,k)] = s·(W₂ᵀW₂)_ab·(XᵀX)_jk and H₂[(p,a),(q,b)] = s·δ_pq·(W₁XᵀXW₁ᵀ)_ab
/// (the gradient at w* is ~2e-4: its shift of the mean changes λ by ~1e-4).
fn dln_layer_lambdas(h: &Home) -> [f64; 2] {
    let (_, x) = payload_array(h, "data.npz", "X");
    let (_, w1) = payload_array(h, "params.npz", "W1");
    let (_, w2) = payload_array(h, "params.npz", "W2");
    let n = x.len() / 5;
    let xx: Vec<f64> = (0..25).map(|i| (0..n).map(|r| x[r * 5 + i / 5] * x[r * 5 + i % 5]).sum()).collect();
    let btb: Vec<f64> = (0..16).map(|i| (0..5).map(|o| w2[o * 4 + i / 4] * w2[o * 4 + i % 4]).sum()).collect();
    let axxa: Vec<f64> = (0..16).map(|i| (0..25).map(|jk| w1[(i / 4) * 5 + jk / 5] * xx[jk] * w1[(i % 4) * 5 + jk % 5]).sum()).collect();
    let s = 2.0 / (n as f64 * 5.0);
    let h1: Vec<f64> = (0..400).map(|i| (i / 20, i % 20)).map(|(r, c)| s * btb[(r / 5) * 4 + c / 5] * xx[(r % 5) * 5 + c % 5]).collect();
    let h2: Vec<f64> = (0..400).map(|i| (i / 20, i % 20)).map(|(r, c)| if r / 4 == c / 4 { s * axxa[(r % 4) * 4 + c % 4] } else { 0.0 }).collect();
    let nb = n as f64 / (n as f64).ln();
    [gaussian_lambda(&h1, 20, nb, 1.0), gaussian_lambda(&h2, 20, nb, 1.0)]
}

/// A deep linear network (5 → 4 → 5, identity, no bias, rank-1 teacher,
/// n = 1000, f64; Aoyagi's λ = 9.5 for the whole network): `--restrict
/// each-layer` runs one HMC job per layer, each within 3 SE of its exact value
/// ([`dln_layer_lambdas`]), and `compare` sets them and their sum beside the
/// whole network's. Measured (seed 7): whole 9.12 ± 0.14; layer 1 6.92 ± 0.13
/// (exact 6.94), layer 2 4.74 ± 0.11 (exact 4.84); sum 11.67. A layer alone is
/// regular: it counts about ½·d for each d-dimensional block that the fixed
/// layer passes through a singular value that is not negligible (W₂* has
/// three such, W₁* two: near 7.5 and 5), so the sum exceeds the whole
/// network's λ, whose singularity (the product's rank, its GL(4) symmetry)
/// neither restriction sees.
#[test]
fn each_layer_of_a_deep_linear_network() {
    let h = Home::new();
    h.write("d.ron", "(n: 1000, n_test: 0, input: gauss_iso, noise: gauss(scale: 0.1))");
    h.write("m.ron", "(in_dim: 5, out_dim: 5, widths: [4], activation: identity, bias: false)");
    let exp = r#"(name: "dln", targets: [(model: "m.ron", data: "d.ron", seed: 2,
        overrides: (teacher: deep_linear(widths: [4], rank: 1), training: (precision: f64, lr: 0.01, steps: 5000)))])"#;
    let id = first_token(&h.ok(&["build", "--config", &h.write("e.ron", exp)]));
    let exact = dln_layer_lambdas(&h);
    let draws = ["--seed", "7", "--set", "draws=300", "--set", "warmup=150", "--experiment", "dln"];
    let whole = sample(&h, &id, "hmc", &draws);
    let out = h.ok(&[&["sample", "--target", &id, "--plugin", "hmc", "--restrict", "each-layer"], &draws[..]].concat());
    let layers: Vec<(f64, f64)> = run_dirs(&out).iter().map(|d| llc_of(&manifest_in(d))).collect();
    let (w, w_se) = llc_of(&whole);
    eprintln!("DLN 5-4-5 r1: whole {w:.3} ± {w_se:.3} (truth 9.5); layers {layers:?}, exact {exact:?}; sum {:.3}", layers.iter().map(|l| l.0).sum::<f64>());
    assert_eq!(layers.len(), 2, "{out}");
    for (i, ((got, se), want)) in layers.iter().zip(exact).enumerate() {
        assert!((got - want).abs() < 3.0 * se, "layer {}: λ̂ = {got} ± {se}, exact {want}", i + 1);
    }
    assert!(out.contains("sum over layers = "), "{out}");
    let cmp = h.ok(&["compare", "--experiment", "dln"]);
    assert!(cmp.contains("layer:1") && cmp.contains("layer:2") && cmp.contains("Σ λ̂ over layer:1, layer:2 = ") && cmp.contains("whole network"), "{cmp}");
    let csv = std::fs::read_to_string(h.path().join("artifacts/experiments/dln/compare.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.contains(",hmc,layer:")).count(), 2, "{csv}");
}

/// Bad restrictions and observables: a one-line error naming the spec, exit 2,
/// before anything is sampled.
#[test]
fn bad_restrictions_and_observables_are_one_line_errors() {
    let h = Home::new();
    let id = first_token(&h.ok(&["build", "--config", &h.write("e.ron", &tiny_experiment(1, ""))]));
    let (quad, _) = quadratic_target(&h);
    let short = write_mask(&h, "short.npy", &[true; 7]);
    let none = write_mask(&h, "none.npy", &[false; 45]);
    let floats = write_npy(&h, "floats.npy", "<f8", 45, &[0u8; 45 * 8]);
    let float_rows = format!("f={floats}");
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (&id, vec!["--restrict", "conv1"], "restriction `conv1`: unknown part `conv1`"),
        (&id, vec!["--restrict", "layer:4"], "restriction `layer:4`: the model has 3 layers (layer:1..3), no layer 4"),
        (&id, vec!["--restrict", &short], "the mask has shape [7]; the target has D = 45"),
        (&id, vec!["--restrict", &floats], "the mask must be an array of bools, not Float values"),
        (&id, vec!["--restrict", &none], "frees no coordinates"),
        (&quad, vec!["--restrict", "layer:1"], "is quadratic and has no layers"),
        (&quad, vec!["--restrict", "each-layer"], "restriction `each-layer`: "),
        (&id, vec!["--observe", "a=rows:0..101"], "observable `a=rows:0..101`: the target has n = 100 training rows"),
        (&id, vec!["--observe", &float_rows], "expected a non-empty 1-d array of integers"),
        (&id, vec!["--observe", "a=test", "--observe", "a=rows:0..5"], "the name `a` is given twice"),
        (&quad, vec!["--observe", "a=test"], "is quadratic and has no data"),
    ];
    for (target, extra, want) in cases {
        let args = [&["sample", "--target", target, "--plugin", "hmc"], &extra[..]].concat();
        let err = h.fails(&args);
        assert!(err.contains(want), "{extra:?}: {err}");
        assert_eq!(h.run(&args).code, 2);
    }
    assert!(!h.path().join("artifacts/experiments/dev/runs").exists(), "nothing was sampled");
}
