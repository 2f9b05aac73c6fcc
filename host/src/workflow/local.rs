//! The local backend: a bounded pool of worker threads in this process.
//! Targets first (each built once), then every run that is not done, each
//! through [`super::task`] (and so through `run_job`). A failing task is
//! reported and the others go on; a stop request (Ctrl-C, SIGTERM) lets the
//! running tasks finish their draw and starts no new one. The pool reports
//! to an [`Observer`], which is where the command line draws its one bar.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::plan::Plan;
use super::state::TaskStatus;
use super::task::{self, TaskReport};
use crate::error::{Error, Result};
use crate::progress::{Monitor, Progress};
use crate::store::Store;

/// Which task of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRef {
    /// `plan.targets[i]`.
    Target(usize),
    /// `plan.runs[i]`.
    Run(usize),
}

/// Receives what the pool's workers do; called from several threads.
pub trait Observer: Sync {
    /// A task starts.
    fn started(&self, task: TaskRef);
    /// `done` of `total` units of a running task are finished.
    fn progress(&self, task: TaskRef, done: u64, total: u64);
    /// A task ended.
    fn finished(&self, task: TaskRef, report: &TaskReport);
    /// Something worth saying that is not an error.
    fn note(&self, message: &str);
    /// Whether to stop (no new task starts; running ones stop after their draw).
    fn should_stop(&self) -> bool;
}

/// The pool's shape: how many jobs at once, and threads per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub jobs: usize,
    pub threads: usize,
}

/// Picks jobs and threads per job so that jobs × threads ≤ `cores`, from
/// what was asked (`--jobs`, `workflow.threads`) and the number of tasks.
pub fn shape(cores: usize, jobs: Option<usize>, threads: Option<usize>, tasks: usize) -> Result<Shape> {
    let cores = cores.max(1);
    let s = match (jobs, threads) {
        (Some(j), Some(t)) => Shape { jobs: j, threads: t },
        (Some(j), None) => Shape { jobs: j, threads: (cores / j.max(1)).max(1) },
        (None, Some(t)) => Shape { jobs: (cores / t).max(1), threads: t },
        (None, None) => {
            let jobs = cores.min(tasks.max(1));
            Shape { jobs, threads: (cores / jobs).max(1) }
        }
    };
    crate::ensure!(s.jobs >= 1, "--jobs must be ≥ 1");
    crate::ensure!(
        s.jobs * s.threads <= cores,
        "--jobs {} × workflow.threads {} = {} exceeds the {cores} cores (LH_THREADS, or the machine's): lower one of them",
        s.jobs,
        s.threads,
        s.jobs * s.threads
    );
    Ok(s)
}

/// What the pool did: one report per target and per run (`None`: not run,
/// because the pool was stopped first).
pub struct PoolReport {
    pub targets: Vec<Option<TaskReport>>,
    pub runs: Vec<Option<TaskReport>>,
}

/// A task's [`Monitor`]: reports go to the observer, tagged with the task.
struct Relay<'a> {
    observer: &'a dyn Observer,
    task: TaskRef,
}

impl Monitor for Relay<'_> {
    fn report(&mut self, p: Progress<'_>) {
        match p {
            Progress::Start { total, .. } => self.observer.progress(self.task, 0, total),
            Progress::Advance { done, total } => self.observer.progress(self.task, done, total),
            Progress::Finish => {}
        }
    }
    fn should_stop(&self) -> bool {
        self.observer.should_stop()
    }
    fn note(&mut self, message: &str) {
        self.observer.note(message);
    }
}

/// Runs `tasks` on `jobs` workers, each task through `work`; results by position.
fn pool(
    jobs: usize,
    tasks: &[TaskRef],
    observer: &dyn Observer,
    work: &(dyn Fn(TaskRef, &mut dyn Monitor) -> Result<TaskReport> + Sync),
) -> Vec<Option<TaskReport>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<TaskReport>>> = Mutex::new(vec![None; tasks.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs.min(tasks.len()) {
            s.spawn(|| loop {
                if observer.should_stop() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&task) = tasks.get(i) else { return };
                observer.started(task);
                let mut relay = Relay { observer, task };
                let report = work(task, &mut relay).unwrap_or_else(|e: Error| TaskReport {
                    status: TaskStatus::Failed,
                    dir: None,
                    error: Some(format!("recording the outcome: {e}")),
                    error_kind: Some(e.kind()),
                    llc: None,
                    seconds: 0.0,
                });
                observer.finished(task, &report);
                results.lock().expect("no worker panics holding it")[i] = Some(report);
            });
        }
    });
    results.into_inner().expect("no worker panicked holding it")
}

