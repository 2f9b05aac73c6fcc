//! How a workflow runs its jobs: the `workflow:` section of an experiment
//! file and the `--set key=value` settings of `lh-host workflow sample`
//! (threads per job, evaluation backend, precision; and for SLURM the
//! partition, time limit, CPUs, memory, GPUs and array throttle).
//!
//! Every value that can reach a SLURM job is checked here against the
//! characters its kind allows, so a partition or time limit holding `;`,
//! `$(…)`, a quote or a newline is refused before anything is submitted.

use serde::{Deserialize, Serialize};

use super::parse::parse_ron;
use super::sections::{present, section};
use crate::backend::BackendKind;
use crate::error::{Error, Result};
use crate::model::Precision;

section! {
    /// Settings of a workflow (`workflow: (…)` in an experiment file; `--set` wins).
    pub struct WorkflowConfig / WorkflowPatch {
        /// CPU threads per job (local default: the cores divided by `--jobs`; SLURM: `cpus`, else 1).
        threads: Option<usize> = None,
        /// Evaluation backend of every run (`--backend` of `sample`).
        device: BackendKind = BackendKind::Auto,
        /// Precision of every run (default: each target's training precision).
        precision: Option<Precision> = None,
        /// Seconds between two checkpoints of a run while it draws.
        checkpoint_every: f64 = 30.0,
        /// SLURM partition(s), comma-separated (`--partition`).
        partition: Option<String> = None,
        /// SLURM time limit of each task (`--time`): `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
        walltime: Option<String> = None,
        /// CPUs per SLURM task (`--cpus-per-task`; default: `threads`).
        cpus: Option<usize> = None,
        /// Memory per SLURM task (`--mem`): a whole number with an optional K, M, G or T suffix.
        mem: Option<String> = None,
        /// GPUs per SLURM task (`--gpus-per-task`).
        gpus: Option<usize> = None,
        /// At most this many tasks of a SLURM array run at once (`--array=…%K`).
        throttle: Option<usize> = None,
        /// Seconds between two looks at the SLURM queue while waiting.
        poll: f64 = 2.0,
    }
}

/// The keys `--set` accepts, in the order of [`WorkflowConfig`].
pub const WORKFLOW_KEYS: &[&str] = &["threads", "device", "precision", "checkpoint_every", "partition", "walltime", "cpus", "mem", "gpus", "throttle", "poll"];

impl WorkflowPatch {
    /// One `--set key=value`. The value is RON (`threads=2`, `device=cpu`);
    /// for the text settings a bare word is taken as the text
    /// (`partition=debug`, `walltime=04:00:00`).
    pub fn from_set(set: &str) -> Result<Self> {
        let (k, v) = set.split_once('=').ok_or_else(|| Error::invalid(format!("--set {set}: expected key=value")))?;
        let k = k.trim();
        crate::ensure!(WORKFLOW_KEYS.contains(&k), "--set {k}: unknown workflow setting (settings: {})", WORKFLOW_KEYS.join(", "));
        let origin = format!("--set {k}");
        let parse = |value: &str| parse_ron::<Self>(&format!("({k}: {value})"), &origin);
        let quoted = ron::to_string(v).map_err(|e| Error::invalid(format!("--set {k}: {e}")))?;
        let patch = parse(v).or_else(|first| parse(&quoted).map_err(|_| first)).map_err(|e| match e {
            Error::Config { msg, .. } => Error::invalid(format!("--set {k}={v:?}: {msg}")),
            other => other,
        })?;
        let set_keys = serde_json::to_value(&patch).ok().and_then(|j| j.as_object().map(|o| o.len())).unwrap_or(0);
        crate::ensure!(set_keys == 1, "--set {k}={v:?}: one value expected");
        patch.validate(&origin)?;
        Ok(patch)
    }

    /// Checks every present value; errors start with `origin` (a file or `--set k`).
    pub fn validate(&self, origin: &str) -> Result<()> {
        let mut c = WorkflowConfig::default();
        self.apply(&mut c);
        c.validate().map_err(|e| e.context(origin))
    }
}

