//! The host library's error type: every message names the file, field or
//! object it is about, so the binary can print it on one line.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the host library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file could not be parsed: unknown key, wrong type, bad syntax.
    #[error("{file}:{line}:{col}: {msg}")]
    Config { file: String, line: usize, col: usize, msg: String },
    /// A value is well-formed but not allowed (negative size, shapes that do not match, …).
    #[error("{0}")]
    Invalid(String),
    /// An I/O failure on a named path.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A file exists but its contents are wrong (truncated npz, altered store object, …).
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },
    /// A numerical failure (NaN or infinite loss, divergence).
    #[error("{0}")]
    Numerical(String),
}

/// Shorthand used throughout the host library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }
    /// A file whose contents are not what they must be.
    pub fn bad_file(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }
    /// An invalid value.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// Returns `Err(Error::Invalid(..))` from the enclosing function unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::error::Error::Invalid(format!($($arg)+)));
        }
    };
}
