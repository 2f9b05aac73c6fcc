//! Built-in presets (`model: "small"` finds `config/model/small.ron`, compiled
//! into the binary) and presets given as a path ending in `.ron`, relative to
//! the file that names them.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::parse::{parse_ron, read_ron};
use super::sections::ModelConfig;
use crate::error::{Error, Result};
use crate::model::MlpSpec;

/// Built-in presets, compiled from the repository's `config/` folder.
const BUILTIN: &[(&str, &str)] = &[
    ("model/small.ron", include_str!("../../../config/model/small.ron")),
    ("model/base.ron", include_str!("../../../config/model/base.ron")),
    ("model/relu_8_32_32.ron", include_str!("../../../config/model/relu_8_32_32.ron")),
    ("data/small.ron", include_str!("../../../config/data/small.ron")),
    ("data/base.ron", include_str!("../../../config/data/base.ron")),
    ("data/n1000.ron", include_str!("../../../config/data/n1000.ron")),
    ("teacher/none.ron", include_str!("../../../config/teacher/none.ron")),
    ("teacher/small.ron", include_str!("../../../config/teacher/small.ron")),
    ("teacher/base.ron", include_str!("../../../config/teacher/base.ron")),
];

/// The names of the built-in presets of one kind (`model`, `data`, `teacher`).
pub fn builtin_names(kind: &str) -> Vec<&'static str> {
    BUILTIN.iter().filter_map(|(p, _)| p.strip_prefix(kind)?.strip_prefix('/')?.strip_suffix(".ron")).collect()
}

/// Loads a preset of `kind` by name (built-in) or by path (relative to `base_dir`).
pub(super) fn load_preset<T: DeserializeOwned>(kind: &str, name: &str, base_dir: &Path) -> Result<T> {
    if name.ends_with(".ron") {
        let p = base_dir.join(name);
        return read_ron(&p);
    }
    let key = format!("{kind}/{name}.ron");
    match BUILTIN.iter().find(|(p, _)| *p == key) {
        Some((p, text)) => parse_ron(text, &format!("config/{p}")),
        None => Err(Error::invalid(format!("unknown {kind} preset `{name}` (built-in: {}; or give a path ending in .ron)", builtin_names(kind).join(", ")))),
    }
}

/// A model preset (built-in name or path), resolved to a network shape.
pub fn model_preset(name: &str) -> Result<MlpSpec> {
    load_preset::<ModelConfig>("model", name, Path::new("."))?.resolve()
}
