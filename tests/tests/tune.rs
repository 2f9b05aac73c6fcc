//! `workflow tune` end to end (issue "tune"): a smoke tune on a tiny target
//! (an HMC reference, SGLD and MCLMC studies of a few trials) on the local
//! pool; its best settings read by `sample --config`; a rerun that redoes
//! nothing; a study resumed after SIGKILL that ends with exactly the trials of
//! an uninterrupted one; the same tune on a real SLURM cluster; bad tune files
//! refused by file and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lh_tests::Home;

/// The smoke tune: the `small` target trained 300 steps, an HMC reference
/// until R̂ ≤ 1.05 and ESS ≥ 100, and two studies of `trials` trials (3 random,
/// then TPE 2 at a time) under 3000 gradient evaluations per chain.
fn tune_file(h: &Home, trials: usize) -> String {
    let text = format!(
        r#"(name: "tune", training: (steps: 300), chains: 2, seeds: [1],
    targets: [(model: "small", data: "small", teacher: "small", seed: 1)],
    tune: (
        reference: (plugin: "hmc", overrides: (warmup: 200), until: "rhat=1.05,ess=100", budget: "grads=40000"),
        trials: {trials}, startup: 3, parallel: 2, budget: "grads=3000",
        methods: [
            (plugin: "sgld", fixed: (steps: 1000000, burn_in: 500, batch_size: 32),
             space: {{"step_size": log(1e-6, 1e-3), "precond": choice(["none", "rmsprop"])}}),
            (plugin: "mclmc", fixed: (num_steps: 300), space: {{"desired_energy_var": log(1e-5, 1e-2)}}),
        ],
    ))"#
    );
    h.write(&format!("tune{trials}.ron"), &text)
}

/// The rows of a CSV file, each a map from column to cell.
fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records().map(|rec| header.iter().cloned().zip(rec.unwrap().iter().map(String::from)).collect()).collect()
}

fn tune_dir(h: &Home) -> PathBuf {
    h.path().join("artifacts/experiments/tune/tune")
}

fn trials(h: &Home) -> Vec<BTreeMap<String, String>> {
    csv_rows(&tune_dir(h).join("trials.csv"))
}

