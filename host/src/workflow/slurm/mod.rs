//! The SLURM backend: a plan submitted as two job arrays, one for the
//! targets still to build and one for the runs not done, the second waiting
//! on the first (`--dependency=afterok`). Each array task runs `lh-host`
//! (by absolute path) on one entry of the submission's copy of the plan,
//! through [`super::task`], exactly as the local pool does.
//!
//! ```text
//! experiments/<exp>/workflow/slurm/<submission>/
//!     plan.json        the plan and which entry each array task runs
//!     task.sh          the job script of both arrays
//!     submission.json  the job ids
//!     logs/            one log per task (targets-<job>_<task>.out, runs-…)
//! experiments/<exp>/workflow/slurm/latest.json   which submission is the latest
//! ```
//!
//! While waiting it polls `squeue`, cancels an array whose dependency can
//! never be satisfied (a target failed), and at the end reads every task's
//! final state, leaving a failed outcome record for each task that ended
//! without writing one (cancelled before it started, killed, node failure),
//! so that the next `workflow sample` redoes exactly those.

pub mod query;
pub mod script;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::script::shell_words;
use super::plan::{Plan, Tasks};
use super::state::{OutcomeRecord, TaskStatus};
use crate::config::WorkflowConfig;
use crate::error::{Error, Result};
use crate::store::atomic::{read_json, write_atomic, write_json_atomic};
use crate::store::provenance::now_utc;
use crate::store::{sha256_hex, Store};

/// Threads per task: `workflow.threads`, else `workflow.cpus`, else 1.
pub fn threads(s: &WorkflowConfig) -> usize {
    s.threads.or(s.cpus).unwrap_or(1)
}

/// The job ids of a submission.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobIds {
    pub submission: String,
    /// One array per chunk of at most `MaxArraySize` tasks.
    pub targets: Vec<String>,
    pub runs: Vec<String>,
    /// Tasks per array, in the order of `targets` then `runs`.
    pub sizes: Vec<usize>,
    pub submitted: String,
}

impl JobIds {
    /// `targets array 12 (1 task), runs array 13 (10 tasks)`.
    pub fn describe(&self) -> String {
        let arrays: Vec<String> = self
            .targets
            .iter()
            .map(|j| ("targets", j))
            .chain(self.runs.iter().map(|j| ("runs", j)))
            .zip(&self.sizes)
            .map(|((what, j), n)| format!("{what} array {j} ({n} task{})", if *n == 1 { "" } else { "s" }))
            .collect();
        if arrays.is_empty() {
            "nothing (every run is done)".into()
        } else {
            arrays.join(", ")
        }
    }

    /// Every job id.
    pub fn all(&self) -> Vec<String> {
        self.targets.iter().chain(&self.runs).cloned().collect()
    }
}

/// A submission being prepared: its folder, its plan copy and its arrays.
pub struct Submission {
    dir: PathBuf,
    plan: Plan,
    exe: PathBuf,
    chunk: usize,
}

impl Submission {
    /// The submission of the runs `todo` of `plan` (and of the targets they
    /// need that are not stored yet); nothing is written until [`submit`].
    ///
    /// [`submit`]: Submission::submit
    pub fn prepare(store: &Store, plan: &Plan, todo: &[usize]) -> Result<Submission> {
        let stamp: String = now_utc().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let id = format!("{stamp}-{}", &sha256_hex(format!("{stamp}{}{:?}", std::process::id(), std::time::Instant::now()).as_bytes())[..6]);
        let mut targets = Vec::new();
        for t in super::local::needed_targets(plan, todo) {
            if crate::target::find(store, &plan.targets[t].id)?.is_none() {
                targets.push(t);
            }
        }
        let mut plan = plan.clone();
        plan.tasks = Some(Tasks { submission: id.clone(), targets, runs: todo.to_vec() });
        let exe = std::env::current_exe().map_err(|e| Error::io("lh-host", e))?;
        let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
        Ok(Submission { dir: store.slurm_dir(&plan.experiment)?.join(&id), plan, exe, chunk: query::max_array_size() - 1 })
    }

    /// The job script's path.
    pub fn script_path(&self) -> PathBuf {
        self.dir.join("task.sh")
    }

    /// The job script.
    pub fn script(&self) -> String {
        script::job_script(&self.exe, &self.dir.join("plan.json"))
    }

    fn tasks(&self) -> &Tasks {
        self.plan.tasks.as_ref().expect("prepared with tasks")
    }

    /// The sbatch calls of one phase, in chunks; `after` are the ids the runs wait for.
    fn phase_argvs(&self, phase: &str, n: usize, after: &[String]) -> Vec<Vec<String>> {
        let logs = self.dir.join("logs");
        let script = self.script_path();
        (0..n)
            .step_by(self.chunk.max(1))
            .map(|offset| {
                script::sbatch_argv(&script::ArraySpec {
                    experiment: &self.plan.experiment,
                    phase,
                    tasks: (n - offset).min(self.chunk),
                    offset,
                    settings: &self.plan.settings,
                    threads: self.plan.threads,
                    logs: &logs,
                    chdir: &self.dir,
                    script: &script,
                    after,
                })
            })
            .collect()
    }

