//! Every artifact path rule, in one place:
//!
//! ```text
//! $LH_HOME/store/objects/sha256/<hash>/{payload/…, meta.json, provenance.json}   immutable objects
//! $LH_HOME/store/tmp/                                              objects being assembled
//! $LH_HOME/store/locks/<name>.lock                                 who builds what (store::lock)
//! $LH_HOME/experiments/<exp>/targets/<target_id> -> ../../../store/objects/sha256/<hash>
//! $LH_HOME/experiments/<exp>/runs/<run id>/{manifest.json, traces.npz, analysis.json, diagnostics/*.png}
//! $LH_HOME/experiments/<exp>/{compare.csv, compare.png, llc_runs.csv}
//! $LH_HOME/experiments/<exp>/workflow/plan.json                    the latest workflow plan
//! $LH_HOME/experiments/<exp>/workflow/outcomes/<key>.json          how each planned task ended
//! $LH_HOME/experiments/<exp>/workflow/slurm/<submission>/          plan, job scripts, logs, job ids
//! $LH_HOME/experiments/<exp>/gallery/{index.html, gallery.md, img/}  the promoted gallery
//! $LH_HOME/target-diagnostics/<target_id>/*.png
//! $LH_HOME/cache/plugin-probes/<sha256>.json                       whether loading a plugin file crashes
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A run's manifest.
pub const MANIFEST: &str = "manifest.json";
/// A run's traces.
pub const TRACES: &str = "traces.npz";
/// A run's Stage C summary.
pub const ANALYSIS: &str = "analysis.json";
/// A run's figures folder.
pub const RUN_FIGURES: &str = "diagnostics";
/// An experiment's comparison table and figure.
pub const COMPARE_CSV: &str = "compare.csv";
pub const COMPARE_PNG: &str = "compare.png";
/// An experiment's table of workflow runs.
pub const LLC_RUNS_CSV: &str = "llc_runs.csv";
/// A gallery's page.
pub const GALLERY_HTML: &str = "index.html";
/// A gallery's Markdown snippet.
pub const GALLERY_SNIPPET: &str = "gallery.md";
/// An object's metadata (covered by the object hash).
pub const OBJECT_META: &str = "meta.json";
/// When and by what an object was made (outside the hash).
pub const OBJECT_PROVENANCE: &str = "provenance.json";

/// The artifact root (`$LH_HOME`, default `./artifacts`) and its paths.
#[derive(Debug, Clone)]
pub struct Store {
    pub home: PathBuf,
}

impl Store {
    /// The store at `$LH_HOME`, or `./artifacts`; an empty `LH_HOME` is an error.
    pub fn from_env() -> Result<Self> {
        match std::env::var_os("LH_HOME") {
            Some(h) if h.is_empty() => Err(Error::invalid("LH_HOME is set but empty: unset it (the store is then ./artifacts) or name a folder")),
            Some(h) => Ok(Self { home: PathBuf::from(h) }),
            None => Ok(Self { home: PathBuf::from("artifacts") }),
        }
    }

    /// Where every object lives.
    pub fn objects_dir(&self) -> PathBuf {
        self.home.join("store/objects/sha256")
    }

    /// Where objects are assembled before they are renamed into place.
    pub fn tmp_dir(&self) -> PathBuf {
        self.home.join("store/tmp")
    }

    /// Where lock files are (see [`super::lock`]).
    pub fn locks_dir(&self) -> PathBuf {
        self.home.join("store/locks")
    }

    /// The lock taken while target `id` is built, so that it is built once.
    pub fn target_lock_path(&self, id: &str) -> PathBuf {
        self.locks_dir().join(format!("{id}.lock"))
    }

    /// The folder of object `hash`.
    pub fn object_dir(&self, hash: &str) -> PathBuf {
        self.objects_dir().join(hash)
    }

    /// The `meta.json` of object `hash`.
    pub fn object_meta_path(&self, hash: &str) -> PathBuf {
        self.object_dir(hash).join(OBJECT_META)
    }

    /// A payload file of object `hash`.
    pub fn payload_path(&self, hash: &str, name: &str) -> PathBuf {
        self.object_dir(hash).join("payload").join(name)
    }

