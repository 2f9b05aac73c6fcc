//! Stage B: sampling. A loaded target and a plugin (found and loaded here)
//! flow in; the plugin samples the tempered, localised posterior (or its
//! restriction to some coordinates) through the plugin ABI while the host
//! records every draw, the losses on observed data subsets, and counts the
//! work; a run directory (`traces.npz`, `manifest.json`) flows out to Stage C.

pub mod abi_overhead;
pub mod execute;
pub mod manifest;
pub mod observe;
pub mod plugins;
pub mod positions;
pub mod posterior;
pub mod probe;
pub mod recorder;
pub mod restrict;
pub mod run_dir;
pub mod stopping;

pub use self::execute::{execute, Outcome, Request};
pub use self::manifest::{Manifest, Status};
pub use self::observe::{Observable, ObserveSpec};
pub use self::restrict::RestrictionInfo;
pub use self::stopping::{Budget, Outcome as StopOutcome, StopReport, StopRule, Until};
