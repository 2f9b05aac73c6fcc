//! `--threads N`: a whole number ≥ 1.

/// Parses `--threads`, refusing 0.
pub fn parse(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(t) if t >= 1 => Ok(t),
        _ => Err(format!("`{s}` is not a thread count (a whole number ≥ 1)")),
    }
}
