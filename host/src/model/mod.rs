//! The model, a leaf every stage uses: the MLP shape, its flat parameter
//! layout, width inference and initialisation, and (in [`scalar`]) the
//! activation, precision, loss kind and the `Real` scalar, and (in
//! [`restrict`]) which parts of θ a restricted run moves. Nothing flows in
//! from other modules; specs and layouts flow out.
//!
//! θ is laid out layer by layer: W_l row-major with shape [out, in], then b_l
//! (when the model has biases). Hidden layers apply the activation; the output
//! layer does not.

pub mod restrict;
pub mod scalar;

use rand_distr::{Distribution, Uniform};
use serde::{Deserialize, Serialize};

pub use self::scalar::{Activation, LossKind, Precision, Real};
use crate::error::Result;

/// A resolved MLP shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSpec {
    pub in_dim: usize,
    /// Hidden widths, input to output.
    pub widths: Vec<usize>,
    pub out_dim: usize,
    pub activation: Activation,
    pub bias: bool,
}

/// Where one layer's parameters live in θ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLayout {
    pub fan_in: usize,
    pub fan_out: usize,
    /// Offset of W (row-major [fan_out, fan_in]).
    pub w: usize,
    /// Offset of b, when the model has biases.
    pub b: Option<usize>,
}

impl MlpSpec {
    /// Layer sizes [d_in, h_1, …, h_k, d_out].
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = Vec::with_capacity(self.widths.len() + 2);
        s.push(self.in_dim);
        s.extend(&self.widths);
        s.push(self.out_dim);
        s
    }

    /// Every layer's slice of θ, input to output.
    pub fn layout(&self) -> Vec<LayerLayout> {
        let sizes = self.sizes();
        let mut off = 0;
        sizes
            .windows(2)
            .map(|w| {
                let (fan_in, fan_out) = (w[0], w[1]);
                let wo = off;
                off += fan_in * fan_out;
                let b = self.bias.then(|| {
                    let bo = off;
                    off += fan_out;
                    bo
                });
                LayerLayout { fan_in, fan_out, w: wo, b }
            })
            .collect()
    }

    /// Number of parameters D (of a spec [`MlpSpec::validate`] accepted).
    pub fn n_params(&self) -> usize {
        param_count(&self.sizes(), self.bias).expect("MlpSpec::validate checks that D fits in usize")
    }

    /// Checks that every size is ≥ 1 and that D (and each layer's fan_in·fan_out)
    /// fits in usize, so that [`MlpSpec::n_params`] and the layout cannot overflow.
    pub fn validate(&self) -> Result<()> {
        crate::ensure!(self.in_dim >= 1 && self.out_dim >= 1, "model.in_dim and model.out_dim must be ≥ 1");
        crate::ensure!(self.widths.iter().all(|w| *w >= 1), "model.widths must all be ≥ 1, got {:?}", self.widths);
        crate::ensure!(
            param_count(&self.sizes(), self.bias).is_some(),
            "model: a {}→{:?}→{} network has more parameters than a usize counts",
            self.in_dim,
            self.widths,
            self.out_dim
        );
        Ok(())
    }

    /// Equinox-style initialisation: W and b ~ U(−1/√fan_in, 1/√fan_in).
    pub fn init(&self, rng: &mut impl rand::Rng) -> Vec<f64> {
        let mut theta = vec![0.0; self.n_params()];
        for l in self.layout() {
            let a = 1.0 / (l.fan_in as f64).sqrt();
            let u = Uniform::new(-a, a).expect("finite bounds");
            let end = l.b.map_or(l.w + l.fan_in * l.fan_out, |b| b + l.fan_out);
            for v in &mut theta[l.w..end] {
                *v = u.sample(rng);
            }
        }
        theta
    }
}

