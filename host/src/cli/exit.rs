//! Exit codes (README: "Exit codes"): 0 success, 1 a batch command finished
//! but some of its items failed, 2 bad input or any other error, 130/143
//! stopped by SIGINT/SIGTERM.

use super::signals;

/// How a command ended, as the process exit code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything succeeded.
    Success,
    /// 1: a batch command finished, but some of its items failed.
    SomeFailed,
    /// 130 (SIGINT) or 143 (SIGTERM): stopped early by a signal; what was done is kept.
    Interrupted(u8),
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::SomeFailed => 1,
            Exit::Interrupted(code) => code,
        }
    }

    /// [`Exit::Interrupted`] when a signal asked to stop, else `done`.
    pub fn unless_interrupted(done: Exit) -> Exit {
        signals::interrupted().map_or(done, Exit::Interrupted)
    }
}

/// Exit code of a command that failed (bad input, or any other error).
pub const ERROR_EXIT: u8 = 2;
