//! A plugin's config: its RON defaults merged with a config file and
//! `key=value` overrides, every key checked against the defaults.

use std::collections::BTreeMap;
use std::path::Path;

use ron::value::RawValue;
use serde::{Deserialize, Serialize};

use super::parse::parse_ron;
use crate::error::{Error, Result};

/// Plugin config overrides as written — in a `--config` file, an experiment
/// file's `samplers[i].overrides`, or one `--set key=value` — each value kept as
/// its raw RON text (so enum identifiers, comments and formatting survive the
/// merge), in the order given. The one override form of every source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Where they came from, for error messages (a file name, `--set k=v`, …).
    pub origin: String,
    pub fields: Vec<(String, Box<RawValue>)>,
    /// The line of each key in the file they came from, when known.
    pub lines: BTreeMap<String, usize>,
}

impl Overrides {
    /// The overrides of a `--config` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let origin = path.display().to_string();
        let fields = parse_ron::<Self>(&text, &origin)?.fields;
        let lines = fields
            .iter()
            .filter_map(|(k, _)| {
                let at = text.lines().position(|l| {
                    l.trim_start().trim_start_matches('(').trim_start().strip_prefix(k.as_str()).is_some_and(|r| r.trim_start().starts_with(':'))
                })?;
                Some((k.clone(), at + 1))
            })
            .collect();
        Ok(Self { fields, origin, lines })
    }

    /// One `--set key=value` (the value is RON).
    pub fn from_set(set: &str) -> Result<Self> {
        let (k, v) = set.split_once('=').ok_or_else(|| Error::invalid(format!("--set {set}: expected key=value")))?;
        let raw: Box<RawValue> = parse_ron(v, &format!("--set {k}"))?;
        Ok(Self { origin: format!("--set {set}"), fields: vec![(k.trim().to_string(), raw)], lines: BTreeMap::new() })
    }

    /// The overrides of a `--config` file (if any) and then of each `--set`, in that order.
    pub fn from_cli(file: Option<&Path>, sets: &[String]) -> Result<Vec<Self>> {
        file.map(Self::from_file).into_iter().chain(sets.iter().map(|s| Self::from_set(s))).collect()
    }

    /// Where the value of `key` came from: `file:line`, or the origin.
    fn origin_of(&self, key: &str) -> String {
        self.lines.get(key).map_or_else(|| self.origin.clone(), |l| format!("{}:{l}", self.origin))
    }

    /// The same overrides, attributed to `origin`.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }
}

impl<'de> Deserialize<'de> for Overrides {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Overrides;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a struct like (key: value, …)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<Overrides, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = m.next_entry::<String, Box<RawValue>>()? {
                    fields.push(entry);
                }
                Ok(Overrides { origin: String::new(), fields, lines: BTreeMap::new() })
            }
            fn visit_unit<E>(self) -> std::result::Result<Overrides, E> {
                Ok(Overrides::default())
            }
        }
        d.deserialize_any(Fields)
    }
}

impl Serialize for Overrides {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A plugin's resolved config: the RON text passed to it, and where each
/// key's value came from, so that an error the plugin reports at a position
/// in that text can name the key and its origin instead.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    /// Pretty RON struct syntax, one `key: value,` per line, keys sorted.
    pub text: String,
    /// Per key, in text order: its line in `text`, its value, and where it came from.
    keys: Vec<(usize, String, String, String)>,
}

impl ResolvedConfig {
    /// `message` with a `config L:C: ` position (what lh-plugin-api's
    /// `parse_config` reports) replaced by the key on line L, its value and its
    /// origin (`--set k=v`, `file:line`, or the plugin's default).
    pub fn explain(&self, message: &str) -> String {
        let Some(at) = message.find("config ") else { return message.to_string() };
        let rest = &message[at + "config ".len()..];
        let Some((pos, tail)) = rest.split_once(": ") else { return message.to_string() };
        let Some(line) = pos.split(':').next().and_then(|l| l.parse::<usize>().ok()) else { return message.to_string() };
        match self.keys.iter().find(|(at, ..)| *at == line) {
            Some((_, key, value, origin)) => format!("{}`{key}: {value}` (from {origin}): {tail}", &message[..at]),
            None => message.to_string(),
        }
    }
}

/// Merges a plugin's default RON config with layers of overrides, later
/// layers winning. Every key must exist in the defaults; the result is
/// pretty RON struct syntax, keys sorted, one `key: value,` per line:
///
/// ```text
/// (
///     draws: 1000,
///     step_size: 0.01,
/// )
/// ```
///
/// Each value is its RON text as written, comments removed and line breaks
/// folded into spaces, so it always fits on its line.
pub fn resolve_config(defaults: &str, plugin: &str, layers: &[Overrides]) -> Result<ResolvedConfig> {
    let default_origin = format!("plugin `{plugin}`'s default");
    let mut cfg: BTreeMap<String, (String, String)> = parse_ron::<Overrides>(defaults, &format!("plugin `{plugin}` default config"))?
        .fields
        .into_iter()
        .map(|(k, v)| (k, (one_line(v.get_ron()), default_origin.clone())))
        .collect();
    let known: Vec<String> = cfg.keys().cloned().collect();
    for layer in layers {
        for (k, v) in &layer.fields {
            let slot = cfg
                .get_mut(k)
                .ok_or_else(|| Error::invalid(format!("{}: unknown key `{k}` for plugin `{plugin}` (keys: {})", layer.origin, known.join(", "))))?;
            *slot = (one_line(v.get_ron()), layer.origin_of(k));
        }
    }
    // Line 1 is `(`; key i (in sorted order) is on line i + 2.
    let mut text = String::from("(\n");
    let mut keys = Vec::new();
    for (i, (k, (v, origin))) in cfg.iter().enumerate() {
        text.push_str(&format!("    {k}: {v},\n"));
        keys.push((i + 2, k.clone(), v.clone(), origin.clone()));
    }
    text.push(')');
    Ok(ResolvedConfig { text, keys })
}