    /// The sbatch calls (for `--dry-run`), the runs' dependency shown as `placeholder`.
    pub fn commands(&self, placeholder: &str) -> Vec<Vec<String>> {
        let t = self.tasks();
        let after = if t.targets.is_empty() { vec![] } else { vec![placeholder.to_string()] };
        let mut v = self.phase_argvs("targets", t.targets.len(), &[]);
        v.extend(self.phase_argvs("runs", t.runs.len(), &after));
        v
    }

    /// Writes the submission's folder and submits its arrays; refuses while
    /// an earlier submission of the experiment still has jobs queued.
    pub fn submit(&self) -> Result<JobIds> {
        let exp = &self.plan.experiment;
        if let Some(prev) = latest(&self.plan_store(), exp)? {
            let queued = query::queue(&prev.all())?;
            if !queued.is_empty() {
                let ids: Vec<String> = prev.all();
                return Err(Error::invalid(format!(
                    "experiment `{exp}` still has SLURM jobs queued or running ({}): wait for them (`lh-host workflow status --experiment {exp}`) or scancel them",
                    ids.join(", ")
                )));
            }
        }
        std::fs::create_dir_all(self.dir.join("logs")).map_err(|e| Error::io(&self.dir, e))?;
        self.plan.write(&self.dir.join("plan.json"))?;
        write_atomic(&self.script_path(), self.script().as_bytes())?;
        make_executable(&self.script_path())?;
        let t = self.tasks();
        let mut ids = JobIds { submission: t.submission.clone(), submitted: now_utc(), ..JobIds::default() };
        let submitted = (|| -> Result<()> {
            for argv in self.phase_argvs("targets", t.targets.len(), &[]) {
                ids.targets.push(query::parse_job_id(&query::run(&argv)?)?);
                ids.sizes.push(array_size(&argv));
            }
            for argv in self.phase_argvs("runs", t.runs.len(), &ids.targets.clone()) {
                ids.runs.push(query::parse_job_id(&query::run(&argv)?)?);
                ids.sizes.push(array_size(&argv));
            }
            Ok(())
        })();
        if let Err(e) = submitted {
            // No half-submitted workflow: what went in is taken out again.
            let _ = query::cancel(&ids.all());
            return Err(e);
        }
        write_json_atomic(&self.dir.join("submission.json"), &ids)?;
        write_json_atomic(&self.dir.parent().expect("slurm/<submission>").join("latest.json"), &ids)?;
        Ok(ids)
    }

    fn plan_store(&self) -> Store {
        Store { home: self.plan.home.clone() }
    }
}

/// The task count of an sbatch argv (`--array=0-N…`).
fn array_size(argv: &[String]) -> usize {
    argv.iter().find_map(|a| a.strip_prefix("--array=0-")?.split('%').next()?.parse::<usize>().ok()).map_or(0, |n| n + 1)
}

#[cfg(unix)]
fn make_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).map_err(|e| Error::io(p, e))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<()> {
    Ok(())
}

