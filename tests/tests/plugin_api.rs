//! The plugin API as a third party meets it: the README's walkthrough plugin
//! built out of tree (its Cargo.toml lists lh-plugin-api only) and run, and
//! panics and non-finite evaluations reported through the ABI.

use std::path::Path;

use lh_tests::{manifest, misbehave_plugin, quadratic_target, repo, Home};

/// The first fenced block of `lang` after `from` in `text`.
fn fenced<'a>(text: &'a str, from: usize, lang: &str) -> &'a str {
    let open = format!("```{lang}\n");
    let start = from + text[from..].find(&open).unwrap_or_else(|| panic!("no ```{lang} block")) + open.len();
    &text[start..start + text[start..].find("\n```").expect("an unclosed block") + 1]
}

/// The README's walkthrough, copied out as written into a fresh crate outside
/// the workspace (only the path of lh-plugin-api is pointed at this checkout,
/// and the workspace's profiles appended so compiled dependencies are shared),
/// builds and runs on the quadratic oracle.
#[test]
fn the_readme_walkthrough_builds_and_runs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let at = readme.find("## Write your own sampler plugin").expect("the walkthrough section");
    let (toml, lib) = (fenced(&readme, at, "toml"), fenced(&readme, at, "rust"));
    let deps: Vec<&str> = toml.split("[dependencies]").nth(1).unwrap().lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(deps.len(), 1, "the walkthrough's Cargo.toml lists one dependency: {deps:?}");
    assert!(deps[0].starts_with("lh-plugin-api = "), "{deps:?}");

    let work = tempfile::tempdir().unwrap();
    let krate = work.path().join("mala");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(krate.join("src/lib.rs"), lib).unwrap();
    let api = repo().join("plugin-api");
    let toml = toml.replace("path = \"../lambda-hat/plugin-api\"", &format!("path = {:?}", api.display().to_string()));
    let profiles = "\n[workspace]\n\n[profile.dev]\nopt-level = 1\ndebug = \"line-tables-only\"\n\n[profile.dev.package.\"*\"]\nopt-level = 2\ndebug = false\n";
    std::fs::write(krate.join("Cargo.toml"), toml + profiles).unwrap();
    std::fs::copy(repo().join("plugins/example-rwm/Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let so = lh_tests::build_plugin_crate(&krate, "lh_sampler_mala");

    let h = Home::new();
    let (id, want) = quadratic_target(&h);
    let out = h.ok(&["sample", "--target", &id, "--plugin", so.to_str().unwrap(), "--seed", "4", "--set", "draws=1500", "--set", "burn_in=300"]);
    let m = manifest(&out);
    assert_eq!(m["status"], "complete");
    assert_eq!(m["plugin"]["name"], "mala");
    assert_eq!(m["plugin"]["api_version"], lh_plugin_api_version());
    // The resolved config, as the plugin received it: pretty RON, one `key: value,` per line.
    assert_eq!(m["config"], "(\n    burn_in: 300,\n    draws: 1500,\n    step_size: 1e-3,\n)");
    let (got, se) = lh_tests::llc_of(&m);
    eprintln!("README MALA on the quadratic: λ̂ = {got} ± {se}, exact {want}");
    assert!((got - want).abs() < 4.0 * se, "λ̂ = {got} ± {se}, exact {want}");
}

/// The API version this checkout's lh-plugin-api has.
fn lh_plugin_api_version() -> String {
    let toml = std::fs::read_to_string(repo().join("plugin-api/Cargo.toml")).unwrap();
    toml.lines().find_map(|l| l.strip_prefix("version = ")).unwrap().trim_matches('"').to_string()
}

/// A panic in `describe` (the plugin's own code has no guard: the export
/// macro's is the only one) is a one-line error naming the plugin, and
/// `lh-host plugins` still lists every other plugin.
#[test]
fn a_panic_in_describe_names_the_plugin() {
    let h = Home::new();
    let lib = misbehave_plugin();
    let (id, _) = quadratic_target(&h);
    let env = [("LH_MISBEHAVE_DESCRIBE", "panic")];
    let r = h.run_env(&["sample", "--target", &id, "--plugin", "misbehave"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let line = r.stderr.trim();
    assert!(line.starts_with("error: ") && !line.contains('\n'), "{line}");
    assert!(line.contains(Path::new(lib).file_name().unwrap().to_str().unwrap()), "{line}");
    assert!(line.contains("describe() failed") && line.contains("deliberate panic in describe"), "{line}");
    let list = h.run_env(&["plugins"], &env);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.contains("(unloadable)") && list.stdout.contains("deliberate panic in describe"), "{}", list.stdout);
    assert!(list.stdout.contains("hmc 0.1.0 (plugin API"), "{}", list.stdout);
}

/// A non-finite evaluation reaches the plugin as a recoverable error that
/// lists the chains concerned as data (here the last of 4).
#[test]
fn non_finite_chains_cross_the_abi_as_data() {
    let h = Home::new();
    misbehave_plugin();
    let (id, _) = quadratic_target(&h);
    let err = h.fails(&["sample", "--target", &id, "--plugin", "misbehave", "--set", "mode=\"nan_eval\""]);
    assert!(err.contains("recoverable: true, chains reported: [3]"), "{err}");
}