/// The run directories of the experiment, and each one's manifest.
fn manifests(h: &Home) -> Vec<(PathBuf, serde_json::Value)> {
    let dir = h.path().join("artifacts/experiments/tune/runs");
    let mut v: Vec<(PathBuf, serde_json::Value)> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .filter_map(|p| Some((p.clone(), serde_json::from_str(&std::fs::read_to_string(p.join("manifest.json")).ok()?).ok()?)))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Complete run directories by key.
fn complete_by_key(h: &Home) -> BTreeMap<String, Vec<PathBuf>> {
    let mut m: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (d, man) in manifests(h) {
        if man["status"] == "complete" {
            m.entry(man["job_key"].as_str().unwrap().to_string()).or_default().push(d);
        }
    }
    m
}

/// What must agree between two tunes of the same file: every column but where and how fast.
fn comparable(rows: &[BTreeMap<String, String>]) -> Vec<Vec<(String, String)>> {
    rows.iter().map(|r| r.iter().filter(|(k, _)| !["run_dir", "wall_s"].contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()).collect()
}

#[test]
fn smoke_tune_writes_trials_best_settings_and_a_rerun_redoes_nothing() {
    let h = Home::new();
    let file = tune_file(&h, 5);
    let t = Instant::now();
    let out = h.ok(&["workflow", "tune", "--config", &file, "--backend", "local", "--jobs", "2"]);
    eprintln!("smoke tune (reference + 2 studies × 5 trials), debug build: {:.1} s", t.elapsed().as_secs_f64());
    assert!(out.contains("reference of tgt_") && out.contains("converged"), "{out}");

    let refs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tune_dir(&h).join("references.json")).unwrap()).unwrap();
    let r = &refs[0];
    assert_eq!((r["plugin"].as_str(), r["converged"].as_bool()), (Some("hmc"), Some(true)), "{r}");
    assert!(r["rhat"].as_f64().unwrap() <= 1.05 && r["ess_bulk"].as_f64().unwrap() >= 100.0, "{r}");
    let (ref_llc, problem) = (r["llc"].as_f64().unwrap(), r["problem"].as_str().unwrap().to_string());

    let rows = trials(&h);
    assert_eq!(rows.len(), 10, "{rows:?}");
    for method in ["sgld", "mclmc"] {
        let mine: Vec<&BTreeMap<String, String>> = rows.iter().filter(|r| r["method"] == method).collect();
        let origins: Vec<&str> = mine.iter().map(|r| r["origin"].as_str()).collect();
        assert_eq!(origins, ["default", "random", "random", "tpe", "tpe"], "{method}");
        assert_eq!(mine.iter().map(|r| r["trial"].parse::<usize>().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        for r in &mine {
            assert_eq!(r["problem"], problem);
            if r["status"] == "complete" {
                let [llc, se, err, score] = ["llc", "se", "error", "score"].map(|k| r[k].parse::<f64>().unwrap());
                assert!((err - (llc - ref_llc).abs()).abs() < 1e-9 && (score - (err * err + se * se).sqrt()).abs() < 1e-9, "{r:?}");
                // The budget ends every trial: no more gradients than it allows (a draw's worth over).
                assert_eq!(r["stop"], "budget exhausted", "{r:?}");
                let grads = r["grad_evals"].parse::<f64>().unwrap();
                assert!((3000.0..3050.0).contains(&grads), "{r:?}");
            } else {
                assert!(!r["failure"].is_empty(), "{r:?}");
            }
        }
        // Trial 0 is the plugin's defaults with the fixed keys.
        let default_params = if method == "sgld" { "(precond: none, step_size: 1e-5)" } else { "(desired_energy_var: 5e-4)" };
        assert_eq!(mine[0]["params"], default_params);
        assert!(mine.iter().filter(|r| r["status"] == "complete").count() >= 3, "{mine:?}");
    }
    // Every trial is a run of its own key, done once.
    let done = complete_by_key(&h);
    assert!(rows.iter().filter(|r| r["status"] == "complete").all(|r| done[&r["key"]].len() == 1));

    let summary = csv_rows(&tune_dir(&h).join("summary.csv"));
    assert_eq!(summary.len(), 2);
    assert!(out.contains("default λ̂ ± SE") && out.contains("tuned λ̂ ± SE"), "{out}");
    for s in &summary {
        // The best trial is the one of lowest score: never worse than the defaults (trial 0).
        let (default, best) = (s["default_score"].parse::<f64>().ok(), s["best_score"].parse::<f64>().unwrap());
        assert!(default.is_none_or(|d| best <= d), "{s:?}");
        let min = rows.iter().filter(|r| r["method"] == s["method"]).filter_map(|r| r["score"].parse::<f64>().ok()).fold(f64::INFINITY, f64::min);
        assert_eq!(best, min, "{s:?}");
        assert!(Path::new(&s["best_config"]).exists(), "{s:?}");
    }
    assert!(tune_dir(&h).join(format!("figures/{problem}.png")).exists());
    // The experiment's gallery has a tuning page: the summary and the figure, copied beside it.
    let gallery = h.path().join("artifacts/experiments/tune/gallery");
    let page = std::fs::read_to_string(gallery.join("tune.html")).unwrap();
    assert!(page.contains(&format!("img/tune/{problem}.png")) && page.contains("tuned λ̂ ± SE") && page.contains("sgld"), "{page}");
    assert!(gallery.join(format!("img/tune/{problem}.png")).exists());

    // The best SGLD settings are a `sample --config` file: the same run gives the same λ̂.
    let sgld = summary.iter().find(|s| s["method"] == "sgld").unwrap();
    let ron = std::fs::read_to_string(&sgld["best_config"]).unwrap();
    assert!(ron.contains("steps: 1000000") && ron.contains("burn_in: 500") && ron.contains("step_size:") && ron.contains("--budget grads=3000"), "{ron}");
    let again =
        h.ok(&["sample", "--target", &problem, "--plugin", "sgld", "--config", &sgld["best_config"], "--budget", "grads=3000", "--chains", "2", "--seed", "1"]);
    let m = lh_tests::manifest(&again);
    assert_eq!(m["llc"]["mean"].as_f64().unwrap(), sgld["best_llc"].parse::<f64>().unwrap(), "{ron}");

    // A rerun finds every trial recorded and runs nothing.
    let before = manifests(&h).len();
    let out = h.ok(&["workflow", "tune", "--config", &file, "--jobs", "2"]);
    assert!(out.contains("10 trials recorded") && !out.contains("round:"), "{out}");
    assert_eq!(manifests(&h).len(), before);
    assert_eq!(comparable(&trials(&h)), comparable(&rows));
    // More trials continue the same studies: only the new ones run.
    let more = tune_file(&h, 7);
    let dry = h.ok(&["workflow", "tune", "--config", &more, "--dry-run"]);
    assert!(dry.matches("5 of 7 trials recorded").count() == 2, "{dry}");
    let out = h.ok(&["workflow", "tune", "--config", &more, "--jobs", "2"]);
    assert!(out.contains("round: 4 trials (4 to run)"), "{out}");
    let rows7 = trials(&h);
    assert_eq!(rows7.len(), 14);
    assert_eq!(comparable(&rows7.iter().filter(|r| r["trial"].parse::<usize>().unwrap() < 5).cloned().collect::<Vec<_>>()), comparable(&rows));
}

/// A tune file with `seeds: [1, 2]`: the reference runs with seed 1; every
/// trial runs once per seed, and its λ̂ is the mean of the two runs', its SE
/// that of the mean, its score the mean of their scores, its work their sum.
#[test]
fn a_trial_of_two_seeds_is_two_runs_and_scores_their_mean() {
    let h = Home::new();
    let file = h.write(
        "seeds.ron",
        &std::fs::read_to_string(tune_file(&h, 3)).unwrap().replace("seeds: [1]", "seeds: [1, 2]").replace(
            r#"            (plugin: "sgld", fixed: (steps: 1000000, burn_in: 500, batch_size: 32),
             space: {"step_size": log(1e-6, 1e-3), "precond": choice(["none", "rmsprop"])}),
"#,
            "",
        ),
    );
    let dry = h.ok(&["workflow", "tune", "--config", &file, "--dry-run"]);
    assert!(dry.contains("2 runs a trial (seeds [1, 2], scores averaged)"), "{dry}");
    h.ok(&["workflow", "tune", "--config", &file, "--backend", "local", "--jobs", "2"]);
    let refs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tune_dir(&h).join("references.json")).unwrap()).unwrap();
    let ref_llc = refs[0]["llc"].as_f64().unwrap();
    let by_dir: BTreeMap<PathBuf, serde_json::Value> = manifests(&h).into_iter().collect();
    let reference_seeds: Vec<u64> = by_dir.values().filter(|m| m["tag"] == "reference").map(|m| m["seed"].as_u64().unwrap()).collect();
    assert_eq!(reference_seeds, [1]);
    let rows = trials(&h);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let mut complete = 0;
    for r in &rows {
        let dirs: Vec<PathBuf> = r["run_dir"].split(';').map(PathBuf::from).collect();
        assert_eq!((dirs.len(), r["key"].split(';').count()), (2, 2), "{r:?}");
        let runs: Vec<&serde_json::Value> = dirs.iter().map(|d| &by_dir[d]).collect();
        assert_eq!(runs.iter().map(|m| m["seed"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2], "{r:?}");
        let grads: f64 = runs.iter().map(|m| m["work"]["grad_evals_fge"].as_f64().unwrap()).sum();
        assert_eq!(r["grad_evals"].parse::<f64>().unwrap(), grads, "{r:?}");
        if r["status"] != "complete" {
            assert!(r["failure"].contains("(seed "), "{r:?}");
            continue;
        }
        complete += 1;
        let est: Vec<(f64, f64)> = runs.iter().map(|m| (m["llc"]["mean"].as_f64().unwrap(), m["llc"]["se"].as_f64().unwrap())).collect();
        let [llc, se, score] = ["llc", "se", "score"].map(|k| r[k].parse::<f64>().unwrap());
        let seeds_llc: Vec<f64> = r["seeds_llc"].split(';').map(|v| v.parse().unwrap()).collect();
        assert_eq!(seeds_llc, [est[0].0, est[1].0], "{r:?}");
        assert!((llc - (est[0].0 + est[1].0) / 2.0).abs() < 1e-12, "{r:?}");
        assert!((se - (est[0].1.powi(2) + est[1].1.powi(2)).sqrt() / 2.0).abs() < 1e-12, "{r:?}");
        let each = |(l, s): (f64, f64)| ((l - ref_llc).powi(2) + s * s).sqrt();
        assert!((score - (each(est[0]) + each(est[1])) / 2.0).abs() < 1e-12, "{r:?}");
    }
    assert!(complete >= 2, "{rows:?}");
    let summary = csv_rows(&tune_dir(&h).join("summary.csv"));
    let ron = std::fs::read_to_string(&summary[0]["best_config"]).unwrap();
    assert!(ron.contains("seeds 1, 2 (λ̂ their mean") && ron.contains("--seed 1"), "{ron}");
}

