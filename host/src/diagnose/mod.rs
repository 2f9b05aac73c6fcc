//! Stage C: diagnostics. Run directories written by Stage B flow in; each
//! run's `analysis.json` (λ̂ per chain and pooled, SEs, R̂/ESS, sampler
//! statistics, work, WNV) and its figures under `diagnostics/` flow out, and
//! `compare` sets an experiment's runs side by side (`compare.csv`, `.png`).

pub mod analysis;
pub mod compare;
pub mod figures;
pub mod run;

use std::path::{Path, PathBuf};

pub use self::analysis::{analyse, Analysis, Mode};
pub use self::run::Run;
use crate::error::Result;
use crate::store::layout::ANALYSIS;
use crate::store::record::write_record;

/// Diagnoses the run in `dir`: writes `diagnostics/*.png` and `analysis.json`.
pub fn diagnose(dir: &Path, mode: Mode) -> Result<(PathBuf, Analysis)> {
    let run = Run::load(dir)?;
    let mut analysis = analyse(&run, mode);
    let (plots, skipped) = figures::write_all(&run, &analysis, mode)?;
    analysis.plots = plots;
    analysis.notes.extend(skipped);
    let out = dir.join(ANALYSIS);
    write_record(&out, &analysis)?;
    Ok((out, analysis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::npz::{self, Array};

    /// A synthetic variational run: 20 optimisation records (burn-in, with
    /// `elbo`) then 40 independent draws per chain.
    fn vi_run(dir: &Path) {
        let (c, t, burn_in) = (2, 60, 20);
        let loss: Vec<f64> = (0..c * t).map(|i| 1.0 + 0.01 * ((i * 7919) % 13) as f64 + if i % t < burn_in { 1.0 / (1 + i % t) as f64 } else { 0.0 }).collect();
        let elbo: Vec<f64> = (0..c * t).map(|i| -100.0 + (i % t).min(burn_in) as f64 + 0.1 * (i / t) as f64).collect();
        let shape = [c, t];
        let llc: Vec<f64> = loss.iter().map(|l| 10.0 * (l - 1.0)).collect();
        let bytes =
            npz::to_bytes(&[("loss", Array::F64(&shape, &loss)), ("llc", Array::F64(&shape, &llc)), ("elbo", Array::F64(&shape, &elbo))], npz::Packing::Stored)
                .unwrap();
        std::fs::write(dir.join("traces.npz"), bytes).unwrap();
        let m = serde_json::json!({
            "schema": 1, "run_id": "r", "experiment": "dev", "target_id": "tgt_x", "target_hash": "00", "status": "complete",
            "plugin": {"name": "vi", "version": "0", "api_version": "0.1.0", "path": "x.so", "sha256": "00", "help": "", "default_config": "()"},
            "config": "()", "seed": 1, "chains": c, "backend": {"backend": "cpu", "adapter": "cpu", "precision": "f64"}, "target_precision": "f64",
            "error": null, "draws": t, "draws_announced": t, "burn_in": burn_in, "independent_draws": true, "timings": {"total": 2.0},
            "work": {"grad_evals_fge": 4.0, "loss_evals": 40, "full_grad_calls": 4, "minibatch_grad_calls": 0, "non_finite": 0},
            "n": 10, "beta": 1.0, "gamma": 1.0, "l0": 1.0, "target_l0": 1.0, "llc": null, "tuned": {}, "notes": "",
            "created": "2026-01-01T00:00:00Z", "host_version": "0.1.0", "git_commit": "unknown",
        });
        std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    }

    #[test]
    fn independent_draws_get_iid_errors_and_an_elbo_plot() {
        let dir = tempfile::tempdir().unwrap();
        vi_run(dir.path());
        let (_, a) = diagnose(dir.path(), Mode::Full).unwrap();
        // Two chains, each its own fit: SE = sd(chain λ̂)/√2 = |λ̂₀ − λ̂₁|/2.
        let per_chain: Vec<f64> = Run::load(dir.path()).unwrap().llc_draws().iter().map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
        assert!((a.llc.se - (per_chain[0] - per_chain[1]).abs() / 2.0).abs() < 1e-12 && a.llc.rhat.is_none(), "{}", a.llc.se);
        assert_eq!(a.llc_bootstrap.block_len, 40, "whole chains are resampled");
        assert!(a.llc_bootstrap.se.is_some_and(|se| se > 0.0));
        let e = a.elbo.as_ref().unwrap();
        assert!((e.final_per_chain[0] + 81.0).abs() < 1e-12 && (e.final_per_chain[1] + 80.9).abs() < 1e-12, "{e:?}");
        assert!((a.wnv.grad_evals.unwrap() - a.llc.se.powi(2) * 8.0).abs() < 1e-15);
        assert!(a.notes[0].starts_with("independent draws"), "{:?}", a.notes);
        // These draws spread far less than a posterior's (Var(nβ·L_n) ≈ 0.2 × λ̂): noted.
        let r = a.llc.variance_ratio().unwrap();
        assert!((r - a.llc.variance.unwrap() / a.llc.mean).abs() < 1e-12 && r < analysis::VARIANCE_RATIO_BAND.0, "{r}");
        assert!(a.notes.iter().any(|n| n.starts_with(&format!("Var(nβ·L_n) is {r:.2} × λ̂"))), "{:?}", a.notes);
        for f in ["trace.png", "llc_convergence_combined.png", "elbo.png", "wnv.png"] {
            assert!(a.plots.iter().any(|p| p == f) && dir.path().join("diagnostics").join(f).exists(), "{f}: {:?}", a.plots);
        }
        assert!(!a.plots.iter().any(|p| p == "rank.png" || p == "autocorr.png"));
    }
}
