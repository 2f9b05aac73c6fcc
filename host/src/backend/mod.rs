//! Evaluation backends (used by Stage A to train and by Stage B to sample):
//! L_n and its gradient for C chains at once. A model spec, a data set and
//! positions flow in; losses and gradients flow out.
//!
//! One trait ([`Backend`]), implemented by the CPU reference ([`cpu`]), the
//! analytic quadratic target ([`quadratic`]) and the wgpu backend
//! ([`wgpu`](self::wgpu)); [`BackendFactory`] builds one from a
//! `--backend auto|cpu|wgpu` choice. Positions and gradients cross the trait
//! in f64 (samplers keep their state in f64); a backend may compute in f32
//! internally. [`bench`] measures them.

pub mod bench;
pub mod cpu;
pub mod factory;
pub mod interface;
pub mod quadratic;
pub mod wgpu;

pub use self::factory::{BackendFactory, BackendKind};
pub use self::interface::{gradient_flops, Backend, BackendInfo, Batch, Dataset};
