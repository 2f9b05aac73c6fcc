//! Importing a network trained elsewhere from an `.npz` (see the README for
//! the names and shapes it must hold) as a target.
//!
//! Every array is checked before anything is stored: shapes, finiteness (a
//! NaN or ±inf is refused by array name and index), and `widths` in either
//! common form — hidden widths only, or every layer size `[d_in, h_1, …, d_out]`
//! — whichever matches `w_star`'s length. The target id hashes the arrays'
//! values (not the file's bytes), so the same network gives the same id
//! however it was saved (C or Fortran order, either `widths` form).

use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::build::{commit, data_npz, params_npz, Built};
use super::meta::{ImportedConfig, TargetMeta, TargetSource};
use crate::backend::{cpu, Dataset};
use crate::config::{BetaMode, PosteriorConfig};
use crate::error::{Error, Result};
use crate::model::{param_count, Activation, LossKind, MlpSpec, Precision};
use crate::store::layout::check_experiment_name;
use crate::store::npz::Npz;
use crate::store::Store;

/// Imports the network in the npz at `path` and links it into experiment `exp`.
pub fn import(store: &Store, path: &Path, exp: &str, threads: usize) -> Result<Built> {
    let start = Instant::now();
    check_experiment_name(exp)?;
    let mut z = Npz::open(path)?;
    let bad = |msg: String| Error::bad_file(path, msg);
    let (xs, x) = z.finite_f64("X")?;
    let (ys, y) = z.finite_f64("Y")?;
    let (_, w_star) = z.finite_f64("w_star")?;
    let (_, widths) = z.f64("widths")?;
    let act_name = z.string("activation")?;
    let activation = Activation::parse(&act_name).ok_or_else(|| bad(format!("activation `{act_name}` is not one of relu, tanh, gelu, identity")))?;
    let bias = z.scalar("bias")? != 0.0;
    if xs.len() != 2 || ys.len() != 2 || xs[0] != ys[0] {
        return Err(bad(format!("X must be (n, d_in) and Y (n, d_out) with the same n; got X {xs:?}, Y {ys:?}")));
    }
    let widths: Vec<usize> = widths
        .iter()
        .map(|w| (*w >= 1.0 && w.fract() == 0.0 && *w <= usize::MAX as f64).then_some(*w as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(format!("widths must be positive integers, got {widths:?}")))?;
    let spec = read_widths(&widths, xs[1], ys[1], activation, bias, w_star.len()).map_err(bad)?;
    let mut posterior = PosteriorConfig::default();
    if z.has("loss") {
        let l = z.string("loss")?;
        posterior.loss = match l.as_str() {
            "mse" => LossKind::Mse,
            "half_sse" => LossKind::HalfSse,
            _ => return Err(bad(format!("loss `{l}` is not mse or half_sse"))),
        };
    }
    if z.has("beta") {
        posterior.beta_mode = BetaMode::Fixed;
        posterior.beta0 = z.scalar("beta")?;
    }
    if z.has("gamma") {
        posterior.gamma = z.scalar("gamma")?;
    }
    posterior.validate().map_err(|e| bad(e.to_string()))?;
    let train = Dataset::new(x, y, spec.in_dim, spec.out_dim).map_err(|e| bad(e.to_string()))?;
    let test = if z.has("X_test") {
        let (_, xt) = z.finite_f64("X_test")?;
        let (_, yt) = z.finite_f64("Y_test")?;
        Dataset::new(xt, yt, spec.in_dim, spec.out_dim).map_err(|e| bad(format!("X_test/Y_test: {e}")))?
    } else {
        Dataset { x: vec![], y: vec![], n: 0, d_in: spec.in_dim, d_out: spec.out_dim }
    };

    let arrays_sha256 = arrays_hash(&[&train.x, &train.y, &w_star, &test.x, &test.y]);
    let source = TargetSource::Imported(ImportedConfig { arrays_sha256, model: spec.clone(), posterior: posterior.clone() });
    let id = source.id();
    let mut be = cpu::new_backend(&spec, &train, posterior.loss, 1, Precision::F64, threads)?;
    let mut l0 = [0.0];
    be.loss_grad(&w_star, crate::backend::Batch::Full, &mut l0, None).map_err(|e| bad(format!("L_n(w_star): {e}")))?;
    let payload = [
        ("config.json", source.canonical_json().into_bytes()),
        ("data.npz", data_npz(&train, &test, None)?),
        ("params.npz", params_npz(&spec, &w_star, None)?),
    ];
    let meta = TargetMeta::new(&id, source, spec.n_params(), train.n, test.n, l0[0], Precision::F64, None);
    let built = commit(store, id, &payload, meta, false, start)?;
    store.link(exp, "targets", &built.id, &built.hash)?;
    Ok(built)
}

/// sha256 over the arrays' values (little-endian f64, C order, each prefixed by its length).
fn arrays_hash(arrays: &[&[f64]]) -> String {
    let mut h = Sha256::new();
    for a in arrays {
        h.update((a.len() as u64).to_le_bytes());
        for v in *a {
            h.update(v.to_le_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// The network `widths` describes, read as hidden widths or as every layer's
/// size `[d_in, h_1, …, d_out]`: the reading whose parameter count is `d`. An
/// error giving both readings' D when neither (or, ambiguously, both) match.
fn read_widths(widths: &[usize], d_in: usize, d_out: usize, activation: Activation, bias: bool, d: usize) -> std::result::Result<MlpSpec, String> {
    let spec = |hidden: &[usize]| MlpSpec { in_dim: d_in, widths: hidden.to_vec(), out_dim: d_out, activation, bias };
    let hidden = spec(widths);
    let all_sizes = (widths.len() >= 2 && widths[0] == d_in && widths[widths.len() - 1] == d_out).then(|| spec(&widths[1..widths.len() - 1]));
    let count = |s: &MlpSpec| param_count(&s.sizes(), bias);
    let fits = |s: &MlpSpec| count(s) == Some(d);
    let describe = |s: &MlpSpec| count(s).map_or("more parameters than fit in memory".to_string(), |c| format!("D = {c}"));
    match (fits(&hidden), all_sizes.as_ref().filter(|s| fits(s))) {
        (true, None) => Ok(hidden),
        (false, Some(s)) => Ok(s.clone()),
        (true, Some(_)) => Err(format!("widths {widths:?} is ambiguous: as hidden widths and as all layer sizes both give D = {d}")),
        (false, None) => {
            let as_all = all_sizes
                .as_ref()
                .map_or(String::new(), |s| format!(", read as all layer sizes [d_in, …, d_out] a {d_in}→{:?}→{d_out} network has {}", s.widths, describe(s)));
            Err(format!(
                "w_star has {d} values but a {d_in}→{widths:?}→{d_out} {} network {} biases has {}{as_all}",
                format!("{activation:?}").to_lowercase(),
                if bias { "with" } else { "without" },
                describe(&hidden)
            ))
        }
    }
}
