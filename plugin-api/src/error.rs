//! Errors crossing the plugin boundary.

use abi_stable::std_types::{RResult, RString, RVec};
use abi_stable::StableAbi;

/// Whether an error is worth carrying on after. Non-exhaustive in
/// abi_stable's way ([`ErrorKind_NE`]): a later minor version may add kinds,
/// and a kind this build does not know reads as `None` from
/// [`SamplerError::kind`] (treat it as fatal).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 1], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The step failed (e.g. a non-finite log-density in one proposal): the
    /// sampler may reject it and continue; the host counts it.
    Recoverable,
    /// The run cannot continue (bad config, broken invariant): it stops.
    Fatal,
}

/// An error crossing the plugin boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct SamplerError {
    /// Recoverable or fatal (or a kind from a later API version).
    pub kind: ErrorKind_NE,
    /// What went wrong, in one line.
    pub message: RString,
    /// The chains the error is about, ascending (global chain indices
    /// 0..C): for a non-finite evaluation, the chains whose log-density,
    /// loss or gradient is not finite. Empty when it concerns no chain in
    /// particular.
    pub chains: RVec<u32>,
}

impl SamplerError {
    fn new(kind: ErrorKind, message: String, chains: Vec<u32>) -> Self {
        Self { kind: ErrorKind_NE::new(kind), message: message.into(), chains: chains.into() }
    }

    /// A fatal error with `message`.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, message.into(), Vec::new())
    }

    /// A recoverable error with `message`.
    pub fn recoverable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Recoverable, message.into(), Vec::new())
    }

    /// A recoverable error about the listed chains (a non-finite evaluation).
    pub fn non_finite(chains: Vec<u32>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Recoverable, message.into(), chains)
    }

    /// The kind, or `None` for a kind this version of the API does not know.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.kind.as_enum().ok().copied()
    }

    /// True for a recoverable error; an unknown kind is not.
    pub fn is_recoverable(&self) -> bool {
        self.kind() == Some(ErrorKind::Recoverable)
    }
}

impl std::fmt::Display for SamplerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SamplerError {}

/// The result type of every call across the boundary.
pub type SResult<T> = RResult<T, SamplerError>;