    /// The link target, relative to `experiments/<exp>/<kind>/`, of object `hash`.
    pub fn object_link_target(hash: &str) -> PathBuf {
        Path::new("../../../store/objects/sha256").join(hash)
    }

    /// The folder of all experiments.
    pub fn experiments_dir(&self) -> PathBuf {
        self.home.join("experiments")
    }

    /// The folder of experiment `exp`, once its name is checked to be a plain folder name.
    pub fn experiment_dir(&self, exp: &str) -> Result<PathBuf> {
        check_experiment_name(exp)?;
        Ok(self.experiments_dir().join(exp))
    }

    /// The folder of an experiment that exists; an error naming it (and the
    /// experiments there are) when it does not.
    pub fn existing_experiment_dir(&self, exp: &str) -> Result<PathBuf> {
        let root = self.experiments_dir();
        let dir = root.join(exp);
        if check_experiment_name(exp).is_err() || !dir.is_dir() {
            let known = entry_names(&root).unwrap_or_default();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            return Err(Error::invalid(format!("no experiment `{exp}` in {} (experiments: {known})", root.display())));
        }
        Ok(dir)
    }

    /// The links of one kind (`targets`) in experiment `exp`.
    pub fn links_dir(&self, exp: &str, kind: &str) -> Result<PathBuf> {
        Ok(self.experiment_dir(exp)?.join(kind))
    }

    /// The target links of experiment `exp`.
    pub fn targets_dir(&self, exp: &str) -> Result<PathBuf> {
        self.links_dir(exp, "targets")
    }

    /// The run directories of experiment `exp`.
    pub fn runs_dir(&self, exp: &str) -> Result<PathBuf> {
        Ok(self.experiment_dir(exp)?.join("runs"))
    }

    /// The workflow files of experiment `exp` (plan, outcomes, SLURM submissions).
    pub fn workflow_dir(&self, exp: &str) -> Result<PathBuf> {
        Ok(self.experiment_dir(exp)?.join("workflow"))
    }

    /// The latest workflow plan of experiment `exp`.
    pub fn plan_path(&self, exp: &str) -> Result<PathBuf> {
        Ok(self.workflow_dir(exp)?.join("plan.json"))
    }

    /// How the planned task with `key` (a run key or a target id) last ended.
    pub fn outcome_path(&self, exp: &str, key: &str) -> Result<PathBuf> {
        Ok(self.workflow_dir(exp)?.join("outcomes").join(format!("{key}.json")))
    }

    /// The folder of SLURM submissions of experiment `exp`.
    pub fn slurm_dir(&self, exp: &str) -> Result<PathBuf> {
        Ok(self.workflow_dir(exp)?.join("slurm"))
    }

    /// The lock a workflow holds while it runs experiment `exp`.
    pub fn experiment_lock_path(&self, exp: &str) -> Result<PathBuf> {
        check_experiment_name(exp)?;
        Ok(self.locks_dir().join(format!("experiment-{exp}.lock")))
    }

    /// Where `workflow sample --promote` writes experiment `exp`'s gallery.
    pub fn gallery_dir(&self, exp: &str) -> Result<PathBuf> {
        Ok(self.experiment_dir(exp)?.join("gallery"))
    }

    /// Caches that can be deleted at any time (e.g. `plugin-probes/`).
    pub fn cache_dir(&self) -> PathBuf {
        self.home.join("cache")
    }

    /// The figures of target `id` (outside the immutable object).
    pub fn target_figures_dir(&self, id: &str) -> PathBuf {
        self.home.join("target-diagnostics").join(id)
    }
}

/// The name prefix of a temporary file or folder made by this process
/// (`obj-<pid>-`), so that `store gc` can tell a dead process's leftovers.
pub fn tmp_prefix(kind: &str) -> String {
    format!("{kind}-{}-", std::process::id())
}

/// An experiment name must be a plain folder name: no separators, not `.` or `..`.
pub fn check_experiment_name(exp: &str) -> Result<()> {
    crate::ensure!(!exp.is_empty() && !exp.contains(['/', '\\']) && exp != "." && exp != "..", "experiment name `{exp}` must be a plain folder name");
    Ok(())
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
