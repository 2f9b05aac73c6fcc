//! Stage D: `workflow tune`. An experiment file with a `tune:` section flows
//! in; a reference λ̂ per target, `tune/trials.csv`, the best settings per
//! target and method (RON for `sample --config`), a summary and figures flow
//! out. Every run — references and trials — is a planned run of a
//! [`Plan`], run on the workflow backends (the local pool, SLURM) through the
//! same task code as `workflow sample`, so keys, outcome records and resuming
//! work the same way:
//!
//! 1. **References** ([`reference`]): one run per target of the reference
//!    sampler with `until` and `budget`; a complete run with the same key is
//!    reused. One that did not converge is refused unless forced.
//! 2. **Studies** ([`study`]): per target × method, trials of the method's
//!    plugin, each with its searched keys set and `budget` as its stop rule
//!    (an MCMC plugin's `draws` raised, so that the budget ends it). Rounds:
//!    each round runs every trial that can be asked now, of every study, on
//!    the backend, and records them ([`trials`]).
//! 3. **Report** ([`report`], [`figures`]).
//!
//! ```text
//! experiments/<exp>/tune/
//!     references.json                     λ̂, SE, R̂, ESS of each reference, its run directory
//!     trials.csv                          every finished trial
//!     summary.csv                         per target × method: default and tuned error
//!     best/<target id>/<method>.ron       the best trial's keys, for `sample --config`
//!     figures/<target id>.png             error against trial and against work
//! experiments/<exp>/gallery/tune.html     the summary and the figures (linked from index.html)
//! ```

pub mod figures;
pub mod reference;
pub mod report;
mod runs;
pub mod space;
pub mod study;
pub mod trials;

use std::collections::BTreeMap;
use std::path::PathBuf;

use self::reference::Reference;
use self::runs::Left;
use self::study::Study;
use self::trials::TrialRow;
use super::plan::{absolute, raised_draws, Plan, PlannedRun, PlannedStop, PlannedTarget};
use super::state::Ledger;
use crate::config::{parse_ron, resolve_config, Experiment, MethodSpec, Overrides, Param, TuneConfig, WorkflowConfig};
use crate::error::{Error, Result};
use crate::sample::{plugins, Budget, StopRule, Until};
use crate::store::provenance::Provenance;
use crate::store::record::Record;
use crate::store::Store;

/// A plugin as the tuner runs it: found, loaded once, its config resolved with the keys every run of it sets.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
    /// The plugin's default config.
    defaults: String,
    /// The layers every run applies: `draws` raised (when the plugin has it and nothing sets it), then the file's overrides.
    layers: Vec<Overrides>,
    /// The config those layers resolve to.
    pub config: String,
}

impl Resolved {
    /// Loads `plugin` and resolves `overrides` over its defaults; `raise_draws` unless a key in `keeps` sets `draws`.
    fn load(plugin: &str, overrides: &Overrides, keeps: &[&str], at: &str) -> Result<Resolved> {
        let wrap = |e: Error| Error::invalid(format!("{at} (`{plugin}`): {e}"));
        let path = plugins::resolve(plugin).map_err(wrap)?;
        let p = plugins::load(&path).map_err(wrap)?;
        let defaults = p.info.default_config;
        let sets_draws = keeps.contains(&"draws") || overrides.fields.iter().any(|(k, _)| k == "draws");
        let mut layers = Vec::new();
        if !sets_draws {
            layers.extend(raised_draws(&defaults, &p.info.name, "workflow tune (draws raised, so that the budget ends the run)")?);
        }
        layers.push(overrides.clone());
        let config = resolve_config(&defaults, &p.info.name, &layers)?.text;
        Ok(Resolved { name: p.info.name, version: p.info.version, path: absolute(&path)?, defaults, layers, config })
    }

    /// The config with `extra` applied last.
    fn config_with(&self, extra: Overrides) -> Result<String> {
        let layers: Vec<Overrides> = self.layers.iter().cloned().chain([extra]).collect();
        Ok(resolve_config(&self.defaults, &self.name, &layers)?.text)
    }

    /// Each key's value (one-line RON) in [`Resolved::config`].
    fn values(&self) -> Result<BTreeMap<String, String>> {
        let o: Overrides = parse_ron(&self.config, &format!("plugin `{}` resolved config", self.name))?;
        Ok(o.fields.into_iter().map(|(k, v)| (k, v.get_ron().trim().to_string())).collect())
    }
}

