//! Stage A end to end: build, store, import, truth and every bad input, all
//! through the real `lh-host` binary.

use lh_host::store::npz::{to_bytes, Array, Packing};
use lh_tests::{tiny_experiment, Home};

fn first_token(s: &str) -> String {
    s.split_whitespace().next().expect("output has a token").to_string()
}

fn payload_files(home: &Home) -> Vec<(String, Vec<u8>)> {
    let objs = home.objects();
    assert_eq!(objs.len(), 1, "expected one object, found {objs:?}");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(objs[0].join("payload"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn same_config_gives_same_id_and_identical_bytes_and_any_change_a_new_id() {
    let (a, b) = (Home::new(), Home::new());
    let exp = tiny_experiment(7, "");
    let id_a = first_token(&a.ok(&["build", "--config", &a.write("e.ron", &exp)]));
    let id_b = first_token(&b.ok(&["build", "--config", &b.write("e.ron", &exp)]));
    assert!(id_a.starts_with("tgt_") && id_a.len() == 16, "{id_a}");
    assert_eq!(id_a, id_b);
    let (pa, pb) = (payload_files(&a), payload_files(&b));
    let names: Vec<&str> = pa.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["config.json", "data.npz", "params.npz", "training.csv"]);
    assert!(pa == pb, "payload bytes differ between two builds of one config");
    assert_eq!(a.objects()[0].file_name(), b.objects()[0].file_name());

    // A second build reuses the object.
    let again = a.ok(&["build", "--config", &a.write("e.ron", &exp)]);
    assert!(again.contains("already in the store"), "{again}");

    // Any change gives a new id.
    let mut ids = vec![id_a.clone()];
    for (seed, extra) in [(8, ""), (7, ", posterior: (gamma: 2.0)"), (7, ", data: (n: 99)"), (7, ", model: (activation: tanh)")] {
        let id = first_token(&a.ok(&["build", "--config", &a.write("e.ron", &tiny_experiment(seed, extra))]));
        assert!(!ids.contains(&id), "{seed} {extra}: id {id} repeats");
        ids.push(id);
    }
    let ls = a.ok(&["targets", "ls"]);
    for id in &ids {
        assert!(ls.contains(id.as_str()), "{ls}");
    }
    let show = a.ok(&["targets", "show", &id_a]);
    let json_end = show.rfind("\n}").expect("meta.json printed") + 2;
    let meta: serde_json::Value = serde_json::from_str(&show[..json_end]).unwrap();
    assert_eq!(meta["target_id"], id_a.as_str());
    assert_eq!(meta["d"], 45);
    assert_eq!(meta["n"], 100);
    assert!(meta["l0"].as_f64().unwrap() > 0.0);
    assert!((meta["beta"].as_f64().unwrap() - 1.0 / 100f64.ln()).abs() < 1e-12);
    assert_eq!(meta["gamma"], 1.0);
    assert_eq!(meta["precision"], "f32");
    for f in ["config.json", "data.npz", "params.npz", "training.csv"] {
        assert_eq!(meta["files"][f].as_str().unwrap().len(), 64);
    }
    // The experiment link points at the object.
    let link = a.path().join("artifacts/experiments/t/targets").join(&id_a);
    assert!(link.join("meta.json").exists());
}

#[test]
fn numpy_opens_the_payload_with_the_documented_names_and_shapes() {
    if !lh_tests::have_numpy() {
        return;
    }
    let h = Home::new();
    h.ok(&["build", "--config", &h.write("e.ron", &tiny_experiment(3, ""))]);
    let payload = h.objects()[0].join("payload");
    let script = format!(
        r#"
import numpy as np
d = np.load("{p}/data.npz"); w = np.load("{p}/params.npz")
assert d["X"].shape == (100, 4) and d["Y"].shape == (100, 1), d["X"].shape
assert d["X_test"].shape == (100, 4) and d["Y_test"].shape == (100, 1)
assert d["Y_teacher"].shape == (100, 1) and d["Y_teacher_test"].shape == (100, 1)
assert w["w_star"].shape == (45,)
assert w["W1"].shape == (4, 4) and w["b1"].shape == (4,) and w["W3"].shape == (1, 4) and w["b3"].shape == (1,)
flat = np.concatenate([np.concatenate([w[f"W{{k}}"].ravel(), w[f"b{{k}}"]]) for k in (1, 2, 3)])
assert np.array_equal(flat, w["w_star"])
def f(x):
    h = np.maximum(0, x @ w["W1"].T + w["b1"]); h = np.maximum(0, h @ w["W2"].T + w["b2"])
    return h @ w["W3"].T + w["b3"]
print(np.mean((f(d["X"]) - d["Y"]) ** 2))
"#,
        p = payload.display()
    );
    // numpy's L_n(w*) equals the L0 in meta.json (computed by the f64 backend).
    let l_numpy: f64 = lh_tests::python(&script).trim().parse().unwrap();
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(h.objects()[0].join("meta.json")).unwrap()).unwrap();
    let l0 = meta["l0"].as_f64().unwrap();
    assert!((l_numpy - l0).abs() < 1e-12 * l0, "numpy {l_numpy} vs L0 {l0}");
}

#[test]
fn bad_configs_give_one_line_errors_and_leave_no_object() {
    let h = Home::new();
    let cases: &[(&str, &str, &[&str])] = &[
        ("unknown key", ", model: (activaton: tanh)", &["e.ron:", "activaton"]),
        ("misplaced key", ", model: (lr: 0.1)", &["e.ron:", "`lr`"]),
        ("wrong type", ", data: (n: \"many\")", &["e.ron:", "n"]),
        ("negative n", ", data: (n: -5)", &["e.ron:"]),
        ("zero n", ", data: (n: 0)", &["data.n must be ≥ 1"]),
        ("bad enum", ", model: (activation: swish)", &["e.ron:", "swish"]),
        ("bad beta0", ", posterior: (beta0: -1.0)", &["posterior.beta0"]),
    ];
    for (what, extra, needles) in cases {
        let exp = tiny_experiment(1, extra);
        let err = h.fails(&["build", "--config", &h.write("e.ron", &exp)]);
        for n in *needles {
            assert!(err.contains(n), "{what}: `{err}` lacks `{n}`");
        }
    }
    let missing = "(name: \"t\", targets: [(model: \"huge\", data: \"small\")])";
    let err = h.fails(&["build", "--config", &h.write("m.ron", missing)]);
    assert!(err.contains("unknown model preset `huge`"), "{err}");
    let top = "(name: \"t\", targets: [(model: \"small\", data: \"small\")], sampler: [])";
    let err = h.fails(&["build", "--config", &h.write("top.ron", top)]);
    assert!(err.contains("top.ron:") && err.contains("sampler"), "{err}");
    let err = h.fails(&["build", "--config", "no/such/file.ron"]);
    assert!(err.contains("no/such/file.ron"), "{err}");
    // The line number points at the bad key.
    let multi = "(\n  name: \"t\",\n  targets: [\n    (model: \"small\", data: \"small\",\n     overrides: (training: (stepz: 3))),\n  ],\n)";
    let err = h.fails(&["build", "--config", &h.write("l.ron", multi)]);
    assert!(err.contains("l.ron:5:"), "{err}");
    assert!(h.objects().is_empty(), "a failed build left {:?}", h.objects());
    assert_eq!(h.tmp_leftovers(), 0);
}

#[test]
fn an_altered_store_object_is_refused() {
    let h = Home::new();
    let id = first_token(&h.ok(&["build", "--config", &h.write("e.ron", &tiny_experiment(5, ""))]));
    let data = h.objects()[0].join("payload/data.npz");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&data, bytes).unwrap();
    let err = h.fails(&["targets", "show", &id]);
    assert!(err.contains("data.npz") && err.contains("corrupted"), "{err}");
    let err = h.fails(&["build", "--config", &h.write("e.ron", &tiny_experiment(5, ""))]);
    assert!(err.contains("corrupted"), "{err}");
    let err = h.fails(&["targets", "show", "tgt_000000000000"]);
    assert!(err.contains("no target `tgt_000000000000`"), "{err}");
}

