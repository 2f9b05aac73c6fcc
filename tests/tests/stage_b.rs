//! Stage B end to end: plugins loaded by the real binary, runs written to
//! disk, the quadratic oracle, and every load or run failure.

use std::path::{Path, PathBuf};

use lh_host::store::npz::Npz;
use lh_tests::{example_plugin, tiny_experiment, Home};

fn first_token(s: &str) -> String {
    s.split_whitespace().next().expect("output has a token").to_string()
}

fn run_dir(stdout: &str) -> PathBuf {
    let line = stdout.lines().find_map(|l| l.strip_prefix("run: ")).unwrap_or_else(|| panic!("no run dir in:\n{stdout}"));
    PathBuf::from(line.trim())
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn build_tiny(h: &Home) -> String {
    first_token(&h.ok(&["build", "--config", &h.write("e.ron", &tiny_experiment(11, ""))]))
}

#[test]
fn sample_with_the_example_plugin_writes_traces_and_manifest() {
    let h = Home::new();
    let lib = example_plugin();
    let id = build_tiny(&h);
    let out =
        h.ok(&["sample", "--target", &id, "--plugin", lib.to_str().unwrap(), "--chains", "3", "--seed", "9", "--set", "draws=300", "--set", "burn_in=100"]);
    let dir = run_dir(&out);
    assert!(dir.starts_with(h.path().join("artifacts/experiments/dev/runs")), "{}", dir.display());
    let m = manifest(&dir);
    assert_eq!(m["status"], "complete");
    assert_eq!(m["plugin"]["name"], "rwm");
    assert_eq!(m["plugin"]["sha256"].as_str().unwrap(), lh_host::store::sha256_hex(&std::fs::read(lib).unwrap()));
    assert_eq!(m["chains"], 3);
    assert_eq!(m["seed"], 9);
    assert_eq!(m["draws"], 300);
    assert_eq!(m["burn_in"], 100);
    assert!(m["config"].as_str().unwrap().contains("draws: 300"));
    assert_eq!(m["backend"]["backend"], "cpu");
    assert_eq!(m["backend"]["precision"], "f32");
    assert!(m["timings"]["total"].as_f64().unwrap() > 0.0);
    // 300 draws × thin 5 proposals + 1 initial evaluation, all counted by the host.
    assert_eq!(m["work"]["loss_evals"], 1501);

    let mut t = Npz::open(&dir.join("traces.npz")).unwrap();
    let (shape, loss) = t.f64("loss").unwrap();
    assert_eq!(shape, [3, 300]);
    let (_, llc) = t.f64("llc").unwrap();
    assert_eq!(t.f64("acceptance_rate").unwrap().0, [3, 300]);
    assert_eq!(t.f64("step_size").unwrap().0, [3, 300]);
    // λ̂ is nβ(mean L − L0) over the kept draws, recomputable from the traces.
    let (nb, l0) = (m["llc"]["n_beta"].as_f64().unwrap(), m["l0"].as_f64().unwrap());
    let kept: Vec<f64> = (0..3).flat_map(|c| loss[c * 300 + 100..(c + 1) * 300].to_vec()).collect();
    let want = nb * (kept.iter().sum::<f64>() / kept.len() as f64 - l0);
    assert!((m["llc"]["mean"].as_f64().unwrap() - want).abs() < 1e-9 * want.abs().max(1.0));
    assert!((llc[0] - nb * (loss[0] - l0)).abs() < 1e-9);
    assert!(m["llc"]["se"].as_f64().unwrap() > 0.0);
    assert!(m["llc"]["rhat"].as_f64().unwrap() > 0.9);
    assert!(out.contains("λ̂ = "), "{out}");

    // The same seed gives the same draws.
    let again =
        h.ok(&["sample", "--target", &id, "--plugin", lib.to_str().unwrap(), "--chains", "3", "--seed", "9", "--set", "draws=300", "--set", "burn_in=100"]);
    assert_eq!(Npz::open(&run_dir(&again).join("traces.npz")).unwrap().f64("loss").unwrap().1, loss);
}

#[test]
fn quadratic_oracle_with_the_example_plugin() {
    let h = Home::new();
    let lib = example_plugin();
    let exp = r#"(name: "quad", targets: [(quadratic: (dim: 5, n: 1000), overrides: (posterior: (gamma: 50.0)))])"#;
    let id = first_token(&h.ok(&["build", "--config", &h.write("q.ron", exp)]));
    let out = h.ok(&[
        "sample",
        "--target",
        &id,
        "--plugin",
        lib.to_str().unwrap(),
        "--chains",
        "4",
        "--seed",
        "3",
        "--set",
        "draws=3000",
        "--set",
        "burn_in=500",
        "--set",
        "thin=3",
    ]);
    let m = manifest(&run_dir(&out));
    let nb = 1000.0 / 1000f64.ln();
    let want = 5.0 * nb / (2.0 * (nb + 50.0));
    let (got, se) = (m["llc"]["mean"].as_f64().unwrap(), m["llc"]["se"].as_f64().unwrap());
    assert_eq!(m["l0"], 0.0);
    // Exact oracle: within 3 standard errors.
    assert!((got - want).abs() < 3.0 * se, "λ̂ = {got} ± {se}, exact {want}");
    assert!(se < 0.05 * want, "se {se} too large to be a meaningful test");
}

#[test]
fn run_builds_the_default_target_and_samples_it() {
    let h = Home::new();
    let lib = example_plugin();
    let out = h.ok(&["run", "--plugin", lib.to_str().unwrap(), "--set", "draws=200", "--set", "burn_in=50"]);
    assert!(out.contains("built now") && out.contains("λ̂ = ") && out.contains("R̂(L_n) = "), "{out}");
    let dir = run_dir(&out);
    assert!(dir.starts_with(h.path().join("artifacts/experiments/default/runs")));
    let again = h.ok(&["run", "--plugin", lib.to_str().unwrap(), "--set", "draws=200", "--set", "burn_in=50", "--diagnose"]);
    assert!(again.contains("from the store") && again.contains("diagnostics: "), "{again}");
    let dir = run_dir(&again);
    assert!(dir.join("analysis.json").exists() && dir.join("diagnostics/llc_convergence_combined.png").exists());
}

#[test]
fn plugins_are_found_by_name_and_listed() {
    let h = Home::new();
    example_plugin();
    let id = build_tiny(&h);
    let out = h.ok(&["sample", "--target", &id, "--plugin", "rwm", "--set", "draws=20", "--set", "burn_in=0"]);
    assert!(out.contains("rwm 0.1.0"), "{out}");
    let list = h.ok(&["plugins"]);
    assert!(list.contains("rwm 0.1.0 (plugin API 0.2.0)") && list.contains("defaults: (draws: 2000"), "{list}");
    let err = h.fails(&["sample", "--target", &id, "--plugin", "nosuch"]);
    assert!(err.contains("no plugin `nosuch`") && err.contains("rwm"), "{err}");
    let err = h.fails(&["sample", "--target", &id, "--plugin", "rwm", "--set", "drawz=3"]);
    assert!(err.contains("unknown key `drawz` for plugin `rwm`"), "{err}");
}

#[test]
fn load_failures_are_one_line_errors() {
    let h = Home::new();
    let id = build_tiny(&h);
    let err = h.fails(&["sample", "--target", &id, "--plugin", "./missing/libnothing.so"]);
    assert!(err.contains("missing/libnothing.so") && err.contains("not found"), "{err}");
    let fake = h.write("libfake.so", "not a shared library");
    let err = h.fails(&["sample", "--target", &id, "--plugin", &fake]);
    assert!(err.contains("libfake.so") && err.contains("cannot open the library"), "{err}");
    // A real shared library that is not a plugin: the C maths library.
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6", "/usr/lib64/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libm.so.6 on this Linux system");
    let err = h.fails(&["sample", "--target", &id, "--plugin", libm]);
    assert!(err.contains("not an lh-host sampler plugin"), "{err}");
}

#[test]
fn a_plugin_built_against_an_incompatible_api_is_refused() {
    // Copy lh-plugin-api with the previous minor version (what a plugin built
    // against 0.1 declares) and build the example plugin against it.
    let h = Home::new();
    let id = build_tiny(&h);
    let repo = lh_tests::repo();
    let work = tempfile::tempdir().unwrap();
    let api = work.path().join("api");
    std::fs::create_dir_all(api.join("src")).unwrap();
    for f in std::fs::read_dir(repo.join("plugin-api/src")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, api.join("src").join(f.file_name().unwrap())).unwrap();
    }
    let manifest = std::fs::read_to_string(repo.join("plugin-api/Cargo.toml"))
        .unwrap()
        .replace("version = \"0.2.0\"", "version = \"0.1.0\"")
        .replace("edition.workspace = true", "edition = \"2021\"")
        .replace("rust-version.workspace = true\n", "")
        .replace("license.workspace = true\n", "");
    std::fs::write(api.join("Cargo.toml"), manifest + "\n[workspace]\n").unwrap();
    let plugin = work.path().join("plugin");
    std::fs::create_dir_all(plugin.join("src")).unwrap();
    std::fs::copy(repo.join("plugins/example-rwm/src/lib.rs"), plugin.join("src/lib.rs")).unwrap();
    let pm = std::fs::read_to_string(repo.join("plugins/example-rwm/Cargo.toml"))
        .unwrap()
        .replace("name = \"lh-sampler-rwm\"", "name = \"lh-sampler-oldapi\"")
        .replace("path = \"../../plugin-api\"", &format!("path = {:?}", api.display().to_string()));
    std::fs::write(plugin.join("Cargo.toml"), pm).unwrap();
    std::fs::copy(repo.join("plugins/example-rwm/Cargo.lock"), plugin.join("Cargo.lock")).ok();
    let lib = lh_tests::build_plugin_crate(&plugin, "lh_sampler_oldapi");
    let err = h.fails(&["sample", "--target", &id, "--plugin", lib.to_str().unwrap()]);
    assert!(err.contains("incompatible plugin API version") && err.contains("built against lh-plugin-api 0.1.0, but this host speaks 0.2.0"), "{err}");
}

