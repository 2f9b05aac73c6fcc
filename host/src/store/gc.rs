//! Leftovers of killed processes: objects half-assembled in `store/tmp/`,
//! temporary target links (`.<id>.tmp-<pid>`) and run directories never
//! renamed into place (`.run-<pid>-…`), and a lock's temporary files
//! (`.lock-<pid>-…`). Each name carries the pid of the
//! process that made it; what belongs to a process that is gone is removed
//! (by `lh-host store gc`, and at the start of every build).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::layout::{entry_names, Store};
use crate::error::{Error, Result};

/// Leftovers whose maker's pid cannot be told (or where processes cannot be
/// looked up) are removed once they are this old.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

impl Store {
    /// Removes the leftovers of dead processes; returns what was removed.
    pub fn gc(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let tmp = self.tmp_dir();
        sweep(&tmp, |name| name.strip_prefix("obj-"), &mut removed)?;
        for exp in entry_names(&self.experiments_dir())? {
            let dir = self.experiments_dir().join(&exp);
            sweep(&dir.join("targets"), |name| name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-")).map(|(_, pid)| pid), &mut removed)?;
            sweep(&dir.join("runs"), |name| name.strip_prefix(".run-"), &mut removed)?;
        }
        sweep(&self.locks_dir(), |name| name.strip_prefix(".lock-"), &mut removed)?;
        Ok(removed)
    }
}

/// Removes each entry of `dir` (hidden ones included) that `pid_part` recognises
/// as a leftover and whose process is gone.
fn sweep(dir: &Path, pid_part: impl Fn(&str) -> Option<&str>, removed: &mut Vec<PathBuf>) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = pid_part(&name) else { continue };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if !is_dead(pid, &entry.path()) {
            continue;
        }
        let path = entry.path();
        let r = if path.is_dir() && !path.is_symlink() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match r {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(())
}

/// Whether process `pid` of this machine runs (Linux: `/proc/<pid>` exists);
/// `None` where that cannot be told.
pub fn pid_alive(pid: u32) -> Option<bool> {
    Path::new("/proc/self").exists().then(|| pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists())
}

/// Whether the process that made `path` is gone: its pid is not running
/// (Linux: no `/proc/<pid>`), or, where that cannot be told, `path` is stale.
fn is_dead(pid: Option<u32>, path: &Path) -> bool {
    match pid.and_then(pid_alive) {
        Some(alive) => !alive,
        None => std::fs::symlink_metadata(path).and_then(|m| m.modified()).is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > STALE_AFTER),
    }
}