impl WorkflowConfig {
    /// Checks every value: counts ≥ 1, finite positive seconds, and SLURM
    /// texts made only of the characters their kind allows.
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [("threads", self.threads), ("cpus", self.cpus), ("throttle", self.throttle)] {
            crate::ensure!(v.is_none_or(|v| v >= 1), "workflow.{key} must be ≥ 1");
        }
        for (key, v) in [("checkpoint_every", self.checkpoint_every), ("poll", self.poll)] {
            crate::ensure!(v.is_finite() && v > 0.0, "workflow.{key} must be a number of seconds > 0, got {v}");
        }
        if let Some(p) = &self.partition {
            let name_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            crate::ensure!(
                p.split(',').all(name_ok),
                "workflow.partition = {p:?} is not a partition name (letters, digits, `_`, `.`, `-`; several separated by `,`)"
            );
        }
        if let Some(t) = &self.walltime {
            crate::ensure!(is_walltime(t), "workflow.walltime = {t:?} is not a SLURM time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)");
        }
        if let Some(m) = &self.mem {
            let digits = m.strip_suffix(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']).unwrap_or(m);
            crate::ensure!(
                !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()),
                "workflow.mem = {m:?} is not an amount of memory (a whole number with an optional K, M, G or T suffix)"
            );
        }
        if let (Some(t), Some(c)) = (self.threads, self.cpus) {
            crate::ensure!(t <= c, "workflow.threads = {t} exceeds workflow.cpus = {c}: a task would run more threads than it has CPUs");
        }
        Ok(())
    }
}

/// Whether `t` is one of SLURM's time-limit forms.
fn is_walltime(t: &str) -> bool {
    let groups = |s: &str, max: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= max && parts.iter().all(|p| !p.is_empty() && p.len() <= 9 && p.chars().all(|c| c.is_ascii_digit()))
    };
    match t.split_once('-') {
        Some((days, rest)) => groups(days, 1) && groups(rest, 3),
        None => groups(t, 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_typed_and_slurm_texts_checked() {
        let p = WorkflowPatch::from_set("partition=debug").unwrap();
        assert_eq!(p.partition, Some(Some("debug".into())));
        assert_eq!(WorkflowPatch::from_set("walltime=1-04:00:00").unwrap().walltime, Some(Some("1-04:00:00".into())));
        assert_eq!(WorkflowPatch::from_set("threads=2").unwrap().threads, Some(Some(2)));
        assert_eq!(WorkflowPatch::from_set("device=cpu").unwrap().device, Some(BackendKind::Cpu));
        for bad in ["partition=debug;rm -rf /", "partition=$(reboot)", "partition=a\nb", "partition=a b", "walltime=10:00;id", "walltime=$(id)", "mem=4G`id`"] {
            let e = WorkflowPatch::from_set(bad).unwrap_err().to_string();
            let key = bad.split('=').next().unwrap();
            assert!(e.contains(&format!("workflow.{key}")) && !e.contains('\n'), "{bad}: {e}");
        }
        let e = WorkflowPatch::from_set("walltme=10").unwrap_err().to_string();
        assert!(e.contains("unknown workflow setting") && e.contains("walltime"), "{e}");
        assert!(WorkflowPatch::from_set("threads=two").unwrap_err().to_string().contains("--set threads"));
        assert!(WorkflowPatch::from_set("threads=0").is_err());
        assert!(WorkflowPatch::from_set("threads=1, partition: \"x\"").is_err());
        for ok in ["30", "30:00", "04:00:00", "2-0", "2-12:30", "2-12:30:00"] {
            assert!(is_walltime(ok), "{ok}");
        }
        for bad in ["", "1:2:3:4", "a", "1-", "-1", "1-2-3", "1:"] {
            assert!(!is_walltime(bad), "{bad}");
        }
    }
}
