//! The host library's error type (a leaf every module uses): every message
//! names the file, field, plugin or object it is about, so the binary can
//! print it on one line. [`Error::kind`] sorts errors into bad input, plugin
//! failure, numerical failure and I/O, so a caller running many jobs (a worker
//! pool) can tell a bad job from a broken machine.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the host library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A config file could not be parsed: unknown key, wrong type, bad syntax.
    #[error("{file}:{line}:{col}: {msg}")]
    Config { file: String, line: usize, col: usize, msg: String },
    /// A value is well-formed but not allowed (negative size, shapes that do not match, …).
    #[error("{0}")]
    Invalid(String),
    /// A file exists but its contents are wrong (truncated npz, altered store object, …).
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },
    /// A sampler plugin could not be loaded, or failed while it ran.
    #[error("{msg}")]
    Plugin {
        /// The plugin's name, or its library's path when it has no name yet.
        plugin: String,
        msg: String,
    },
    /// A numerical failure (NaN or infinite loss, divergence).
    #[error("{0}")]
    Numerical(String),
    /// An I/O failure on a named path.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The four kinds of failure a caller may want to react to differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The job itself is wrong: a config, a value, a file's contents.
    BadInput,
    /// A plugin could not be loaded or failed.
    Plugin,
    /// The numbers went wrong (NaN, divergence).
    Numerical,
    /// The machine: a file could not be read or written.
    Io,
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
    /// A failure of plugin `plugin`.
    pub fn plugin(plugin: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Plugin { plugin: plugin.into(), msg: msg.into() }
    }
    /// Which kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } | Error::Invalid(_) | Error::BadFile { .. } => ErrorKind::BadInput,
            Error::Plugin { .. } => ErrorKind::Plugin,
            Error::Numerical(_) => ErrorKind::Numerical,
            Error::Io { .. } => ErrorKind::Io,
        }
    }
    /// The same error with `prefix: ` before a bad-input message (where in a file it arose).
    pub fn context(self, prefix: &str) -> Self {
        match self {
            Error::Invalid(m) => Error::Invalid(format!("{prefix}: {m}")),
            other => other,
        }
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
