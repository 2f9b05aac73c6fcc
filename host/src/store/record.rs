//! Records: the JSON documents the stages hand each other (a target's
//! `meta.json`, a run's `manifest.json`, its `analysis.json`). Each is one
//! struct that both writes and reads, with a `schema` version checked on read.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use super::atomic::{read_json, write_json_atomic};
use crate::error::{Error, Result};

/// A versioned JSON record.
pub trait Record: Serialize + DeserializeOwned {
    /// What the record is, for messages (`run manifest`, …).
    const WHAT: &'static str;
    /// The schema version this host writes and reads.
    const SCHEMA: u32;
}

/// Reads record `R` from `path`, refusing another schema version by name.
pub fn read_record<R: Record>(path: &Path) -> Result<R> {
    let v: serde_json::Value = read_json(path)?;
    match v.get("schema").and_then(serde_json::Value::as_u64) {
        Some(s) if s == u64::from(R::SCHEMA) => {}
        Some(s) => {
            return Err(Error::bad_file(path, format!("{} schema {s}, but this host reads schema {}", R::WHAT, R::SCHEMA)));
        }
        None => return Err(Error::bad_file(path, format!("not a {}: it has no `schema` field", R::WHAT))),
    }
    serde_json::from_value(v).map_err(|e| Error::bad_file(path, format!("invalid {}: {e}", R::WHAT)))
}

/// Writes record `R` to `path`, atomically.
pub fn write_record<R: Record>(path: &Path, record: &R) -> Result<()> {
    write_json_atomic(path, record)
}
