//! Writing to stdout without dying on a closed pipe: `lh-host targets ls |
//! head -1` ends quietly, and a command whose reader went away still finishes
//! its work (a build goes on building; only the printing stops).

/// `println!` that ignores a failed write (a closed pipe).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` that ignores a failed write (a closed pipe).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}
