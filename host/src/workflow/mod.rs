//! Stage D: workflows. A job (which target, which plugin and settings) flows
//! in; [`pipeline::run_job`] is the one place the whole chain runs — build or
//! reuse the target (A), sample it (B), optionally diagnose the run (C) — and
//! its outcome flows out. The CLI's `run` and `sample` call it (once per
//! layer for `--restrict each-layer`: [`pipeline::expand`]); so will a worker
//! pool and SLURM tasks.

pub mod pipeline;

pub use self::pipeline::{expand, run_job, Job, JobOutcome, JobTarget};
