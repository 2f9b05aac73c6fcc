//! Importing a network trained elsewhere from an `.npz` (see the README for
//! the names and shapes it must hold) as a target.

use std::path::Path;

use super::build::{data_npz, params_npz, Built};
use super::meta::{ImportedConfig, TargetMeta, TargetSource};
use crate::backend::{cpu, Dataset};
use crate::config::PosteriorConfig;
use crate::error::{Error, Result};
use crate::model::{Activation, LossKind, MlpSpec, Precision};
use crate::store::npz::Npz;
use crate::store::{sha256_hex, Store};

/// Imports a network trained elsewhere from an npz (see the README for the
/// names and shapes it must hold) and links it into experiment `exp`.
pub fn import(store: &Store, path: &Path, exp: &str, threads: usize) -> Result<Built> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let npz_sha256 = sha256_hex(&bytes);
    let mut z = Npz::from_bytes(bytes, path)?;
    let bad = |msg: String| Error::bad_file(path, msg);
    let (xs, x) = z.f64("X")?;
    let (ys, y) = z.f64("Y")?;
    let (_, w_star) = z.f64("w_star")?;
    let (_, widths) = z.f64("widths")?;
    let act_name = z.string("activation")?;
    let activation = Activation::parse(&act_name).ok_or_else(|| bad(format!("activation `{act_name}` is not one of relu, tanh, gelu, identity")))?;
    let bias = z.scalar("bias")? != 0.0;
    if xs.len() != 2 || ys.len() != 2 || xs[0] != ys[0] {
        return Err(bad(format!("X must be (n, d_in) and Y (n, d_out) with the same n; got X {xs:?}, Y {ys:?}")));
    }
    let widths: Vec<usize> = widths
        .iter()
        .map(|w| (*w >= 1.0 && w.fract() == 0.0).then_some(*w as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(format!("widths must be positive integers, got {widths:?}")))?;
    let spec = MlpSpec { in_dim: xs[1], widths, out_dim: ys[1], activation, bias };
    if w_star.len() != spec.n_params() {
        return Err(bad(format!(
            "w_star has {} values but a {}→{:?}→{} {} network {} biases has D = {}",
            w_star.len(),
            spec.in_dim,
            spec.widths,
            spec.out_dim,
            act_name,
            if bias { "with" } else { "without" },
            spec.n_params()
        )));
    }
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
        posterior.beta_mode = crate::config::BetaMode::Fixed;
        posterior.beta0 = z.scalar("beta")?;
    }
    if z.has("gamma") {
        posterior.gamma = z.scalar("gamma")?;
    }
    posterior.validate().map_err(|e| bad(e.to_string()))?;
    let train = Dataset::new(x, y, spec.in_dim, spec.out_dim).map_err(|e| bad(e.to_string()))?;
    let test = if z.has("X_test") {
        let (_, xt) = z.f64("X_test")?;
        let (_, yt) = z.f64("Y_test")?;
        Dataset::new(xt, yt, spec.in_dim, spec.out_dim).map_err(|e| bad(format!("X_test/Y_test: {e}")))?
    } else {
        Dataset { x: vec![], y: vec![], n: 0, d_in: spec.in_dim, d_out: spec.out_dim }
    };

    let source = TargetSource::Imported(ImportedConfig { npz_sha256, model: spec.clone(), posterior: posterior.clone() });
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
    let hash = store.commit(&payload, meta.clone())?;
    store.link(exp, "targets", &id, &hash)?;
    Ok(Built { id, hash, trained: false, meta })
}
