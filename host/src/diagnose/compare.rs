//! Experiment-wide Stage C: finding an experiment's runs (for
//! `diagnose-experiment`) and `compare`, the ablation view: one row per
//! (target, plugin, restriction) with λ̂ ± SE, R̂, ESS/s and WNV, as a table, a
//! CSV file and one figure, and the per-layer λ̂ summed beside the whole
//! network's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::analysis::{analyse, Analysis, Mode};
use super::run::Run;
use crate::error::{Error, Result};
use crate::model::restrict::RestrictSpec;
use crate::plots::{self, Cat, Categorical};
use crate::sample::{Manifest, Status};
use crate::store::atomic::write_csv_atomic;
use crate::store::layout::{entry_names, MANIFEST};
use crate::store::record::read_record;
use crate::store::Store;

/// The run directories of experiment `exp`, sorted, optionally only those of
/// the plugins named in `samplers`. A run whose manifest cannot be read is
/// kept (diagnosing it reports why) unless a plugin filter is given.
pub fn run_dirs(store: &Store, exp: &str, samplers: &[String]) -> Result<Vec<PathBuf>> {
    let runs = store.existing_experiment_dir(exp)?.join("runs");
    let mut dirs: Vec<PathBuf> = entry_names(&runs)?.into_iter().map(|n| runs.join(n)).filter(|p| p.is_dir()).collect();
    if !samplers.is_empty() {
        dirs.retain(|d| read_record::<Manifest>(&d.join(MANIFEST)).is_ok_and(|m| samplers.contains(&m.plugin.name)));
    }
    if dirs.is_empty() {
        let which = if samplers.is_empty() { String::new() } else { format!(" of plugin(s) {}", samplers.join(", ")) };
        return Err(Error::invalid(format!("experiment `{exp}` has no runs{which} in {}", runs.display())));
    }
    Ok(dirs)
}

/// One row of the comparison: the latest run of a plugin on a target (with one restriction).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target_id: String,
    pub plugin: String,
    /// The restriction (`layer:2`, …); empty for the whole network.
    pub restriction: String,
    /// D′ of a restricted run (empty for the whole network).
    pub dim: Option<usize>,
    /// Runs of this plugin on this target with this restriction (the latest complete one is shown).
    pub runs: usize,
    pub run_id: String,
    pub chains: usize,
    pub draws_used: usize,
    pub llc: f64,
    pub se: f64,
    pub se_bootstrap: Option<f64>,
    pub rhat: Option<f64>,
    pub ess_bulk: f64,
    pub ess_per_second: Option<f64>,
    pub wnv_grad_evals: Option<f64>,
    pub wnv_seconds: Option<f64>,
    pub grad_evals_fge: f64,
    pub seconds: f64,
}

impl Row {
    /// The figure's x slot: the target, and the restriction when there is one.
    fn slot(&self) -> String {
        if self.restriction.is_empty() {
            self.target_id.clone()
        } else {
            format!("{} [{}]", self.target_id, self.restriction)
        }
    }
}

/// The comparison of an experiment: rows sorted by (target, plugin,
/// restriction; the whole network first), and the runs that could not be read.
pub struct Comparison {
    pub rows: Vec<Row>,
    pub failed: Vec<(PathBuf, Error)>,
}

/// Analyses every run of `exp` (no figures written) and keeps, per (target,
/// plugin, restriction), the latest complete run (the latest of any status if none is).
pub fn compare(store: &Store, exp: &str) -> Result<Comparison> {
    let mut groups: BTreeMap<(String, String, String), Vec<Analysis>> = BTreeMap::new();
    let mut failed = Vec::new();
    for dir in run_dirs(store, exp, &[])? {
        match Run::load(&dir) {
            Ok(run) => {
                let a = analyse(&run, Mode::Light);
                let restriction = a.restriction.as_ref().map_or_else(String::new, |r| r.spec.clone());
                groups.entry((a.target_id.clone(), a.plugin.clone(), restriction)).or_default().push(a);
            }
            Err(e) => failed.push((dir, e)),
        }
    }
    let rows = groups
        .into_values()
        .filter_map(|runs| {
            let n = runs.len();
            let a = runs
                .into_iter()
                .max_by(|a, b| (a.status == Status::Complete, &a.created, &a.run_id).cmp(&(b.status == Status::Complete, &b.created, &b.run_id)))?;
            Some(Row {
                target_id: a.target_id,
                plugin: a.plugin,
                restriction: a.restriction.as_ref().map_or_else(String::new, |r| r.spec.clone()),
                dim: a.restriction.as_ref().map(|r| r.dim),
                runs: n,
                run_id: a.run_id,
                chains: a.chains,
                draws_used: a.llc.draws_used,
                llc: a.llc.mean,
                se: a.llc.se,
                se_bootstrap: a.llc_bootstrap.se,
                rhat: a.llc.rhat,
                ess_bulk: a.llc.ess_bulk,
                ess_per_second: a.ess_per_second,
                wnv_grad_evals: a.wnv.grad_evals,
                wnv_seconds: a.wnv.seconds,
                grad_evals_fge: a.work.grad_evals_fge,
                seconds: a.work.seconds,
            })
        })
        .collect();
    Ok(Comparison { rows, failed })
}

