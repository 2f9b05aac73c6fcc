//! Finding and loading sampler plugins.
//!
//! A plugin is named on the command line (`--plugin hmc`) or given by path
//! (`--plugin ./liblh_sampler_rwm.so`). Names are looked up as
//! `liblh_sampler_<name>.so` (`.dylib`, `.dll` elsewhere; `-` becomes `_`) in
//! the folders of `LH_PLUGIN_PATH`, then beside the `lh-host` binary (which is
//! the build's target folder under cargo). Several plugins can be loaded in
//! one process; libraries are never unloaded.

use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use lh_plugin_api::{SamplerBox, SamplerModRef};

use crate::error::{Error, Result};
use crate::store::sha256_hex;

/// File-name prefix of plugin libraries.
pub const LIB_PREFIX: &str = "lh_sampler_";

/// A plugin's self-description, host side.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// The lh-plugin-api version the plugin was built against.
    pub api_version: String,
    pub path: PathBuf,
    pub sha256: String,
    pub help: String,
    pub default_config: String,
}

/// A loaded plugin, ready to run.
pub struct LoadedPlugin {
    pub info: PluginInfo,
    pub sampler: SamplerBox,
}

/// The folders searched for plugins by name, in order.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LH_PLUGIN_PATH").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(dir);
    }
    dirs
}

fn file_name(name: &str) -> String {
    format!("{}{LIB_PREFIX}{}{}", std::env::consts::DLL_PREFIX, name.replace('-', "_"), std::env::consts::DLL_SUFFIX)
}

/// Resolves `--plugin` to a library path: a path if it looks like one, else a name.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let looks_like_path = spec.contains(std::path::MAIN_SEPARATOR) || spec.contains('/') || spec.ends_with(std::env::consts::DLL_SUFFIX);
    if looks_like_path {
        let p = PathBuf::from(spec);
        return if p.exists() { Ok(p) } else { Err(plugin_error(&p, "plugin library not found")) };
    }
    let dirs = search_dirs();
    let fname = file_name(spec);
    dirs.iter().map(|d| d.join(&fname)).find(|p| p.exists()).ok_or_else(|| {
        let found = discover_paths().iter().filter_map(|p| plugin_name_of(p)).collect::<Vec<_>>().join(", ");
        Error::plugin(spec, format!(
            "no plugin `{spec}` ({fname}) in LH_PLUGIN_PATH or beside lh-host ({}); available: {} (`cargo build --release --workspace` builds the built-in ones)",
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
            if found.is_empty() { "none".to_string() } else { found }
        ))
    })
}

/// The name a plugin file carries (`liblh_sampler_hmc.so` → `hmc`).
fn plugin_name_of(p: &Path) -> Option<String> {
    let f = p.file_name()?.to_str()?;
    let f = f.strip_prefix(std::env::consts::DLL_PREFIX)?.strip_prefix(LIB_PREFIX)?;
    Some(f.strip_suffix(std::env::consts::DLL_SUFFIX)?.to_string())
}

/// Every plugin library in the search folders (first of each name wins).
pub fn discover_paths() -> Vec<PathBuf> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for dir in search_dirs() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for p in files {
            if let Some(name) = plugin_name_of(&p) {
                if seen.insert(name) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// One line from abi_stable's (sometimes very long) load error.
fn summarize(path: &Path, e: &LibraryError) -> Error {
    let msg = match e {
        LibraryError::OpenError { err, .. } => format!("cannot open the library ({})", first_line(&err.to_string())),
        LibraryError::GetSymbolError { .. } => "not an lh-host sampler plugin (it exports no abi_stable root module)".to_string(),
        LibraryError::ParseVersionError(_) | LibraryError::IncompatibleVersionNumber { .. } => {
            let detail = match e {
                LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => {
                    format!("built against lh-plugin-api {actual_version}, but this host speaks {expected_version}")
                }
                _ => first_line(&e.to_string()),
            };
            format!("incompatible plugin API version: {detail}; rebuild the plugin against this lh-plugin-api")
        }
        LibraryError::AbiInstability(_) => {
            "incompatible plugin API: its lh-plugin-api types differ from this host's; rebuild the plugin against this lh-plugin-api".to_string()
        }
        other => first_line(&other.to_string()),
    };
    plugin_error(path, msg)
}

/// A failure of the plugin library at `path`, named by its path.
fn plugin_error(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::plugin(path.display().to_string(), format!("{}: {msg}", path.display()))
}

fn first_line(s: &str) -> String {
    let line = s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    line.chars().take(300).collect()
}

/// Loads the plugin library at `path` and constructs its sampler (after a
/// probe in a child process, once [`super::probe::isolate`] was called).
pub fn load(path: &Path) -> Result<LoadedPlugin> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let sha256 = sha256_hex(&bytes);
    super::probe::check(path, &sha256)?;
    let header = lib_header_from_path(path).map_err(|e| summarize(path, &e))?;
    let api_version = header.version_strings().version.to_string();
    lh_plugin_api::check_api_version(SamplerModRef::VERSION_STRINGS.version.as_str(), &api_version).map_err(|m| plugin_error(path, m))?;
    let module = header.init_root_module::<SamplerModRef>().map_err(|e| summarize(path, &e))?;
    let sampler = module.new()().into_result().map_err(|e| plugin_error(path, format!("the plugin failed to start: {}", e.message)))?;
    let d = sampler.describe().into_result().map_err(|e| plugin_error(path, format!("describe() failed: {}", e.message)))?.to_description();
    let info = PluginInfo {
        name: d.name.to_string(),
        version: d.version.to_string(),
        api_version,
        path: path.to_path_buf(),
        sha256,
        help: d.help.to_string(),
        default_config: d.default_config.to_string(),
    };
    Ok(LoadedPlugin { info, sampler })
}
