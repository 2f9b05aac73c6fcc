//! The host side of the plugin's [`TraceSink`]: every draw validated and
//! kept (and, with `--observe`, handed to the [`Observer`]), phases timed,
//! progress passed on to a [`Monitor`].

use std::collections::BTreeMap;
use std::time::Instant;

use lh_plugin_api::{Plan, RSlice, RStr, SResult, SamplerError, Stat, TraceSink};

use super::observe::Observer;
use crate::progress::{Monitor, Progress};

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
    observer: Option<&'m mut Observer>,
}

impl<'m> Recorder<'m> {
    /// A recorder for `chains` chains, reporting progress to `monitor` (which
    /// also says when to stop) and handing every valid draw to `observer`.
    pub fn new(chains: usize, monitor: &'m mut dyn Monitor, observer: Option<&'m mut Observer>) -> Self {
        Self { chains, plan: None, loss: Vec::new(), stats: BTreeMap::new(), phases: Vec::new(), monitor, observer }
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
    fn begin(&mut self, plan: Plan) -> SResult<()> {
        let r = if self.plan.is_some() {
            Err(SamplerError::fatal("begin() was called twice"))
        } else if plan.burn_in > plan.draws {
            Err(SamplerError::fatal(format!("burn-in {} exceeds the {} announced draws", plan.burn_in, plan.draws)))
        } else {
            self.plan = Some(plan);
            self.loss.reserve(plan.draws);
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
            Ok(())
        })();
        r.into()
    }

    fn progress(&mut self, done: usize, total: usize) {
        self.monitor.report(Progress::Advance { done: done as u64, total: total as u64 });
    }

    fn should_stop(&self) -> bool {
        self.monitor.should_stop()
    }
}