/// One method of the `tune:` section, resolved.
#[derive(Debug, Clone)]
pub struct Method {
    pub spec: MethodSpec,
    pub plugin: Resolved,
    /// Each searched key's value in the plugin's config before the search (trial 0's).
    pub defaults: BTreeMap<String, String>,
    /// `tune.methods[i]`.
    pub entry: String,
}

impl Method {
    pub fn name(&self) -> &str {
        self.spec.name()
    }
}

/// One trial to run: study, number, the searched keys' values, and its runs
/// in the round's plan (one per seed of the file's `seeds`).
#[derive(Debug, Clone)]
pub struct Slot {
    pub study: usize,
    pub trial: usize,
    pub values: Vec<(String, String)>,
    pub runs: std::ops::Range<usize>,
}

/// The tuner of one experiment file: its problems, methods and reference, checked and resolved.
pub struct Tuner {
    pub experiment: String,
    source: PathBuf,
    home: PathBuf,
    settings: WorkflowConfig,
    threads: usize,
    pub config: TuneConfig,
    pub problems: Vec<PlannedTarget>,
    pub methods: Vec<Method>,
    pub reference: Resolved,
    /// The config of the reference's check run (`tune.reference.check`), if it has one.
    reference_check: Option<String>,
    reference_stop: StopRule,
    reference_chains: usize,
    /// Every trial's stop rule: the budget.
    pub budget: StopRule,
    /// The sampling seeds of every trial (one run each; the reference runs with the first) and its chains.
    pub seeds: Vec<u64>,
    pub chains: usize,
}

impl Tuner {
    /// Checks the `tune:` section of `exp` and loads every plugin it names
    /// (an unknown plugin, key or bad text is an error naming the file and
    /// field); `threads` per run.
    pub fn prepare(store: &Store, exp: &Experiment, settings: WorkflowConfig, threads: usize) -> Result<Tuner> {
        let file = exp.path.display().to_string();
        let file = file.as_str();
        let cfg = exp.config.tune.clone().ok_or_else(|| Error::invalid(format!("{file}: no `tune: (…)` section: nothing to tune")))?;
        let at = |field: &'static str| move |e: Error| Error::invalid(format!("{file}: tune.{field}: {e}"));
        let budget: Budget = cfg.budget.parse().map_err(at("budget"))?;
        let reference_stop = StopRule {
            until: Some(cfg.reference.until.parse::<Until>().map_err(at("reference.until"))?),
            budget: Some(cfg.reference.budget.parse::<Budget>().map_err(at("reference.budget"))?),
        };
        let reference = Resolved::load(&cfg.reference.plugin, &cfg.reference.overrides, &[], &format!("{file}: tune.reference"))?;
        let reference_check = match &cfg.reference.check {
            Some(check) => Some(reference.config_with(check.clone())?),
            None => None,
        };
        let mut methods = Vec::new();
        for (i, spec) in cfg.methods.iter().enumerate() {
            let entry = format!("tune.methods[{i}]");
            let searched: Vec<&str> = spec.space.keys().map(String::as_str).collect();
            let plugin = Resolved::load(&spec.plugin, &spec.fixed, &searched, &format!("{file}: {entry}"))?;
            let values = plugin.values()?;
            let mut defaults = BTreeMap::new();
            for k in spec.space.keys() {
                let v = values.get(k).ok_or_else(|| {
                    let keys: Vec<&str> = values.keys().map(String::as_str).collect();
                    Error::invalid(format!("{file}: {entry}.space: unknown key `{k}` for plugin `{}` (keys: {})", plugin.name, keys.join(", ")))
                })?;
                defaults.insert(k.clone(), v.clone());
            }
            methods.push(Method { spec: spec.clone(), plugin, defaults, entry });
        }
        Ok(Tuner {
            experiment: exp.config.name.clone(),
            source: absolute(&exp.path)?,
            home: absolute(&store.home)?,
            settings,
            threads,
            reference_chains: cfg.reference.chains.unwrap_or(exp.config.chains),
            config: cfg,
            problems: super::plan::targets(exp),
            methods,
            reference,
            reference_check,
            reference_stop,
            budget: StopRule { until: None, budget: Some(budget) },
            seeds: exp.config.seeds.clone(),
            chains: exp.config.chains,
        })
    }

    /// A plan of `runs` on this tuner's problems.
    pub fn plan(&self, runs: Vec<PlannedRun>) -> Plan {
        Plan {
            schema: Plan::SCHEMA,
            experiment: self.experiment.clone(),
            source: self.source.clone(),
            home: self.home.clone(),
            settings: self.settings.clone(),
            threads: self.threads,
            diagnose: false,
            targets: self.problems.clone(),
            runs,
            tasks: None,
            provenance: Provenance::now(),
        }
    }

