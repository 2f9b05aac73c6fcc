//! The one progress bar of a workflow: the local pool's reports (from
//! several worker threads) drawn as a single bar over all its tasks, a line
//! per finished task above it, and the stop request of a signal passed back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use lh_host::workflow::local::{Observer, TaskRef};
use lh_host::workflow::plan::Plan;
use lh_host::workflow::state::TaskStatus;
use lh_host::workflow::task::TaskReport;

use super::signals;

/// Units of the bar per task (so that a running task's fraction shows).
const UNITS: u64 = 1000;

/// Draws the pool's bar on stderr (hidden when it is not a terminal).
pub struct PoolBar<'p> {
    plan: &'p Plan,
    bar: ProgressBar,
    tasks: u64,
    /// Running tasks' progress, as a fraction of UNITS.
    running: Mutex<HashMap<TaskRefKey, u64>>,
    finished: AtomicUsize,
    failed: AtomicUsize,
    announced: AtomicBool,
}

/// A hashable [`TaskRef`].
type TaskRefKey = (bool, usize);

fn key(t: TaskRef) -> TaskRefKey {
    match t {
        TaskRef::Target(i) => (false, i),
        TaskRef::Run(i) => (true, i),
    }
}

impl<'p> PoolBar<'p> {
    /// A bar over `tasks` tasks of `plan`, with signals handled from now on.
    pub fn new(plan: &'p Plan, tasks: usize) -> Self {
        signals::install();
        let style = ProgressStyle::with_template("{msg} [{bar:30}] {percent}% ({elapsed}, eta {eta})").expect("valid template").progress_chars("=> ");
        let bar = ProgressBar::new(tasks as u64 * UNITS).with_style(style);
        Self {
            plan,
            bar,
            tasks: tasks as u64,
            running: Mutex::new(HashMap::new()),
            finished: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            announced: AtomicBool::new(false),
        }
    }

    /// What a task is, in a few words.
    fn name(&self, t: TaskRef) -> String {
        match t {
            TaskRef::Target(i) => format!("target {}", self.plan.targets[i].id),
            TaskRef::Run(i) => {
                let r = &self.plan.runs[i];
                format!("{} seed {} on {}", r.label(), r.seed, r.target_id)
            }
        }
    }

    /// Redraws position and message.
    fn redraw(&self) {
        let running = self.running.lock().expect("not poisoned");
        let done = self.finished.load(Ordering::SeqCst) as u64;
        self.bar.set_position((done * UNITS + running.values().sum::<u64>()).min(self.tasks * UNITS));
        let failed = self.failed.load(Ordering::SeqCst);
        let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
        self.bar.set_message(format!("{done}/{} tasks{failed}, {} running", self.tasks, running.len()));
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for PoolBar<'_> {
    fn started(&self, task: TaskRef) {
        self.running.lock().expect("not poisoned").insert(key(task), 0);
        self.redraw();
    }

    fn progress(&self, task: TaskRef, done: u64, total: u64) {
        if let Some(units) = (done.min(total) * UNITS).checked_div(total) {
            self.running.lock().expect("not poisoned").insert(key(task), units);
            self.redraw();
        }
    }

    fn finished(&self, task: TaskRef, r: &TaskReport) {
        self.running.lock().expect("not poisoned").remove(&key(task));
        let n = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let what = self.name(task);
        let line = match (r.status, task) {
            (TaskStatus::Failed, _) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                format!("FAILED: {what}: {}", r.error.as_deref().unwrap_or("failed"))
            }
            (TaskStatus::Skipped, TaskRef::Target(_)) => format!("{what}: in the store"),
            (TaskStatus::Skipped, TaskRef::Run(_)) => format!("{what}: already done"),
            (TaskStatus::Incomplete, _) => format!("{what}: stopped early (incomplete, redone next time)"),
            (TaskStatus::Complete, TaskRef::Target(_)) => format!("{what}: built in {:.1} s", r.seconds),
            (TaskStatus::Complete, TaskRef::Run(_)) => match &r.llc {
                Some(e) => format!("{what}: λ̂ = {:.4} ± {:.4} ({:.1} s)", e.mean, e.se, r.seconds),
                None => format!("{what}: no draws after burn-in ({:.1} s)", r.seconds),
            },
        };
        self.bar.suspend(|| outln!("[{n}/{}] {line}", self.tasks));
        self.redraw();
    }

    fn note(&self, message: &str) {
        self.bar.suspend(|| eprintln!("note: {message}"));
    }

    fn should_stop(&self) -> bool {
        let stop = signals::interrupted().is_some();
        if stop && !self.announced.swap(true, Ordering::SeqCst) {
            self.bar.suspend(|| eprintln!("\nstopping: running tasks finish their current draw and keep their traces; no new task starts (again to abort)"));
        }
        stop
    }
}