/// An npz as a user would export it from their own training code.
fn import_npz(widths: &[i64], w_len: usize, extra: bool) -> Vec<u8> {
    let n = 50;
    let x: Vec<f64> = (0..n * 3).map(|i| ((i * 37 % 17) as f64 - 8.0) / 5.0).collect();
    let y: Vec<f64> = (0..n * 2).map(|i| ((i * 13 % 11) as f64 - 5.0) / 7.0).collect();
    let w: Vec<f64> = (0..w_len).map(|i| ((i * 7 % 19) as f64 - 9.0) / 20.0).collect();
    let (sx, sy, sw, sh) = ([n, 3], [n, 2], [w_len], [widths.len()]);
    let mut arrays = vec![
        ("X", Array::F64(&sx, &x)),
        ("Y", Array::F64(&sy, &y)),
        ("w_star", Array::F64(&sw, &w)),
        ("widths", Array::I64(&sh, widths)),
        ("activation", Array::Str("tanh")),
        ("bias", Array::I64(&[], &[1])),
    ];
    if extra {
        arrays.push(("gamma", Array::F64(&[], &[10.0])));
        arrays.push(("loss", Array::Str("half_sse")));
    }
    to_bytes(&arrays, Packing::Deflated).unwrap()
}

#[test]
fn import_a_network_trained_elsewhere() {
    let h = Home::new();
    // 3 → [4] → 2 with biases: D = 3·4 + 4 + 4·2 + 2 = 26.
    let good = h.path().join("net.npz");
    std::fs::write(&good, import_npz(&[4], 26, true)).unwrap();
    let out = h.ok(&["import", "--npz", good.to_str().unwrap()]);
    let id = first_token(&out);
    assert!(out.contains("imported") && out.contains("D=26"), "{out}");
    let show = h.ok(&["targets", "show", &id]);
    assert!(show.contains("\"half_sse\"") && show.contains("\"gamma\": 10.0"), "{show}");
    // Importing the same file again gives the same id.
    assert_eq!(first_token(&h.ok(&["import", "--npz", good.to_str().unwrap()])), id);
    let objects_before = h.objects();

    let wrong = h.path().join("wrong.npz");
    std::fs::write(&wrong, import_npz(&[5], 26, false)).unwrap();
    let err = h.fails(&["import", "--npz", wrong.to_str().unwrap()]);
    assert!(err.contains("wrong.npz") && err.contains("w_star has 26 values") && err.contains("D = 32"), "{err}");

    let bytes = import_npz(&[4], 26, false);
    let cut = h.path().join("cut.npz");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let err = h.fails(&["import", "--npz", cut.to_str().unwrap()]);
    assert!(err.contains("cut.npz"), "{err}");

    let text = h.write("notes.npz", "just some text");
    let err = h.fails(&["import", "--npz", &text]);
    assert!(err.contains("notes.npz: not a readable .npz"), "{err}");

    let partial = h.path().join("partial.npz");
    std::fs::write(&partial, to_bytes(&[("X", Array::F64(&[1, 3], &[1.0, 2.0, 3.0]))], Packing::Deflated).unwrap()).unwrap();
    let err = h.fails(&["import", "--npz", partial.to_str().unwrap()]);
    assert!(err.contains("no array `Y`"), "{err}");

    let err = h.fails(&["import", "--npz", "missing.npz"]);
    assert!(err.contains("missing.npz"), "{err}");
    assert_eq!(h.objects(), objects_before, "a failed import changed the store");
    assert_eq!(h.tmp_leftovers(), 0);
}

