//! The syntax of a weight restriction (`--restrict`, a sampler's `restrict`
//! in an experiment file) and, for layers and their parts, the coordinates of
//! θ it frees in an MLP's layout. Layers count from 1, as params.npz's `W{k}`
//! and `b{k}`. Mask files are read where the target is known (in
//! `sample::restrict`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::MlpSpec;
use crate::error::{Error, Result};

/// A restriction as written: parts of the network (`layer:2`, `layer:1..2`,
/// `W2`, `b1`, several joined by commas), a path to a `.npy` mask, or
/// `each-layer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RestrictSpec {
    /// The union of these parts of the network.
    Parts(Vec<Part>),
    /// A `.npy` file of D bools, true where θ moves.
    Mask(PathBuf),
    /// One run per layer: `layer:1`, `layer:2`, …
    EachLayer,
}

/// One part of an MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Layers `first..=last`, weights and biases.
    Layers(usize, usize),
    /// The weight matrix W_k.
    Weights(usize),
    /// The bias b_k.
    Bias(usize),
}

impl RestrictSpec {
    /// The restrictions `each-layer` stands for: `layer:1` … `layer:{layers}`.
    pub fn each_layer(layers: usize) -> Vec<RestrictSpec> {
        (1..=layers).map(|k| RestrictSpec::Parts(vec![Part::Layers(k, k)])).collect()
    }

    /// The single layer this restriction frees entirely (`layer:K`), if that is what it is.
    pub fn single_layer(&self) -> Option<usize> {
        match self {
            RestrictSpec::Parts(p) => match p.as_slice() {
                [Part::Layers(a, b)] if a == b => Some(*a),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The coordinates of θ that `parts` free in `mlp`'s layout, ascending and
/// each once; the reason when a part names a layer or bias the model lacks.
pub fn part_coords(parts: &[Part], mlp: &MlpSpec) -> std::result::Result<Vec<usize>, String> {
    let layout = mlp.layout();
    let layer = |k: usize| layout.get(k - 1).ok_or_else(|| format!("the model has {} layers (layer:1..{}), no layer {k}", layout.len(), layout.len()));
    let mut free = Vec::new();
    for part in parts {
        let (first, last, weights, bias) = match *part {
            Part::Layers(a, b) => (a, b, true, true),
            Part::Weights(k) => (k, k, true, false),
            Part::Bias(k) => (k, k, false, true),
        };
        for k in first..=last {
            let l = layer(k)?;
            if weights {
                free.extend(l.w..l.w + l.fan_in * l.fan_out);
            }
            if bias {
                match l.b {
                    Some(b) => free.extend(b..b + l.fan_out),
                    None if !weights => return Err(format!("the model has no biases, so no b{k}")),
                    None => {}
                }
            }
        }
    }
    free.sort_unstable();
    free.dedup();
    Ok(free)
}

fn layer_number(k: &str) -> std::result::Result<usize, String> {
    k.parse::<usize>().ok().filter(|&k| k >= 1).ok_or_else(|| format!("`{k}` is not a layer number (layers count from 1)"))
}

fn parse_part(p: &str) -> std::result::Result<Part, String> {
    if let Some(r) = p.strip_prefix("layer:") {
        return match r.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (layer_number(a)?, layer_number(b)?);
                if a > b {
                    return Err(format!("the layer range {a}..{b} is empty"));
                }
                Ok(Part::Layers(a, b))
            }
            None => layer_number(r).map(|k| Part::Layers(k, k)),
        };
    }
    if let Some(k) = p.strip_prefix('W') {
        return layer_number(k).map(Part::Weights);
    }
    if let Some(k) = p.strip_prefix('b') {
        return layer_number(k).map(Part::Bias);
    }
    Err(format!("unknown part `{p}` (expected layer:K, layer:J..K, WK, bK, each-layer, or a path to a .npy mask of D bools)"))
}

impl FromStr for RestrictSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        if t == "each-layer" {
            return Ok(RestrictSpec::EachLayer);
        }
        if t.ends_with(".npy") {
            return Ok(RestrictSpec::Mask(PathBuf::from(t)));
        }
        t.split(',')
            .map(|p| parse_part(p.trim()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(RestrictSpec::Parts)
            .map_err(|why| Error::invalid(format!("restriction `{s}`: {why}")))
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Layers(a, b) if a == b => write!(f, "layer:{a}"),
            Part::Layers(a, b) => write!(f, "layer:{a}..{b}"),
            Part::Weights(k) => write!(f, "W{k}"),
            Part::Bias(k) => write!(f, "b{k}"),
        }
    }
}

impl fmt::Display for RestrictSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestrictSpec::Parts(parts) => {
                let text: Vec<String> = parts.iter().map(Part::to_string).collect();
                f.write_str(&text.join(","))
            }
            RestrictSpec::Mask(path) => write!(f, "{}", path.display()),
            RestrictSpec::EachLayer => f.write_str("each-layer"),
        }
    }
}

impl TryFrom<String> for RestrictSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<RestrictSpec> for String {
    fn from(r: RestrictSpec) -> String {
        r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;

    fn mlp(bias: bool) -> MlpSpec {
        // 3 → 2 → 1: W1 at 0..6, b1 6..8, W2 8..10, b2 10 (with biases).
        MlpSpec { in_dim: 3, widths: vec![2], out_dim: 1, activation: Activation::Tanh, bias }
    }

    fn coords(s: &str, m: &MlpSpec) -> std::result::Result<Vec<usize>, String> {
        match s.parse::<RestrictSpec>().map_err(|e| e.to_string())? {
            RestrictSpec::Parts(p) => part_coords(&p, m),
            other => Err(format!("not parts: {other}")),
        }
    }

    #[test]
    fn parts_free_their_slices_of_the_layout() {
        let m = mlp(true);
        assert_eq!(coords("layer:1", &m).unwrap(), (0..8).collect::<Vec<_>>());
        assert_eq!(coords("layer:2", &m).unwrap(), vec![8, 9, 10]);
        assert_eq!(coords("layer:1..2", &m).unwrap(), (0..11).collect::<Vec<_>>());
        assert_eq!(coords("W2", &m).unwrap(), vec![8, 9]);
        assert_eq!(coords("b1, b2", &m).unwrap(), vec![6, 7, 10]);
        assert_eq!(coords("W2,layer:2,b1", &m).unwrap(), vec![6, 7, 8, 9, 10]);
        assert_eq!(coords("layer:1", &mlp(false)).unwrap(), (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn bad_parts_say_why() {
        let m = mlp(true);
        assert!(coords("layer:3", &m).unwrap_err().contains("has 2 layers (layer:1..2), no layer 3"));
        assert!(coords("b1", &mlp(false)).unwrap_err().contains("no biases"));
        for (s, why) in [("conv1", "unknown part `conv1`"), ("layer:0", "`0` is not a layer number"), ("layer:2..1", "range 2..1 is empty"), ("W", "`` is not")]
        {
            let e = s.parse::<RestrictSpec>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("restriction `{s}`: ")) && e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn specs_read_back_from_their_text() {
        for s in ["layer:2", "layer:1..3", "W1,b2", "each-layer", "masks/m.npy"] {
            let r: RestrictSpec = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        assert_eq!("layer:2".parse::<RestrictSpec>().unwrap().single_layer(), Some(2));
        assert_eq!("W2".parse::<RestrictSpec>().unwrap().single_layer(), None);
        assert_eq!(RestrictSpec::each_layer(2).iter().map(ToString::to_string).collect::<Vec<_>>(), ["layer:1", "layer:2"]);
    }
}
