//! Stage D: workflows. An experiment file's grid (targets × samplers × seeds)
//! flows in; targets, run directories, `llc_runs.csv` and a gallery flow out.
//!
//! - [`pipeline::run_job`] is the one place a run's whole chain runs (target,
//!   backend, plugin, config, sample, diagnose): `run`, `sample` (once per
//!   layer for `--restrict each-layer`: [`pipeline::expand`]), the local pool
//!   and SLURM tasks all call it;
//! - [`plan`] makes the grid concrete (each target once, each run with its
//!   resolved config and key); [`state`] reads back from disk which runs are
//!   done; [`task`] runs one entry of a plan; [`local`] runs a plan on a
//!   worker pool here, [`slurm`] as job arrays on a cluster; [`collect`]
//!   turns what is on disk into `llc_runs.csv`; [`promote`] makes galleries;
//! - [`tune`] searches samplers' hyperparameters (TPE) against a reference λ̂,
//!   each trial a planned run on the same backends.

pub mod collect;
pub mod local;
pub mod pipeline;
pub mod plan;
pub mod promote;
pub mod slurm;
pub mod state;
pub mod task;
pub mod tune;

pub use self::pipeline::{expand, run_job, Job, JobOutcome, JobTarget};

use crate::config::{Experiment, WorkflowConfig, WorkflowPatch};
use crate::error::Result;

/// The workflow settings of `exp`: the defaults, then its file's `workflow:`
/// section, then each `--set` in order.
pub fn settings(exp: &Experiment, sets: &[WorkflowPatch]) -> Result<WorkflowConfig> {
    let mut s = WorkflowConfig::default();
    exp.config.workflow.apply(&mut s);
    for p in sets {
        p.apply(&mut s);
    }
    s.validate().map_err(|e| e.context(&exp.path.display().to_string()))?;
    Ok(s)
}
