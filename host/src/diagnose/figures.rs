//! The figures of one run, written as PNG under `<run>/diagnostics/`. Each is
//! drawn only when its data exists:
//!
//! | file | shows | when |
//! |---|---|---|
//! | `trace.png` | L_n per chain, burn-in marked | always |
//! | `llc_convergence_combined.png` | running λ̂ per chain, pooled, ±1.96 sd/√C band | always (band: C ≥ 2) |
//! | `rank.png` | rank histograms of L_n per chain | Markov draws, C ≥ 2 |
//! | `autocorr.png` | autocorrelation of L_n per chain | Markov draws |
//! | `acceptance_hist.png` | acceptance rate | `acceptance_rate` recorded (HMC) |
//! | `energy.png` | marginal energy and energy transitions (ArviZ's energy plot) | `energy` recorded (HMC) |
//! | `energy_change_hist.png` | energy change per step | `energy_change` recorded (MCLMC) |
//! | `elbo.png` | ELBO per chain over the optimisation | `elbo` recorded (VI) |
//! | `wnv.png` | Var_chains(running λ̂)/C × cumulative work | `--mode full`, C ≥ 2, ≥ 5 draws |

use plotters::style::{RGBColor, BLACK};

use super::analysis::{Analysis, Mode};
use super::run::Run;
use crate::error::Result;
use crate::estimate::mcmc;
use crate::plots::{self, Band, Chart, Mark, Series};
use crate::store::layout::RUN_FIGURES;
use lh_plugin_api::stat_names;

/// Writes every figure the run's data supports; returns the files written and
/// a note for each figure left out.
pub fn write_all(run: &Run, a: &Analysis, mode: Mode) -> Result<(Vec<String>, Vec<String>)> {
    let dir = run.dir.join(RUN_FIGURES);
    let mut written = Vec::new();
    let mut skipped = Vec::new();
    let who = format!("{} on {}", a.plugin, a.target_id);
    let llc = run.llc_draws();
    let markov = !a.independent_draws;
    // Each figure is one or more panels side by side, or why it is left out.
    let mut figures: Vec<(&str, std::result::Result<Vec<Chart>, String>)> =
        vec![("trace.png", Ok(vec![trace(run, &who)])), ("llc_convergence_combined.png", Ok(vec![convergence(&llc, a.burn_in, &who)]))];
    if markov {
        let rank = if a.chains >= 2 { Ok(vec![rank(&run.loss, a.burn_in, &who)]) } else { Err("needs at least 2 chains".to_string()) };
        figures.push(("rank.png", rank));
        figures.push(("autocorr.png", autocorr(&run.loss, a.burn_in, &who).map(|c| vec![c])));
    }
    if let Some(x) = run.kept(stat_names::ACCEPTANCE_RATE) {
        figures.push(("acceptance_hist.png", Ok(vec![histogram(&x.concat(), &format!("{who}: acceptance rate after burn-in"), "acceptance rate")])));
    }
    if let Some(x) = run.kept(stat_names::ENERGY) {
        let bfmi = a.energy.as_ref().map_or(f64::NAN, |e| e.bfmi_min);
        figures.push(("energy.png", Ok(vec![energy(&x, bfmi, &who)])));
    }
    if let Some(x) = run.kept(stat_names::ENERGY_CHANGE) {
        figures.push(("energy_change_hist.png", Ok(vec![histogram(&x.concat(), &format!("{who}: MCLMC energy change per step"), "energy change ΔE")])));
    }
    if let Some(x) = run.stats.get(stat_names::ELBO) {
        figures.push(("elbo.png", Ok(vec![elbo(x, a.burn_in, &who)])));
    }
    if mode == Mode::Full {
        figures.push(("wnv.png", wnv(run, &llc, a, &who)));
    }
    for (name, panels) in figures {
        match panels {
            Ok(p) if p.iter().all(|c| !c.is_empty()) => {
                let size = (plots::SIZE.0 * p.len() as u32 * 4 / 5, plots::SIZE.1);
                written
                    .push(plots::write_png(&dir.join(name), size, |area| area.split_evenly((1, p.len())).iter().zip(&p).try_for_each(|(sub, c)| c.draw(sub)))?);
            }
            Ok(_) => skipped.push(format!("{name}: no finite values to plot")),
            Err(why) => skipped.push(format!("{name}: {why}")),
        }
    }
    Ok((written, skipped))
}