    /// A run of `plugin` with `config` on problem `p` with `seed`, tagged `tag`, from the
    /// file's `entry`, stopped by `stop` (not sealed: see [`PlannedRun::sealed`]).
    fn run_of(&self, p: usize, plugin: &Resolved, config: String, (tag, entry): (String, &str), stop: &StopRule, seed: u64) -> PlannedRun {
        PlannedRun {
            key: String::new(),
            target: p,
            target_id: self.problems[p].id.clone(),
            sampler: 0,
            entry: Some(entry.to_string()),
            plugin: plugin.name.clone(),
            plugin_version: plugin.version.clone(),
            plugin_path: plugin.path.clone(),
            tag: Some(tag),
            restrict: None,
            seed,
            chains: self.chains,
            config,
            config_hash: String::new(),
            stop: PlannedStop::of(stop),
        }
    }

    /// The plan of the references: one run per problem, followed by its check run when `tune.reference.check` is given.
    pub fn reference_plan(&self) -> Result<Plan> {
        let r = &self.reference;
        let mut runs = Vec::new();
        for p in 0..self.problems.len() {
            let mut configs = vec![(r.config.clone(), "reference", "tune.reference")];
            configs.extend(self.reference_check.iter().map(|c| (c.clone(), "reference-check", "tune.reference.check")));
            for (config, tag, entry) in configs {
                let run = self.run_of(p, r, config, (tag.into(), entry), &self.reference_stop, self.seeds[0]);
                runs.push(PlannedRun { chains: self.reference_chains, ..run }.sealed(self.settings.precision)?);
            }
        }
        Ok(self.plan(runs))
    }

    /// The references the runs of `plan` (made by [`Tuner::reference_plan`]) left on disk, each with its check.
    pub fn references(&self, store: &Store, plan: &Plan) -> Result<Vec<Reference>> {
        let ledger = Ledger::scan(store, &self.experiment)?;
        let of = |r: &PlannedRun| Reference::from_run(&r.target_id, &r.plugin, &r.key, runs::left(store, &ledger, &self.experiment, &r.key));
        let per_problem = if self.reference_check.is_some() { 2 } else { 1 };
        plan.runs
            .chunks(per_problem)
            .map(|runs| {
                let reference = of(&runs[0])?;
                match runs.get(1) {
                    Some(check) => Ok(reference.with_check(of(check)?)),
                    None => Ok(reference),
                }
            })
            .collect()
    }

    /// The id of the study of method `m` on problem `p` against `reference`:
    /// what makes its trials what they are (the trial count and `parallel` are
    /// left out: raising them continues the study).
    fn study_id(&self, p: usize, m: usize, reference: &Reference) -> String {
        let method = &self.methods[m];
        let mut parts = serde_json::json!({
            "problem": self.problems[p].id,
            "method": method.name(),
            "plugin": method.plugin.name,
            "version": method.plugin.version,
            "config": method.plugin.config,
            "space": method.spec.space,
            "budget": PlannedStop::of(&self.budget),
            "seed": self.seeds[0],
            "chains": self.chains,
            "precision": self.settings.precision,
            "tpe": {"seed": self.config.seed, "startup": self.config.startup},
            "reference": reference.key,
        });
        // (A one-seed study keeps the id it had before trials took several seeds.)
        if self.seeds.len() > 1 {
            parts["seeds"] = serde_json::json!(self.seeds);
        }
        study::study_id(&parts)
    }

    /// Every study (problem × method), with its rows of `rows`.
    pub fn studies(&self, refs: &[Reference], rows: &[TrialRow]) -> Vec<Study> {
        let mut out = Vec::new();
        for (p, r) in refs.iter().enumerate() {
            for (m, method) in self.methods.iter().enumerate() {
                let id = self.study_id(p, m, r);
                let mine = rows.iter().filter(|row| row.study == id).map(|row| (row.trial, row.clone())).collect();
                let space: Vec<(String, Param)> = method.spec.space.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                out.push(Study { id, problem: p, method: m, reference: r.llc, space, rows: mine });
            }
        }
        out
    }

