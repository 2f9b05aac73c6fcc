//! Helpers for end-to-end tests that drive the real `lh-host` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Path to the `lh-host` binary of this build profile (and the workspace's
/// plugins beside it), built once per test process.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test-exe> → target/<profile>/lh-host
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let profile = dir.file_name().and_then(|s| s.to_str()).unwrap_or("debug");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "--workspace"]).current_dir(repo());
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p lh-host failed");
        dir.join(format!("lh-host{}", std::env::consts::EXE_SUFFIX))
    })
}

/// The build's target folder (target/), from this test executable's path.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).and_then(Path::parent).expect("target/").to_path_buf()
}

/// Builds an out-of-workspace plugin crate (debug) into the shared target
/// folder, so it lands beside lh-host; returns the library's path.
pub fn build_plugin_crate(manifest_dir: &Path, lib_name: &str) -> PathBuf {
    let profile = binary().parent().and_then(Path::file_name).and_then(|s| s.to_str()).unwrap_or("debug").to_string();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-q", "--manifest-path"]).arg(manifest_dir.join("Cargo.toml")).env("CARGO_TARGET_DIR", target_dir());
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "building {} failed", manifest_dir.display());
    target_dir().join(profile).join(format!("{}{lib_name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}

/// The misbehaving test plugin, built once per test process.
pub fn misbehave_plugin() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| build_plugin_crate(&repo().join("tests/fixtures/misbehave"), "lh_sampler_misbehave"))
}

/// The example random-walk Metropolis plugin, built once per test process.
pub fn example_plugin() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| build_plugin_crate(&repo().join("plugins/example-rwm"), "lh_sampler_rwm"))
}

/// A scratch artifact home for one test.
pub struct Home {
    pub dir: tempfile::TempDir,
}

/// The result of one command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Home {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `lh-host ARGS` with `LH_HOME` set to this home, ready to run or spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env("LH_HOME", self.path().join("artifacts"))
            .env("LH_THREADS", "2")
            // Mesa (probed by `--backend auto`) warns on stderr without a valid runtime dir.
            .env("XDG_RUNTIME_DIR", self.path())
            .current_dir(self.path());
        cmd
    }

    /// Runs `lh-host ARGS` with `LH_HOME` set to this home.
    pub fn run(&self, args: &[&str]) -> Run {
        Self::finished(self.command(args).output().expect("run lh-host"))
    }

    /// Runs `lh-host ARGS` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        Self::finished(cmd.output().expect("run lh-host"))
    }

    fn finished(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "lh-host {args:?} failed:\n{}", r.stderr);
        r.stdout
    }

    /// Runs, asserts a clean failure (exit ≠ 0, one line on stderr, no panic) and returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_ne!(r.code, 0, "lh-host {args:?} should have failed; stdout:\n{}", r.stdout);
        assert!(!r.stderr.contains("' panicked at"), "lh-host {args:?} panicked:\n{}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected a one-line error from {args:?}, got:\n{}", r.stderr);
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        lines[0].to_string()
    }

    /// Writes a file under this home and returns its path as a string.
    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p.to_string_lossy().into_owned()
    }

    /// Every store object folder (a build that failed must leave none behind).
    pub fn objects(&self) -> Vec<PathBuf> {
        let dir = self.path().join("artifacts/store/objects/sha256");
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        v.sort();
        v
    }

    /// Files left in the store's temporary folder.
    pub fn tmp_leftovers(&self) -> usize {
        std::fs::read_dir(self.path().join("artifacts/store/tmp")).map(|rd| rd.count()).unwrap_or(0)
    }
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether python3 with numpy is here; when it is not, the caller skips,
/// unless `LH_REQUIRE_NUMPY` is set (CI sets it), which makes that a failure.
pub fn have_numpy() -> bool {
    let ok = Command::new("python3").args(["-c", "import numpy"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("LH_REQUIRE_NUMPY").is_err(), "LH_REQUIRE_NUMPY is set but python3 cannot import numpy");
        eprintln!("skipped: python3 with numpy not found");
    }
    ok
}

