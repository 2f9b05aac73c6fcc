//! What a tune reports: per study the default trial (0) against the best
//! one (`summary.csv`, and the table the command prints), and the best
//! trial's keys as a RON file that `lh-host sample --config` reads, and the
//! tune's page in the experiment's gallery.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::study::Study;
use super::{Tuned, Tuner};
use crate::config::{parse_ron, Overrides};
use crate::error::Result;
use crate::store::atomic::{write_atomic, write_csv_atomic};
use crate::store::Store;

/// One row of `summary.csv`: a study's default trial against its best.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    pub problem: String,
    pub method: String,
    pub reference: f64,
    pub reference_se: f64,
    /// Trials recorded, and how many of them failed.
    pub trials: usize,
    pub failed: usize,
    /// Trial 0 (the plugin's defaults with the method's fixed keys).
    pub default_llc: Option<f64>,
    pub default_se: Option<f64>,
    pub default_error: Option<f64>,
    pub default_score: Option<f64>,
    /// The trial with the lowest score (√(error² + SE²): not always the lowest error).
    pub best_trial: Option<usize>,
    pub best_llc: Option<f64>,
    pub best_se: Option<f64>,
    pub best_error: Option<f64>,
    pub best_score: Option<f64>,
    pub best_params: String,
    /// The best trial's RON file.
    pub best_config: String,
}

/// The summary of every study of `tuned`; `best` is where each study's best RON went (if it has one).
pub fn summary(tuner: &Tuner, tuned: &Tuned, best: &[Option<PathBuf>]) -> Vec<SummaryRow> {
    tuned
        .studies
        .iter()
        .zip(best)
        .map(|(st, path)| {
            let r = &tuned.references[st.problem];
            let d = st.rows.get(&0).filter(|row| row.scored());
            let b = st.best();
            SummaryRow {
                problem: r.problem.clone(),
                method: tuner.methods[st.method].name().to_string(),
                reference: r.llc,
                reference_se: r.se,
                trials: st.rows.len(),
                failed: st.rows.values().filter(|row| !row.scored()).count(),
                default_llc: d.and_then(|row| row.llc),
                default_se: d.and_then(|row| row.se),
                default_error: d.and_then(|row| row.error),
                default_score: d.and_then(|row| row.score),
                best_trial: b.map(|row| row.trial),
                best_llc: b.and_then(|row| row.llc),
                best_se: b.and_then(|row| row.se),
                best_error: b.and_then(|row| row.error),
                best_score: b.and_then(|row| row.score),
                best_params: b.map(|row| row.params.clone()).unwrap_or_default(),
                best_config: path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            }
        })
        .collect()
}