#[test]
fn truth_reproduces_the_reference_values() {
    let h = Home::new();
    let refs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(lh_tests::repo().join("tests/data/reference_vectors.json")).unwrap()).unwrap();
    for c in refs["dln"].as_array().unwrap() {
        let mut sizes = vec![c["input_dim"].as_u64().unwrap()];
        sizes.extend(c["widths_incl_output"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()));
        let sizes = sizes.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let rank = c["rank"].as_u64().unwrap().to_string();
        let got: f64 = h.ok(&["truth", "--sizes", &sizes, "--rank", &rank]).trim().parse().unwrap();
        // The JSON holds Python's float arithmetic (19.499999999999943 for 19.5); ours is exact.
        let want = c["lambda"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "sizes {sizes} rank {rank}: {got} vs {want}");
    }
    let err = h.fails(&["truth", "--sizes", "3,2,3", "--rank", "3"]);
    assert!(err.contains("rank 3"), "{err}");

    // A deep-linear target built from a config: 4 → [7, 5] → 3, rank 1.
    h.write("dln.ron", "(in_dim: 4, out_dim: 3, widths: [7, 5], activation: identity, bias: false)");
    let exp = r#"(name: "dln", targets: [(model: "dln.ron", data: "small", seed: 1,
        overrides: (teacher: deep_linear(widths: [7, 5], rank: 1), training: (steps: 200)))])"#;
    let id = first_token(&h.ok(&["build", "--config", &h.write("e.ron", exp)]));
    let got: f64 = h.ok(&["truth", "--target", &id]).trim().parse().unwrap();
    assert_eq!(got, lh_host::target::truth::dln_learning_coefficient(&[4, 7, 5, 3], 1).unwrap());
    // A ReLU target has no analytic value.
    let relu = first_token(&h.ok(&["build", "--config", &h.write("r.ron", &tiny_experiment(1, ""))]));
    let err = h.fails(&["truth", "--target", &relu]);
    assert!(err.contains("deep_linear"), "{err}");
}

#[test]
fn every_subcommand_has_help() {
    let h = Home::new();
    for cmd in [
        &["build"][..],
        &["targets"],
        &["targets", "ls"],
        &["targets", "show"],
        &["import"],
        &["truth"],
        &["bench"],
        &["sample"],
        &["run"],
        &["plugins"],
        &["diagnose"],
        &["diagnose-experiment"],
        &["diagnose-target"],
        &["diagnose-targets"],
        &["compare"],
        &["devices"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = h.ok(&args);
        assert!(out.contains("Usage: lh-host"), "{cmd:?}: {out}");
    }
}

#[test]
fn shipped_configs_parse_and_the_smoke_grid_builds() {
    let h = Home::new();
    let dir = lh_tests::repo().join("config/experiments");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        lh_host::config::load_experiment(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    // Every input distribution, noise model, teacher kind and activation builds.
    let out = h.ok(&["build", "--config", dir.join("smoke.ron").to_str().unwrap()]);
    assert_eq!(out.lines().filter(|l| l.starts_with("tgt_")).count(), 7, "{out}");
    assert_eq!(h.objects().len(), 7);
}
