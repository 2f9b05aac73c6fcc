//! `tune/trials.csv`: every finished trial of every study, one row each. It
//! is all a study keeps: a resumed study re-reads it, and what TPE is told is
//! read from its rows (see [`super::study`]). Rows of studies no longer in the
//! tune file (another space, budget or reference) are kept as they are.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::atomic::write_csv_atomic;

/// One row of `trials.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRow {
    /// The study's id (12 hex digits of the hash of what makes it, see [`super::study::study_id`]).
    pub study: String,
    /// The target (problem) id.
    pub problem: String,
    /// The method's name (its tag, or the plugin name).
    pub method: String,
    pub trial: usize,
    /// `default` (trial 0: the plugin's defaults), `random` (the startup trials) or `tpe`.
    pub origin: String,
    /// The searched keys' values, RON: `(batch_size: 32, step_size: 1e-5)`.
    pub params: String,
    /// λ̂ (the mean over the trial's seeds when it ran several) and its SE.
    pub llc: Option<f64>,
    pub se: Option<f64>,
    /// |λ̂ − λ̂_ref|.
    pub error: Option<f64>,
    /// What TPE minimises: √(error² + SE²) (of each seed's run, averaged over
    /// the seeds); empty when the trial failed (told as +∞).
    pub score: Option<f64>,
    /// Gradient evaluations per chain, in full-batch equivalents (summed over the trial's seeds, as is `wall_s`).
    pub grad_evals: Option<f64>,
    pub wall_s: Option<f64>,
    /// How the budget ended the run: `budget exhausted`, or `draws exhausted` (it ended first).
    pub stop: String,
    /// `complete` or `failed`.
    pub status: String,
    /// The run's directory (one per seed, `;`-separated).
    pub run_dir: String,
    /// The run's key (see [`crate::workflow::plan`]; one per seed, `;`-separated).
    pub key: String,
    /// Why it failed.
    pub failure: String,
    /// Each seed's λ̂, `;`-separated, when the trial ran several seeds.
    #[serde(default)]
    pub seeds_llc: String,
}

impl TrialRow {
    /// Whether the trial gave a score.
    pub fn scored(&self) -> bool {
        self.score.is_some_and(f64::is_finite)
    }
}

/// The rows of `path` (none when it does not exist yet); a bad row is an error naming the file and line.
pub fn read(path: &Path) -> Result<Vec<TrialRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r = csv::Reader::from_path(path).map_err(|e| Error::bad_file(path, e.to_string()))?;
    r.deserialize().map(|row| row.map_err(|e| Error::bad_file(path, e.to_string()))).collect()
}

/// Writes `rows`, ordered by problem, method, study and trial, atomically.
pub fn write(path: &Path, rows: &mut [TrialRow]) -> Result<()> {
    rows.sort_by(|a, b| (&a.problem, &a.method, &a.study, a.trial).cmp(&(&b.problem, &b.method, &b.study, b.trial)));
    write_csv_atomic(rows, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_a_bad_row_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trials.csv");
        assert!(read(&path).unwrap().is_empty());
        let ok = TrialRow {
            study: "abc".into(),
            problem: "tgt_1".into(),
            method: "sgld".into(),
            trial: 1,
            origin: "random".into(),
            params: "(batch_size: 32, precond: adam, step_size: 1e-5)".into(),
            llc: Some(1.5),
            se: Some(0.1),
            error: Some(0.2),
            score: Some(0.22),
            grad_evals: Some(2000.0),
            wall_s: Some(0.5),
            stop: "budget exhausted".into(),
            status: "complete".into(),
            run_dir: "/r".into(),
            key: "k".into(),
            failure: String::new(),
            seeds_llc: String::new(),
        };
        let failed =
            TrialRow { trial: 0, llc: None, se: None, error: None, score: None, status: "failed".into(), failure: "boom, \"quoted\"".into(), ..ok.clone() };
        let mut rows = vec![ok.clone(), failed.clone()];
        write(&path, &mut rows).unwrap();
        assert_eq!(read(&path).unwrap(), vec![failed.clone(), ok.clone()]);
        assert!(ok.scored() && !failed.scored());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("2000.0", "lots")).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("trials.csv") && e.contains("line: 2"), "{e}");
    }
}
