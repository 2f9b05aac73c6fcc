//! Content-addressed objects: `<hash>` is the sha256 of the payload's file
//! list (`name\0sha256(bytes)\n` for each file, sorted by name) followed by
//! the canonical JSON of `meta.json` (every field but `hash`), so it covers the
//! data and every piece of metadata that sampling uses (γ, β, L0, D, …).
//! `meta.json` is written in one canonical form (sorted keys, pretty), so an
//! edit of any byte of it is detected on load. When and by what the object was
//! made is in `provenance.json` beside it, outside the hash: a rebuild of the
//! same config gives the same object. An object is assembled in `store/tmp/`
//! and renamed into place in one step, so a killed build leaves no partial
//! object; loading re-hashes every file and refuses an altered one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

use super::atomic::{read_json, write_atomic, write_json_atomic};
use super::layout::{entry_names, tmp_prefix, Store, OBJECT_META, OBJECT_PROVENANCE};
use super::provenance::Provenance;
use crate::error::{Error, Result};

/// The schema version of `meta.json` this host writes and reads.
pub const OBJECT_SCHEMA: u32 = 2;

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The hash naming an object: its payload files' hashes, then its metadata
/// (`meta.json` as a JSON value, without its `hash` field) in canonical form.
fn object_hash(files: &BTreeMap<String, String>, meta: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    for (name, hash) in files {
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(hash.as_bytes());
        h.update(b"\n");
    }
    let mut body = meta.clone();
    if let Some(m) = body.as_object_mut() {
        m.remove("hash");
    }
    h.update(b"meta\0");
    h.update(body.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// The one text form of a `meta.json` value: pretty, keys sorted, a final newline.
fn meta_text(value: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("a JSON value serialises");
    s.push('\n');
    s
}

/// When and by what an object was made (`provenance.json`): informational,
/// outside the object hash.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ObjectProvenance {
    #[serde(flatten)]
    pub made: Provenance,
    /// Wall-clock seconds the build took.
    pub seconds: f64,
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
    /// Commits a payload, its metadata and its provenance; returns the object
    /// hash. When an object with the same hash exists, it is verified and kept
    /// (first write wins) and the new one discarded.
    pub fn commit<M: Serialize + DeserializeOwned>(&self, payload: &[(&str, Vec<u8>)], meta: M, provenance: &ObjectProvenance) -> Result<String> {
        let files: BTreeMap<String, String> = payload.iter().map(|(n, b)| (n.to_string(), sha256_hex(b))).collect();
        crate::ensure!(files.len() == payload.len(), "duplicate payload file names");
        let body = ObjectMeta { schema: OBJECT_SCHEMA, hash: String::new(), files, meta };
        let mut value = serde_json::to_value(&body).map_err(|e| Error::invalid(format!("meta.json: {e}")))?;
        let hash = object_hash(&body.files, &value);
        value["hash"] = serde_json::Value::String(hash.clone());
        let dest = self.object_dir(&hash);
        if dest.exists() {
            self.load_meta::<M>(&hash)?;
            return Ok(hash);
        }
        let tmp_root = self.tmp_dir();
        std::fs::create_dir_all(&tmp_root).map_err(|e| Error::io(&tmp_root, e))?;
        let tmp = tempfile::Builder::new().prefix(&tmp_prefix("obj")).tempdir_in(&tmp_root).map_err(|e| Error::io(&tmp_root, e))?;
        let pdir = tmp.path().join("payload");
        for (name, bytes) in payload {
            write_atomic(&pdir.join(name), bytes)?;
        }
        write_atomic(&tmp.path().join(OBJECT_META), meta_text(&value).as_bytes())?;
        write_json_atomic(&tmp.path().join(OBJECT_PROVENANCE), provenance)?;
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

    /// Reads an object's metadata and verifies it: the schema, `meta.json`'s
    /// canonical form, every payload file's hash, and the object hash itself.
    pub fn load_meta<M: DeserializeOwned>(&self, hash: &str) -> Result<ObjectMeta<M>> {
        let dir = self.object_dir(hash);
        let path = self.object_meta_path(hash);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::bad_file(&path, format!("corrupted: invalid JSON ({e})")))?;
        match value.get("schema").and_then(serde_json::Value::as_u64) {
            Some(s) if s == u64::from(OBJECT_SCHEMA) => {}
            Some(s) => return Err(Error::bad_file(&path, format!("object schema {s}, but this host reads schema {OBJECT_SCHEMA}: rebuild the target"))),
            None => return Err(Error::bad_file(&path, "corrupted: no `schema` field")),
        }
        if text != meta_text(&value) {
            return Err(Error::bad_file(&path, "corrupted: meta.json is not the text lh-host wrote (it was edited)"));
        }
        let meta: ObjectMeta<M> = serde_json::from_value(value.clone()).map_err(|e| Error::bad_file(&path, format!("corrupted: {e}")))?;
        for (name, want) in &meta.files {
            let p = dir.join("payload").join(name);
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            if &sha256_hex(&bytes) != want {
                return Err(Error::bad_file(&p, format!("corrupted: its sha256 is not the {want} recorded in meta.json")));
            }
        }
        if object_hash(&meta.files, &value) != hash || meta.hash != hash {
            return Err(Error::bad_file(&path, "corrupted: its contents do not hash to the object's name (meta.json or the file list was changed)"));
        }
        Ok(meta)
    }

    /// When and by what object `hash` was made.
    pub fn load_provenance(&self, hash: &str) -> Result<ObjectProvenance> {
        read_json(&self.object_dir(hash).join(OBJECT_PROVENANCE))
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
        let made = |seconds| ObjectProvenance { made: Provenance::now(), seconds };
        let h1 = s.commit(&p, M { kind: "x".into() }, &made(1.0)).unwrap();
        // Provenance is outside the hash: the same content is the same object.
        let h2 = s.commit(&p, M { kind: "x".into() }, &made(2.0)).unwrap();
        assert_eq!(h1, h2);
        assert_eq!(s.load_provenance(&h1).unwrap().seconds, 1.0, "first write wins");
        // Metadata is inside it.
        let h3 = s.commit(&p, M { kind: "y".into() }, &made(1.0)).unwrap();
        assert_ne!(h1, h3);
        assert_eq!(s.object_hashes().unwrap().len(), 2);
        assert_eq!(s.load_meta::<M>(&h1).unwrap().meta, M { kind: "x".into() });
        // Nothing is left in tmp.
        assert_eq!(std::fs::read_dir(home.path().join("store/tmp")).unwrap().count(), 0);
        // An edited meta.json is caught, whether its meaning or only its form changed.
        let meta = s.object_meta_path(&h3);
        let text = std::fs::read_to_string(&meta).unwrap();
        std::fs::write(&meta, text.replace("\"y\"", "\"z\"")).unwrap();
        let err = s.load_meta::<M>(&h3).unwrap_err().to_string();
        assert!(err.contains("meta.json: corrupted") && err.contains("hash to the object's name"), "{err}");
        std::fs::write(&meta, text.replace("\n", "\n ")).unwrap();
        let err = s.load_meta::<M>(&h3).unwrap_err().to_string();
        assert!(err.contains("was edited"), "{err}");
        std::fs::write(s.payload_path(&h1, "a.bin"), [1u8, 2, 4]).unwrap();
        let err = s.load_meta::<M>(&h1).unwrap_err().to_string();
        assert!(err.contains("a.bin: corrupted"), "{err}");
        let link = s.link("dev", "targets", "t", &h1).unwrap();
        assert!(link.join("meta.json").exists());
    }
}
