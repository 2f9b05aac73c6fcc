//! The artifact store (used by every stage; depends on no stage): the path
//! layout of `$LH_HOME`, content-addressed objects, lock files, versioned JSON records,
//! `.npz` arrays, atomic writes and provenance. Bytes flow in and out; nothing
//! here knows what a target or a run means.

pub mod atomic;
pub mod gc;
pub mod layout;
pub mod lock;
pub mod npz;
pub mod objects;
pub mod provenance;
pub mod record;

pub use self::layout::Store;
pub use self::objects::{sha256_hex, ObjectMeta, ObjectProvenance};
