//! Content-addressed objects: `<hash>` is the sha256 of the payload's file
//! list (`name\0sha256(bytes)\n` for each file, sorted by name); `meta.json`
//! is outside it and records every file's hash. An object is assembled in
//! `store/tmp/` and renamed into place in one step, so a killed build leaves
//! no partial object; loading re-hashes every file and refuses an altered one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

use super::atomic::{read_json, write_atomic, write_json_atomic};
use super::layout::{entry_names, Store};
use crate::error::{Error, Result};

/// The schema version of `meta.json` this host writes and reads.
pub const OBJECT_SCHEMA: u32 = 1;

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
        let tmp_root = self.tmp_dir();
        std::fs::create_dir_all(&tmp_root).map_err(|e| Error::io(&tmp_root, e))?;
        let tmp = tempfile::Builder::new().prefix("obj-").tempdir_in(&tmp_root).map_err(|e| Error::io(&tmp_root, e))?;
        let pdir = tmp.path().join("payload");
        for (name, bytes) in payload {
            write_atomic(&pdir.join(name), bytes)?;
        }
        write_json_atomic(&tmp.path().join(super::layout::OBJECT_META), &ObjectMeta { schema: OBJECT_SCHEMA, hash: hash.clone(), files, meta })?;
        std::fs::create_dir_all(self.objects_dir()).map_err(|e| Error::io(self.objects_dir(), e))?;
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
        let meta: ObjectMeta<M> = read_json(&self.object_meta_path(hash))?;
        if meta.schema != OBJECT_SCHEMA {
            return Err(Error::bad_file(self.object_meta_path(hash), format!("object schema {}, but this host reads schema {OBJECT_SCHEMA}", meta.schema)));
        }
        for (name, want) in &meta.files {
            let p = dir.join("payload").join(name);
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            if &sha256_hex(&bytes) != want {
                return Err(Error::bad_file(&p, format!("corrupted: its sha256 is not the {want} recorded in meta.json")));
            }
        }
        if object_hash(&meta.files) != hash || meta.hash != hash {
            return Err(Error::bad_file(self.object_meta_path(hash), "corrupted: the file list does not hash to the object's name"));
        }
        Ok(meta)
    }

    /// The hashes of every object in the store, sorted.
    pub fn object_hashes(&self) -> Result<Vec<String>> {
        entry_names(&self.objects_dir())
    }

    /// Links `experiments/<exp>/<kind>/<name>` to object `hash` (atomically replaced).
    pub fn link(&self, exp: &str, kind: &str, name: &str, hash: &str) -> Result<PathBuf> {
        let dir = self.links_dir(exp, kind)?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let link = dir.join(name);
        let target = Store::object_link_target(hash);
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        symlink(&target, &tmp).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &link).map_err(|e| Error::io(&link, e))?;
        Ok(link)
    }
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
