//! The content-addressed artifact store.
//!
//! ```text
//! $LH_HOME/store/objects/sha256/<hash>/{payload/…, meta.json}    immutable
//! $LH_HOME/experiments/<exp>/targets/<target_id> -> ../../../store/objects/sha256/<hash>
//! ```
//!
//! `<hash>` is the sha256 of the payload's file list (`name\0sha256(bytes)\n`
//! for each file, sorted by name); `meta.json` is outside it and records every
//! file's hash. An object is assembled in `store/tmp/` and renamed into place
//! in one step, so a killed build leaves no partial object; loading re-hashes
//! every file and refuses an altered one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The hash naming an object whose payload files have these hashes.
fn object_hash(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (name, hash) in files {
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(hash.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// synced, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Reads a JSON file into `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("invalid JSON: {e}")))
}

/// The artifact root (`$LH_HOME`, default `./artifacts`).
#[derive(Debug, Clone)]
pub struct Store {
    pub home: PathBuf,
}

/// What every object's `meta.json` holds besides its type-specific fields.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ObjectMeta<M> {
    pub schema: u32,
    /// The object hash (the folder's name).
    pub hash: String,
    /// sha256 of each payload file.
    pub files: BTreeMap<String, String>,
    /// Type-specific metadata (e.g. a target's).
    #[serde(flatten)]
    pub meta: M,
}

impl Store {
    /// The store at `$LH_HOME`, or `./artifacts`.
    pub fn from_env() -> Self {
        Self { home: std::env::var_os("LH_HOME").map_or_else(|| PathBuf::from("artifacts"), PathBuf::from) }
    }

    fn objects(&self) -> PathBuf {
        self.home.join("store/objects/sha256")
    }

    /// The folder of object `hash`.
    pub fn object_dir(&self, hash: &str) -> PathBuf {
        self.objects().join(hash)
    }

    /// Commits a payload and its metadata; returns the object hash. When an
    /// object with the same hash exists, it is verified and kept (first write
    /// wins) and the new one discarded.
    pub fn commit<M: Serialize + DeserializeOwned>(&self, payload: &[(&str, Vec<u8>)], meta: M) -> Result<String> {
        let files: BTreeMap<String, String> = payload.iter().map(|(n, b)| (n.to_string(), sha256_hex(b))).collect();
        crate::ensure!(files.len() == payload.len(), "duplicate payload file names");
        let hash = object_hash(&files);
        let dest = self.object_dir(&hash);
        if dest.exists() {
            self.load_meta::<M>(&hash)?;
            return Ok(hash);
        }
        let tmp_root = self.home.join("store/tmp");
        std::fs::create_dir_all(&tmp_root).map_err(|e| Error::io(&tmp_root, e))?;
        let tmp = tempfile::Builder::new().prefix("obj-").tempdir_in(&tmp_root).map_err(|e| Error::io(&tmp_root, e))?;
        let pdir = tmp.path().join("payload");
        for (name, bytes) in payload {
            write_atomic(&pdir.join(name), bytes)?;
        }
        write_json_atomic(&tmp.path().join("meta.json"), &ObjectMeta { schema: 1, hash: hash.clone(), files, meta })?;
        std::fs::create_dir_all(self.objects()).map_err(|e| Error::io(self.objects(), e))?;
        let tmp_path = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp_path, &dest) {
            let _ = std::fs::remove_dir_all(&tmp_path);
            // Another build may have committed the same object meanwhile.
            if !dest.exists() {
                return Err(Error::io(&dest, e));
            }
        }
        Ok(hash)
    }

    /// Reads an object's metadata and verifies every payload file's hash and
    /// the object hash itself.
    pub fn load_meta<M: DeserializeOwned>(&self, hash: &str) -> Result<ObjectMeta<M>> {
        let dir = self.object_dir(hash);
        let meta: ObjectMeta<M> = read_json(&dir.join("meta.json"))?;
        for (name, want) in &meta.files {
            let p = dir.join("payload").join(name);
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            if &sha256_hex(&bytes) != want {
                return Err(Error::bad_file(&p, format!("corrupted: its sha256 is not the {want} recorded in meta.json")));
            }
        }
        if object_hash(&meta.files) != hash || meta.hash != hash {
            return Err(Error::bad_file(dir.join("meta.json"), "corrupted: the file list does not hash to the object's name"));
        }
        Ok(meta)
    }

    /// A verified payload file's bytes.
    pub fn payload_path(&self, hash: &str, name: &str) -> PathBuf {
        self.object_dir(hash).join("payload").join(name)
    }

    /// The hashes of every object in the store, sorted.
    pub fn object_hashes(&self) -> Result<Vec<String>> {
        entry_names(&self.objects())
    }

    /// Links `experiments/<exp>/<kind>/<name>` to object `hash` (atomically replaced).
    pub fn link(&self, exp: &str, kind: &str, name: &str, hash: &str) -> Result<PathBuf> {
        crate::ensure!(
            !exp.is_empty() && !exp.contains(['/', '\\']) && exp != "." && exp != "..",
            "experiment name `{exp}` must be a plain folder name"
        );
        let dir = self.home.join("experiments").join(exp).join(kind);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let link = dir.join(name);
        let target = Path::new("../../../store/objects/sha256").join(hash);
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        symlink(&target, &tmp).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &link).map_err(|e| Error::io(&link, e))?;
        Ok(link)
    }
}

/// The names in folder `dir`, sorted, without hidden ones (temporary files
/// start with `.`); none when the folder does not exist.
pub fn entry_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut v: Vec<String> = rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| !n.starts_with('.')).collect();
    v.sort();
    Ok(v)
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
    struct M {
        kind: String,
    }

    #[test]
    fn commit_is_idempotent_and_detects_tampering() {
        let home = tempfile::tempdir().unwrap();
        let s = Store { home: home.path().to_path_buf() };
        let p = [("a.bin", vec![1u8, 2, 3]), ("b.txt", b"hi".to_vec())];
        let h1 = s.commit(&p, M { kind: "x".into() }).unwrap();
        let h2 = s.commit(&p, M { kind: "x".into() }).unwrap();
        assert_eq!(h1, h2);
        assert_eq!(s.object_hashes().unwrap(), vec![h1.clone()]);
        assert_eq!(s.load_meta::<M>(&h1).unwrap().meta, M { kind: "x".into() });
        // Nothing is left in tmp.
        assert_eq!(std::fs::read_dir(home.path().join("store/tmp")).unwrap().count(), 0);
        std::fs::write(s.payload_path(&h1, "a.bin"), [1u8, 2, 4]).unwrap();
        let err = s.load_meta::<M>(&h1).unwrap_err().to_string();
        assert!(err.contains("a.bin: corrupted"), "{err}");
        let link = s.link("dev", "targets", "t", &h1).unwrap();
        assert!(link.join("meta.json").exists());
    }
}