/// RON value text on one line: `//` and (nested) `/* */` comments removed,
/// every whitespace run that holds a line break folded into one space,
/// string and character literals (raw strings included) kept verbatim.
fn one_line(ron: &str) -> String {
    let b = ron.as_bytes();
    let mut out = String::with_capacity(ron.len());
    let mut i = 0;
    // Pushes b[from..to] (whole UTF-8 characters: every boundary used is ASCII).
    let push = |out: &mut String, from: usize, to: usize| out.push_str(&ron[from..to]);
    // One space where a comment or a line break was, unless one is there already.
    let space = |out: &mut String| {
        if !out.ends_with(|c: char| c.is_ascii_whitespace()) {
            out.push(' ');
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                space(&mut out);
            }
            b'"' | b'\'' => {
                let (quote, start) = (b[i], i);
                i += 1;
                while i < b.len() && b[i] != quote {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                push(&mut out, start, i);
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#')) && !b[..i].last().is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') => {
                let start = i;
                i += 1;
                let hashes = b[i..].iter().take_while(|c| **c == b'#').count();
                i += hashes;
                if b.get(i) == Some(&b'"') {
                    let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                    i += 1;
                    while i < b.len() && !b[i..].starts_with(&close) {
                        i += 1;
                    }
                    i = (i + close.len()).min(b.len());
                }
                push(&mut out, start, i);
            }
            c if c.is_ascii_whitespace() => {
                let start = i;
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if b[start..i].contains(&b'\n') {
                    space(&mut out);
                } else {
                    push(&mut out, start, i);
                }
            }
            _ => {
                let start = i;
                i += 1;
                while i < b.len() && !b"/\"'r".contains(&b[i]) && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                push(&mut out, start, i);
            }
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_merging_and_unknown_keys() {
        let d = "(steps: 100, step_size: 0.1, precond: none)";
        let r = resolve_config(d, "x", &Overrides::from_cli(None, &["steps=5".into(), "precond=adam".into()]).unwrap()).unwrap().text;
        assert!(r.contains("steps: 5") && r.contains("precond: adam") && r.contains("step_size: 0.1"), "{r}");
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct C {
            steps: usize,
            step_size: f64,
            precond: P,
        }
        #[derive(serde::Deserialize, PartialEq, Debug)]
        #[serde(rename_all = "snake_case")]
        enum P {
            None,
            Adam,
        }
        assert_eq!(parse_ron::<C>(&r, "merged").unwrap().precond, P::Adam);
        // Pretty RON: one `key: value,` per line, keys sorted.
        assert_eq!(r, "(\n    precond: adam,\n    step_size: 0.1,\n    steps: 5,\n)");
        let e = resolve_config(d, "x", &[Overrides::from_set("stepz=5").unwrap()]).unwrap_err().to_string();
        assert!(e.contains("unknown key `stepz` for plugin `x`"), "{e}");
        assert!(Overrides::from_set("steps").is_err());
        // A plugin's error at a position in the text names the key and where its value came from.
        let r = resolve_config(d, "x", &[Overrides::from_set("steps=many").unwrap()]).unwrap();
        let line = r.text.lines().position(|l| l.contains("steps:")).unwrap() + 1;
        let e = r.explain(&format!("plugin `x`: config {line}:12: invalid type: expected usize"));
        assert_eq!(e, "plugin `x`: `steps: many` (from --set steps=many): invalid type: expected usize");
        let p = parse_ron::<C>(&r.text.replace("many", "5"), "t").unwrap();
        assert_eq!(p.steps, 5);
    }

    #[test]
    fn values_fold_onto_one_line_without_comments() {
        let d = "(a: [1, // one\n 2], b: \"x // not a comment\", c: 3 /* gone /* nested */ */, d: r#\"raw \" // kept\"#, e: 'q', f: Some(4) // trailing\n)";
        let r = resolve_config(d, "x", &[]).unwrap();
        let lines: Vec<&str> = r.text.lines().collect();
        assert_eq!(lines[0], "(");
        assert_eq!(lines[1], "    a: [1, 2],");
        assert_eq!(lines[2], "    b: \"x // not a comment\",");
        assert_eq!(lines[3], "    c: 3,");
        assert_eq!(lines[4], "    d: r#\"raw \" // kept\"#,");
        assert_eq!(lines[5], "    e: 'q',");
        assert_eq!(lines[6], "    f: Some(4),");
        assert_eq!(lines[7], ")");
        let merged = resolve_config(d, "x", &[Overrides::from_set("c=7 /* why */").unwrap()]).unwrap();
        assert!(merged.text.contains("    c: 7,\n"), "{}", merged.text);
    }
}
