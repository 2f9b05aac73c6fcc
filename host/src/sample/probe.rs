//! Loading a plugin library can crash the process that loads it: a truncated
//! copy faults (SIGBUS) when it is mapped, a library whose constructor calls
//! `abort()` aborts. So, once [`isolate`] is called (the `lh-host` binary does
//! it at start-up), every library is first loaded by a child process — the
//! host re-executing itself as `lh-host __probe-plugin PATH` — and only a
//! library that did not crash the child is loaded in-process. The verdict is
//! cached by the library's sha256, so each file is probed once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::atomic::{read_json, write_json_atomic};

/// The hidden command that loads one library and exits: 0 when it loads, 2 on a clean error.
pub const PROBE_COMMAND: &str = "__probe-plugin";

/// Where probing is set up: the executable to re-run and the verdict cache.
struct Isolation {
    exe: PathBuf,
    cache: PathBuf,
}

static ISOLATION: OnceLock<Isolation> = OnceLock::new();

/// From now on, probe each library in a child process (`exe PROBE_COMMAND
/// PATH`) before loading it here; verdicts are cached in `cache`.
pub fn isolate(exe: PathBuf, cache: PathBuf) {
    let _ = ISOLATION.set(Isolation { exe, cache });
}

/// What a probe found out about one library file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Verdict {
    /// Why loading it crashed the probe, when it did.
    crashed: Option<String>,
}

/// Refuses, with a one-line error naming it, a library (with contents hash
/// `sha256`) whose loading crashes a process; `Ok` when probing is not set up.
pub fn check(path: &Path, sha256: &str) -> Result<()> {
    let Some(iso) = ISOLATION.get() else { return Ok(()) };
    let cached = iso.cache.join(format!("{sha256}.json"));
    let verdict = match read_json::<Verdict>(&cached) {
        Ok(v) => v,
        Err(_) => {
            let v = probe(&iso.exe, path)?;
            // A cache that cannot be written only costs a probe next time.
            let _ = write_json_atomic(&cached, &v);
            v
        }
    };
    match verdict.crashed {
        None => Ok(()),
        Some(why) => Err(Error::plugin(
            path.display().to_string(),
            format!("{}: loading this library crashed a probe process ({why}): it is truncated, corrupted, or aborts while it loads", path.display()),
        )),
    }
}

/// Loads `path` in a child process and reports whether that crashed it.
fn probe(exe: &Path, path: &Path) -> Result<Verdict> {
    let out = std::process::Command::new(exe)
        .arg(PROBE_COMMAND)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| Error::io(exe, e))?;
    let crashed = match out.status.code() {
        Some(_) => None,
        None => Some(signal_of(&out.status)),
    };
    Ok(Verdict { crashed })
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    let sig = status.signal().unwrap_or(0);
    let name = match sig {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        11 => " (SIGSEGV)",
        _ => "",
    };
    format!("signal {sig}{name}")
}

#[cfg(not(unix))]
fn signal_of(status: &std::process::ExitStatus) -> String {
    format!("{status}")
}