/// The targets (indices into `plan.targets`) that the runs `todo` need.
pub fn needed_targets(plan: &Plan, todo: &[usize]) -> Vec<usize> {
    (0..plan.targets.len()).filter(|t| todo.iter().any(|&r| plan.runs[r].target == *t)).collect()
}

/// Runs the plan here: the targets its runs `todo` need, then each of them
/// (indices into `plan.runs`; the others are done), `jobs` at a time. A run whose target
/// failed is failed without being tried.
pub fn run(store: &Store, plan: &Plan, todo: &[usize], jobs: usize, observer: &dyn Observer) -> PoolReport {
    let target_tasks: Vec<TaskRef> = needed_targets(plan, todo).into_iter().map(TaskRef::Target).collect();
    let built = pool(jobs, &target_tasks, observer, &|t, m| match t {
        TaskRef::Target(i) => task::build_target(store, plan, i, m),
        TaskRef::Run(_) => unreachable!("targets only"),
    });
    let mut targets: Vec<Option<TaskReport>> = vec![None; plan.targets.len()];
    for (t, rep) in target_tasks.iter().zip(built) {
        if let TaskRef::Target(i) = t {
            targets[*i] = rep;
        }
    }
    let failed_targets: HashSet<usize> =
        targets.iter().enumerate().filter(|(_, r)| r.as_ref().is_none_or(|r| r.status == TaskStatus::Failed)).map(|(i, _)| i).collect();
    let mut runs: Vec<Option<TaskReport>> = vec![None; plan.runs.len()];
    let mut run_tasks = Vec::new();
    for &r in todo {
        let t = plan.runs[r].target;
        if failed_targets.contains(&t) {
            let why = targets[t].as_ref().and_then(|rep| rep.error.clone()).unwrap_or_else(|| "not built (stopped)".into());
            if targets[t].is_some() {
                let report = TaskReport {
                    status: TaskStatus::Failed,
                    dir: None,
                    error: Some(format!("target {} failed: {why}", plan.targets[t].id)),
                    error_kind: targets[t].as_ref().and_then(|rep| rep.error_kind),
                    llc: None,
                    seconds: 0.0,
                };
                observer.finished(TaskRef::Run(r), &report);
                runs[r] = Some(report);
            }
        } else {
            run_tasks.push(TaskRef::Run(r));
        }
    }
    let done = pool(jobs, &run_tasks, observer, &|t, m| match t {
        TaskRef::Run(i) => task::run(store, plan, i, m),
        TaskRef::Target(_) => unreachable!("runs only"),
    });
    for (t, rep) in run_tasks.iter().zip(done) {
        if let TaskRef::Run(r) = t {
            runs[*r] = rep;
        }
    }
    PoolReport { targets, runs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_shape_fits_the_cores() {
        assert_eq!(shape(8, None, None, 3).unwrap(), Shape { jobs: 3, threads: 2 });
        assert_eq!(shape(8, None, None, 100).unwrap(), Shape { jobs: 8, threads: 1 });
        assert_eq!(shape(8, Some(2), None, 100).unwrap(), Shape { jobs: 2, threads: 4 });
        assert_eq!(shape(8, None, Some(3), 100).unwrap(), Shape { jobs: 2, threads: 3 });
        assert_eq!(shape(2, Some(2), Some(1), 5).unwrap(), Shape { jobs: 2, threads: 1 });
        let e = shape(2, Some(2), Some(2), 5).unwrap_err().to_string();
        assert!(e.contains("--jobs 2 × workflow.threads 2 = 4 exceeds the 2 cores"), "{e}");
        assert!(shape(2, Some(3), None, 5).is_err());
    }
}
