//! Lambda-Hat host library: the whole chain from a config to an LLC estimate,
//! one folder per stage, in the order data flows:
//!
//! - [`config`]: RON schema, presets, experiment files, plugin configs;
//! - [`target`] (Stage A): data, training to w*, import, the DLN truth;
//! - [`sample`] (Stage B): the posterior, plugins, recording, the run manifest;
//! - [`diagnose`] (Stage C): per-run analysis and figures, `compare`;
//! - [`workflow`] (Stage D): [`workflow::pipeline::run_job`], where the chain runs;
//!
//! over the shared leaves [`model`], [`backend`], [`estimate`], [`store`],
//! [`plots`], [`progress`], [`memory`], [`rng`] and [`error`]. The `lh-host` binary is a
//! thin CLI over it.

pub mod backend;
pub mod config;
pub mod diagnose;
pub mod error;
pub mod estimate;
pub mod memory;
pub mod model;
pub mod plots;
pub mod progress;
pub mod rng;
pub mod sample;
pub mod store;
pub mod target;
pub mod workflow;
