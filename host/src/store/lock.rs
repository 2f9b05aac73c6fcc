//! Lock files that work across processes, threads and machines sharing a
//! file system over NFS (cluster home folders), where `flock` alone is not
//! to be trusted.
//!
//! Taking a lock: the holder's record (pid, host, a random token) is written
//! to a private temporary file, which is then hard-linked to the lock's name
//! with link(2): atomic on every file system NFS included, and it fails when
//! the name exists, so exactly one taker wins and the lock never appears
//! half-written. (On NFS a lost reply can make a link that succeeded report
//! failure; the temporary file's link count of 2 tells the truth.)
//!
//! A lock is stale when its holder is gone: on the same host, when its pid no
//! longer runs; on another host, when its heartbeat stopped (the holder
//! refreshes the file's modification time every [`HEARTBEAT`]; older than
//! [`STALE_AFTER`] is dead). A stale lock is broken by renaming it aside
//! (atomic, so one breaker wins) and checking that what was renamed is the
//! record judged stale; a live lock renamed by mistake is put back.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::atomic::read_json;
use super::gc::pid_alive;
use super::layout::tmp_prefix;
use super::sha256_hex;
use crate::error::{Error, Result};

/// How often a holder refreshes its lock's modification time.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A lock of another host not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(120);
/// How long a waiter sleeps between two attempts.
const RETRY: Duration = Duration::from_millis(200);

/// Who holds a lock (the lock file's contents).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Unique to one taking of the lock.
    pub token: String,
    /// When it was taken (UTC).
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} on {} (since {})", self.pid, self.host, self.since)
    }
}

/// A held lock, released when dropped.
#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
    token: String,
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

/// This machine's name (from the kernel; `HOSTNAME` elsewhere).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

impl FileLock {
    /// Takes the lock at `path` (its folder is created), waiting as long as a
    /// live holder keeps it; `waiting` is told who, once, when it must wait.
    pub fn acquire(path: &Path, mut waiting: impl FnMut(&Holder)) -> Result<FileLock> {
        let mut told = false;
        loop {
            match Self::attempt(path)? {
                Attempt::Taken(lock) => return Ok(lock),
                Attempt::Held(h) => {
                    if !told {
                        waiting(&h);
                        told = true;
                    }
                    std::thread::sleep(RETRY);
                }
                Attempt::Again => std::thread::sleep(RETRY / 4),
            }
        }
    }

    /// Takes the lock at `path` unless a live holder has it; then says who.
    pub fn try_acquire(path: &Path) -> Result<std::result::Result<FileLock, Holder>> {
        loop {
            match Self::attempt(path)? {
                Attempt::Taken(lock) => return Ok(Ok(lock)),
                Attempt::Held(h) => return Ok(Err(h)),
                Attempt::Again => std::thread::sleep(RETRY / 4),
            }
        }
    }

    /// One attempt, breaking a stale lock on the way.
    fn attempt(path: &Path) -> Result<Attempt> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if let Some(lock) = Self::try_take(path)? {
            return Ok(Attempt::Taken(lock));
        }
        Ok(match read_holder(path) {
            Some(h) if is_stale(&h, path) => {
                break_stale(path, &h)?;
                Attempt::Again
            }
            Some(h) => Attempt::Held(h),
            // Released meanwhile: try again.
            None => Attempt::Again,
        })
    }

    /// One attempt: the lock when it was free.
    fn try_take(path: &Path) -> Result<Option<FileLock>> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let token = sha256_hex(format!("{:?}{:?}{}", SystemTime::now(), std::thread::current().id(), std::process::id()).as_bytes())[..16].to_string();
        let holder = Holder { pid: std::process::id(), host: host_name(), token: token.clone(), since: super::provenance::now_utc() };
        let tmp = dir.join(format!(".{}{token}", tmp_prefix("lock")));
        let text = serde_json::to_string(&holder).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        let linked = std::fs::hard_link(&tmp, path);
        let won = linked.is_ok() || link_count(&tmp) == Some(2);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Err(e) if !won && e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::io(path, e)),
            _ => {}
        }
        if !won {
            return Ok(None);
        }
        let (stop, rx) = mpsc::channel::<()>();
        let beat_path = path.to_path_buf();
        let heartbeat = std::thread::Builder::new()
            .name("lock-heartbeat".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(HEARTBEAT) {
                    let _ = std::fs::File::options().write(true).open(&beat_path).and_then(|f| f.set_modified(SystemTime::now()));
                }
            })
            .map_err(|e| Error::io(path, e))?;
        Ok(Some(FileLock { path: path.to_path_buf(), token, stop: Some(stop), heartbeat: Some(heartbeat) }))
    }

    /// Where the lock is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        // Only our own lock is removed (a breaker may have judged it stale).
        if read_holder(&self.path).is_some_and(|h| h.token == self.token) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What one attempt at a lock found.
