//! Provenance stamped on every record: when, by which host version, from
//! which git commit.

use serde::{Deserialize, Serialize};

/// When and by what a record was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// UTC, RFC 3339, seconds.
    pub created: String,
    /// The lh-host version.
    #[serde(alias = "crate_version")]
    pub host_version: String,
    /// The git commit lh-host was built from (`unknown` outside a checkout).
    pub git_commit: String,
}

impl Provenance {
    /// Now, by this binary.
    pub fn now() -> Self {
        Self { created: now_utc(), host_version: env!("CARGO_PKG_VERSION").into(), git_commit: option_env!("LH_GIT_COMMIT").unwrap_or("unknown").into() }
    }
}

/// The current UTC time, RFC 3339 to the second.
pub fn now_utc() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
