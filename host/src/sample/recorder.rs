//! The host side of the plugin's [`TraceSink`]: every draw validated and
//! kept, phases timed, progress passed on to a [`Monitor`], and the run
//! checkpointed to its directory (at `begin`, every few seconds while draws
//! arrive, and at the end), so that a killed run keeps what it drew. With
//! `--observe`, every valid draw is also handed to the [`Observer`]; with
//! `--until`/`--budget`, to the [`Stopper`], which may end the run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use lh_plugin_api::{stat_names, Plan, PlanRef, RSlice, RStr, RunSummary, SResult, SamplerError, Stat, TraceSink};

use super::manifest::{Manifest, Status};
use super::observe::{Observed, Observer};
use super::posterior::Work;
use super::run_dir::{RunDir, Snapshot};
use super::stopping::Stopper;
use crate::error::Result;
use crate::estimate;
use crate::memory;
use crate::progress::{Monitor, Progress};
use crate::store::Store;

/// How a run writes itself to disk as it goes.
pub struct Checkpoints {
    /// Where the run directory goes.
    pub store: Store,
    /// The manifest's fixed fields (run id, plugin, config, backend, target, …);
    /// each snapshot fills in the rest.
    pub base: Manifest,
    /// The posterior's work counters.
    pub work: Rc<RefCell<Work>>,
    /// Seconds between two snapshots while the plugin records draws.
    pub every: Duration,
}

/// The host side of [`TraceSink`]: validates and keeps every draw, and
/// checkpoints them to the run directory.
pub struct Recorder<'m> {
    chains: usize,
    plan: Option<Plan>,
    /// loss[t][c].
    loss: Vec<Vec<f64>>,
    /// name → values[t][c], in the order first seen.
    stats: BTreeMap<String, Vec<Vec<f64>>>,
    phases: Vec<(String, Instant)>,
    monitor: &'m mut dyn Monitor,
    checkpoints: Checkpoints,
    start: Instant,
    last_write: Instant,
    /// How long the last checkpoint took (its estimate and its write).
    last_cost: Duration,
    dir: Option<RunDir>,
    observer: Option<&'m mut Observer>,
    /// `--until` / `--budget`, when given.
    stopper: Option<Stopper>,
}

impl<'m> Recorder<'m> {
    /// A recorder for `chains` chains, reporting progress to `monitor` (which
    /// also says when to stop), writing the run as `checkpoints` says, and
    /// handing every valid draw to `observer` and `stopper`.
    pub fn new(chains: usize, monitor: &'m mut dyn Monitor, checkpoints: Checkpoints, observer: Option<&'m mut Observer>, stopper: Option<Stopper>) -> Self {
        let now = Instant::now();
        Self {
            chains,
            plan: None,
            loss: Vec::new(),
            stats: BTreeMap::new(),
            phases: Vec::new(),
            monitor,
            checkpoints,
            start: now,
            last_write: now,
            last_cost: Duration::ZERO,
            dir: None,
            observer,
            stopper,
        }
    }

    /// Seconds spent in each announced phase, and `total` since the start.
    fn timings(&self, end: Instant) -> BTreeMap<String, f64> {
        let mut t = BTreeMap::new();
        for (i, (name, start)) in self.phases.iter().enumerate() {
            let stop = self.phases.get(i + 1).map_or(end, |p| p.1);
            *t.entry(name.clone()).or_insert(0.0) += stop.duration_since(*start).as_secs_f64();
        }
        t.insert("total".into(), end.duration_since(self.start).as_secs_f64());
        t
    }

    /// The observables' λ̂_S and traces as they stand (none without `--observe`).
    fn observed(&self) -> Vec<Observed> {
        let plan = self.plan.unwrap_or(Plan { draws: 0, burn_in: 0, independent: false });
        let n_beta = self.checkpoints.base.n_beta();
        self.observer.as_deref().map_or_else(Vec::new, |o| o.snapshot(plan.burn_in, n_beta, plan.independent))
    }