enum Attempt {
    Taken(FileLock),
    Held(Holder),
    Again,
}

fn read_holder(path: &Path) -> Option<Holder> {
    read_json(path).ok()
}

#[cfg(unix)]
fn link_count(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.nlink())
}

#[cfg(not(unix))]
fn link_count(_: &Path) -> Option<u64> {
    None
}

/// Whether `h`, the holder of the lock at `path`, is gone.
fn is_stale(h: &Holder, path: &Path) -> bool {
    if h.host == host_name() {
        if let Some(alive) = pid_alive(h.pid) {
            return !alive;
        }
    }
    let age = std::fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| SystemTime::now().duration_since(t).ok());
    age.is_some_and(|a| a > STALE_AFTER)
}

/// Removes the stale lock of `h` at `path` unless someone else got there first.
fn break_stale(path: &Path, h: &Holder) -> Result<()> {
    let aside = path.with_file_name(format!(".{}broken-{}", tmp_prefix("lock"), h.token));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    }
    if read_holder(&aside).is_some_and(|moved| moved.token != h.token) {
        // A fresh lock was taken between our look and the rename: put it back.
        let _ = std::fs::hard_link(&aside, path);
    }
    let _ = std::fs::remove_file(&aside);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn one_holder_at_a_time_and_dead_holders_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/t.lock");
        let inside = Arc::new(AtomicUsize::new(0));
        let entered = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..6 {
                let (path, inside, entered) = (path.clone(), inside.clone(), entered.clone());
                s.spawn(move || {
                    for _ in 0..5 {
                        let _lock = FileLock::acquire(&path, |_| {}).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                        std::thread::sleep(Duration::from_millis(2));
                        inside.fetch_sub(1, Ordering::SeqCst);
                        entered.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(entered.load(Ordering::SeqCst), 30);
        assert!(!path.exists(), "released");
        // A lock of a process that is gone (same host) is broken at once.
        let dead = Holder { pid: u32::MAX - 1, host: host_name(), token: "dead".into(), since: "then".into() };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        let lock = FileLock::acquire(&path, |h| panic!("waited for {h}")).unwrap();
        assert_ne!(read_holder(&path).unwrap().token, "dead");
        drop(lock);
        // Another host's lock: stale once its heartbeat is old, live while fresh.
        let other = Holder { pid: 1, host: "elsewhere".into(), token: "other".into(), since: "then".into() };
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        assert!(!is_stale(&other, &path));
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
        assert!(is_stale(&other, &path));
        drop(FileLock::acquire(&path, |h| panic!("waited for {h}")).unwrap());
        // try_acquire says who holds a live lock.
        let held = FileLock::acquire(&path, |_| {}).unwrap();
        assert_eq!(FileLock::try_acquire(&path).unwrap().unwrap_err().pid, std::process::id());
        drop(held);
        drop(FileLock::try_acquire(&path).unwrap().unwrap());
        // Nothing but the folder is left.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 0);
    }
}