/// The sum of λ̂ ± SE over independent runs: Σ λ̂ and √(Σ SE²).
pub fn sum_independent(estimates: impl IntoIterator<Item = (f64, f64)>) -> (f64, f64) {
    let (sum, var) = estimates.into_iter().fold((0.0, 0.0), |(s, v), (m, se)| (s + m, v + se * se));
    (sum, var.sqrt())
}

/// The single-layer λ̂ of one plugin on one target, summed, beside the whole network's.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSum {
    pub target_id: String,
    pub plugin: String,
    /// The layers with a `layer:K` row, ascending.
    pub layers: Vec<usize>,
    /// Σ λ̂ over those rows and its SE (the runs are independent).
    pub llc: f64,
    pub se: f64,
    /// λ̂ ± SE of the unrestricted row, when there is one.
    pub whole: Option<(f64, f64)>,
}

/// For every (target, plugin) with `layer:K` rows of at least two layers,
/// their λ̂ summed, beside the whole network's.
pub fn layer_sums(rows: &[Row]) -> Vec<LayerSum> {
    let mut groups: BTreeMap<(&str, &str), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry((&r.target_id, &r.plugin)).or_default().push(r);
    }
    groups
        .into_iter()
        .filter_map(|((target, plugin), rows)| {
            let mut layers: Vec<(usize, &Row)> =
                rows.iter().filter_map(|r| r.restriction.parse::<RestrictSpec>().ok()?.single_layer().map(|k| (k, *r))).collect();
            layers.sort_by_key(|(k, _)| *k);
            (layers.len() >= 2).then(|| {
                let (llc, se) = sum_independent(layers.iter().map(|(_, r)| (r.llc, r.se)));
                LayerSum {
                    target_id: target.to_string(),
                    plugin: plugin.to_string(),
                    layers: layers.iter().map(|(k, _)| *k).collect(),
                    llc,
                    se,
                    whole: rows.iter().find(|r| r.restriction.is_empty()).map(|r| (r.llc, r.se)),
                }
            })
        })
        .collect()
}

/// Writes the rows as CSV, header first (empty cells where a value does not apply).
pub fn write_csv(rows: &[Row], path: &Path) -> Result<()> {
    write_csv_atomic(rows, path)
}

/// One figure, four panels: λ̂ ± SE, R̂, ESS/s and WNV, per plugin (colour) on
/// each target (x). WNV is in gradient evaluations when every plugin took
/// gradients, else in seconds, so that the panel compares like with like.
pub fn plot(rows: &[Row], exp: &str, path: &Path) -> Result<String> {
    let mut targets: Vec<String> = rows.iter().map(Row::slot).collect();
    targets.sort();
    targets.dedup();
    let mut plugins: Vec<String> = rows.iter().map(|r| r.plugin.clone()).collect();
    plugins.sort();
    plugins.dedup();
    let cat = |r: &Row, y: Option<f64>, err: Option<f64>| {
        y.map(|y| Cat {
            slot: targets.iter().position(|t| *t == r.slot()).unwrap_or(0),
            group: plugins.iter().position(|p| *p == r.plugin).unwrap_or(0),
            y,
            err,
        })
    };
    let panel = |caption: String, y_desc: &str, log_y: bool, f: &dyn Fn(&Row) -> Option<Cat>| Categorical {
        caption,
        x_desc: "target".into(),
        y_desc: y_desc.into(),
        slots: targets.clone(),
        groups: plugins.clone(),
        values: rows.iter().filter_map(f).collect(),
        log_y,
        hline: None,
    };
    let by_grad = rows.iter().all(|r| r.wnv_grad_evals.is_some());
    let mut rhat = panel(format!("{exp}: R-hat of the LLC draws"), "R-hat (rank-normalised, split)", false, &|r| cat(r, r.rhat, None));
    rhat.hline = Some((1.01, "R-hat = 1.01".into()));
    let panels = [
        panel(format!("{exp}: LLC estimate ± SE"), "LLC estimate", false, &|r| cat(r, Some(r.llc), Some(r.se))),
        rhat,
        panel(format!("{exp}: ESS per second"), "bulk ESS / s (log scale)", true, &|r| cat(r, r.ess_per_second, None)),
        if by_grad {
            panel(format!("{exp}: WNV"), "SE² × gradient evaluations (log)", true, &|r| cat(r, r.wnv_grad_evals, None))
        } else {
            panel(format!("{exp}: WNV"), "SE² × seconds (log)", true, &|r| cat(r, r.wnv_seconds, None))
        },
    ];
    let width = 1100.max(300 * targets.len() as u32 * 2);
    plots::write_png(path, (width, 900), |area| area.split_evenly((2, 2)).iter().zip(&panels).try_for_each(|(sub, p)| p.draw(sub)))
}