    /// The manifest of the run as it stands, given the observables' state.
    fn manifest(&self, status: Status, error: Option<String>, observed: &[Observed]) -> Manifest {
        let plan = self.plan.unwrap_or(Plan { draws: 0, burn_in: 0, independent: false });
        let mut m = self.checkpoints.base.clone();
        let draws = self.loss.len();
        let loss_ct: Vec<Vec<f64>> = (0..self.chains).map(|c| self.loss.iter().map(|row| row[c]).collect()).collect();
        m.llc = (draws > plan.burn_in).then(|| estimate::llc(&loss_ct, plan.burn_in, m.n_beta(), m.l0, plan.independent));
        m.status = status;
        m.error = error;
        m.draws = draws;
        m.draws_announced = plan.draws;
        m.burn_in = plan.burn_in;
        m.independent_draws = plan.independent;
        m.timings = self.timings(Instant::now());
        m.work = *self.checkpoints.work.borrow();
        m.work.observe_loss_evals = self.observer.as_deref().map_or(0, Observer::evaluations);
        m.observables = observed.iter().map(|o| (o.name.clone(), o.record.clone())).collect();
        m.stop = self.stopper.as_ref().map(|s| {
            let (rhat, ess) = (m.llc.as_ref().and_then(|e| e.rhat), m.llc.as_ref().map(|e| e.ess_bulk).filter(|e| e.is_finite()));
            s.report(status == Status::Complete, rhat, ess)
        });
        m
    }

    /// Writes `manifest` and the draws so far (creating the run directory the first time).
    fn save(&mut self, manifest: &Manifest, observed: &[Observed]) -> Result<PathBuf> {
        let snapshot = Snapshot { manifest, loss: &self.loss, stats: &self.stats, observed };
        match &self.dir {
            Some(d) => d.write(&snapshot)?,
            None => self.dir = Some(RunDir::create(&self.checkpoints.store, &snapshot)?),
        }
        self.last_write = Instant::now();
        Ok(self.dir.as_ref().expect("just written").path.clone())
    }

    /// A snapshot of the run so far, marked incomplete.
    fn checkpoint(&mut self) -> std::result::Result<(), SamplerError> {
        let began = Instant::now();
        let observed = self.observed();
        let m = self.manifest(Status::Incomplete, None, &observed);
        self.save(&m, &observed).map_err(|e| SamplerError::fatal(format!("writing a checkpoint: {e}")))?;
        self.last_cost = began.elapsed();
        Ok(())
    }

    /// Whether a checkpoint is due: `every` seconds since the last one, or ten
    /// times what the last one took if that is longer, so that a long trace
    /// (whose estimate and write grow with it) is checkpointed at no more than
    /// a tenth of the run's time.
    fn checkpoint_due(&self) -> bool {
        self.last_write.elapsed() >= self.checkpoints.every.max(10 * self.last_cost)
    }

    /// The last write: the run as it ended (`summary` is the plugin's, when it
    /// returned one). Returns the run directory and its manifest; a plugin
    /// that failed before announcing its plan (a bad config value, say) leaves
    /// no run directory.
    pub fn finish(mut self, status: Status, error: Option<String>, summary: Option<RunSummary>) -> Result<(Option<PathBuf>, Manifest)> {
        let observed = self.observed();
        let mut m = self.manifest(status, error, &observed);
        if let Some(s) = summary {
            m.tuned = s.tuned.iter().map(|t| (t.name.to_string(), t.value)).collect();
            m.notes = s.notes.to_string();
        }
        let dir = if self.plan.is_none() && status == Status::Failed { None } else { Some(self.save(&m, &observed)?) };
        self.monitor.report(Progress::Finish);
        Ok((dir, m))
    }

    /// Draws recorded so far, and the plan the plugin announced.
    pub fn recorded(&self) -> (usize, Option<Plan>) {
        (self.loss.len(), self.plan)
    }

    /// Whether the stop rule ended the run (converged, or its budget spent).
    pub fn stopped_by_rule(&self) -> bool {
        self.stopper.as_ref().is_some_and(|s| s.outcome().is_some())
    }
}

