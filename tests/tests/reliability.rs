//! Hostile inputs and killed runs (issue "reliability"): nothing crashes,
//! nothing is lost, every bad input is refused by name. Each test drives the
//! real binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lh_host::store::npz::{to_bytes, Array, Packing};
use lh_tests::{first_token, have_numpy, python, tiny_experiment, Home};

/// The tiny target of `tiny_experiment(seed)`, built in `h`.
fn tiny(h: &Home, seed: u64) -> String {
    first_token(&h.ok(&["build", "--config", &h.write(&format!("t{seed}.ron"), &tiny_experiment(seed, ""))]))
}

/// The run directories of experiment `exp` (hidden temporary ones left out).
fn runs(h: &Home, exp: &str) -> Vec<PathBuf> {
    let dir = h.path().join("artifacts/experiments").join(exp).join("runs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Item 1: sizes are checked against the machine's memory before anything is
/// allocated, and the error names the key. Item 2: parameter counts cannot wrap.
#[test]
fn sizes_too_large_for_the_machine_are_refused_by_key() {
    let h = Home::new();
    let build = |name: &str, overrides: &str| h.fails(&["build", "--config", &h.write(name, &tiny_experiment(1, overrides))]);
    let err = build("n.ron", ", data: (n: 1000000000000)");
    assert!(err.contains("data.n = 1000000000000") && err.contains("of memory") && err.contains("available"), "{err}");
    let err = build("w.ron", ", model: (widths: [1000000000, 1000000000])");
    assert!(err.contains("model.widths") && err.contains("of memory"), "{err}");
    // 261 · 7785507955063727104 wraps a u64 to D = 21 without checked arithmetic.
    let err = build("wrap.ron", ", model: (widths: [261, 7785507955063727104])");
    assert!(err.contains("more parameters than a usize counts"), "{err}");
    let err = h.fails(&["bench", "--preset", "small", "--n", "1000000000000", "--backend", "cpu"]);
    assert!(err.contains("bench --n 1000000000000") && err.contains("of memory"), "{err}");
    let id = tiny(&h, 1);
    for set in ["draws=1000000000000", "steps=1000000000000"] {
        let plugin = if set.starts_with("steps") { "sgld" } else { "hmc" };
        let err = h.fails(&["sample", "--target", &id, "--plugin", plugin, "--set", set]);
        assert!(err.contains("announced") && err.contains("`draws`/`steps`") && err.contains("of memory"), "{plugin} {set}: {err}");
    }
    assert!(h.objects().len() == 1, "only the tiny target was stored");
}

/// Item 3: a library that crashes while it loads (a truncated copy faults with
/// SIGBUS; a constructor that calls abort()) is a one-line error naming it, in
/// `sample`, `run` and `plugins`; a zeroed file is refused with the loader's
/// whole reason; one bad file does not hide the good ones.
#[test]
fn plugin_libraries_that_crash_while_loading_are_named() {
    let h = Home::new();
    let id = tiny(&h, 1);
    let dir = h.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let hmc = lh_tests::binary().parent().unwrap().join(format!("{}lh_sampler_hmc{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    let bytes = std::fs::read(&hmc).unwrap();
    let truncated = dir.join("liblh_sampler_truncated.so");
    std::fs::write(&truncated, &bytes[..65536]).unwrap();
    let c = dir.join("abort.c");
    std::fs::write(&c, "#include <stdlib.h>\n__attribute__((constructor)) static void boom(void) { abort(); }\n").unwrap();
    let aborts = dir.join("liblh_sampler_aborts.so");
    let cc = std::process::Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&aborts).arg(&c).status().expect("cc");
    assert!(cc.success());
    for (lib, why) in [(&truncated, "SIGBUS"), (&aborts, "SIGABRT")] {
        let lib = lib.to_str().unwrap();
        let err = h.fails(&["sample", "--target", &id, "--plugin", lib]);
        assert!(err.contains(lib) && err.contains("crashed a probe process") && err.contains(why), "{err}");
        let err = h.fails(&["run", "--target", &id, "--plugin", lib]);
        assert!(err.contains(lib) && err.contains(why), "{err}");
    }
    // A zeroed library is refused by the loader: the whole reason, on one line.
    let zeroed = dir.join("liblh_sampler_zeroed.so");
    std::fs::write(&zeroed, vec![0u8; 65536]).unwrap();
    let err = h.fails(&["sample", "--target", &id, "--plugin", zeroed.to_str().unwrap()]);
    assert!(err.contains("liblh_sampler_zeroed.so: cannot open the library") && err.contains("invalid ELF header"), "{err}");
    let r = h.run_env(&["plugins"], &[("LH_PLUGIN_PATH", dir.to_str().unwrap())]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("(unloadable)") && r.stdout.contains("liblh_sampler_aborts.so"), "{}", r.stdout);
    assert!(r.stdout.contains("hmc 0.") && r.stdout.contains("mclmc 0."), "the good plugins are still listed:\n{}", r.stdout);
    // The verdicts are cached by sha256.
    assert!(std::fs::read_dir(h.path().join("artifacts/cache/plugin-probes")).unwrap().count() >= 2);
}

/// Item 4: a closed stdout ends a command quietly, and the work it was doing is
/// not cut short: a build of several targets builds them all.
#[test]
fn a_closed_pipe_ends_quietly_and_cuts_no_work_short() {
    let h = Home::new();
    let exp = "(name: \"p\", training: (steps: 100), targets: [(model: \"small\", data: \"small\", seed: 1), (model: \"small\", data: \"small\", seed: 2), (model: \"small\", data: \"small\", seed: 3)])";
    let path = h.write("p.ron", exp);
    let mut child = h.command(&["build", "--config", &path]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    // The reader is dropped here, as `| head -1` closes the pipe.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).trim().is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(first.starts_with("tgt_"), "{first}");
    assert_eq!(h.objects().len(), 3, "all three targets were built");
    let mut child = h.command(&["targets", "ls"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// An npz of a 3 → [4] → 2 tanh network with biases (D = 26), `widths` as given,
/// with `poison` applied to the named array's values first.
fn network(widths: &[i64], poison: Option<(&str, usize, f64)>) -> Vec<u8> {
    let n = 40;
    let mut x: Vec<f64> = (0..n * 3).map(|i| ((i * 37 % 17) as f64 - 8.0) / 5.0).collect();
    let mut y: Vec<f64> = (0..n * 2).map(|i| ((i * 13 % 11) as f64 - 5.0) / 7.0).collect();
    let mut w: Vec<f64> = (0..26).map(|i| ((i * 7 % 19) as f64 - 9.0) / 20.0).collect();
    if let Some((name, at, v)) = poison {
        match name {
            "X" => x[at] = v,
            "Y" => y[at] = v,
            _ => w[at] = v,
        }
    }
    to_bytes(
        &[
            ("X", Array::F64(&[n, 3], &x)),
            ("Y", Array::F64(&[n, 2], &y)),
            ("w_star", Array::F64(&[26], &w)),
            ("widths", Array::I64(&[widths.len()], widths)),
            ("activation", Array::Str("tanh")),
            ("bias", Array::I64(&[], &[1])),
        ],
        Packing::Deflated,
    )
    .unwrap()
}

/// Items 5 and 16: a NaN or ±inf in any imported array is refused by array and
/// index; `widths` may be every layer size, giving the same id as the hidden
/// form, and a `widths` that fits neither reading names both D's.
#[test]
fn imports_refuse_non_finite_arrays_and_read_both_widths_forms() {
    let h = Home::new();
    let import = |name: &str, bytes: Vec<u8>| {
        let p = h.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        h.run(&["import", "--npz", p.to_str().unwrap()])
    };
    for (array, at, v, index) in [("X", 7, f64::NAN, "[2, 1]"), ("Y", 3, f64::INFINITY, "[1, 1]"), ("w_star", 25, f64::NEG_INFINITY, "[25]")] {
        let r = import("bad.npz", network(&[4], Some((array, at, v))));
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains(&format!("array `{array}` holds")) && r.stderr.contains(index), "{array}: {}", r.stderr);
    }
    assert!(h.objects().is_empty());
    let hidden = import("hidden.npz", network(&[4], None));
    let all = import("all.npz", network(&[3, 4, 2], None));
    assert_eq!(hidden.code, 0, "{}", hidden.stderr);
    assert_eq!(first_token(&hidden.stdout), first_token(&all.stdout), "{}", all.stderr);
    let r = import("neither.npz", network(&[3, 5, 2], None));
    assert!(r.stderr.contains("w_star has 26 values") && r.stderr.contains("D = 50") && r.stderr.contains("D = 32"), "{}", r.stderr);
}

/// Item 6: a Fortran-ordered array (what numpy saves for a transposed array)
/// is read in the right order: the same network saved either way is the same target.
#[test]
fn fortran_ordered_arrays_are_read_correctly() {
    if !have_numpy() {
        return;
    }
    let h = Home::new();
    let c = h.path().join("c.npz");
    std::fs::write(&c, network(&[4], None)).unwrap();
    let f = h.path().join("f.npz");
    python(&format!(
        "import numpy as np\nz = np.load({c:?})\nd = {{k: z[k] for k in z.files}}\nd['X'] = np.asfortranarray(d['X'])\nd['Y'] = np.asfortranarray(d['Y'])\nassert d['X'].flags.f_contiguous\nnp.savez({f:?}, **d)\n",
        c = c.to_str().unwrap(),
        f = f.to_str().unwrap()
    ));
    let a = h.ok(&["import", "--npz", c.to_str().unwrap()]);
    let b = h.ok(&["import", "--npz", f.to_str().unwrap()]);
    assert_eq!(first_token(&a), first_token(&b), "{a}\n{b}");
    assert_eq!(a.split("L0=").nth(1), b.split("L0=").nth(1));
}

/// Item 7: an edit of any byte of a stored meta.json is detected on load (γ,
/// which sampling uses, and a byte of mere layout alike).
#[test]
fn edited_metadata_is_detected() {
    let h = Home::new();
    let id = tiny(&h, 1);
    let meta = h.objects()[0].join("meta.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    for (what, edited) in [("γ", text.replace("\"gamma\": 1.0", "\"gamma\": 100.0")), ("a space", text.replacen("{\n", "{ \n", 1))] {
        assert_ne!(edited, text, "{what}");
        std::fs::write(&meta, &edited).unwrap();
        let err = h.fails(&["sample", "--target", &id, "--plugin", "hmc", "--set", "draws=10", "--set", "warmup=10"]);
        assert!(err.contains("meta.json: corrupted"), "{what}: {err}");
    }
    std::fs::write(&meta, &text).unwrap();
    h.ok(&["sample", "--target", &id, "--plugin", "hmc", "--set", "draws=10", "--set", "warmup=10"]);
}

/// Items 8 and 13: bad names and settings are refused before any work.
#[test]
fn bad_names_and_settings_are_refused() {
    let h = Home::new();
    let id = tiny(&h, 1);
    let err = h.fails(&["sample", "--target", &id, "--plugin", "hmc", "--experiment", "../../x"]);
    assert!(err.contains("experiment name `../../x`"), "{err}");
    assert!(!h.path().join("x").exists() && !h.path().join("artifacts/x").exists());
    let err = h.fails(&["build", "--config", &h.write("e.ron", &tiny_experiment(1, "")), "--experiment", ".."]);
    assert!(err.contains("experiment name `..`"), "{err}");
    let err = h.fails(&["build", "--config", &h.write("d.ron", &tiny_experiment(1, ", model: (depth: 3)"))]);
    assert!(err.contains("model.depth = 3 contradicts model.widths [4, 4]"), "{err}");
    let err = h.fails(&["build", "--config", &h.write("noise.ron", &tiny_experiment(1, ", data: (noise: gauss(scale: inf))"))]);
    assert!(err.contains("data.noise") && !err.contains("training.lr"), "{err}");
    for v in ["abc", "0"] {
        let r = h.run_env(&["build", "--config", &h.write("e.ron", &tiny_experiment(1, ""))], &[("LH_THREADS", v)]);
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains(&format!("LH_THREADS=\"{v}\"")), "{}", r.stderr);
    }
    let r = h.run(&["build", "--config", &h.write("e.ron", &tiny_experiment(1, "")), "--threads", "0"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a thread count"), "{}", r.stderr);
    let r = h.run_env(&["targets", "ls"], &[("LH_HOME", "")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("LH_HOME is set but empty"), "{}", r.stderr);
}

/// Item 9: the same target id gives the same w* and data on any thread count.
#[test]
fn targets_do_not_depend_on_the_thread_count() {
    let payloads = |threads: &str| {
        let h = Home::new();
        let r = h.run_env(&["build", "--config", &h.write("e.ron", &tiny_experiment(3, ""))], &[("LH_THREADS", threads)]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let obj = h.objects()[0].clone();
        let names = ["config.json", "data.npz", "params.npz", "training.csv"];
        (obj.file_name().unwrap().to_owned(), names.map(|n| std::fs::read(obj.join("payload").join(n)).unwrap()))
    };
    let one = payloads("1");
    assert!(one == payloads("2") && one == payloads("3"), "w* or data differ between 1, 2 and 3 threads");
}

/// Items 10 and 11: a running sample checkpoints; SIGTERM stops it like
/// Ctrl-C (the current draw finished, the traces written, status incomplete,
/// exit 143); and `kill -9` at any moment leaves either no run directory or
/// one whose traces numpy reads and whose manifest counts them.
#[test]
fn killed_runs_keep_what_they_drew() {
    let h = Home::new();
    let id = tiny(&h, 1);
    let long = ["sample", "--target", &id, "--plugin", "hmc", "--set", "draws=10000000", "--checkpoint-every", "0.05", "--experiment"];
    let term = h.command(&[&long[..], &["term"]].concat()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    std::process::Command::new("kill").args(["-TERM", &term.id().to_string()]).status().unwrap();
    let out = term.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = runs(&h, "term").pop().expect("a run directory");
    let m = json(&dir.join("manifest.json"));
    assert_eq!(m["status"], "incomplete");
    assert!(m["draws"].as_u64().unwrap() > 0, "{m}");

    let numpy = have_numpy();
    let mut seen = [0, 0];
    for i in 0..20u64 {
        let exp = format!("kill{i}");
        let mut child = h.command(&[&long[..], &[&exp]].concat()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Moments spread over start-up, warm-up and sampling.
        std::thread::sleep(Duration::from_millis(100 + (i * 7919) % 1400));
        child.kill().unwrap();
        child.wait().unwrap();
        let dirs = runs(&h, &exp);
        assert!(dirs.len() <= 1, "{dirs:?}");
        let Some(dir) = dirs.first() else {
            seen[0] += 1;
            continue;
        };
        seen[1] += 1;
        let m = json(&dir.join("manifest.json"));
        assert_eq!(m["status"], "incomplete", "{m}");
        let draws = m["draws"].as_u64().unwrap();
        if numpy {
            let shape = python(&format!(
                "import numpy as np\nz = np.load({:?})\nprint(z['loss'].shape[0], z['loss'].shape[1], z['llc'].shape[1])",
                dir.join("traces.npz").to_str().unwrap()
            ));
            let dims: Vec<u64> = shape.split_whitespace().map(|v| v.parse().unwrap()).collect();
            assert_eq!(dims[0], 4);
            // The traces are written before the manifest: they may be one checkpoint ahead.
            assert!(dims[1] >= draws && dims[2] == dims[1], "traces {dims:?}, manifest {draws}");
        }
        if draws > m["burn_in"].as_u64().unwrap() {
            // What was kept is diagnosable.
            h.ok(&["diagnose", "--run-dir", dir.to_str().unwrap()]);
        }
    }
    eprintln!("kill -9: {} times no run directory yet, {} times a readable one", seen[0], seen[1]);
    assert!(seen[1] >= 10, "most kills land after the run directory appeared: {seen:?}");
}

/// Item 12: a plugin config value of the wrong type names the key and where
/// it came from (`--set`, or file:line), not a position in generated text;
/// `draws=0` is refused; and none of them leaves an empty `failed` run behind.
#[test]
fn bad_config_values_name_their_key_and_origin() {
    let h = Home::new();
    let id = tiny(&h, 1);
    for set in ["draws=many", "draws=10.5", "draws=-5", "draws=\"x\""] {
        let err = h.fails(&["sample", "--target", &id, "--plugin", "hmc", "--set", set]);
        let (k, v) = set.split_once('=').unwrap();
        assert!(err.contains(&format!("plugin `hmc`: `{k}: {v}` (from --set {set})")), "{set}: {err}");
    }
    let file = h.write("c.ron", "(\n  warmup: 10,\n  draws: \"x\",\n)\n");
    let err = h.fails(&["sample", "--target", &id, "--plugin", "hmc", "--config", &file]);
    assert!(err.contains(&format!("`draws: \"x\"` (from {file}:3)")), "{err}");
    let err = h.fails(&["sample", "--target", &id, "--plugin", "hmc", "--set", "draws=0"]);
    assert!(err.contains("all of them burn-in") && err.contains("`draws` 0"), "{err}");
    assert!(runs(&h, "dev").is_empty(), "{:?}", runs(&h, "dev"));
}

/// Item 14: one corrupted target is one CORRUPTED line, not a failed listing;
/// leftovers of killed processes are removed by `store gc` and by the next build.
#[test]
fn the_store_lists_around_damage_and_cleans_up_after_the_dead() {
    let h = Home::new();
    tiny(&h, 1);
    tiny(&h, 2);
    let objects = h.objects();
    std::fs::write(objects[0].join("payload/data.npz"), b"broken").unwrap();
    let ls = h.ok(&["targets", "ls"]);
    assert_eq!(ls.lines().filter(|l| l.contains("CORRUPTED")).count(), 1, "{ls}");
    assert_eq!(ls.lines().filter(|l| l.starts_with("tgt_")).count(), 1, "{ls}");
    std::fs::remove_file(objects[1].join("meta.json")).unwrap();
    let ls = h.ok(&["targets", "ls"]);
    let corrupted: Vec<&str> = ls.lines().filter(|l| l.contains("CORRUPTED")).collect();
    assert_eq!(corrupted.len(), 2, "{ls}");
    assert!(corrupted.iter().any(|l| l.contains("meta.json")), "the missing meta.json is named: {ls}");
    // Leftovers of a process that is gone (no pid 4194303 runs: the largest Linux allows).
    let art = h.path().join("artifacts");
    std::fs::create_dir_all(art.join("store/tmp/obj-4194303-abc/payload")).unwrap();
    let links = art.join("experiments/t/targets");
    std::os::unix::fs::symlink("nowhere", links.join(".tgt_0.tmp-4194303")).unwrap();
    std::fs::create_dir_all(art.join("experiments/t/runs/.run-4194303-xyz")).unwrap();
    let out = h.ok(&["store", "gc"]);
    assert!(out.contains("3 leftovers removed"), "{out}");
    assert_eq!(h.tmp_leftovers(), 0);
    std::fs::create_dir_all(art.join("store/tmp/obj-4194303-def")).unwrap();
    tiny(&h, 3);
    assert_eq!(h.tmp_leftovers(), 0, "the next build removed it");
}

/// Item 15: `diagnose` on traces holding NaN says so; a manifest whose chain
/// count disagrees with its traces is named.
#[test]
fn diagnose_names_non_finite_traces_and_chain_mismatches() {
    let h = Home::new();
    let id = tiny(&h, 1);
    let out = h.ok(&["sample", "--target", &id, "--plugin", "hmc", "--set", "draws=20", "--set", "warmup=10"]);
    let dir = PathBuf::from(out.lines().find_map(|l| l.strip_prefix("run: ")).unwrap());
    let traces = dir.join("traces.npz");
    let good = std::fs::read(&traces).unwrap();
    let loss: Vec<f64> = (0..4 * 30).map(|i| if i == 45 { f64::NAN } else { 0.01 }).collect();
    std::fs::write(&traces, to_bytes(&[("loss", Array::F64(&[4, 30], &loss))], Packing::Stored).unwrap()).unwrap();
    let err = h.fails(&["diagnose", "--run-dir", dir.to_str().unwrap()]);
    assert!(err.contains("`loss` holds NaN at chain 1, draw 15"), "{err}");
    std::fs::write(&traces, to_bytes(&[("loss", Array::F64(&[3, 30], &loss[..90]))], Packing::Stored).unwrap()).unwrap();
    let err = h.fails(&["diagnose", "--run-dir", dir.to_str().unwrap()]);
    assert!(err.contains("`loss` has 3 chains but the run's manifest says 4"), "{err}");
    std::fs::write(&traces, good).unwrap();
    h.ok(&["diagnose", "--run-dir", dir.to_str().unwrap()]);
}
