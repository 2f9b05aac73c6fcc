//! Lambda-Hat host library: configs, data, the MLP and its backends,
//! training, the artifact store and LLC tooling. The `lh-host` binary is a
//! thin CLI over it.

pub mod error;
pub mod config;
pub mod model;
pub mod rng;
pub mod data;
pub mod backend;
pub mod npz;
pub mod store;
pub mod train;
pub mod target;
pub mod truth;
pub mod bench;
pub mod diagnostics;
pub mod estimate;
pub mod posterior;
pub mod plugins;
pub mod sample;
pub mod plots;
pub mod analysis;
pub mod run_plots;
pub mod experiment;
pub mod target_diagnostics;