impl TraceSink for Recorder<'_> {
    fn begin(&mut self, plan: PlanRef) -> SResult<()> {
        let plan = plan.to_plan();
        let r = if self.plan.is_some() {
            Err(SamplerError::fatal("begin() was called twice"))
        } else if plan.burn_in > plan.draws {
            Err(SamplerError::fatal(format!("burn-in {} exceeds the {} announced draws", plan.burn_in, plan.draws)))
        } else if plan.burn_in == plan.draws {
            Err(SamplerError::fatal(format!("the plugin announced {} draws, all of them burn-in: nothing to estimate λ̂ from (is `draws` 0?)", plan.draws)))
        } else if plan.independent && self.stopper.as_ref().is_some_and(Stopper::has_until) {
            Err(SamplerError::fatal("--until needs Markov chains, but this plugin's draws are independent (variational): use its own draw count"))
        } else {
            // Nothing is reserved for what is announced (traces grow as draws
            // arrive), but a run that could never be kept is refused up front:
            // L_n and λ̂ of every draw of every chain, in f64.
            let bytes = 16.0 * plan.draws as f64 * self.chains as f64;
            match memory::check(&format!("the plugin announced {} draws of {} chains (its `draws`/`steps` setting)", plan.draws, self.chains), bytes) {
                Ok(()) => {
                    self.plan = Some(plan);
                    // The run directory appears now, with no draws yet.
                    self.checkpoint()
                }
                Err(e) => Err(SamplerError::fatal(e.to_string())),
            }
        };
        r.into()
    }

    fn phase(&mut self, name: RStr<'_>) {
        self.phases.push((name.to_string(), Instant::now()));
    }

    fn record(&mut self, draw: usize, loss: RSlice<'_, f64>, stats: RSlice<'_, Stat<'_>>) -> SResult<()> {
        let r = (|| {
            let plan = self.plan.ok_or_else(|| SamplerError::fatal("record() before begin()"))?;
            if draw != self.loss.len() {
                return Err(SamplerError::fatal(format!("draw {draw} recorded out of order (expected {})", self.loss.len())));
            }
            if draw >= plan.draws {
                return Err(SamplerError::fatal(format!("the plugin wrote draw {draw} but announced only {} draws", plan.draws)));
            }
            if loss.len() != self.chains {
                return Err(SamplerError::fatal(format!("draw {draw} has {} losses for {} chains", loss.len(), self.chains)));
            }
            if let Some(c) = loss.iter().position(|l| !l.is_finite()) {
                return Err(SamplerError::fatal(format!("non-finite L_n ({}) for chain {c} at draw {draw}", loss[c])));
            }
            if draw > 0 && stats.len() != self.stats.len() {
                return Err(SamplerError::fatal(format!("draw {draw} has {} stats, earlier draws had {}", stats.len(), self.stats.len())));
            }
            for s in stats.iter() {
                if stat_names::RESERVED.contains(&s.name.as_str()) {
                    return Err(SamplerError::fatal(format!("stat `{}` uses a name the host reserves", s.name)));
                }
                if s.values.len() != self.chains {
                    return Err(SamplerError::fatal(format!("stat `{}` at draw {draw} has {} values for {} chains", s.name, s.values.len(), self.chains)));
                }
                if draw > 0 && !self.stats.contains_key(s.name.as_str()) {
                    return Err(SamplerError::fatal(format!("stat `{}` first appears at draw {draw}", s.name)));
                }
                if self.observer.as_deref().is_some_and(|o| o.claims(&s.name)) {
                    return Err(SamplerError::fatal(format!("stat `{}` has the name of an observable's trace: rename the observable", s.name)));
                }
            }
            if let Some(o) = self.observer.as_deref_mut() {
                o.record(draw, &loss)?;
            }
            for s in stats.iter() {
                self.stats.entry(s.name.to_string()).or_default().push(s.values.to_vec());
            }
            self.loss.push(loss.to_vec());
            if let Some(s) = &mut self.stopper {
                s.after_draw(&self.loss, plan.burn_in);
            }
            if self.checkpoint_due() {
                self.checkpoint()?;
            }
            Ok(())
        })();
        r.into()
    }

    /// Passed on, or under a budget replaced by the budget's spent fraction (in ‰).
    fn progress(&mut self, done: usize, total: usize) {
        let (done, total) = match &self.stopper {
            Some(s) if s.budget_spent() > 0.0 => (((s.budget_spent() * 1000.0) as u64).min(1000), 1000),
            _ => (done as u64, total as u64),
        };
        self.monitor.report(Progress::Advance { done, total });
    }

    fn should_stop(&self) -> bool {
        self.monitor.should_stop() || self.stopper.as_ref().is_some_and(Stopper::should_stop)
    }
}
