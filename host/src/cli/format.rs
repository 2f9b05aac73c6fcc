//! Number formatting shared by the commands' tables.

use lh_host::estimate::Estimate;

/// `v` with `digits` decimals, or `-` when it does not apply.
pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

/// `v` in scientific notation with `digits` decimals, or `-`.
pub fn fmt_sci(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$e}"))
}

/// The line that sets Var(nβ·`trace`) beside λ̂, when the estimate has one.
pub fn variance_line(e: &Estimate, trace: &str) -> Option<String> {
    let (v, r) = (e.variance?, e.variance_ratio()?);
    Some(format!("Var(nβ·{trace}) = {v:.4} = {r:.3} × λ̂ (≈ 1 × λ̂ for a posterior near its asymptotics)"))
}