    /// The trials of every study that can be asked now, with their planned runs.
    pub fn round(&self, studies: &[Study]) -> Result<(Vec<Slot>, Plan)> {
        let (cfg, mut slots, mut runs) = (&self.config, Vec::new(), Vec::new());
        for (s, st) in studies.iter().enumerate() {
            let method = &self.methods[st.method];
            for trial in st.ready(cfg.trials, cfg.startup, cfg.parallel) {
                let values = st.point(trial, cfg.startup, cfg.parallel, cfg.seed, &method.defaults)?;
                let origin = format!("{}: {} trial {trial}", self.source.display(), method.entry);
                let params = parse_ron::<Overrides>(&study::params_text(&values), &origin)?.with_origin(origin);
                let config = method.plugin.config_with(params)?;
                let first = runs.len();
                for &seed in &self.seeds {
                    let tag = (format!("{}-t{trial}", method.name()), method.entry.as_str());
                    runs.push(self.run_of(st.problem, &method.plugin, config.clone(), tag, &self.budget, seed).sealed(self.settings.precision)?);
                }
                slots.push(Slot { study: s, trial, values, runs: first..runs.len() });
            }
        }
        Ok((slots, self.plan(runs)))
    }

    /// The rows of the trials of a round whose runs are all done, or one of
    /// them failed for good (the others run again next round), added to their
    /// studies. A trial of several seeds scores the mean of its runs' scores;
    /// its λ̂ is their mean, its SE that of the mean.
    pub fn record(&self, store: &Store, plan: &Plan, slots: &[Slot], studies: &mut [Study]) -> Result<Vec<TrialRow>> {
        let ledger = Ledger::scan(store, &self.experiment)?;
        let mut rows = Vec::new();
        for slot in slots {
            let st = &mut studies[slot.study];
            let runs = &plan.runs[slot.runs.clone()];
            let left: Vec<Left> = runs.iter().map(|run| runs::left(store, &ledger, &self.experiment, &run.key)).collect();
            if left.iter().any(|l| matches!(l, Left::Failed { lasting: false, .. } | Left::NotDone))
                && !left.iter().any(|l| matches!(l, Left::Failed { lasting: true, .. }))
            {
                continue;
            }
            let joined = |f: &dyn Fn(&PlannedRun, &Left) -> String| runs.iter().zip(&left).map(|(r, l)| f(r, l)).collect::<Vec<_>>().join(";");
            let mut row = TrialRow {
                study: st.id.clone(),
                problem: runs[0].target_id.clone(),
                method: self.methods[st.method].name().to_string(),
                trial: slot.trial,
                origin: study::origin(slot.trial, self.config.startup).to_string(),
                params: study::params_text(&slot.values),
                llc: None,
                se: None,
                error: None,
                score: None,
                grad_evals: None,
                wall_s: None,
                stop: String::new(),
                status: "failed".into(),
                run_dir: joined(&|_, l| match l {
                    Left::Done { dir, .. } | Left::Failed { dir: Some(dir), .. } => dir.display().to_string(),
                    _ => String::new(),
                }),
                key: joined(&|r, _| r.key.clone()),
                failure: String::new(),
                seeds_llc: String::new(),
            };
            let mut estimates = Vec::new();
            for (run, l) in runs.iter().zip(&left) {
                match l {
                    Left::Done { manifest, .. } => {
                        *row.grad_evals.get_or_insert(0.0) += manifest.work.grad_evals_fge;
                        *row.wall_s.get_or_insert(0.0) += manifest.seconds();
                        let stop = manifest.stop.as_ref().and_then(|s| s.outcome).map(|o| outcome_word(&o)).unwrap_or_default();
                        if !row.stop.split(';').any(|s| s == stop) {
                            row.stop = if row.stop.is_empty() { stop } else { format!("{};{stop}", row.stop) };
                        }
                        match manifest.llc.as_ref().filter(|e| e.mean.is_finite() && e.se.is_finite()) {
                            Some(e) => estimates.push((e.mean, e.se)),
                            None if row.failure.is_empty() => {
                                row.failure = format!("no λ̂ (seed {}): the budget ended the run before any draw after burn-in", run.seed)
                            }
                            None => {}
                        }
                    }
                    Left::Failed { error, lasting: true, .. } if row.failure.is_empty() => row.failure = format!("seed {}: {error}", run.seed),
                    _ => {}
                }
            }
            if estimates.len() == runs.len() {
                let k = estimates.len() as f64;
                let llc = estimates.iter().map(|e| e.0).sum::<f64>() / k;
                row.llc = Some(llc);
                row.se = Some(estimates.iter().map(|e| e.1 * e.1).sum::<f64>().sqrt() / k);
                row.error = Some((llc - st.reference).abs());
                row.score = Some(estimates.iter().map(|&(l, se)| study::score(l, se, st.reference)).sum::<f64>() / k);
                row.status = "complete".into();
                if runs.len() > 1 {
                    row.seeds_llc = estimates.iter().map(|e| e.0.to_string()).collect::<Vec<_>>().join(";");
                }
            }
            st.rows.insert(slot.trial, row.clone());
            rows.push(row);
        }
        Ok(rows)
    }