#[test]
fn sigkill_mid_tune_then_rerun_ends_with_the_uninterrupted_trials() {
    // The same tune, uninterrupted…
    let whole = Home::new();
    whole.ok(&["workflow", "tune", "--config", &tune_file(&whole, 7), "--jobs", "1"]);
    let expected = trials(&whole);

    // …and killed (SIGKILL) while a trial runs, once some trials are done.
    let h = Home::new();
    let file = tune_file(&h, 7);
    let args = ["workflow", "tune", "--config", &file, "--jobs", "1", "--set", "checkpoint_every=0.05"];
    let mut child = h.command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "the tune never got three trials done");
        assert!(child.try_wait().unwrap().is_none(), "the tune ended before it could be killed");
        let ms = manifests(&h);
        let trials_done = ms.iter().filter(|(_, m)| m["status"] == "complete" && m["tag"] != "reference").count();
        if trials_done >= 3 && ms.iter().any(|(_, m)| m["status"] == "incomplete" && m["tag"] != "reference") {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = complete_by_key(&h);
    let bytes_before: Vec<Vec<u8>> = done_before.values().flatten().map(|d| std::fs::read(d.join("manifest.json")).unwrap()).collect();

    // The rerun breaks the dead process's lock, redoes only what was not done, and ends as the uninterrupted tune did.
    h.ok(&args);
    let done_after = complete_by_key(&h);
    assert!(done_after.values().all(|dirs| dirs.len() == 1), "a run was done twice: {done_after:?}");
    for (key, dirs) in &done_before {
        assert_eq!(&done_after[key], dirs, "a finished run was redone");
    }
    let bytes_after: Vec<Vec<u8>> = done_before.values().flatten().map(|d| std::fs::read(d.join("manifest.json")).unwrap()).collect();
    assert_eq!(bytes_before, bytes_after, "a finished run was rewritten");
    assert_eq!(comparable(&trials(&h)), comparable(&expected), "the resumed tune differs from the uninterrupted one");
    assert_eq!(h.tmp_leftovers(), 0);
}