/// Runs a python3 script; asserts it succeeds and returns its stdout.
pub fn python(script: &str) -> String {
    let out = Command::new("python3").args(["-c", script]).output().expect("run python3");
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small, fast experiment file: the `small` preset trained for `steps` steps.
pub fn tiny_experiment(seed: u64, extra_overrides: &str) -> String {
    format!(
        r#"(
    name: "t",
    targets: [
        (model: "small", data: "small", seed: {seed},
         overrides: (training: (steps: 300){extra_overrides})),
    ],
)"#
    )
}

/// The first whitespace-separated token of a command's output (e.g. the target id `build` prints).
pub fn first_token(s: &str) -> String {
    s.split_whitespace().next().expect("output has a token").to_string()
}

/// Every run directory `sample`/`run` printed (`run: DIR`), in order.
pub fn run_dirs(stdout: &str) -> Vec<PathBuf> {
    stdout.lines().filter_map(|l| l.strip_prefix("run: ")).map(|d| PathBuf::from(d.trim())).collect()
}

/// The manifest.json in run directory `dir`.
pub fn manifest_in(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json")).expect("valid JSON")
}

/// The manifest.json of the (first) run whose directory `sample`/`run` printed.
pub fn manifest(stdout: &str) -> serde_json::Value {
    manifest_in(run_dirs(stdout).first().expect("run dir printed"))
}

/// Samples target `id` with `plugin` (and the extra `sample` arguments) in
/// `h`; returns the run's manifest.
pub fn sample(h: &Home, id: &str, plugin: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["sample", "--target", id, "--plugin", plugin];
    args.extend_from_slice(extra);
    manifest(&h.ok(&args))
}

/// λ̂ and its standard error, from a manifest.
pub fn llc_of(m: &serde_json::Value) -> (f64, f64) {
    (m["llc"]["mean"].as_f64().expect("llc.mean"), m["llc"]["se"].as_f64().expect("llc.se"))
}

/// The quadratic oracle (L = ½‖θ‖², D = 20, n = 1000, γ = 50), built in `h`:
/// its id and the exact λ̂ = D·nβ/(2(nβ + γ)).
pub fn quadratic_target(h: &Home) -> (String, f64) {
    let exp = r#"(name: "quad", targets: [(quadratic: (dim: 20, n: 1000), overrides: (posterior: (gamma: 50.0)))])"#;
    let id = first_token(&h.ok(&["build", "--config", &h.write("q.ron", exp)]));
    let nb = 1000.0 / 1000f64.ln();
    (id, 20.0 * nb / (2.0 * (nb + 50.0)))
}

/// Solves for tr(A⁻¹) of a symmetric positive definite matrix (row-major k×k) by Gauss–Jordan.
fn trace_of_inverse(a: &[f64], k: usize) -> f64 {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..k * k).map(|i| f64::from(u8::from(i / k == i % k))).collect();
    for col in 0..k {
        let piv = m[col * k + col];
        for j in 0..k {
            m[col * k + j] /= piv;
            inv[col * k + j] /= piv;
        }
        for row in 0..k {
            if row != col {
                let f = m[row * k + col];
                for j in 0..k {
                    m[row * k + j] -= f * m[col * k + j];
                    inv[row * k + j] -= f * inv[col * k + j];
                }
            }
        }
    }
    (0..k).map(|i| inv[i * k + i]).sum()
}

/// Writes a one-dimensional `.npy` file (format 1.0) under `h` and returns its
/// path: `descr` is numpy's dtype (`|b1`, `<i8`, `<f8`), `data` the values'
/// little-endian bytes.
pub fn write_npy(h: &Home, name: &str, descr: &str, len: usize, data: &[u8]) -> String {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({len},), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len()).expect("short header").to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let p = h.path().join(name);
    std::fs::write(&p, bytes).expect("write .npy");
    p.to_string_lossy().into_owned()
}

/// A `.npy` mask of bools under `h` (as `numpy.save(name, mask)` writes it).
pub fn write_mask(h: &Home, name: &str, mask: &[bool]) -> String {
    write_npy(h, name, "|b1", mask.len(), &mask.iter().map(|b| u8::from(*b)).collect::<Vec<u8>>())
}

