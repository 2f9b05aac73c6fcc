//! `diagnose-target` and `diagnose-targets`: figures of a built target, the
//! student (w*) against the teacher that generated its data. Written to
//! `$LH_HOME/target-diagnostics/<target id>/` (store objects are immutable):
//!
//! - `target_train_test_loss.png`: training and test loss during training
//!   (from the target's `training.csv`);
//! - `target_pred_vs_teacher_train.png`, `target_pred_vs_teacher_test.png`:
//!   the student's outputs against the teacher's clean outputs.
//!
//! Imported and quadratic targets have no teacher: diagnosing them is an error
//! that says so.

use std::path::{Path, PathBuf};

use plotters::style::BLACK;

use super::load::{load, Target, TargetModel};
use super::meta::TargetSource;
use crate::error::{Error, Result};
use crate::model::MlpSpec;
use crate::plots::{self, Chart, Mark, Series};
use crate::store::layout::entry_names;
use crate::store::npz::Npz;
use crate::store::Store;

/// Rows drawn per scatter plot (the error is computed on all of them).
const SCATTER_ROWS: usize = 2000;

/// What `diagnose-target` wrote.
#[derive(Debug, Clone)]
pub struct Report {
    pub target_id: String,
    pub dir: PathBuf,
    pub plots: Vec<String>,
    /// Mean squared difference between the student's and the teacher's outputs.
    pub mse_vs_teacher_train: f64,
    pub mse_vs_teacher_test: Option<f64>,
}

/// The ids of the targets linked into experiment `exp`, sorted.
pub fn experiment_targets(store: &Store, exp: &str) -> Result<Vec<String>> {
    let dir = store.existing_experiment_dir(exp)?.join("targets");
    let ids = entry_names(&dir)?;
    if ids.is_empty() {
        return Err(Error::invalid(format!("experiment `{exp}` has no targets in {}", dir.display())));
    }
    Ok(ids)
}

/// Draws the target's figures.
pub fn diagnose(store: &Store, id: &str) -> Result<Report> {
    let t = load(store, id)?;
    let tid = t.meta.target_id.clone();
    let no_teacher = |what: &str| Error::invalid(format!("target {tid} has no teacher ({what}) - cannot generate teacher diagnostics"));
    let (spec, train, test) = match (&t.meta.source, &t.model) {
        (TargetSource::Quadratic(_), _) => return Err(no_teacher("a quadratic test target")),
        (TargetSource::Imported(_), _) => return Err(no_teacher("imported")),
        (TargetSource::Built(_), TargetModel::Mlp { spec, train, test }) => (spec, train, test),
        (TargetSource::Built(_), TargetModel::Quadratic) => return Err(no_teacher("no model")),
    };
    let data = store.payload_path(&t.hash, "data.npz");
    let mut npz = Npz::open(&data)?;
    let teacher_train = npz.f64("Y_teacher")?.1;
    let teacher_test = npz.f64("Y_teacher_test")?.1;
    let dir = store.target_figures_dir(&tid);
    let mut plots_written = Vec::new();

    let curve = training_curve(&store.payload_path(&t.hash, "training.csv"))?;
    let mut c = Chart::new(format!("{tid}: training"), "training step", "loss (log scale)");
    c.log_y = true;
    c.series.push(Series::new("train loss", curve.iter().map(|p| (p.0, p.1)).collect(), plots::color(0), Mark::Line(2)));
    if curve.iter().any(|p| p.2.is_finite()) {
        c.series.push(Series::new("test loss", curve.iter().map(|p| (p.0, p.2)).collect(), plots::color(1), Mark::Line(2)));
    }
    plots_written.push(plots::write_png(&dir.join("target_train_test_loss.png"), plots::SIZE, |a| c.draw(a))?);

    let (mse_train, chart) = versus_teacher(&t, spec, &train.x, train.n, &teacher_train, "train");
    plots_written.push(plots::write_png(&dir.join("target_pred_vs_teacher_train.png"), (800, 700), |a| chart.draw(a))?);
    let mse_test = if test.n > 0 {
        let (mse, chart) = versus_teacher(&t, spec, &test.x, test.n, &teacher_test, "test");
        plots_written.push(plots::write_png(&dir.join("target_pred_vs_teacher_test.png"), (800, 700), |a| chart.draw(a))?);
        Some(mse)
    } else {
        None
    };
    Ok(Report { target_id: tid, dir, plots: plots_written, mse_vs_teacher_train: mse_train, mse_vs_teacher_test: mse_test })
}

/// (step, train loss, test loss) rows of a target's `training.csv`.
fn training_curve(path: &Path) -> Result<Vec<(f64, f64, f64)>> {
    let bad = |e: String| Error::bad_file(path, e);
    let mut r = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    r.records()
        .map(|rec| {
            let rec = rec.map_err(|e| bad(e.to_string()))?;
            let f = |i: usize| rec.get(i).and_then(|v| v.parse::<f64>().ok()).ok_or_else(|| bad(format!("row {rec:?}: column {i} is not a number")));
            Ok((f(0)?, f(1)?, f(2)?))
        })
        .collect()
}

/// The student's outputs against the teacher's on `rows` inputs: the mean
/// squared difference and a scatter plot (one series per output, up to 6).
fn versus_teacher(t: &Target, spec: &MlpSpec, x: &[f64], rows: usize, teacher: &[f64], split: &str) -> (f64, Chart) {
    let student = spec.predict(&t.w_star, x, rows);
    let mse = student.iter().zip(teacher).map(|(s, y)| (s - y) * (s - y)).sum::<f64>() / student.len().max(1) as f64;
    let d_out = spec.out_dim;
    let shown = rows.min(SCATTER_ROWS) * d_out;
    let mut c =
        Chart::new(format!("{}: student vs teacher ({split}, MSE {mse:.3e})", t.meta.target_id), "teacher output (noise-free)", "student output f(x; w*)");
    let pairs = |k: Option<usize>| -> Vec<(f64, f64)> { (0..shown).filter(|i| k.is_none_or(|k| i % d_out == k)).map(|i| (teacher[i], student[i])).collect() };
    if d_out <= 6 {
        for k in 0..d_out {
            c.series.push(Series::new(format!("output {k}"), pairs(Some(k)), plots::color(k), Mark::Points));
        }
    } else {
        c.series.push(Series::new(format!("all {d_out} outputs"), pairs(None), plots::color(0), Mark::Points));
    }
    let (lo, hi) = teacher[..shown].iter().chain(&student[..shown]).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    if lo.is_finite() {
        c.series.push(Series::new("student = teacher", vec![(lo, lo), (hi, hi)], BLACK, Mark::Dashed));
    }
    (mse, c)
}
