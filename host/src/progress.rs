//! Progress reporting from the library to whoever shows it (a leaf). Library
//! code reports through a [`Monitor`]; only `cli/` draws progress bars, and a
//! worker pool can aggregate the same reports instead.

/// One report of long-running work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// Work named `what` (`training`, a plugin's name) begins, `total` units long (0: not known yet).
    Start { what: &'a str, total: u64 },
    /// `done` of `total` units are finished.
    Advance { done: u64, total: u64 },
    /// The work has ended.
    Finish,
}

/// Receives progress reports, and tells long work whether to stop early.
pub trait Monitor {
    /// One report.
    fn report(&mut self, progress: Progress<'_>);
    /// Whether the user asked to stop (Ctrl-C, SIGTERM): a sampler finishes its
    /// current draw and the draws so far are kept.
    fn should_stop(&self) -> bool {
        false
    }
    /// Something the user should know that is not an error (a fallback taken, …).
    fn note(&mut self, _message: &str) {}
}

/// Shows nothing and never stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Monitor for Quiet {
    fn report(&mut self, _: Progress<'_>) {}
}