fn points(x0: usize, v: &[f64]) -> Vec<(f64, f64)> {
    v.iter().enumerate().map(|(t, y)| ((x0 + t) as f64, *y)).collect()
}

fn trace(run: &Run, who: &str) -> Chart {
    let mut c = Chart::new(format!("{who}: L_n per chain"), "draw", "L_n (training loss)");
    c.series = run.loss.iter().enumerate().map(|(i, l)| Series::chain(i, points(0, l))).collect();
    let b = run.manifest.burn_in;
    if b > 0 {
        c.vline = Some((b as f64, format!("end of burn-in ({b})")));
    }
    c
}

/// Running means of each chain.
fn running_means(x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    x.iter()
        .map(|c| {
            let mut sum = 0.0;
            c.iter()
                .enumerate()
                .map(|(i, v)| {
                    sum += v;
                    sum / (i + 1) as f64
                })
                .collect()
        })
        .collect()
}

/// (mean, sd with ddof 1) across chains at each draw.
fn across_chains(r: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let c = r.len() as f64;
    (0..r.first().map_or(0, Vec::len))
        .map(|t| {
            let m = r.iter().map(|x| x[t]).sum::<f64>() / c;
            let v = if r.len() > 1 { r.iter().map(|x| (x[t] - m) * (x[t] - m)).sum::<f64>() / (c - 1.0) } else { f64::NAN };
            (m, v.sqrt())
        })
        .collect()
}

fn convergence(llc: &[Vec<f64>], burn_in: usize, who: &str) -> Chart {
    let r = running_means(llc);
    let pooled = across_chains(&r);
    let mut c = Chart::new(format!("{who}: running LLC estimate after burn-in"), "draw", "running mean of nβ(L_n − L0)");
    c.series = r.iter().enumerate().map(|(i, x)| Series::chain(i, points(burn_in, x))).collect();
    c.series.push(Series::new("pooled (all chains)", pooled.iter().enumerate().map(|(t, p)| ((burn_in + t) as f64, p.0)).collect(), BLACK, Mark::Line(3)));
    if r.len() >= 2 {
        let k = 1.96 / (r.len() as f64).sqrt();
        // The band starts at draw min(10, T − 1), as in the original.
        let start = 10.min(pooled.len().saturating_sub(1));
        let band = pooled.iter().enumerate().skip(start).map(|(t, (m, s))| ((burn_in + t) as f64, m - k * s, m + k * s)).collect();
        c.band = Some(Band { label: "pooled ± 1.96 sd_chains/√C".to_string(), points: band });
    }
    c
}

/// Counts of `values` in `bins` equal bins over [lo, hi]: (bin centre, count).
/// Histogram counts of the values in [lo, hi] (others are left out).
fn bin(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<(f64, f64)> {
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0.0; bins];
    for v in values.iter().filter(|v| (lo..=hi).contains(*v)) {
        let i = if w > 0.0 { (((v - lo) / w) as usize).min(bins - 1) } else { 0 };
        counts[i] += 1.0;
    }
    counts.into_iter().enumerate().map(|(i, n)| (lo + (i as f64 + 0.5) * w, n)).collect()
}