/// The latest submission of experiment `exp`, if any.
pub fn latest(store: &Store, exp: &str) -> Result<Option<JobIds>> {
    let path = store.slurm_dir(exp)?.join("latest.json");
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// Waits for the submission `ids` of `plan` to leave the queue, saying what
/// changes through `say`; an array whose dependency can never be satisfied
/// is cancelled. Stops waiting (the jobs go on) when `stop` says so. At the
/// end, every task that left no outcome record gets a failed one.
pub fn wait(store: &Store, plan: &Plan, sub: &Submission, ids: &JobIds, say: &mut dyn FnMut(&str), stop: &dyn Fn() -> bool) -> Result<()> {
    let all = ids.all();
    let mut last = String::new();
    let mut never: Vec<String> = Vec::new();
    let mut failures = 0;
    loop {
        if stop() {
            say(&format!("stopped waiting; the jobs go on (`scancel {}` cancels them)", all.join(" ")));
            return Ok(());
        }
        // A controller that does not answer for a moment is not the end of the jobs.
        let queued = match query::queue(&all) {
            Ok(q) => {
                failures = 0;
                q
            }
            Err(e) if failures < 10 => {
                failures += 1;
                say(&format!("squeue: {e} (trying again)"));
                std::thread::sleep(Duration::from_secs_f64(plan.settings.poll.max(1.0)));
                continue;
            }
            Err(e) => return Err(e),
        };
        if queued.is_empty() {
            break;
        }
        let dead: Vec<String> = queued.iter().filter(|q| q.reason.contains("DependencyNeverSatisfied")).map(|q| q.job.clone()).collect();
        for job in dead {
            if !never.contains(&job) {
                say(&format!(
                    "runs array {job}: its dependency can never be satisfied (a target failed to build; see {}): cancelling it",
                    sub.dir.join("logs").display()
                ));
                query::cancel(std::slice::from_ref(&job))?;
                never.push(job);
            }
        }
        let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
        for q in &queued {
            *by_state.entry(&q.state).or_default() += q.tasks.len().max(1);
        }
        let line = format!("SLURM: {}", by_state.iter().map(|(s, n)| format!("{n} {}", s.to_lowercase())).collect::<Vec<_>>().join(", "));
        if line != last {
            say(&line);
            last = line;
        }
        std::thread::sleep(Duration::from_secs_f64(plan.settings.poll));
    }
    settle(store, &sub.plan, &sub.dir, ids, &never)
}

/// Leaves a failed outcome record for each task of submission `ids` (its
/// plan copy `plan`, its folder `dir`) that ended without one; `never` are
/// the arrays cancelled for a dependency that could never be satisfied.
fn settle(store: &Store, plan: &Plan, dir: &Path, ids: &JobIds, never: &[String]) -> Result<()> {
    let t = plan.tasks.as_ref().ok_or_else(|| Error::bad_file(dir.join("plan.json"), "not a SLURM submission's plan"))?;
    let exp = &plan.experiment;
    let arrays = ids.targets.iter().map(|j| (j, true)).chain(ids.runs.iter().map(|j| (j, false)));
    let mut offsets = (0usize, 0usize);
    for ((job, is_target), size) in arrays.zip(&ids.sizes) {
        let states = query::final_states(job)?;
        let offset = if is_target { &mut offsets.0 } else { &mut offsets.1 };
        for k in 0..*size {
            let (key, entry) = if is_target {
                let e = t.targets[*offset + k];
                (plan.targets[e].id.clone(), format!("target {}", plan.targets[e].id))
            } else {
                let e = t.runs[*offset + k];
                (plan.runs[e].key.clone(), format!("run {}", plan.runs[e].key))
            };
            let recorded = OutcomeRecord::read(store, exp, &key).is_some_and(|o| o.submission.as_deref() == Some(&t.submission));
            if recorded {
                continue;
            }
            let why = match (never.contains(job), states.get(&k)) {
                (true, _) => "its targets array failed, so it never started".to_string(),
                (false, Some(f)) => format!("SLURM task {job}_{k} ended {} (exit {}) without finishing", f.state, f.exit_code),
                (false, None) => {
                    format!("SLURM task {job}_{k} never ran to the end (SLURM keeps no record of it: cancelled while pending, or forgotten since)")
                }
            };
            let log = dir.join("logs").display().to_string();
            OutcomeRecord::new(&key, TaskStatus::Failed, Some((format!("{entry}: {why} (logs: {log})"), "io".into())), None, 0.0, Some(t.submission.clone()))
                .write(store, exp)?;
        }
        *offset += size;
    }
    Ok(())
}

/// Settles experiment `exp`'s latest submission once none of its jobs is
/// queued (see [`wait`]), so that `workflow collect` after `--no-wait`
/// reports tasks that ended without finishing; false while jobs are queued.
pub fn settle_latest(store: &Store, exp: &str) -> Result<bool> {
    let Some(ids) = latest(store, exp)? else { return Ok(true) };
    if !query::queue(&ids.all())?.is_empty() {
        return Ok(false);
    }
    let dir = store.slurm_dir(exp)?.join(&ids.submission);
    let plan = Plan::read(&dir.join("plan.json"))?;
    let never = read_json::<Vec<String>>(&dir.join("never-satisfied.json")).unwrap_or_default();
    settle(store, &plan, &dir, &ids, &never)?;
    Ok(true)
}

/// Lines saying where experiment `exp`'s latest SLURM submission stands (none without one).
pub fn status_lines(store: &Store, exp: &str) -> Result<Vec<String>> {
    let Some(ids) = latest(store, exp)? else { return Ok(vec![]) };
    let mut lines = vec![format!("SLURM submission {} ({}): {}", ids.submission, ids.submitted, ids.describe())];
    let queued = match query::queue(&ids.all()) {
        Ok(q) => q,
        Err(e) => return Ok([lines, vec![format!("  queue: cannot be read: {e}")]].concat()),
    };
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for q in &queued {
        *by_state.entry(q.state.clone()).or_default() += q.tasks.len().max(1);
        if q.reason.contains("DependencyNeverSatisfied") {
            lines.push(format!("  array {}: its dependency can never be satisfied (a target failed): scancel {}", q.job, q.job));
        }
    }
    if queued.is_empty() {
        lines.push("  queue: none of its jobs is queued or running".into());
    } else {
        lines.push(format!("  queue: {}", by_state.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")));
    }
    for (job, size) in ids.all().iter().zip(&ids.sizes) {
        let states = query::final_states(job).unwrap_or_default();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for f in states.values() {
            *counts.entry(f.state.clone()).or_default() += 1;
        }
        let queued_here: usize = queued.iter().filter(|q| &q.job == job).map(|q| q.tasks.len().max(1)).sum();
        let unknown = size.saturating_sub(states.len().max(queued_here));
        if unknown > 0 {
            counts.insert("without a SLURM record (cancelled while pending, or forgotten)".into(), unknown);
        }
        lines.push(format!("  job {job}: {}", counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")));
    }
    Ok(lines)
}
