//! The host side of the plugin's [`TraceSink`]: every draw validated and
//! kept, phases timed, progress passed on to a [`Monitor`].

use std::collections::BTreeMap;
use std::time::Instant;

use lh_plugin_api::{stat_names, Plan, PlanRef, RSlice, RStr, SResult, SamplerError, Stat, TraceSink};

use super::stopping::Stopper;
use crate::progress::{Monitor, Progress};

/// The most draws [`Recorder`] reserves room for up front.
const RESERVE_MAX: usize = 1 << 16;

/// The host side of [`TraceSink`]: validates and keeps every draw.
pub struct Recorder<'m> {
    chains: usize,
    pub(super) plan: Option<Plan>,
    /// loss[t][c].
    pub(super) loss: Vec<Vec<f64>>,
    /// name → values[t][c], in the order first seen.
    pub(super) stats: BTreeMap<String, Vec<Vec<f64>>>,
    phases: Vec<(String, Instant)>,
    monitor: &'m mut dyn Monitor,
    /// `--until` / `--budget`, when given.
    pub(super) stopper: Option<Stopper>,
}

impl<'m> Recorder<'m> {
    /// A recorder for `chains` chains, reporting progress to `monitor` (which
    /// also says when the user wants to stop) and stopping early by `stopper`.
    pub fn new(chains: usize, monitor: &'m mut dyn Monitor, stopper: Option<Stopper>) -> Self {
        Self { chains, plan: None, loss: Vec::new(), stats: BTreeMap::new(), phases: Vec::new(), monitor, stopper }
    }

    /// Seconds spent in each announced phase, and in total since the first.
    pub fn timings(&self, end: Instant) -> BTreeMap<String, f64> {
        let mut t = BTreeMap::new();
        for (i, (name, start)) in self.phases.iter().enumerate() {
            let stop = self.phases.get(i + 1).map_or(end, |p| p.1);
            *t.entry(name.clone()).or_insert(0.0) += stop.duration_since(*start).as_secs_f64();
        }
        t
    }
}

impl TraceSink for Recorder<'_> {
    fn begin(&mut self, plan: PlanRef) -> SResult<()> {
        let plan = plan.to_plan();
        let r = if self.plan.is_some() {
            Err(SamplerError::fatal("begin() was called twice"))
        } else if plan.burn_in > plan.draws {
            Err(SamplerError::fatal(format!("burn-in {} exceeds the {} announced draws", plan.burn_in, plan.draws)))
        } else if plan.independent && self.stopper.as_ref().is_some_and(Stopper::has_until) {
            Err(SamplerError::fatal("--until needs Markov chains, but this plugin's draws are independent (variational): use its own draw count"))
        } else {
            self.plan = Some(plan);
            // Announced draws may be a large cap (`--until`): reserve a bounded amount.
            self.loss.reserve(plan.draws.min(RESERVE_MAX));
            Ok(())
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
                let entry = self.stats.entry(s.name.to_string());
                let v = match (draw, entry) {
                    (0, e) => e.or_default(),
                    (_, std::collections::btree_map::Entry::Occupied(o)) => o.into_mut(),
                    (_, std::collections::btree_map::Entry::Vacant(_)) => {
                        return Err(SamplerError::fatal(format!("stat `{}` first appears at draw {draw}", s.name)));
                    }
                };
                v.push(s.values.to_vec());
            }
            self.loss.push(loss.to_vec());
            if let Some(s) = &mut self.stopper {
                s.after_draw(&self.loss, plan.burn_in);
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
