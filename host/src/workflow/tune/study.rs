//! One study: a method's search on one problem. Its trials are numbered:
//!
//! - trial 0 runs the plugin's defaults (with the method's fixed keys), so
//!   the summary can say what tuning gained;
//! - trials 1 … startup − 1 are drawn uniformly (each key on its searched
//!   scale, [`super::space`]);
//! - later trials are asked of TPE in batches of `parallel`: every trial of a
//!   batch is asked from the trials before the batch, told their scores.
//!
//! Every draw of trial t uses its own random stream, seeded by the tune seed,
//! the study and t, and what TPE is told is read from the recorded rows. So
//! the point of each trial depends only on the rows before its batch: a study
//! stopped at any moment and resumed asks exactly what it would have asked
//! uninterrupted, and its finished trials are never redone.

use std::collections::BTreeMap;

use rand::SeedableRng;

use super::space;
use super::trials::TrialRow;
use crate::config::{parse_ron, Overrides, Param};
use crate::error::{Error, Result};
use crate::store::sha256_hex;

/// What TPE minimises: √((λ̂ − λ̂_ref)² + SE²), the root of the squared error
/// plus the run's own variance, so that a run that lands near the reference
/// by luck, with a large SE, is not preferred to a precise one.
pub fn score(llc: f64, se: f64, reference: f64) -> f64 {
    ((llc - reference).powi(2) + se.powi(2)).sqrt()
}

/// Where trial `trial` came from: `default`, `random` or `tpe`.
pub fn origin(trial: usize, startup: usize) -> &'static str {
    match trial {
        0 => "default",
        t if t < startup => "random",
        _ => "tpe",
    }
}

/// The first trial of `trial`'s batch: the trials before it are what it is asked from (0 for the startup trials).
pub fn batch_start(trial: usize, startup: usize, parallel: usize) -> usize {
    if trial < startup {
        0
    } else {
        startup + (trial - startup) / parallel * parallel
    }
}

/// A study id: 12 hex digits of the sha256 of `parts` (what makes the study: see [`super::Tuner`]).
pub fn study_id(parts: &serde_json::Value) -> String {
    sha256_hex(parts.to_string().as_bytes())[..12].to_string()
}

/// One study and its recorded trials.
#[derive(Debug, Clone)]
pub struct Study {
    pub id: String,
    /// Indices into the tuner's problems and methods.
    pub problem: usize,
    pub method: usize,
    /// λ̂ of the problem's reference.
    pub reference: f64,
    /// The searched keys (sorted) and their ranges.
    pub space: Vec<(String, Param)>,
    /// Recorded trials, by number.
    pub rows: BTreeMap<usize, TrialRow>,
}

impl Study {
    /// The trials below `trials` that are not recorded and can be asked now:
    /// every trial before their batch is recorded.
    pub fn ready(&self, trials: usize, startup: usize, parallel: usize) -> Vec<usize> {
        (0..trials).filter(|t| !self.rows.contains_key(t) && (0..batch_start(*t, startup, parallel)).all(|j| self.rows.contains_key(&j))).collect()
    }

    /// The searched keys' RON texts for trial `trial`: `defaults` (each key's
    /// text in the plugin's resolved default config) for trial 0, a uniform
    /// draw for the startup trials, TPE's answer after that.
    pub fn point(&self, trial: usize, startup: usize, parallel: usize, seed: u64, defaults: &BTreeMap<String, String>) -> Result<Vec<(String, String)>> {
        let mut rng = self.rng(seed, trial);
        let values: Vec<f64> = match origin(trial, startup) {
            "default" => {
                return self
                    .space
                    .iter()
                    .map(|(k, _)| Ok((k.clone(), defaults.get(k).cloned().ok_or_else(|| Error::invalid(format!("no default for `{k}`")))?)))
                    .collect();
            }
            "random" => self.space.iter().map(|(_, p)| space::random(p, &mut rng)).collect(),
            _ => {
                let history = self.history(batch_start(trial, startup, parallel))?;
                let keys: Vec<(&str, &Param)> = self.space.iter().map(|(k, p)| (k.as_str(), p)).collect();
                space::ask(&keys, &history, &mut rng)?
            }
        };
        Ok(self.space.iter().zip(values).map(|((k, p), x)| (k.clone(), space::text(p, x))).collect())
    }

    /// What TPE is told for the trials before `before`: each one's values (read from its row) and score.
    fn history(&self, before: usize) -> Result<Vec<(Vec<f64>, f64)>> {
        self.rows
            .range(..before)
            .map(|(_, row)| {
                let given = parse_params(&row.params)?;
                let x = self.space.iter().map(|(k, p)| given.get(k).map_or(f64::NAN, |t| space::parse(p, t))).collect();
                Ok((x, row.score.unwrap_or(f64::INFINITY)))
            })
            .collect()
    }

