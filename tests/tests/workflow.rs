//! Stage D end to end (issue "workflow"): experiment grids on the local pool
//! and on a real SLURM cluster, resuming after SIGKILL and scancel, bad input
//! refused by file and key, and the HTML gallery loaded in headless Chromium.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lh_tests::{repo, Home};

/// The smoke grid: every built-in sampler on one tiny target, two seeds.
fn smoke() -> String {
    repo().join("config/experiments/smoke_all_samplers.ron").display().to_string()
}

/// The rows of a CSV file, each a map from column to cell.
fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records().map(|rec| header.iter().cloned().zip(rec.unwrap().iter().map(String::from)).collect()).collect()
}

/// The run directories of experiment `exp` (hidden temporary ones left out).
fn run_dirs(h: &Home, exp: &str) -> Vec<PathBuf> {
    let dir = h.path().join("artifacts/experiments").join(exp).join("runs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Complete run directories by run key.
fn complete_by_key(h: &Home, exp: &str) -> BTreeMap<String, Vec<PathBuf>> {
    let mut m: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for d in run_dirs(h, exp) {
        let man = manifest(&d);
        if man["status"] == "complete" {
            m.entry(man["job_key"].as_str().unwrap().to_string()).or_default().push(d);
        }
    }
    m
}

/// Every run directory is whole: its manifest parses and its traces open with
/// at least the draws the manifest counts.
fn assert_runs_whole(h: &Home, exp: &str) {
    for d in run_dirs(h, exp) {
        let m = manifest(&d);
        let mut npz = lh_host::store::npz::Npz::open(&d.join("traces.npz")).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        let (shape, _) = npz.f64("loss").unwrap();
        assert_eq!(shape[0], m["chains"].as_u64().unwrap() as usize, "{}", d.display());
        assert!(shape[1] >= m["draws"].as_u64().unwrap() as usize, "{}: traces hold fewer draws than the manifest counts", d.display());
    }
}

fn llc_csv(h: &Home, exp: &str) -> Vec<BTreeMap<String, String>> {
    csv_rows(&h.path().join("artifacts/experiments").join(exp).join("llc_runs.csv"))
}

#[test]
fn smoke_grid_runs_every_sampler_and_a_rerun_skips_it() {
    let h = Home::new();
    let t = Instant::now();
    let out = h.ok(&["workflow", "sample", "--config", &smoke(), "--backend", "local"]);
    eprintln!("smoke grid, local, debug build: {:.1} s", t.elapsed().as_secs_f64());
    assert!(out.contains("14 runs: 14 complete, 0 incomplete, 0 failed, 0 not run"), "{out}");
    let rows = llc_csv(&h, "smoke_all_samplers");
    assert_eq!(rows.len(), 14);
    let plugins: BTreeSet<&str> = rows.iter().map(|r| r["plugin"].as_str()).collect();
    assert_eq!(plugins, BTreeSet::from(["hmc", "mams", "mclmc", "nuts", "sgld", "vi-flow", "vi-mfa"]));
    for r in &rows {
        assert_eq!(r["status"], "complete", "{r:?}");
        let llc: f64 = r["llc"].parse().unwrap();
        assert!(llc.is_finite() && llc > 0.0 && r["se"].parse::<f64>().unwrap() > 0.0, "{r:?}");
        assert!(r["grad_evals"].parse::<f64>().unwrap() > 0.0 && Path::new(&r["run_dir"]).join("traces.npz").exists(), "{r:?}");
        assert_eq!(r["key"].len(), 16);
    }
    // Markov samplers have an R̂, the variational ones none.
    assert!(rows.iter().all(|r| r["rhat"].is_empty() == r["plugin"].starts_with("vi-")), "{rows:?}");
    // Same seeds, same settings: a second sample finds everything done and runs nothing.
    let before = run_dirs(&h, "smoke_all_samplers");
    let out = h.ok(&["workflow", "sample", "--config", &smoke()]);
    assert!(out.contains("14 runs, 14 already done"), "{out}");
    assert_eq!(run_dirs(&h, "smoke_all_samplers"), before);
    assert_eq!(llc_csv(&h, "smoke_all_samplers"), rows);
    let plan = h.ok(&["workflow", "sample", "--config", &smoke(), "--dry-run"]);
    assert_eq!(plan.matches("done: skipped").count(), 14, "{plan}");
    assert!(plan.contains("14 runs: 14 done, 0 to run"), "{plan}");
    // A changed setting is a different run: only those runs are new.
    let exp = std::fs::read_to_string(smoke()).unwrap().replace("seeds: [1, 2]", "seeds: [1, 2, 3]");
    let plan = h.ok(&["workflow", "sample", "--config", &h.write("s3.ron", &exp), "--dry-run"]);
    assert!(plan.contains("21 runs: 14 done, 7 to run"), "{plan}");
    // status and collect read the same table back.
    let st = h.ok(&["workflow", "status", "--experiment", "smoke_all_samplers"]);
    assert!(st.contains("14 complete"), "{st}");
    h.ok(&["workflow", "collect", "--experiment", "smoke_all_samplers"]);
    assert_eq!(llc_csv(&h, "smoke_all_samplers"), rows);
}

/// A grid long enough to be killed in the middle: six HMC runs of a few seconds each, one at a time.
fn killable(h: &Home) -> String {
    let exp = r#"(name: "k", training: (steps: 300), chains: 2, seeds: [1, 2, 3, 4, 5, 6],
        targets: [(model: "small", data: "small", seed: 1)],
        samplers: [(plugin: "hmc", overrides: (draws: 2500, warmup: 200))])"#;
    h.write("k.ron", exp)
}

#[test]
fn sigkill_mid_grid_then_rerun_finishes_without_redoing_runs() {
    let h = Home::new();
    let exp = killable(&h);
    let args = ["workflow", "sample", "--config", &exp, "--jobs", "1", "--set", "checkpoint_every=0.2"];
    let mut child = h.command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Kill it (SIGKILL) once two runs are complete and a third has checkpointed draws.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "the grid never got two runs done");
        assert!(child.try_wait().unwrap().is_none(), "the workflow ended before it could be killed");
        let ms: Vec<serde_json::Value> = run_dirs(&h, "k")
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("manifest.json")).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect();
        let complete = ms.iter().filter(|m| m["status"] == "complete").count();
        if complete >= 2 && ms.iter().any(|m| m["status"] == "incomplete" && m["draws"].as_u64() > Some(0)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_runs_whole(&h, "k");
    let done_before = complete_by_key(&h, "k");
    let bytes_before: Vec<Vec<u8>> = done_before.values().flatten().map(|d| std::fs::read(d.join("manifest.json")).unwrap()).collect();
    assert!(done_before.len() >= 2 && done_before.len() < 6, "{done_before:?}");
    let plan = h.ok(&["workflow", "sample", "--config", &exp, "--dry-run"]);
    assert!(plan.contains("incomplete: redone"), "{plan}");
    // The rerun breaks the dead process's lock, redoes only what was not done, and finishes.
    let out = h.ok(&args);
    assert!(out.contains(&format!("6 runs, {} already done", done_before.len())), "{out}");
    assert!(out.contains("6 runs: 6 complete"), "{out}");
    let done_after = complete_by_key(&h, "k");
    assert_eq!(done_after.len(), 6);
    assert!(done_after.values().all(|dirs| dirs.len() == 1), "a run was done twice: {done_after:?}");
    for (key, dirs) in &done_before {
        assert_eq!(&done_after[key], dirs, "a finished run was redone");
    }
    let bytes_after: Vec<Vec<u8>> = done_before.values().flatten().map(|d| std::fs::read(d.join("manifest.json")).unwrap()).collect();
    assert_eq!(bytes_before, bytes_after, "a finished run was rewritten");
    assert_runs_whole(&h, "k");
    let ls = h.ok(&["targets", "ls"]);
    assert!(!ls.contains("CORRUPTED"), "{ls}");
    assert_eq!(h.tmp_leftovers(), 0);
    let hidden = std::fs::read_dir(h.path().join("artifacts/experiments/k/runs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(hidden, 0, "a half-made run directory was left");
}

#[test]
fn a_failing_run_is_reported_and_the_others_go_on() {
    let h = Home::new();
    let bad = lh_tests::misbehave_plugin().display().to_string();
    let exp = format!(
        r#"(name: "f", training: (steps: 100), chains: 2, seeds: [1],
        targets: [(model: "small", data: "small", seed: 1)],
        samplers: [(plugin: "{bad}", overrides: (mode: "panic"), tag: "boom"), (plugin: "hmc", overrides: (draws: 100, warmup: 50))])"#
    );
    let path = h.write("f.ron", &exp);
    let r = h.run(&["workflow", "sample", "--config", &path]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("FAILED: boom seed 1") && r.stdout.contains("2 runs: 1 complete, 0 incomplete, 1 failed"), "{}", r.stdout);
    let rows = llc_csv(&h, "f");
    assert_eq!((rows[0]["status"].as_str(), rows[0]["tag"].as_str()), ("failed", "boom"));
    assert!(rows[0]["error"].contains("panicked"), "{:?}", rows[0]);
    assert_eq!(rows[1]["status"], "complete");
    // The failed run is tried again, the finished one is not.
    let r = h.run(&["workflow", "sample", "--config", &path]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("2 runs, 1 already done"), "{}", r.stdout);
    assert_eq!(complete_by_key(&h, "f").len(), 1);
}

#[test]
fn a_restricted_sampler_is_one_run_per_layer_with_its_own_key() {
    let h = Home::new();
    let exp = r#"(name: "r", training: (steps: 100), chains: 2, seeds: [1],
        targets: [(model: "small", data: "small", seed: 1)],
        samplers: [(plugin: "hmc", overrides: (draws: 60, warmup: 30)),
                   (plugin: "hmc", overrides: (draws: 60, warmup: 30), restrict: "each-layer")])"#;
    let path = h.write("r.ron", exp);
    let out = h.ok(&["workflow", "sample", "--config", &path]);
    assert!(out.contains("4 runs: 4 complete"), "{out}");
    let rows = llc_csv(&h, "r");
    let restricts: Vec<&str> = rows.iter().map(|r| r["restrict"].as_str()).collect();
    assert_eq!(restricts, ["", "layer:1", "layer:2", "layer:3"]);
    assert_eq!(rows.iter().map(|r| &r["key"]).collect::<BTreeSet<_>>().len(), 4);
    for r in &rows[1..] {
        let m = manifest(Path::new(&r["run_dir"]));
        assert_eq!(m["restriction"]["spec"], r["restrict"].as_str());
    }
    assert!(out.contains("hmc[layer:2]"), "{out}");
    assert!(h.ok(&["workflow", "sample", "--config", &path]).contains("4 runs, 4 already done"));
}

