//! Data-restricted λ̂ (`--observe NAME=SPEC`, devinterp's "observables"):
//! while the plugin samples the full posterior, the host evaluates at every
//! recorded draw the loss L_S on named subsets S of the data, at each chain's
//! position (found by [`PositionLog`]), and reports
//! λ̂_S = nβ(E[L_S] − L_S(θ*)) beside λ̂, with n and β those of the posterior
//! sampled. Each subset costs one forward pass per recorded draw (all chains
//! at once), counted in the manifest's `work.observe_loss_evals`.

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::str::FromStr;

use lh_plugin_api::SamplerError;
use serde::{Deserialize, Serialize};

use super::positions::PositionLog;
use crate::backend::{Backend, BackendFactory, Batch, Dataset};
use crate::error::{Error, Result};
use crate::estimate::{self, Estimate};
use crate::model::Precision;
use crate::store::npz::{read_npy, Kind};
use crate::target::{Target, TargetModel};

/// The traces.npz array of observable `name`: `loss_<name>`.
pub fn trace_name(name: &str) -> String {
    format!("loss_{name}")
}

/// One `--observe NAME=SPEC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveSpec {
    /// Letters, digits and `_`; the trace is `loss_<name>` in traces.npz.
    pub name: String,
    pub rows: Rows,
}

/// Which rows a subset holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows {
    /// Training rows `start..end` (start ≤ i < end, as Python's `start:end`).
    Range(usize, usize),
    /// Training rows by index, from a `.npy` of integers (repeats count twice).
    Indices(PathBuf),
    /// The test set (`X_test`, `Y_test`).
    Test,
}

impl FromStr for ObserveSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("observable `{s}`: {why}"));
        let (name, spec) = s.split_once('=').ok_or_else(|| bad("expected NAME=SPEC (SPEC: rows:A..B, a .npy of row indices, or test)"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("the name must be letters, digits and _"));
        }
        let rows = if spec == "test" {
            Rows::Test
        } else if spec.ends_with(".npy") {
            Rows::Indices(PathBuf::from(spec))
        } else if let Some(r) = spec.strip_prefix("rows:") {
            let range = r.split_once("..").and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            match range {
                Some((a, b)) if a < b => Rows::Range(a, b),
                Some(_) => return Err(bad("the row range is empty")),
                None => return Err(bad("expected rows:A..B with whole numbers A < B")),
            }
        } else {
            return Err(bad("unknown subset (expected rows:A..B, a .npy of row indices, or test)"));
        };
        Ok(Self { name: name.to_string(), rows })
    }
}

impl fmt::Display for ObserveSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rows {
            Rows::Range(a, b) => write!(f, "{}=rows:{a}..{b}", self.name),
            Rows::Indices(p) => write!(f, "{}={}", self.name, p.display()),
            Rows::Test => write!(f, "{}=test", self.name),
        }
    }
}

/// What a run's manifest records about one observable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observable {
    /// The `NAME=SPEC` given.
    pub spec: String,
    /// Rows in the subset.
    pub rows: usize,
    /// L_S(θ*) in the run's precision.
    pub l0: f64,
    /// λ̂_S = nβ(E[L_S] − L_S(θ*)) over the draws after burn-in (none without such draws).
    pub llc: Option<Estimate>,
}

/// One observable's outcome: its manifest record and its (C, T) trace.
pub struct Observed {
    pub name: String,
    pub record: Observable,
    pub loss: Vec<Vec<f64>>,
}

/// A subset's backend and what it recorded.
struct Subset {
    spec: ObserveSpec,
    rows: usize,
    backend: Box<dyn Backend>,
    l0: f64,
    /// loss[t][c].
    loss: Vec<Vec<f64>>,
}

/// Evaluates every subset at the chains' positions, draw by draw.
pub struct Observer {
    log: Rc<RefCell<PositionLog>>,
    subsets: Vec<Subset>,
    evals: u64,
}

/// The rows of `spec` as a data set, from `train` and `test` (of target `id`).
fn subset_data(spec: &ObserveSpec, train: &Dataset, test: &Dataset, id: &str) -> Result<Dataset> {
    let bad = |why: String| Error::invalid(format!("observable `{spec}`: {why}"));
    let n = train.n;
    let indices: Vec<usize> = match &spec.rows {
        Rows::Test if test.n == 0 => return Err(bad(format!("target {id} has no test rows"))),
        Rows::Test => return Ok(test.clone()),
        Rows::Range(_, b) if *b > n => return Err(bad(format!("the target has n = {n} training rows"))),
        Rows::Range(a, b) => (*a..*b).collect(),
        Rows::Indices(path) => {
            let idx = read_npy(path).map_err(|e| bad(e.to_string()))?;
            if idx.kind != Kind::Int || idx.shape.len() != 1 || idx.values.is_empty() {
                return Err(bad(format!("expected a non-empty 1-d array of integers, got {:?} values of shape {:?}", idx.kind, idx.shape)));
            }
            if let Some(i) = idx.values.iter().find(|&&i| !(0.0..n as f64).contains(&i)) {
                return Err(bad(format!("row index {i} is out of range (n = {n})")));
            }
            idx.values.iter().map(|&i| i as usize).collect()
        }
    };
    let (d_in, d_out) = (train.d_in, train.d_out);
    let x = indices.iter().flat_map(|&i| &train.x[i * d_in..(i + 1) * d_in]).copied().collect();
    let y = indices.iter().flat_map(|&i| &train.y[i * d_out..(i + 1) * d_out]).copied().collect();
    Dataset::new(x, y, d_in, d_out)
}