/// Rank plot: every kept L_n is ranked among all chains' kept draws; each
/// chain's ranks are binned. Well-mixed chains give flat histograms.
fn rank(loss: &[Vec<f64>], burn_in: usize, who: &str) -> Chart {
    let kept: Vec<Vec<f64>> = loss.iter().map(|c| c[burn_in..].to_vec()).collect();
    let t = kept.first().map_or(0, Vec::len);
    let total = (t * kept.len()) as f64;
    let mut flat: Vec<f64> = kept.concat();
    flat.sort_by(f64::total_cmp);
    // Average rank among ties, 1-based.
    let rank_of = |v: f64| {
        let lo = flat.partition_point(|x| *x < v);
        let hi = flat.partition_point(|x| *x <= v);
        (lo + hi + 1) as f64 / 2.0
    };
    let bins = t.clamp(1, 20);
    let mut c = Chart::new(format!("{who}: rank plot of L_n (after burn-in)"), "rank of L_n among all chains' draws", "draws per bin");
    for (i, chain) in kept.iter().enumerate() {
        let ranks: Vec<f64> = chain.iter().map(|v| rank_of(*v)).collect();
        let w = total / bins as f64;
        let steps = bin(&ranks, 0.5, total + 0.5, bins).into_iter().flat_map(|(x, n)| [(x - w / 2.0, n), (x + w / 2.0, n)]).collect();
        c.series.push(Series::new(format!("chain {i}"), steps, plots::color(i), Mark::Line(2)));
    }
    let expected = t as f64 / bins as f64;
    c.series.push(Series::new("uniform (ideal)", vec![(0.5, expected), (total + 0.5, expected)], BLACK, Mark::Dashed));
    c.y_zero = true;
    c
}

fn autocorr(loss: &[Vec<f64>], burn_in: usize, who: &str) -> std::result::Result<Chart, String> {
    let t = loss.first().map_or(0, Vec::len) - burn_in;
    let max_lag = 100.min(t.saturating_sub(1));
    let mut c = Chart::new(format!("{who}: autocorrelation of L_n (after burn-in)"), "lag", "autocorrelation");
    for (i, chain) in loss.iter().enumerate() {
        if let Some(r) = mcmc::autocorr(&chain[burn_in..], max_lag) {
            c.series.push(Series::chain(i, points(0, &r)));
        }
    }
    if c.series.is_empty() {
        return Err("every chain's L_n is constant".to_string());
    }
    c.series.push(Series::new("", vec![(0.0, 0.0), (max_lag as f64, 0.0)], BLACK, Mark::Line(1)));
    Ok(c)
}

/// The range a histogram shows: the 0.5 %–99.5 % quantiles of the finite
/// values (one divergent transition's energy would otherwise squash the bulk
/// into a single bin), widened to ±0.5 around a single value.
fn robust_range(values: &[f64]) -> (f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (-0.5, 0.5);
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = (q(0.005), q(0.995));
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    }
}

/// A legend suffix counting the finite values outside [lo, hi].
fn outside(values: &[f64], lo: f64, hi: f64) -> String {
    match values.iter().filter(|x| x.is_finite() && !(lo..=hi).contains(*x)).count() {
        0 => String::new(),
        n => format!(", {n} outside the axis"),
    }
}

fn histogram(values: &[f64], caption: &str, x_desc: &str) -> Chart {
    let (lo, hi) = robust_range(values);
    let bins = 30;
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
    let counts = bin(&finite, lo, hi, bins);
    let mut c = Chart::new(caption, x_desc, "draws (all chains)");
    c.series.push(Series::new(
        format!("all chains ({} draws{})", finite.len(), outside(&finite, lo, hi)),
        counts,
        RGBColor(70, 110, 180),
        Mark::Bars((hi - lo) / bins as f64),
    ));
    if !finite.is_empty() && (lo..=hi).contains(&mean) {
        c.vline = Some((mean, format!("mean {mean:.4}")));
    }
    // Keep the legend off the bulk of the distribution.
    c.legend_left = mean > (lo + hi) / 2.0;
    c
}

