//! Stage A: targets. An experiment file's target recipes (from `config`) flow
//! in; data generation, training to w* and the DLN ground truth run here; a
//! verified, content-addressed target object (data, w*, meta.json) flows out
//! to the store, and loaded [`Target`]s flow on to Stage B.

pub mod build;
pub mod data;
pub mod figures;
pub mod import;
pub mod load;
pub mod meta;
pub mod train;
pub mod truth;

pub use self::build::{build, Built};
pub use self::import::import;
pub use self::load::{find, list, load, load_meta, Target, TargetModel};
pub use self::meta::{recipe_id, ImportedConfig, TargetMeta, TargetSource, TrainingSummary};
