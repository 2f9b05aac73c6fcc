//! What the machine has, so that a size too large for it is refused by name
//! before anything is allocated (a leaf).

use crate::error::{Error, Result};

/// Bytes of memory available to a new allocation (Linux: `MemAvailable` of
/// `/proc/meminfo`); `None` where it cannot be read, and then nothing is refused.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// `bytes` in the largest binary unit that keeps it ≥ 1 (`7.3 TiB`).
pub fn human(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

/// An error naming `what` (the key and its value) when `bytes` (an estimate of
/// what it needs, as f64 so that no product overflows) exceeds the memory available.
pub fn check(what: &str, bytes: f64) -> Result<()> {
    match available() {
        Some(have) if bytes > have as f64 => {
            Err(Error::invalid(format!("{what}: needs about {} of memory, but this machine has {} available", human(bytes), human(have as f64))))
        }
        _ => Ok(()),
    }
}