#[test]
fn plugin_failures_keep_what_was_recorded() {
    let h = Home::new();
    lh_tests::misbehave_plugin();
    let id = build_tiny(&h);
    let sample = |mode: &str| h.run(&["sample", "--target", &id, "--plugin", "misbehave", "--set", &format!("mode=\"{mode}\"")]);

    let r = sample("ok");
    assert_eq!(r.code, 0, "{}", r.stderr);

    let err = h.fails(&["sample", "--target", &id, "--plugin", "misbehave", "--set", "mode=\"panic\""]);
    assert!(err.contains("plugin `misbehave`") && err.contains("panicked") && err.contains("deliberate panic at draw 2"), "{err}");
    assert!(err.contains("the 2 draws recorded before it are in"), "{err}");

    let err = h.fails(&["sample", "--target", &id, "--plugin", "misbehave", "--set", "mode=\"nan\""]);
    assert!(err.contains("non-finite L_n (NaN) for chain 1 at draw 3"), "{err}");

    let err = h.fails(&["sample", "--target", &id, "--plugin", "misbehave", "--set", "mode=\"overdraw\""]);
    assert!(err.contains("wrote draw 5 but announced only 5 draws"), "{err}");

    // Ctrl-C: the run stops cleanly and its traces are kept, marked incomplete;
    // the exit code says it was interrupted (130 = 128 + SIGINT).
    let r = sample("stop");
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(r.stdout.contains("INCOMPLETE"), "{}", r.stdout);
    let m = manifest(&run_dir(&r.stdout));
    assert_eq!(m["status"], "incomplete");
    // The signal arrives at draw 10; the flag is raised in the handler, seen at the next check.
    let draws = m["draws"].as_u64().unwrap();
    assert!((11..1_000_000).contains(&draws), "{draws}");

    // Failed runs keep their partial traces too.
    let runs = h.path().join("artifacts/experiments/dev/runs");
    let statuses: Vec<String> = std::fs::read_dir(&runs).unwrap().map(|e| manifest(&e.unwrap().path())["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses.iter().filter(|s| *s == "failed").count(), 3, "{statuses:?}");
}

#[test]
fn diagnose_writes_analysis_and_plots() {
    let h = Home::new();
    let lib = example_plugin();
    let id = build_tiny(&h);
    let out = h.ok(&["sample", "--target", &id, "--plugin", lib.to_str().unwrap(), "--set", "draws=400", "--set", "burn_in=100"]);
    let dir = run_dir(&out);
    let report = h.ok(&["diagnose", "--run-dir", dir.to_str().unwrap()]);
    assert!(report.contains("acceptance_rate") && report.contains("step_size"), "{report}");
    let a: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("analysis.json")).unwrap()).unwrap();
    let m = manifest(&dir);
    // The analysis recomputes λ̂ from the traces: it must agree with the manifest's.
    assert!((a["llc"]["mean"].as_f64().unwrap() - m["llc"]["mean"].as_f64().unwrap()).abs() < 1e-12);
    assert_eq!(a["draws"], 400);
    assert_eq!(a["burn_in"], 100);
    for t in ["loss", "acceptance_rate", "step_size"] {
        assert!(a["traces"][t]["mean"].is_number(), "{t}: {a}");
    }
    for plot in ["trace.png", "llc_convergence_combined.png", "rank.png", "autocorr.png", "acceptance_hist.png"] {
        let png = std::fs::read(dir.join("diagnostics").join(plot)).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 8_000, "{plot}");
    }
    let err = h.fails(&["diagnose", "--run-dir", h.path().join("nope").to_str().unwrap()]);
    assert!(err.contains("nope/manifest.json"), "{err}");
    // A truncated traces.npz is a clear error naming it.
    let traces = dir.join("traces.npz");
    let bytes = std::fs::read(&traces).unwrap();
    std::fs::write(&traces, &bytes[..bytes.len() / 3]).unwrap();
    let err = h.fails(&["diagnose", "--run-dir", dir.to_str().unwrap()]);
    assert!(err.contains("traces.npz"), "{err}");
}
