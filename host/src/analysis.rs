//! Stage C for one run: `analysis.json` (λ̂ recomputed from the traces, and
//! R̂ / ESS / mean of L_n and of every recorded statistic) and the two plots
//! researchers look at first, as SVG: the L_n trace of every chain and the
//! running λ̂ after burn-in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use crate::diagnostics;
use crate::error::{Error, Result};
use crate::estimate::{self, Estimate};
use crate::npz::Npz;
use crate::store::{read_json, write_atomic, write_json_atomic};

/// Summary of one recorded trace after burn-in.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub mean: f64,
    /// Rank-normalised split R̂ (none for independent draws or too few draws).
    pub rhat: Option<f64>,
    pub ess_bulk: Option<f64>,
    pub ess_tail: Option<f64>,
}

/// A run's `analysis.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub run_id: String,
    pub plugin: String,
    pub target_id: String,
    pub status: String,
    pub chains: usize,
    pub draws: usize,
    pub burn_in: usize,
    pub independent_draws: bool,
    pub llc: Estimate,
    /// `loss` and every recorded statistic.
    pub traces: BTreeMap<String, TraceSummary>,
    /// Divergent transitions after burn-in (when the plugin records `is_divergent`).
    pub divergences: Option<u64>,
    /// Gradient evaluations per chain (full-batch equivalents), from the manifest.
    pub grad_evals_fge: f64,
    /// Bulk ESS of L_n per gradient evaluation per chain (Markov samplers).
    pub ess_per_grad_eval: Option<f64>,
    /// The plot files written beside it.
    pub plots: Vec<String>,
}

/// The manifest fields the analysis reads.
#[derive(serde::Deserialize)]
struct ManifestView {
    run_id: String,
    target_id: String,
    status: String,
    chains: usize,
    burn_in: usize,
    independent_draws: bool,
    l0: f64,
    plugin: PluginView,
    work: WorkView,
    n: usize,
    beta: f64,
}

#[derive(serde::Deserialize)]
struct PluginView {
    name: String,
}

#[derive(serde::Deserialize)]
struct WorkView {
    grad_evals_fge: f64,
}

/// (C, T) rows of a trace array.
fn rows(shape: &[usize], flat: Vec<f64>, name: &str, path: &Path) -> Result<Vec<Vec<f64>>> {
    if shape.len() != 2 {
        return Err(Error::bad_file(path, format!("`{name}` must be (chains, draws), has shape {shape:?}")));
    }
    Ok(flat.chunks(shape[1].max(1)).map(<[f64]>::to_vec).take(shape[0]).collect())
}

fn summarize(x: &[Vec<f64>], independent: bool) -> TraceSummary {
    let flat = x.concat();
    let mean = flat.iter().sum::<f64>() / flat.len().max(1) as f64;
    let finite = |v: f64| v.is_finite().then_some(v);
    if independent {
        return TraceSummary { mean, rhat: None, ess_bulk: Some(flat.len() as f64), ess_tail: None };
    }
    TraceSummary {
        mean,
        rhat: finite(diagnostics::rhat(x)),
        ess_bulk: finite(diagnostics::ess_bulk(x)),
        ess_tail: finite(diagnostics::ess_tail(x)),
    }
}