/// The exact λ of a Gaussian posterior with precision nβH + γI (H the k × k
/// Hessian of L_n, row-major): E[nβ(L_n − L0)] = ½(k − γ·tr((nβH + γI)⁻¹)).
/// For a posterior restricted to a block of coordinates, the others fixed at
/// w*, H is that block of the full Hessian.
pub fn gaussian_lambda(hessian: &[f64], k: usize, n_beta: f64, gamma: f64) -> f64 {
    let shifted: Vec<f64> = hessian.iter().enumerate().map(|(i, h)| n_beta * h + gamma * f64::from(u8::from(i / k == i % k))).collect();
    0.5 * (k as f64 - gamma * trace_of_inverse(&shifted, k))
}

/// Array `name` of payload file `file` (`data.npz`, `params.npz`) of the one
/// MLP target built in `h`: its shape and values.
pub fn payload_array(h: &Home, file: &str, name: &str) -> (Vec<usize>, Vec<f64>) {
    let obj = h.objects().into_iter().find(|o| o.join("payload/data.npz").exists()).expect("an MLP target's object");
    lh_host::store::npz::Npz::open(&obj.join("payload").join(file)).unwrap().f64(name).unwrap()
}

/// The regular model of [`regular_target`]: its id, and the Gram matrix X̃ᵀX̃
/// of its data (7 × 7, X̃ = [X, 1]), which fixes its exact λ.
pub struct Regular {
    pub id: String,
    gram: Vec<f64>,
}

/// Rows of the regular model's data set; its nβ = n/ln n, γ = 1.
const REGULAR_N: usize = 3000;

impl Regular {
    /// The exact λ of the Gaussian posterior restricted to the coefficients
    /// `cols` of X̃ (0..6 the inputs, 6 the bias) of every output, the other
    /// coordinates fixed at w*: ½(k − γ·tr((nβH_SS + γI)⁻¹)) with k = 3·|cols|
    /// and H_SS the block of the Hessian H = (2/(n·d_out)) X̃ᵀX̃ (one copy per
    /// output). All seven columns give the whole model's λ.
    pub fn exact(&self, cols: &[usize]) -> f64 {
        let (n, k) = (REGULAR_N as f64, cols.len());
        let hessian: Vec<f64> = (0..k * k).map(|i| 2.0 / (n * 3.0) * self.gram[cols[i / k] * 7 + cols[i % k]]).collect();
        3.0 * gaussian_lambda(&hessian, k, n / n.ln(), 1.0)
    }
}

/// The regular model built in `h` (a linear layer 6 → 3 with bias, n = 3000,
/// γ = 1, f64), with what [`Regular::exact`] needs.
pub fn regular_model(h: &Home) -> Regular {
    h.write("linear.ron", "(in_dim: 6, out_dim: 3, widths: [], activation: identity, bias: true)");
    h.write("n3000.ron", "(n: 3000, n_test: 0, input: gauss_iso, noise: gauss(scale: 0.1))");
    let exp = r#"(name: "regular", targets: [(model: "linear.ron", data: "n3000.ron", seed: 4,
        overrides: (training: (precision: f64, lr: 0.01, steps: 5000)))])"#;
    let id = first_token(&h.ok(&["build", "--config", &h.write("r.ron", exp)]));
    let (_, x) = payload_array(h, "data.npz", "X");
    let mut gram = vec![0.0; 49];
    for r in 0..REGULAR_N {
        let row: Vec<f64> = x[r * 6..(r + 1) * 6].iter().copied().chain([1.0]).collect();
        for i in 0..7 {
            for j in 0..7 {
                gram[i * 7 + j] += row[i] * row[j];
            }
        }
    }
    Regular { id, gram }
}

/// A regular model built in `h` (see [`regular_model`]): its id and the exact
/// λ̂ of its Gaussian posterior, Σᵢ nβhᵢ/(2(nβhᵢ + γ)) over the Hessian's
/// eigenvalues hᵢ at w*, i.e. ½(D − γ·tr((nβH + γI)⁻¹)) (≈ D/2).
pub fn regular_target(h: &Home) -> (String, f64) {
    let r = regular_model(h);
    let exact = r.exact(&[0, 1, 2, 3, 4, 5, 6]);
    (r.id, exact)
}