/// ArviZ's energy plot: the distribution of E − mean(E) per chain against that
/// of the transitions E_t − E_{t−1}; similar widths mean good exploration.
fn energy(x: &[Vec<f64>], bfmi_min: f64, who: &str) -> Chart {
    let marginal: Vec<f64> = x
        .iter()
        .flat_map(|c| {
            let m = c.iter().sum::<f64>() / c.len().max(1) as f64;
            c.iter().map(move |e| e - m)
        })
        .collect();
    let transitions: Vec<f64> = x.iter().flat_map(|c| c.windows(2).map(|w| w[1] - w[0])).collect();
    let (lo, hi) = robust_range(&[marginal.as_slice(), transitions.as_slice()].concat());
    let bins = 40;
    let w = (hi - lo) / bins as f64;
    let mut c = Chart::new(format!("{who}: HMC energy (min BFMI {bfmi_min:.3})"), "energy − mean (per chain)", "draws (all chains)");
    c.series.push(Series::new(format!("marginal energy{}", outside(&marginal, lo, hi)), bin(&marginal, lo, hi, bins), plots::color(0), Mark::Bars(w)));
    c.series.push(Series::new(format!("energy transition{}", outside(&transitions, lo, hi)), bin(&transitions, lo, hi, bins), plots::color(3), Mark::Bars(w)));
    c
}

fn elbo(x: &[Vec<f64>], burn_in: usize, who: &str) -> Chart {
    let end = if burn_in > 0 { burn_in } else { x.first().map_or(0, Vec::len) };
    let mut c = Chart::new(format!("{who}: ELBO during optimisation"), "optimisation record", "ELBO");
    c.series = x.iter().enumerate().map(|(i, v)| Series::chain(i, points(0, &v[..end]))).collect();
    c
}

/// wnv(t) = Var_chains(running λ̂_t)/C × cumulative work at draw t, against
/// that work (unsmoothed). Work is taken as spread evenly over the recorded
/// draws, burn-in included. One panel per unit: gradient evaluations (FGE,
/// all chains) when the plugin took gradients, and seconds.
fn wnv(run: &Run, llc: &[Vec<f64>], a: &Analysis, who: &str) -> std::result::Result<Vec<Chart>, String> {
    let pooled = across_chains(&running_means(llc));
    if llc.len() < 2 || pooled.len() < 5 {
        return Err("needs at least 2 chains and 5 draws after burn-in".to_string());
    }
    let t_all = run.draws() as f64;
    let c_n = llc.len() as f64;
    let panel = |total: f64, x_desc: &str, i: usize| {
        let curve = pooled
            .iter()
            .enumerate()
            .map(|(t, (_, sd))| {
                let w = total * (a.burn_in + t + 1) as f64 / t_all;
                (w, sd * sd / c_n * w)
            })
            .collect();
        let mut c = Chart::new(format!("{who}: work-normalised variance"), x_desc, "Var_chains(running LLC)/C × work (log scale)");
        c.log_y = true;
        c.series.push(Series::new("Var_chains(running LLC)/C × work", curve, plots::color(i), Mark::Line(2)));
        c
    };
    let mut panels = Vec::new();
    if a.work.grad_evals_fge > 0.0 {
        panels.push(panel(a.work.grad_evals_fge, "gradient evaluations (full-batch equivalents, all chains)", 0));
    }
    if a.work.seconds > 0.0 {
        panels.push(panel(a.work.seconds, "seconds", 1));
    }
    if panels.is_empty() {
        return Err("the manifest records neither gradient work nor time".to_string());
    }
    Ok(panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One divergent transition's energy must not set the histogram's axis.
    #[test]
    fn histograms_ignore_extreme_outliers() {
        let mut v: Vec<f64> = (0..999).map(|i| i as f64 / 998.0).collect();
        v.push(1e14);
        let (lo, hi) = robust_range(&v);
        assert!(lo >= 0.0 && hi <= 1.0, "{lo} {hi}");
        assert!(outside(&v, lo, hi).starts_with(", ") && outside(&v, lo, hi).ends_with(" outside the axis"));
        assert_eq!(outside(&v[..999], 0.0, 1.0), "", "nothing outside, nothing said");
        assert_eq!(robust_range(&[2.0, 2.0]), (1.5, 2.5), "a single value gets a unit-wide axis");
        let counts = bin(&v, lo, hi, 10);
        assert_eq!(counts.iter().map(|c| c.1).sum::<f64>() as usize, v.iter().filter(|x| (lo..=hi).contains(*x)).count());
    }
}
