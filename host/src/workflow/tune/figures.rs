//! A tune's figures, one per problem (`tune/figures/<target id>.png`), one
//! colour per method: on the left each trial's error |λ̂ − λ̂_ref| against its
//! number (dots) with the best error so far (line); on the right the best
//! error so far against the gradient evaluations spent on the study up to
//! that trial (per chain, failed trials included). Errors on a log scale.

use std::path::PathBuf;

use super::{Tuned, Tuner};
use crate::error::Result;
use crate::plots::{self, Chart, Mark, Series};
use crate::store::Store;

/// The two charts of problem `p`.
fn charts(tuner: &Tuner, tuned: &Tuned, p: usize) -> (Chart, Chart) {
    let problem = &tuned.references[p].problem;
    let mut by_trial = Chart::new(format!("Trials on {problem}"), "trial", "|λ̂ − λ̂_ref|");
    let mut by_work = Chart::new(format!("Best error so far on {problem}"), "gradient evaluations per chain (cumulative)", "best |λ̂ − λ̂_ref| so far");
    by_trial.log_y = true;
    by_work.log_y = true;
    for (i, st) in tuned.studies.iter().filter(|s| s.problem == p).enumerate() {
        let color = plots::color(i);
        let name = tuner.methods[st.method].name();
        let (mut dots, mut best_line, mut work_line) = (Vec::new(), Vec::new(), Vec::new());
        let (mut best, mut work) = (f64::INFINITY, 0.0);
        for row in st.rows.values() {
            work += row.grad_evals.unwrap_or(0.0);
            if let (true, Some(e)) = (row.scored(), row.error) {
                dots.push((row.trial as f64, e));
                best = best.min(e);
            }
            if best.is_finite() {
                // Steps: the best so far holds until a trial beats it.
                if let (Some(&(_, prev)), Some(&(_, prev_w))) = (best_line.last(), work_line.last()) {
                    best_line.push((row.trial as f64, prev));
                    work_line.push((work, prev_w));
                }
                best_line.push((row.trial as f64, best));
                work_line.push((work, best));
            }
        }
        by_trial.series.push(Series::new(name, dots, color, Mark::Points));
        by_trial.series.push(Series::new("", best_line, color, Mark::Line(2)));
        by_work.series.push(Series::new(name, work_line, color, Mark::Line(2)));
    }
    (by_trial, by_work)
}

/// Writes one figure per problem; returns their paths (a problem with no scored trial has none).
pub fn write(store: &Store, tuner: &Tuner, tuned: &Tuned) -> Result<Vec<PathBuf>> {
    let dir = tuner.dir(store)?.join("figures");
    let mut out = Vec::new();
    for (p, r) in tuned.references.iter().enumerate() {
        let (left, right) = charts(tuner, tuned, p);
        if left.is_empty() {
            continue;
        }
        let path = dir.join(format!("{}.png", r.problem));
        plots::write_png(&path, (1600, 560), |area| {
            let (a, b) = area.split_horizontally(800);
            left.draw(&a)?;
            right.draw(&b)
        })?;
        out.push(path);
    }
    Ok(out)
}
