//! One task of a plan: a target built (Stage A), or a run sampled through
//! [`run_job`] (and diagnosed when the plan says so). The local pool and each
//! SLURM array task come here, so both backends do exactly the same work, and
//! each task leaves its outcome record behind (see [`super::state`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::pipeline::{run_job, Job, JobTarget};
use super::plan::Plan;
use super::state::{Ledger, OutcomeRecord, RunState, TaskStatus};
use crate::error::{Error, ErrorKind, Result};
use crate::estimate::Estimate;
use crate::progress::Monitor;
use crate::sample::Status;
use crate::store::Store;
use crate::target;

/// How a task ended, for whoever reports it.
#[derive(Debug, Clone)]
pub struct TaskReport {
    pub status: TaskStatus,
    pub dir: Option<PathBuf>,
    /// The error of a failure, one line.
    pub error: Option<String>,
    pub error_kind: Option<ErrorKind>,
    /// λ̂ of a run that has one.
    pub llc: Option<Estimate>,
    pub seconds: f64,
}

impl TaskReport {
    fn failed(e: &Error, seconds: f64) -> Self {
        Self { status: TaskStatus::Failed, dir: None, error: Some(e.to_string()), error_kind: Some(e.kind()), llc: None, seconds }
    }
}

/// The name of an error kind in outcome records.
pub fn kind_word(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadInput => "bad_input",
        ErrorKind::Plugin => "plugin",
        ErrorKind::Numerical => "numerical",
        _ => "io",
    }
}

/// Leaves `report`'s outcome record for task `key`.
fn record(store: &Store, plan: &Plan, key: &str, report: &TaskReport) -> Result<()> {
    let submission = plan.tasks.as_ref().map(|t| t.submission.clone());
    let error = report.error.clone().map(|e| (e, kind_word(report.error_kind.unwrap_or(ErrorKind::Io)).to_string()));
    OutcomeRecord::new(key, report.status, error, report.dir.clone(), report.seconds, submission).write(store, &plan.experiment)
}

/// Builds target `t` of the plan (or finds it stored), and links it into the experiment.
pub fn build_target(store: &Store, plan: &Plan, t: usize, monitor: &mut dyn Monitor) -> Result<TaskReport> {
    let pt = &plan.targets[t];
    let start = Instant::now();
    let id = target::recipe_id(&pt.recipe);
    let report = if id != pt.id {
        let e = Error::invalid(format!("plan of `{}`: target {} resolves to {id} with this lh-host: make the plan again", plan.experiment, pt.id));
        TaskReport::failed(&e, 0.0)
    } else {
        match target::build(store, &pt.recipe, &plan.experiment, plan.threads, monitor) {
            Ok(b) => TaskReport {
                status: if b.trained { TaskStatus::Complete } else { TaskStatus::Skipped },
                dir: Some(store.object_dir(&b.hash)),
                error: None,
                error_kind: None,
                llc: None,
                seconds: start.elapsed().as_secs_f64(),
            },
            Err(e) => TaskReport::failed(&e, start.elapsed().as_secs_f64()),
        }
    };
    record(store, plan, &pt.id, &report)?;
    Ok(report)
}

/// Runs run `r` of the plan, unless a complete run with its key exists
/// (then `Skipped`). A failure is a report, not an error: the error is only
/// for what stops the task from recording how it ended.
pub fn run(store: &Store, plan: &Plan, r: usize, monitor: &mut dyn Monitor) -> Result<TaskReport> {
    let pr = &plan.runs[r];
    let ledger = Ledger::scan_for(store, &plan.experiment, &pr.plugin, &pr.target_id)?;
    if let RunState::Done(f) = ledger.state(&pr.key, None) {
        let llc = f.manifest.llc.clone();
        return Ok(TaskReport { status: TaskStatus::Skipped, dir: Some(f.dir.clone()), error: None, error_kind: None, llc, seconds: 0.0 });
    }
    let start = Instant::now();
    let report = match plan.overrides(r).and_then(|o| job(plan, r, o)).and_then(|j| run_job(store, &j, monitor)) {
        Ok(out) => {
            let dir = out.run.dir.clone();
            let mut report = TaskReport {
                status: if out.run.manifest.status == Status::Complete { TaskStatus::Complete } else { TaskStatus::Incomplete },
                dir: Some(dir.clone()),
                error: None,
                error_kind: None,
                llc: out.run.manifest.llc.clone(),
                seconds: start.elapsed().as_secs_f64(),
            };
            if plan.diagnose && report.status == TaskStatus::Complete {
                // Stage C failing leaves the run done: it is noted, not redone.
                if let Err(e) = crate::diagnose::diagnose(&dir, crate::diagnose::Mode::Light) {
                    monitor.note(&format!("diagnose {}: {e}", dir.display()));
                }
            }
            report.seconds = start.elapsed().as_secs_f64();
            report
        }
        Err(e) => TaskReport::failed(&e, start.elapsed().as_secs_f64()),
    };
    record(store, plan, &pr.key, &report)?;
    Ok(report)
}

/// The job of run `r`, with `overrides` (its resolved config).
fn job(plan: &Plan, r: usize, overrides: crate::config::Overrides) -> Result<Job> {
    let pr = &plan.runs[r];
    let s = &plan.settings;
    Ok(Job {
        target: JobTarget::Stored(pr.target_id.clone()),
        plugin: pr.plugin_path.display().to_string(),
        overrides: vec![overrides],
        chains: pr.chains,
        seed: pr.seed,
        backend: s.device,
        precision: s.precision,
        experiment: plan.experiment.clone(),
        threads: plan.threads,
        diagnose: None,
        checkpoint_every: Duration::from_secs_f64(s.checkpoint_every),
        restrict: pr.restrict.clone(),
        observe: Vec::new(),
        tag: pr.tag.clone(),
        key: Some(pr.key.clone()),
        stop: pr.stop.as_ref().map(|s| s.rule()).transpose()?.unwrap_or_default(),
    })
}