    /// The precision every run is asked for (`workflow.precision`), if one is.
    pub fn precision(&self) -> Option<crate::model::Precision> {
        self.settings.precision
    }

    /// `experiments/<exp>/tune/`.
    pub fn dir(&self, store: &Store) -> Result<PathBuf> {
        Ok(store.experiment_dir(&self.experiment)?.join("tune"))
    }
}

/// The manifest's word for a stop outcome (`budget exhausted`).
fn outcome_word(o: &crate::sample::StopOutcome) -> String {
    serde_json::to_value(o).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// What runs a tuner's plans: the local pool or SLURM (the command line's part, with its progress display).
pub trait Runner {
    /// Runs the runs `todo` of `plan` (and the targets they need) to the end, or until stopped.
    fn run(&mut self, plan: &Plan, todo: &[usize]) -> Result<()>;
    /// Whether a signal asked to stop.
    fn stopped(&self) -> bool;
    /// A line of news.
    fn say(&mut self, line: &str);
}

/// What a tune gave.
pub struct Tuned {
    pub references: Vec<Reference>,
    pub studies: Vec<Study>,
}

/// Runs the references, then every study round by round, with `runner`,
/// recording each round in `trials.csv`; `None` when stopped by a signal
/// (what finished is recorded, and the next call goes on from there).
/// `force` accepts references that did not converge.
pub fn run(store: &Store, tuner: &Tuner, force: bool, runner: &mut dyn Runner) -> Result<Option<Tuned>> {
    let dir = tuner.dir(store)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let refs_plan = tuner.reference_plan()?;
    let todo = to_run(store, tuner, &refs_plan, true)?;
    if !todo.is_empty() {
        runner.say(&format!(
            "references: {} of {} to run ({} until {}, budget {})",
            todo.len(),
            refs_plan.runs.len(),
            tuner.reference.name,
            tuner.config.reference.until,
            tuner.config.reference.budget
        ));
        runner.run(&refs_plan, &todo)?;
        if runner.stopped() {
            return Ok(None);
        }
    }
    let references = tuner.references(store, &refs_plan)?;
    reference::write(&dir.join("references.json"), &references)?;
    for r in &references {
        runner.say(&format!("reference of {}: λ̂ = {}", r.problem, r.describe()));
    }
    reference::check_trusted(&references, force)?;
    let csv = dir.join("trials.csv");
    let mut rows = trials::read(&csv)?;
    let mut studies = tuner.studies(&references, &rows);
    let recorded: usize = studies.iter().map(|s| s.rows.len()).sum();
    runner.say(&format!(
        "{} studies ({} problem(s) × {} method(s)), {} trials each; {recorded} trials recorded",
        studies.len(),
        tuner.problems.len(),
        tuner.methods.len(),
        tuner.config.trials
    ));
    loop {
        let (slots, plan) = tuner.round(&studies)?;
        if slots.is_empty() {
            break;
        }
        let todo = to_run(store, tuner, &plan, false)?;
        runner.say(&format!("round: {} trials ({} to run)", slots.len(), todo.len()));
        if !todo.is_empty() {
            runner.run(&plan, &todo)?;
        }
        let new = tuner.record(store, &plan, &slots, &mut studies)?;
        let progressed = !new.is_empty();
        rows.extend(new);
        trials::write(&csv, &mut rows)?;
        if runner.stopped() {
            return Ok(None);
        }
        crate::ensure!(progressed, "no trial of the round finished (see the errors above): stopping rather than trying the same again");
    }
    Ok(Some(Tuned { references, studies }))
}

/// The runs of `plan` to run: those not done, and those that failed when
/// `redo_failed` or when the machine was to blame (a trial that failed for good
/// is recorded as failed, not run again).
fn to_run(store: &Store, tuner: &Tuner, plan: &Plan, redo_failed: bool) -> Result<Vec<usize>> {
    let ledger = Ledger::scan(store, &tuner.experiment)?;
    Ok((0..plan.runs.len())
        .filter(|&r| match runs::left(store, &ledger, &tuner.experiment, &plan.runs[r].key) {
            Left::Done { .. } => false,
            Left::Failed { lasting, .. } => redo_failed || !lasting,
            Left::NotDone => true,
        })
        .collect())
}