/// Analyses the run in `dir`: writes `analysis.json` and `diagnostics/*.svg`.
pub fn analyse(dir: &Path) -> Result<(PathBuf, Analysis)> {
    let m: ManifestView = read_json(&dir.join("manifest.json"))?;
    let tpath = dir.join("traces.npz");
    let mut traces = Npz::open(&tpath)?;
    let (shape, flat) = traces.f64("loss")?;
    let loss = rows(&shape, flat, "loss", &tpath)?;
    let draws = loss.first().map_or(0, Vec::len);
    if loss.len() != m.chains || draws <= m.burn_in {
        return Err(Error::bad_file(&tpath, format!("{} chains × {draws} draws: nothing after the burn-in of {}", loss.len(), m.burn_in)));
    }
    let n_beta = m.n as f64 * m.beta;
    let llc = estimate::llc(&loss, m.burn_in, n_beta, m.l0, m.independent_draws);
    let kept = |x: &[Vec<f64>]| -> Vec<Vec<f64>> { x.iter().map(|c| c[m.burn_in..].to_vec()).collect() };
    let mut summaries = BTreeMap::new();
    summaries.insert("loss".to_string(), summarize(&kept(&loss), m.independent_draws));
    let mut divergences = None;
    for name in traces.names() {
        if name == "loss" || name == "llc" {
            continue;
        }
        let (shape, flat) = traces.f64(&name)?;
        let x = kept(&rows(&shape, flat, &name, &tpath)?);
        if name == "is_divergent" {
            divergences = Some(x.iter().flatten().filter(|v| **v != 0.0).count() as u64);
        }
        summaries.insert(name, summarize(&x, m.independent_draws));
    }
    let ess_per_grad_eval = (!m.independent_draws && m.work.grad_evals_fge > 0.0).then(|| llc.ess_bulk / (m.work.grad_evals_fge * m.chains as f64));

    let plot_dir = dir.join("diagnostics");
    let plots = vec![
        write_svg(&plot_dir.join("trace_loss.svg"), |area| plot_trace(area, &loss, m.burn_in, &m.plugin.name))?,
        write_svg(&plot_dir.join("running_llc.svg"), |area| plot_running_llc(area, &loss, m.burn_in, n_beta, m.l0, &m.plugin.name))?,
    ];
    let analysis = Analysis {
        run_id: m.run_id,
        plugin: m.plugin.name,
        target_id: m.target_id,
        status: m.status,
        chains: m.chains,
        draws,
        burn_in: m.burn_in,
        independent_draws: m.independent_draws,
        llc,
        traces: summaries,
        divergences,
        grad_evals_fge: m.work.grad_evals_fge,
        ess_per_grad_eval,
        plots,
    };
    let out = dir.join("analysis.json");
    write_json_atomic(&out, &analysis)?;
    Ok((out, analysis))
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Renders a plot into an SVG string and writes it atomically; returns its file name.
fn write_svg(path: &Path, draw: impl FnOnce(&Area<'_>) -> std::result::Result<(), String>) -> Result<String> {
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, (900, 500)).into_drawing_area();
        area.fill(&WHITE).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        draw(&area).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        area.present().map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    }
    write_atomic(path, svg.as_bytes())?;
    Ok(path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default())
}

fn range(series: &[Vec<f64>]) -> (f64, f64) {
    let (lo, hi) = series.iter().flatten().filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    if lo.is_finite() && hi > lo {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    } else {
        (lo - 1.0, lo + 1.0)
    }
}

/// Draws one line per chain over draw index `x0..`, with a dashed marker at `burn_in`.
fn plot_lines(area: &Area<'_>, series: &[Vec<f64>], x0: usize, burn_in: Option<usize>, caption: &str, y_label: &str) -> std::result::Result<(), String> {
    let t_end = x0 + series.first().map_or(0, Vec::len);
    let (lo, hi) = range(series);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(x0 as f64..t_end.max(x0 + 1) as f64, lo..hi)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("draw").y_desc(y_label).draw().map_err(|e| e.to_string())?;
    for (c, s) in series.iter().enumerate() {
        let color = Palette99::pick(c).to_rgba();
        chart
            .draw_series(LineSeries::new(s.iter().enumerate().map(|(t, v)| ((x0 + t) as f64, *v)), color.stroke_width(1)))
            .map_err(|e| e.to_string())?
            .label(format!("chain {c}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    if let Some(b) = burn_in.filter(|b| *b > 0) {
        chart.draw_series(DashedLineSeries::new(vec![(b as f64, lo), (b as f64, hi)], 5, 5, BLACK.into())).map_err(|e| e.to_string())?;
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(|e| e.to_string())?;
    Ok(())
}

fn plot_trace(area: &Area<'_>, loss: &[Vec<f64>], burn_in: usize, plugin: &str) -> std::result::Result<(), String> {
    plot_lines(area, loss, 0, Some(burn_in), &format!("{plugin}: L_n per chain (dashed: end of burn-in)"), "L_n")
}

fn plot_running_llc(area: &Area<'_>, loss: &[Vec<f64>], burn_in: usize, n_beta: f64, l0: f64, plugin: &str) -> std::result::Result<(), String> {
    let running: Vec<Vec<f64>> = loss
        .iter()
        .map(|c| {
            let mut sum = 0.0;
            c[burn_in..]
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    sum += n_beta * (l - l0);
                    sum / (i + 1) as f64
                })
                .collect()
        })
        .collect();
    plot_lines(area, &running, burn_in, None, &format!("{plugin}: running λ̂ per chain after burn-in"), "running mean of nβ(L_n − L0)")
}