impl Observer {
    /// A backend per subset (as the run's: `backends`, `chains`, `precision`),
    /// each evaluated once at θ* for L_S(θ*). Names must be distinct.
    pub fn new(specs: &[ObserveSpec], target: &Target, backends: &BackendFactory, chains: usize, precision: Precision) -> Result<Self> {
        let id = &target.meta.target_id;
        let TargetModel::Mlp { spec: mlp, train, test } = &target.model else {
            let first = specs.first().map_or_else(String::new, ToString::to_string);
            return Err(Error::invalid(format!("observable `{first}`: target {id} is quadratic and has no data")));
        };
        let mut subsets = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            crate::ensure!(specs[..i].iter().all(|s| s.name != spec.name), "observable `{spec}`: the name `{}` is given twice", spec.name);
            let data = subset_data(spec, train, test, id)?;
            let mut backend = backends.build(mlp, &data, target.meta.loss, chains, precision)?;
            let center: Vec<f64> = target.w_star.iter().copied().cycle().take(chains * target.w_star.len()).collect();
            let mut l0 = vec![0.0; chains];
            backend.loss_grad(&center, Batch::Full, &mut l0, None).map_err(|e| e.context(&format!("observable `{spec}` at θ*")))?;
            subsets.push(Subset { spec: spec.clone(), rows: data.n, backend, l0: l0[0], loss: Vec::new() });
        }
        let log = Rc::new(RefCell::new(PositionLog::new(chains, target.w_star.len())));
        Ok(Self { log, subsets, evals: 0 })
    }

    /// The log the posterior must note its evaluations in.
    pub fn log(&self) -> Rc<RefCell<PositionLog>> {
        Rc::clone(&self.log)
    }

    /// Whether a plugin statistic called `stat` would clash with an observable's trace.
    pub fn claims(&self, stat: &str) -> bool {
        self.subsets.iter().any(|s| trace_name(&s.spec.name) == stat)
    }

    /// Evaluates every subset at the chains' positions at `draw`, whose
    /// recorded losses are `loss`.
    pub fn record(&mut self, draw: usize, loss: &[f64]) -> std::result::Result<(), SamplerError> {
        let mut log = self.log.borrow_mut();
        let positions = log.locate(loss).map_err(|c| {
            SamplerError::fatal(format!(
                "--observe: the loss recorded for chain {c} at draw {draw} ({}) is not one the host evaluated, so the chain's position is unknown \
                 (the plugin records something other than the loss of a state it evaluated, such as a control-variate estimate)",
                loss[c]
            ))
        })?;
        let mut values = Vec::with_capacity(self.subsets.len());
        for s in &mut self.subsets {
            let mut l = vec![0.0; loss.len()];
            s.backend
                .loss_grad(positions, Batch::Full, &mut l, None)
                .map_err(|e| SamplerError::fatal(format!("--observe `{}` at draw {draw}: {e}", s.spec)))?;
            values.push(l);
        }
        for (s, l) in self.subsets.iter_mut().zip(values) {
            s.loss.push(l);
        }
        self.evals += self.subsets.len() as u64;
        Ok(())
    }

    /// Subset evaluations done so far (one per subset per recorded draw).
    pub fn evaluations(&self) -> u64 {
        self.evals
    }

    /// Each subset's λ̂_S so far (after `burn_in` draws, with `n_beta`, as
    /// [`estimate::llc`] computes λ̂) and (C, T) trace.
    pub fn snapshot(&self, burn_in: usize, n_beta: f64, independent: bool) -> Vec<Observed> {
        self.subsets
            .iter()
            .map(|s| {
                let chains = s.loss.first().map_or(0, Vec::len);
                let loss: Vec<Vec<f64>> = (0..chains).map(|c| s.loss.iter().map(|row| row[c]).collect()).collect();
                let draws = s.loss.len();
                let llc = (draws > burn_in).then(|| estimate::llc(&loss, burn_in, n_beta, s.l0, independent));
                Observed { name: s.spec.name.clone(), record: Observable { spec: s.spec.to_string(), rows: s.rows, l0: s.l0, llc }, loss }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for s in ["all=rows:0..100", "odd=idx/odd.npy", "held_out=test"] {
            assert_eq!(s.parse::<ObserveSpec>().unwrap().to_string(), s);
        }
        assert_eq!("a=rows:3..7".parse::<ObserveSpec>().unwrap().rows, Rows::Range(3, 7));
        for (s, why) in [
            ("rows:0..5", "expected NAME=SPEC"),
            ("a b=test", "letters, digits"),
            ("a=rows:5..5", "empty"),
            ("a=rows:x..5", "whole numbers"),
            ("a=train", "unknown subset"),
        ] {
            let e = s.parse::<ObserveSpec>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("observable `{s}`: ")) && e.contains(why), "{s}: {e}");
        }
    }
}
