//! RON parsing with errors that name the file, line, column and key.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Parses RON text into `T`; errors name `file`, the line, the column and the key.
pub fn parse_ron<T: DeserializeOwned>(text: &str, file: &str) -> Result<T> {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME).from_str(text).map_err(|e| Error::Config {
        file: file.to_string(),
        line: e.span.start.line,
        col: e.span.start.col,
        msg: e.code.to_string(),
    })
}

/// Reads and parses a RON file.
pub fn read_ron<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_ron(&text, &path.display().to_string())
}