#[test]
fn an_entry_with_until_and_budget_stops_by_its_rule_and_says_so() {
    let h = Home::new();
    // The same HMC three ways: no rule; run until R̂ ≤ 1.1 and bulk ESS ≥ 50 (the tiny
    // target gets there in a few hundred draws, far below the budget); a budget only.
    let exp = r#"(name: "u", training: (steps: 100), chains: 2, seeds: [1],
        targets: [(model: "small", data: "small", seed: 1)],
        samplers: [(plugin: "hmc", overrides: (draws: 60, warmup: 30)),
                   (plugin: "hmc", overrides: (warmup: 30), tag: "until", until: "rhat=1.1,ess=50", budget: "grads=200000"),
                   (plugin: "hmc", overrides: (warmup: 30), tag: "budget", budget: "grads=1500")])"#;
    let path = h.write("u.ron", exp);
    let out = h.ok(&["workflow", "sample", "--config", &path]);
    assert!(out.contains("3 runs: 3 complete"), "{out}");
    let rows = llc_csv(&h, "u");
    let stops: Vec<&str> = rows.iter().map(|r| r["stop"].as_str()).collect();
    assert_eq!(stops, ["", "converged", "budget exhausted"], "{rows:?}");
    let m = manifest(Path::new(&rows[1]["run_dir"]));
    assert_eq!((m["stop"]["until"].as_str(), m["stop"]["budget"].as_str()), (Some("rhat=1.1,ess=50"), Some("grads=200000")), "{m}");
    assert!(m["stop"]["rhat"].as_f64().unwrap() <= 1.1 && m["stop"]["ess_bulk"].as_f64().unwrap() >= 50.0, "{m}");
    // `until` raises the plugin's `draws` (as `sample --until`), so the rule ends the run, not the draw count.
    assert!(m["config"].as_str().unwrap().contains("draws: 1000000,"), "{m}");
    assert!(manifest(Path::new(&rows[2]["run_dir"]))["config"].as_str().unwrap().contains("draws: 1000,"));
    let grads = |r: &BTreeMap<String, String>| r["grad_evals"].parse::<f64>().unwrap();
    assert!(grads(&rows[1]) < 200_000.0, "{rows:?}");
    assert!((1500.0..1600.0).contains(&grads(&rows[2])), "the budget ends the run within a draw of it: {rows:?}");
    // The rule is part of the run key: dropping it from an entry makes a new run.
    assert_eq!(rows.iter().map(|r| &r["key"]).collect::<BTreeSet<_>>().len(), 3);
    let plain = h.write("u.ron", &exp.replace(r#", budget: "grads=1500""#, ""));
    let dry = h.ok(&["workflow", "sample", "--config", &plain, "--dry-run"]);
    assert!(dry.contains("3 runs: 2 done, 1 to run"), "{dry}");
}

#[test]
fn racing_workflows_build_a_shared_target_once() {
    let h = Home::new();
    let exp = |name: &str| {
        format!(
            r#"(name: "{name}", chains: 1, seeds: [1],
            targets: [(model: "small", data: "small", seed: 9, overrides: (training: (steps: 4000, early_stop_tol: 0.0))),
                      (model: "small", data: "small", seed: 9, overrides: (training: (steps: 4000, early_stop_tol: 0.0)))],
            samplers: [(plugin: "hmc", overrides: (draws: 20, warmup: 10))])"#
        )
    };
    let (a, b) = (h.write("a.ron", &exp("a")), h.write("b.ron", &exp("b")));
    let spawn = |p: &str| h.command(&["workflow", "sample", "--config", p, "--jobs", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (ca, cb) = (spawn(&a), spawn(&b));
    let (oa, ob) = (ca.wait_with_output().unwrap(), cb.wait_with_output().unwrap());
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(oa.status.success() && ob.status.success(), "{}{}{}", text(&oa), text(&ob), String::from_utf8_lossy(&ob.stderr));
    // Two identical entries are one target; two workflows racing for it train it once.
    assert!(text(&oa).contains("1 target(s), 1 runs"), "{}", text(&oa));
    let built = [&oa, &ob].iter().map(|o| text(o).matches(": built in").count()).sum::<usize>();
    assert_eq!(built, 1, "{}\n{}", text(&oa), text(&ob));
    assert_eq!(h.objects().len(), 1);
}

#[test]
fn bad_grids_and_settings_are_refused_by_file_and_key() {
    let h = Home::new();
    let grid = |samplers: &str, extra: &str| format!(r#"(name: "b", targets: [(model: "small", data: "small", seed: 1)], samplers: [{samplers}]{extra})"#);
    let cases = [
        ("unknown_key.ron", grid(r#"(plugin: "sgld", overrides: (draws: 10))"#, ""), vec!["samplers[0].overrides", "unknown key `draws` for plugin `sgld`"]),
        ("no_plugin.ron", grid(r#"(plugin: "nosuch")"#, ""), vec!["samplers[0]", "no plugin `nosuch`"]),
        ("dup.ron", grid(r#"(plugin: "hmc"), (plugin: "hmc")"#, ""), vec!["samplers[1] has the plugin, tag and restriction of samplers[0]"]),
        ("tag.ron", grid(r#"(plugin: "hmc", tag: "a/b")"#, ""), vec!["samplers[0].tag"]),
        ("seeds.ron", grid(r#"(plugin: "hmc")"#, ", seeds: [1, 1]"), vec!["seeds[1] = 1 is given twice"]),
        ("field.ron", grid(r#"(plugin: "hmc", name: "hmc")"#, ""), vec!["field.ron", "Unexpected field named `name`"]),
        ("part.ron", grid(r#"(plugin: "hmc")"#, r#", workflow: (partition: "debug; rm -rf ~")"#), vec!["part.ron", "workflow.partition"]),
        ("time.ron", grid(r#"(plugin: "hmc")"#, ", workflow: (walltime: \"1:00\\n$(id)\")"), vec!["time.ron", "workflow.walltime", "\\n$(id)"]),
        ("empty.ron", grid("", ""), vec!["`samplers` is empty"]),
        ("until.ron", grid(r#"(plugin: "hmc", until: "rhat=1.01")"#, ""), vec!["until.ron", "samplers[0] (`hmc`)", "`until` needs a `budget`"]),
        ("budget.ron", grid(r#"(plugin: "hmc", until: "ess=100", budget: "lots")"#, ""), vec!["budget.ron", "samplers[0] (`hmc`)", "`budget`"]),
        ("vi.ron", grid(r#"(plugin: "vi-mfa", until: "ess=100", budget: "grads=100")"#, ""), vec!["vi.ron", "samplers[0] (`vi-mfa`)", "needs Markov chains"]),
    ];
    for (name, text, wants) in &cases {
        let path = h.write(name, text);
        for backend in ["local", "slurm"] {
            let err = h.fails(&["workflow", "sample", "--config", &path, "--backend", backend, "--dry-run"]);
            for w in wants {
                assert!(err.contains(w), "{name} ({backend}): {err}");
            }
        }
    }
    let ok = h.write("ok.ron", &grid(r#"(plugin: "hmc", overrides: (draws: 10, warmup: 5))"#, ""));
    let set = |kv: &str| h.fails(&["workflow", "sample", "--config", &ok, "--backend", "slurm", "--dry-run", "--set", kv]);
    for (kv, key) in [
        ("partition=debug;reboot", "workflow.partition"),
        ("partition=$(reboot)", "workflow.partition"),
        ("partition=a\nb", "workflow.partition"),
        ("walltime=10:00`id`", "workflow.walltime"),
        ("mem=4G;id", "workflow.mem"),
    ] {
        let err = set(kv);
        assert!(err.contains(&format!("--set {}", kv.split('=').next().unwrap())) && err.contains(key), "{kv}: {err}");
    }
    assert!(set("walltme=1").contains("--set walltme: unknown workflow setting"));
    assert!(set("threads=0").contains("workflow.threads"));
    let err = h.fails(&["workflow", "sample", "--config", &ok, "--jobs", "3"]);
    assert!(err.contains("exceeds the 2 cores"), "{err}");
    assert!(h.fails(&["workflow", "sample", "--config", &ok, "--backend", "slurm", "--jobs", "2"]).contains("--set throttle"));
    assert!(h.fails(&["workflow", "status", "--experiment", "nope"]).contains("no experiment `nope`"));
    // Good values reach sbatch as separate arguments, and the job script holds only quoted paths.
    let out = h.ok(&[
        "workflow",
        "sample",
        "--config",
        &ok,
        "--backend",
        "slurm",
        "--dry-run",
        "--set",
        "partition=debug",
        "--set",
        "walltime=00:05:00",
        "--set",
        "throttle=3",
        "--set",
        "mem=2G",
    ]);
    for want in [
        "--partition=debug",
        "--time=00:05:00",
        "--array=0-0%3",
        "--mem=2G",
        "--cpus-per-task=1",
        "--dependency=afterok:",
        "__workflow-task --plan",
        "--phase runs --offset 0",
    ] {
        assert!(out.contains(want), "{want}:\n{out}");
    }
    let script: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("job script")).skip(1).filter(|l| !l.is_empty()).collect();
    assert_eq!(script.len(), 3, "{script:?}");
    assert!(script[2].starts_with("exec ") && script[2].ends_with("\"$@\""), "{script:?}");
}

/// The Chromium binary, or None (skipped) unless `LH_REQUIRE_CHROMIUM` is set (CI sets it).
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.exists()));
    if found.is_none() {
        assert!(std::env::var("LH_REQUIRE_CHROMIUM").is_err(), "LH_REQUIRE_CHROMIUM is set but no chromium is on PATH");
        eprintln!("skipped: chromium not found");
    }
    found
}

/// Headless Chromium on `page` with `args`; its stdout.
fn headless(chrome: &Path, page: &Path, args: &[&str], profile: &Path) -> String {
    let out = Command::new(chrome)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--allow-file-access-from-files", "--virtual-time-budget=15000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .env("HOME", profile)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn promote_writes_a_gallery_that_loads_in_chromium() {
    let h = Home::new();
    let exp = std::fs::read_to_string(smoke()).unwrap().replace("seeds: [1, 2]", "seeds: [1]");
    let path = h.write("g.ron", &exp);
    let out = h.ok(&["workflow", "sample", "--config", &path, "--promote"]);
    let gallery = h.path().join("artifacts/experiments/smoke_all_samplers/gallery");
    assert!(out.contains(&format!("gallery: {} (14 figures)", gallery.join("index.html").display())), "{out}");
    let html = std::fs::read_to_string(gallery.join("index.html")).unwrap();
    assert_eq!(html.matches("<img ").count(), 14);
    for r in llc_csv(&h, "smoke_all_samplers") {
        // Each run's figures were made (Stage C) and copied; the page links its run directory.
        let dir = PathBuf::from(&r["run_dir"]);
        assert!(dir.join("analysis.json").exists() && dir.join("diagnostics/trace.png").exists());
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(gallery.join("img").join(&name).join("trace.png").exists());
        assert!(html.contains(&format!("href=\"../runs/{name}\"")), "{name}");
        assert!(html.contains(&format!("{:.4}", r["llc"].parse::<f64>().unwrap())));
    }
    assert!(std::fs::read_to_string(gallery.join("gallery.md")).unwrap().contains("<img src=\"img/"));
    // `promote gallery` / `single` on the runs folder, elsewhere.
    let runs = h.path().join("artifacts/experiments/smoke_all_samplers/runs");
    let other = h.path().join("docs/assets");
    let snippet = h.path().join("docs/gallery_smoke.md");
    let args = [
        "promote",
        "gallery",
        "--runs-root",
        runs.to_str().unwrap(),
        "--samplers",
        "hmc,sgld",
        "--outdir",
        other.to_str().unwrap(),
        "--snippet-out",
        snippet.to_str().unwrap(),
    ];
    let out = h.ok(&args);
    assert!(out.contains("(4 figures)"), "{out}");
    assert!(std::fs::read_to_string(&snippet).unwrap().contains("<img src=\"assets/img/"), "the snippet's links are relative to it");
    let out = h.ok(&[
        "promote",
        "single",
        "--runs-root",
        runs.to_str().unwrap(),
        "--samplers",
        "mclmc",
        "--outdir",
        other.to_str().unwrap(),
        "--plot-name",
        "rank.png",
    ]);
    assert!(out.contains("mclmc.png") && other.join("mclmc.png").exists(), "{out}");
    let err = h.fails(&[
        "promote",
        "single",
        "--runs-root",
        runs.to_str().unwrap(),
        "--samplers",
        "vi-mfa",
        "--outdir",
        other.to_str().unwrap(),
        "--plot-name",
        "rank.png",
    ]);
    assert!(err.contains("no rank.png"), "{err}");
    let err = h.fails(&["promote", "gallery", "--runs-root", runs.to_str().unwrap(), "--samplers", "nosuch", "--outdir", other.to_str().unwrap()]);
    assert!(err.contains("no complete run of `nosuch`"), "{err}");
    // The gallery in a real browser, from the file system: every image loaded.
    let Some(chrome) = chromium() else { return };
    let profile = h.path().join("chromium");
    let dom = headless(&chrome, &gallery.join("index.html"), &["--dump-dom"], &profile);
    assert!(
        dom.contains("id=\"image-check\" class=\"ok\">all 14 images loaded<"),
        "{}",
        dom.lines().find(|l| l.contains("image-check")).unwrap_or(&dom[..dom.len().min(2000)])
    );
    let shot_dir = lh_tests::target_dir().join("test-output");
    std::fs::create_dir_all(&shot_dir).unwrap();
    let shot = shot_dir.join("workflow-gallery.png");
    headless(&chrome, &gallery.join("index.html"), &[&format!("--screenshot={}", shot.display()), "--window-size=1400,2200", "--hide-scrollbars"], &profile);
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "{}", shot.display());
    eprintln!("gallery screenshot: {}", shot.display());
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

/// Waits until none of `jobs` is queued.
fn wait_for_queue(jobs: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let out = Command::new("squeue").args(["-h", "-j", &jobs.join(",")]).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "SLURM jobs {jobs:?} never finished");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The columns two backends must agree on.
fn comparable(rows: &[BTreeMap<String, String>]) -> Vec<Vec<String>> {
    let mut v: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            ["target", "plugin", "tag", "seed", "config_hash", "key", "llc", "se", "rhat", "ess_bulk", "grad_evals", "status"]
                .iter()
                .map(|c| r[*c].clone())
                .collect()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn slurm_grid_matches_local_and_survives_scancel() {
    if !slurm_up() {
        return;
    }
    let local = Home::new();
    local.ok(&["workflow", "sample", "--config", &smoke(), "--set", "threads=1"]);
    let h = Home::new();
    let base = ["workflow", "sample", "--config", &smoke(), "--backend", "slurm", "--set", "threads=1", "--set", "poll=0.3"];
    let t = Instant::now();
    let out = h.ok(&[&base[..], &["--no-wait", "--set", "throttle=1"]].concat());
    let runs_job =
        out.lines().find_map(|l| l.split("runs array ").nth(1)).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("{out}")).to_string();
    let targets_job =
        out.lines().find_map(|l| l.split("targets array ").nth(1)).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("{out}")).to_string();
    assert!(out.contains("(14 tasks)"), "{out}");
    // Once a run is done, cancel the last three tasks (still pending: one runs at a time).
    let deadline = Instant::now() + Duration::from_secs(300);
    while complete_by_key(&h, "smoke_all_samplers").is_empty() {
        assert!(Instant::now() < deadline, "no SLURM task finished");
        std::thread::sleep(Duration::from_millis(200));
    }
    let pending = Command::new("squeue").args(["-h", "-r", "-t", "PD", "-o", "%i", "-j", &runs_job]).output().unwrap();
    let mut cancel: Vec<String> = String::from_utf8_lossy(&pending.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    cancel.sort_by_key(|id| id.rsplit('_').next().and_then(|k| k.parse::<usize>().ok()));
    let cancel = cancel.split_off(cancel.len().saturating_sub(3));
    eprintln!("cancelling {cancel:?} after {:.1} s", t.elapsed().as_secs_f64());
    assert!(!cancel.is_empty(), "no task left pending to cancel");
    assert!(Command::new("scancel").args(&cancel).status().unwrap().success());
    wait_for_queue(&[targets_job.clone(), runs_job.clone()]);
    let n = cancel.len();
    let st = h.ok(&["workflow", "status", "--experiment", "smoke_all_samplers"]);
    assert!(st.contains(&format!("{n} without a SLURM record")) && st.contains("none of its jobs is queued"), "{st}");
    let r = h.run(&["workflow", "collect", "--experiment", "smoke_all_samplers"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains(&format!("{} complete, 0 incomplete, {n} failed", 14 - n)), "{}", r.stdout);
    assert!(r.stdout.contains("never ran to the end"), "{}", r.stdout);
    let done_before = complete_by_key(&h, "smoke_all_samplers");
    // A second sample submits only the three, waits for them, and agrees with the local pool.
    let out = h.ok(&base);
    eprintln!("smoke grid via SLURM (throttle 1, with a resubmission): {:.1} s", t.elapsed().as_secs_f64());
    assert!(out.contains(&format!("{} already done", 14 - n)) && out.contains(&format!("({n} task")), "{out}");
    assert!(out.contains("14 runs: 14 complete"), "{out}");
    let done_after = complete_by_key(&h, "smoke_all_samplers");
    assert!(done_after.values().all(|d| d.len() == 1) && done_after.len() == 14, "{done_after:?}");
    for (k, d) in &done_before {
        assert_eq!(&done_after[k], d);
    }
    assert_eq!(comparable(&llc_csv(&h, "smoke_all_samplers")), comparable(&llc_csv(&local, "smoke_all_samplers")));
    assert_runs_whole(&h, "smoke_all_samplers");
    // The task logs are where the submission says.
    let logs = h.path().join("artifacts/experiments/smoke_all_samplers/workflow/slurm");
    let n_logs: usize =
        std::fs::read_dir(&logs).unwrap().flatten().filter(|e| e.path().is_dir()).map(|e| std::fs::read_dir(e.path().join("logs")).unwrap().count()).sum();
    assert!(n_logs >= 14, "{n_logs} logs");
}

#[test]
fn slurm_detects_a_dependency_that_can_never_be_satisfied() {
    if !slurm_up() {
        return;
    }
    let h = Home::new();
    let exp = r#"(name: "dep", chains: 1, seeds: [1, 2],
        targets: [(model: "small", data: "small", seed: 3, overrides: (training: (lr: 1e30, steps: 300)))],
        samplers: [(plugin: "hmc", overrides: (draws: 20, warmup: 10))])"#;
    let r = h.run(&["workflow", "sample", "--config", &h.write("dep.ron", exp), "--backend", "slurm", "--set", "poll=0.3"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("can never be satisfied"), "{}", r.stdout);
    assert!(r.stdout.contains("2 runs: 0 complete, 0 incomplete, 2 failed"), "{}", r.stdout);
    let rows = llc_csv(&h, "dep");
    assert!(rows.iter().all(|r| r["error"].contains("its targets array failed")), "{rows:?}");
    // The target's own task says why, in its log.
    let slurm = h.path().join("artifacts/experiments/dep/workflow/slurm");
    let log = std::fs::read_dir(&slurm)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|e| std::fs::read_dir(e.path().join("logs")).unwrap().flatten())
        .find(|e| e.file_name().to_string_lossy().starts_with("targets-"))
        .unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("training diverged"), "{text}");
}

#[test]
fn slurm_time_limit_kills_a_run_that_is_checkpointed_and_redone() {
    if !slurm_up() {
        return;
    }
    let h = Home::new();
    // A quick run and one far too long for a one-minute walltime: SLURM sends the
    // long one SIGTERM at its time limit (SIGKILL 5 s later, KillWait in
    // .ci/local-slurm); it stops after the current draw and keeps its draws.
    // Its trajectories are long (100 steps), so that its trace stays short: the
    // final write and analysis of a minute of 10-step draws (≈ 30 000 per chain)
    // took ≈ 4 s in the debug build, and once more than KillWait.
    let exp = r#"(name: "tl", training: (steps: 100), chains: 2, seeds: [1],
        targets: [(model: "small", data: "small", seed: 1)],
        samplers: [(plugin: "hmc", overrides: (draws: 50, warmup: 20)),
                   (plugin: "hmc", overrides: (draws: 1000000, warmup: 20, num_integration_steps: 100), tag: "long")])"#;
    let path = h.write("tl.ron", exp);
    let t = Instant::now();
    let r = h.run(&["workflow", "sample", "--config", &path, "--backend", "slurm", "--set", "walltime=00:01:00", "--set", "poll=0.5"]);
    eprintln!("time-limited SLURM grid: {:.1} s", t.elapsed().as_secs_f64());
    // Cut short is not failed: the grid exits 0 and says so; the next workflow redoes it.
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("2 runs: 1 complete, 1 incomplete, 0 failed"), "{}", r.stdout);
    let rows = llc_csv(&h, "tl");
    assert_eq!(rows[1]["tag"], "long");
    assert_eq!(rows[1]["status"], "incomplete", "{rows:?}");
    let m = manifest(Path::new(&rows[1]["run_dir"]));
    assert_eq!(m["status"], "incomplete", "{m}");
    assert!(m["draws"].as_u64().unwrap() > 20, "the draws before the time limit are kept: {m}");
    assert_runs_whole(&h, "tl");
    // The next workflow skips the finished run and redoes the cut one.
    let dry = h.ok(&["workflow", "sample", "--config", &path, "--backend", "slurm", "--dry-run"]);
    let line = |key: &str| dry.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or_else(|| panic!("{dry}")).to_string();
    assert!(line(&rows[0]["key"]).contains("done: skipped"), "{dry}");
    assert!(line(&rows[1]["key"]).contains("incomplete: redone"), "{dry}");
}