    /// Trial `trial`'s random stream.
    fn rng(&self, seed: u64, trial: usize) -> crate::rng::Rng {
        let h = sha256_hex(format!("{seed}/{}/{trial}", self.id).as_bytes());
        crate::rng::Rng::seed_from_u64(u64::from_str_radix(&h[..16], 16).expect("hex digits"))
    }

    /// The best scored trial, if any (the earliest of equal scores).
    pub fn best(&self) -> Option<&TrialRow> {
        self.rows.values().filter(|r| r.scored()).min_by(|a, b| a.score.unwrap_or(f64::INFINITY).total_cmp(&b.score.unwrap_or(f64::INFINITY)))
    }
}

/// A trial's values as the RON struct `trials.csv` keeps: `(k: v, …)`.
pub fn params_text(values: &[(String, String)]) -> String {
    let parts: Vec<String> = values.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("({})", parts.join(", "))
}

/// The key → RON text map of a `params` cell.
pub fn parse_params(text: &str) -> Result<BTreeMap<String, String>> {
    let o: Overrides = parse_ron(text, "trials.csv: params")?;
    Ok(o.fields.into_iter().map(|(k, v)| (k, v.get_ron().trim().to_string())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study() -> Study {
        let space = vec![("precond".to_string(), Param::Choice(vec!["none".into(), "adam".into()])), ("step_size".to_string(), Param::Log(1e-7, 1e-3))];
        Study { id: "s".into(), problem: 0, method: 0, reference: 1.0, space, rows: BTreeMap::new() }
    }

    fn row(s: &Study, trial: usize, params: &[(String, String)], score: Option<f64>) -> TrialRow {
        TrialRow {
            study: s.id.clone(),
            problem: "p".into(),
            method: "m".into(),
            trial,
            origin: origin(trial, 3).into(),
            params: params_text(params),
            llc: None,
            se: None,
            error: None,
            score,
            grad_evals: None,
            wall_s: None,
            stop: String::new(),
            status: if score.is_some() { "complete" } else { "failed" }.into(),
            run_dir: String::new(),
            key: String::new(),
            failure: String::new(),
            seeds_llc: String::new(),
        }
    }

    #[test]
    fn batches_and_readiness() {
        assert_eq!((0..9).map(|t| batch_start(t, 3, 2)).collect::<Vec<_>>(), [0, 0, 0, 3, 3, 5, 5, 7, 7]);
        assert_eq!(origin(0, 3), "default");
        assert_eq!(origin(2, 3), "random");
        assert_eq!(origin(3, 3), "tpe");
        let mut s = study();
        assert_eq!(s.ready(7, 3, 2), [0, 1, 2]);
        for t in [0, 2] {
            s.rows.insert(t, row(&s, t, &[], Some(1.0)));
        }
        assert_eq!(s.ready(7, 3, 2), [1]);
        s.rows.insert(1, row(&s, 1, &[], None));
        assert_eq!(s.ready(7, 3, 2), [3, 4]);
        assert_eq!(score(1.3, 0.4, 1.0), 0.5);
    }

    /// A point depends only on the rows before its batch: the same rows give
    /// the same point, a row of the same batch changes nothing, and the
    /// defaults are trial 0.
    #[test]
    fn points_are_reproducible_from_the_rows() {
        let mut s = study();
        let defaults: BTreeMap<String, String> = [("precond".to_string(), "none".to_string()), ("step_size".to_string(), "1e-5".to_string())].into();
        let p0 = s.point(0, 3, 2, 42, &defaults).unwrap();
        assert_eq!(params_text(&p0), "(precond: none, step_size: 1e-5)");
        for t in 0..3 {
            let p = s.point(t, 3, 2, 42, &defaults).unwrap();
            assert_eq!(p, s.point(t, 3, 2, 42, &defaults).unwrap());
            let score = parse_params(&params_text(&p)).unwrap()["step_size"].parse::<f64>().unwrap().ln().abs();
            s.rows.insert(t, row(&s, t, &p, Some(score)));
        }
        assert_ne!(s.point(1, 3, 2, 42, &defaults).unwrap(), s.point(1, 3, 2, 43, &defaults).unwrap());
        let p3 = s.point(3, 3, 2, 42, &defaults).unwrap();
        let p4 = s.point(4, 3, 2, 42, &defaults).unwrap();
        assert_ne!(p3, p4);
        s.rows.insert(3, row(&s, 3, &p3, Some(0.5)));
        assert_eq!(s.point(4, 3, 2, 42, &defaults).unwrap(), p4, "a trial of the same batch changed trial 4's point");
        assert!(s.best().is_some_and(|b| b.trial == 3));
    }
}
