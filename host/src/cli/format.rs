//! Number formatting shared by the commands' tables.

/// `v` with `digits` decimals, or `-` when it does not apply.
pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

/// `v` in scientific notation with `digits` decimals, or `-`.
pub fn fmt_sci(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$e}"))
}
