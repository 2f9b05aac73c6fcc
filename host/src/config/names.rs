//! Names that become part of file names (tags, figure names): a leaf of the config module.

/// A tag or other name that becomes part of a file name.
pub fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c)) && !s.starts_with('.')
}