impl MlpSpec {
    /// Plain f64 forward pass over `rows` rows of `x` (row-major): the
    /// outputs, rows × d_out. Used for teacher outputs and as a simple
    /// independent reference; the backends do the heavy evaluations.
    pub fn predict(&self, theta: &[f64], x: &[f64], rows: usize) -> Vec<f64> {
        let layout = self.layout();
        let mut out = Vec::with_capacity(rows * self.out_dim);
        let mut h: Vec<f64> = Vec::new();
        for r in 0..rows {
            h.clear();
            h.extend_from_slice(&x[r * self.in_dim..(r + 1) * self.in_dim]);
            for (li, l) in layout.iter().enumerate() {
                let next: Vec<f64> = (0..l.fan_out)
                    .map(|o| {
                        let w = &theta[l.w + o * l.fan_in..l.w + (o + 1) * l.fan_in];
                        let z = w.iter().zip(&h).map(|(a, b)| a * b).sum::<f64>() + l.b.map_or(0.0, |b| theta[b + o]);
                        if li + 1 < layout.len() {
                            <f64 as Real>::act(self.activation, z)
                        } else {
                            z
                        }
                    })
                    .collect();
                h = next;
            }
            out.extend_from_slice(&h);
        }
        out
    }
}

/// Parameter count of an MLP with the given layer sizes; `None` when it
/// overflows usize (checked at every step).
pub fn param_count(sizes: &[usize], bias: bool) -> Option<usize> {
    sizes.windows(2).try_fold(0usize, |acc, w| w[0].checked_mul(w[1])?.checked_add(if bias { w[1] } else { 0 })?.checked_add(acc))
}

/// Hidden widths for `depth` layers whose parameter count is closest to
/// `target`: the constant width h that comes closest, then, if that is more
/// than 5 % off, the last hidden width re-chosen to close the gap. An error
/// when even that is more than 5 % off.
pub fn infer_widths(in_dim: usize, out_dim: usize, depth: usize, bias: bool, target: usize) -> Result<Vec<usize>> {
    if depth == 0 {
        return Ok(vec![]);
    }
    let count = |w: &[usize]| {
        let mut s = vec![in_dim];
        s.extend_from_slice(w);
        s.push(out_dim);
        param_count(&s, bias).unwrap_or(usize::MAX)
    };
    // The count grows monotonically with h: walk until it passes the target.
    let mut h = 1;
    while count(&vec![h; depth]) < target {
        h += 1;
    }
    if h > 1 && target.abs_diff(count(&vec![h - 1; depth])) <= count(&vec![h; depth]).abs_diff(target) {
        h -= 1;
    }
    let mut widths = vec![h; depth];
    let within = |w: &[usize]| count(w).abs_diff(target) as f64 <= 0.05 * target as f64;
    if !within(&widths) {
        let best = (1..=2 * h + 1)
            .map(|last| {
                let mut w = widths.clone();
                w[depth - 1] = last;
                w
            })
            .min_by_key(|w| count(w).abs_diff(target))
            .expect("non-empty range");
        widths = best;
    }
    crate::ensure!(
        within(&widths),
        "model.target_params = {target}: the nearest widths ({widths:?}) give {} parameters, more than 5 % off; give explicit widths",
        count(&widths)
    );
    Ok(widths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_resolve_to_the_originals_widths() {
        assert_eq!(infer_widths(4, 1, 2, true, 45).unwrap(), vec![4, 4]);
        assert_eq!(infer_widths(32, 1, 3, true, 10_000).unwrap(), vec![62, 62, 62]);
        let base = MlpSpec { in_dim: 32, widths: vec![62; 3], out_dim: 1, activation: Activation::Relu, bias: true };
        assert_eq!(base.n_params(), 9921);
    }

    #[test]
    fn target_params_lands_within_five_percent() {
        for tp in [50, 200, 1000, 5000, 20_000, 100_000] {
            let w = infer_widths(8, 1, 2, true, tp).unwrap();
            let mut s = vec![8];
            s.extend(&w);
            s.push(1);
            let d = param_count(&s, true).unwrap() as f64;
            assert!((d - tp as f64).abs() <= 0.05 * tp as f64, "{tp} → {d}");
        }
        assert!(infer_widths(100, 1, 1, true, 50).is_err());
    }

    #[test]
    fn layout_is_contiguous_w_then_b() {
        let m = MlpSpec { in_dim: 3, widths: vec![2], out_dim: 1, activation: Activation::Tanh, bias: true };
        let l = m.layout();
        assert_eq!(l[0], LayerLayout { fan_in: 3, fan_out: 2, w: 0, b: Some(6) });
        assert_eq!(l[1], LayerLayout { fan_in: 2, fan_out: 1, w: 8, b: Some(10) });
        assert_eq!(m.n_params(), 11);
    }
}
