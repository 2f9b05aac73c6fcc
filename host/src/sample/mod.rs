//! Stage B: sampling. A loaded target and a plugin (found and loaded here)
//! flow in; the plugin samples the tempered, localised posterior through the
//! plugin ABI while the host records every draw and counts the work; a run
//! directory (`traces.npz`, `manifest.json`) flows out to Stage C.

pub mod abi_overhead;
pub mod execute;
pub mod manifest;
pub mod plugins;
pub mod posterior;
pub mod probe;
pub mod recorder;
pub mod run_dir;

pub use self::execute::{execute, Outcome, Request};
pub use self::manifest::{Manifest, Status};