/// The best trial of `st` as `sample --config` RON: every key the trial set
/// (the raised `draws`, the method's fixed keys, the searched ones), with a
/// header saying what it was tuned on and the command that runs it again.
pub fn best_ron(tuner: &Tuner, tuned: &Tuned, st: &Study, file: &Path) -> Result<Option<String>> {
    let Some(best) = st.best() else { return Ok(None) };
    let method = &tuner.methods[st.method];
    let r = &tuned.references[st.problem];
    let params: Overrides = parse_ron(&best.params, "trials.csv: params")?;
    let set: Vec<String> = method.plugin.layers.iter().chain([&params]).flat_map(|o| o.fields.iter().map(|(k, _)| k.clone())).collect();
    let resolved: Overrides = parse_ron(&method.plugin.config_with(params)?, "the best trial's config")?;
    let scored = st.rows.values().filter(|row| row.scored()).count();
    let budget = tuner.budget.budget.map(|b| b.to_string()).unwrap_or_default();
    let precision = tuner.precision().map(|p| format!(" --precision {p}")).unwrap_or_default();
    let mut text = format!(
        "// Tuned by `lh-host workflow tune` (experiment {exp}, study {study}): trial {trial} ({origin}), the best of {scored} scored trials.\n\
         // On {problem}: λ̂ = {llc:.4} ± {se:.4} against the reference {reference}; |error| {error:.4}.\n\
         // Found under --budget {budget} with {chains} chains and {seeds}; the same run again{first}:\n\
         //   lh-host sample --target {problem} --plugin {plugin} --config {file} --budget {budget} --chains {chains} --seed {seed}{precision}\n(\n",
        exp = tuner.experiment,
        study = st.id,
        trial = best.trial,
        origin = best.origin,
        problem = r.problem,
        llc = best.llc.unwrap_or(f64::NAN),
        se = best.se.unwrap_or(f64::NAN),
        reference = r.describe(),
        error = best.error.unwrap_or(f64::NAN),
        chains = tuner.chains,
        seeds = match &tuner.seeds[..] {
            [one] => format!("seed {one}"),
            many => format!("seeds {} (λ̂ their mean, the score the mean of theirs)", many.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
        },
        first = if tuner.seeds.len() > 1 { " with the first" } else { "" },
        seed = tuner.seeds[0],
        plugin = method.plugin.name,
        file = file.display(),
    );
    for (k, v) in resolved.fields.iter().filter(|(k, _)| set.contains(k)) {
        text.push_str(&format!("    {k}: {},\n", v.get_ron().trim()));
    }
    text.push_str(")\n");
    Ok(Some(text))
}

/// Writes each study's best RON (`best/<problem>/<method>.ron`) and
/// `summary.csv` in the tune folder; returns the summary.
pub fn write(store: &Store, tuner: &Tuner, tuned: &Tuned) -> Result<Vec<SummaryRow>> {
    let dir = tuner.dir(store)?;
    let mut best = Vec::new();
    for st in &tuned.studies {
        let path = dir.join("best").join(&tuned.references[st.problem].problem).join(format!("{}.ron", tuner.methods[st.method].name()));
        best.push(match best_ron(tuner, tuned, st, &path)? {
            Some(text) => {
                write_atomic(&path, text.as_bytes())?;
                Some(path)
            }
            None => None,
        });
    }
    let rows = summary(tuner, tuned, &best);
    write_csv_atomic(&rows, &dir.join("summary.csv"))?;
    Ok(rows)
}

/// The tune's page in the experiment's gallery (`gallery/tune.html`): the
/// summary rows and the figures (one per problem).
pub fn gallery(store: &Store, tuner: &Tuner, tuned: &Tuned, rows: &[SummaryRow], figures: &[PathBuf]) -> Result<PathBuf> {
    let num = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
    let pm = |l: Option<f64>, se: Option<f64>| match (l, se) {
        (Some(l), Some(se)) => format!("{l:.4} ± {se:.4}"),
        _ => "–".into(),
    };
    let header = [
        "target",
        "method",
        "reference λ̂ ± SE",
        "trials",
        "failed",
        "default λ̂ ± SE",
        "default error",
        "default score",
        "best trial",
        "tuned λ̂ ± SE",
        "tuned error",
        "tuned score",
        "best settings",
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.problem.clone(),
                r.method.clone(),
                pm(Some(r.reference), Some(r.reference_se)),
                r.trials.to_string(),
                r.failed.to_string(),
                pm(r.default_llc, r.default_se),
                num(r.default_error),
                num(r.default_score),
                r.best_trial.map_or("–".into(), |t| t.to_string()),
                pm(r.best_llc, r.best_se),
                num(r.best_error),
                num(r.best_score),
                r.best_params.clone(),
            ]
        })
        .collect();
    let captions: Vec<(String, PathBuf)> = figures
        .iter()
        .map(|f| {
            let problem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let budget = tuner.budget.budget.map(|b| b.to_string()).unwrap_or_default();
            let reference = tuned.references.iter().find(|r| r.problem == problem).map(|r| r.describe()).unwrap_or_default();
            (format!("{problem}: error of each trial (budget {budget}) against the reference {reference}"), f.clone())
        })
        .collect();
    crate::workflow::promote::tune_page(store, &tuner.experiment, &header, &table, &captions)
}