#[test]
fn bad_tune_files_are_refused_by_file_and_field() {
    let h = Home::new();
    let file = |name: &str, tune: &str, extra: &str| {
        h.write(name, &format!(r#"(name: "b", targets: [(model: "small", data: "small", seed: 1)]{extra}, tune: ({tune}))"#))
    };
    let sgld = r#"methods: [(plugin: "sgld", space: {"step_size": log(1e-6, 1e-3)})]"#;
    for (path, says) in [
        (
            file("k.ron", r#"methods: [(plugin: "sgld", space: {"stepsize": log(1e-6, 1e-3)})]"#, ""),
            "tune.methods[0].space: unknown key `stepsize` for plugin `sgld`",
        ),
        (
            file("f.ron", r#"methods: [(plugin: "sgld", fixed: (stepz: 1), space: {"step_size": log(1e-6, 1e-3)})]"#, ""),
            "tune.methods[0].fixed: unknown key `stepz`",
        ),
        (file("p.ron", r#"methods: [(plugin: "nope", space: {"step_size": log(1e-6, 1e-3)})]"#, ""), "tune.methods[0] (`nope`)"),
        (file("s.ron", sgld, ", seeds: [1, 2, 1]"), "seeds[2] = 1 is given twice"),
        (file("b.ron", &format!(r#"budget: "grads=lots", {sgld}"#), ""), "tune.budget: --budget grads=lots"),
        (file("u.ron", &format!(r#"reference: (until: "rhat=0.5"), {sgld}"#), ""), "tune.reference.until"),
        (file("c.ron", &format!(r#"reference: (plugin: "hmc", check: (stepz: 40)), {sgld}"#), ""), "tune.reference.check: unknown key `stepz`"),
        (file("r.ron", r#"methods: [(plugin: "sgld", space: {"step_size": log(0, 1)})]"#, ""), "tune.methods[0].space.step_size: log(0, 1) needs 0 < lo < hi"),
        (h.write("n.ron", r#"(name: "b", targets: [(model: "small", data: "small", seed: 1)])"#), "no `tune: (…)` section"),
    ] {
        let e = h.fails(&["workflow", "tune", "--config", &path]);
        assert!(e.contains(&path) && e.contains(says), "{path}: {e}");
    }
}

/// Whether a SLURM cluster answers (`sinfo`); when none does, the caller
/// skips, unless `LH_REQUIRE_SLURM` is set (CI sets it and starts one).
fn slurm_up() -> bool {
    let ok = Command::new("sinfo").arg("-h").output().is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !ok {
        assert!(std::env::var("LH_REQUIRE_SLURM").is_err(), "LH_REQUIRE_SLURM is set but no SLURM cluster answers `sinfo`");
        eprintln!("skipped: no SLURM cluster (sinfo)");
    }
    ok
}

#[test]
fn a_tune_on_slurm_gives_the_trials_of_the_local_pool() {
    if !slurm_up() {
        return;
    }
    let local = Home::new();
    local.ok(&["workflow", "tune", "--config", &tune_file(&local, 5), "--jobs", "2"]);
    let h = Home::new();
    let args = ["workflow", "tune", "--config", &tune_file(&h, 5), "--backend", "slurm", "--set", "threads=1", "--set", "poll=0.5"];
    let t = Instant::now();
    let out = h.ok(&args);
    eprintln!("smoke tune on SLURM: {:.1} s", t.elapsed().as_secs_f64());
    // One submission for the reference (and the target), then one per round.
    assert_eq!(out.matches("submitted: ").count(), 3, "{out}");
    assert!(out.contains("submitted: targets array") && out.contains("runs array"), "{out}");
    assert_eq!(comparable(&trials(&h)), comparable(&trials(&local)));
    let logs = h.path().join("artifacts/experiments/tune/workflow/slurm");
    assert!(std::fs::read_dir(logs).unwrap().count() >= 3);
    // Nothing left to do: nothing is submitted.
    let out = h.ok(&args);
    assert!(!out.contains("submitted") && out.contains("10 trials recorded"), "{out}");
}

/// `tune.reference.check`: a second reference run (here HMC with 20 steps
/// instead of 10) under the same rule; the two agree on `small`, so the tune
/// goes on, and `references.json` holds the check and how far apart they are.
/// (The refusal of a check that disagrees is a unit test of `reference`.)
#[test]
fn a_reference_check_run_is_made_and_recorded() {
    let h = Home::new();
    let file = h.write(
        "c.ron",
        &std::fs::read_to_string(tune_file(&h, 1))
            .unwrap()
            .replace(r#"overrides: (warmup: 200), until"#, r#"overrides: (warmup: 200), check: (num_integration_steps: 20), until"#),
    );
    let dry = h.ok(&["workflow", "tune", "--config", &file, "--dry-run"]);
    assert!(dry.contains("): reference hmc until") && dry.contains("): reference-check hmc until"), "{dry}");
    let out = h.ok(&["workflow", "tune", "--config", &file, "--jobs", "2"]);
    assert!(out.contains("references: 2 of 2 to run") && out.contains("; check "), "{out}");
    let refs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tune_dir(&h).join("references.json")).unwrap()).unwrap();
    let (r, c) = (&refs[0], &refs[0]["check"]);
    assert!(r["converged"] == true && c["converged"] == true, "{refs}");
    let z = (r["llc"].as_f64().unwrap() - c["llc"].as_f64().unwrap()).abs() / (r["se"].as_f64().unwrap().powi(2) + c["se"].as_f64().unwrap().powi(2)).sqrt();
    eprintln!("reference {} ± {}, check {} ± {}: {z:.2} SE apart", r["llc"], r["se"], c["llc"], c["se"]);
    assert!((r["check_z"].as_f64().unwrap() - z).abs() < 1e-12 && z <= 3.0, "{refs}");
    let check = manifests(&h).into_iter().find(|(_, m)| m["tag"] == "reference-check").map(|(_, m)| m).unwrap();
    assert!(check["config"].as_str().unwrap().contains("num_integration_steps: 20,"), "{check}");
    assert_eq!(trials(&h).len(), 2);
}

#[test]
fn a_reference_that_did_not_converge_is_refused_unless_forced() {
    let h = Home::new();
    let file = h.write(
        "u.ron",
        r#"(name: "tune", training: (steps: 300), chains: 2, seeds: [1], targets: [(model: "small", data: "small", seed: 1)],
        tune: (reference: (plugin: "hmc", overrides: (warmup: 100), until: "ess=1000000", budget: "grads=3000"),
               trials: 1, startup: 1, budget: "grads=1000",
               methods: [(plugin: "mclmc", fixed: (num_steps: 100), space: {"desired_energy_var": log(1e-5, 1e-2)})]))"#,
    );
    let e = h.fails(&["workflow", "tune", "--config", &file]);
    assert!(e.contains("the reference did not converge (ess=1000000 not met within grads=3000)") && e.contains("--force-reference"), "{e}");
    let refs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tune_dir(&h).join("references.json")).unwrap()).unwrap();
    assert_eq!((refs[0]["converged"].as_bool(), refs[0]["outcome"].as_str()), (Some(false), Some("budget exhausted")), "{refs}");
    // Forced, the tune goes on against it (the reference run is reused, not redone).
    let out = h.ok(&["workflow", "tune", "--config", &file, "--force-reference"]);
    assert!(!out.contains("references: 1 of 1 to run") && out.contains("budget exhausted)"), "{out}");
    assert_eq!(trials(&h).len(), 1);
}
