//! `lh-host workflow tune`: the `tune:` section of an experiment file — a
//! reference λ̂ per target, then a TPE search per target and method — on the
//! local pool or SLURM, resumably; prints the references, each round and a
//! summary of default against tuned error.

use anyhow::Result;
use lh_host::store::lock::FileLock;
use lh_host::store::Store;
use lh_host::target;
use lh_host::workflow::state::{Ledger, RunState};
use lh_host::workflow::tune::{self, figures, reference::Reference, report, trials, Tuner};

use super::exit::Exit;
use super::format::fmt_opt;
use super::grid::{Backend, Grid, GridArgs, PlanRunner};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    grid: GridArgs,
    /// Tune against references that did not meet `until` within their budget.
    #[arg(long)]
    force_reference: bool,
}

pub fn exec(store: &Store, a: Args) -> Result<Exit> {
    let Grid { exp, settings, jobs, threads } = a.grid.load(|_| usize::MAX)?;
    let tuner = Tuner::prepare(store, &exp, settings, threads)?;
    if a.grid.dry_run {
        print_plan(store, &tuner, jobs)?;
        return Ok(Exit::Success);
    }
    let lock_path = store.experiment_lock_path(&tuner.experiment)?;
    let _lock = match FileLock::try_acquire(&lock_path)? {
        Ok(lock) => lock,
        Err(holder) => anyhow::bail!("experiment `{}` is being run by {holder} ({}): wait for it", tuner.experiment, lock_path.display()),
    };
    super::signals::install();
    if a.grid.backend == Backend::Local {
        outln!("experiment `{}`: tuning on {jobs} job(s) × {threads} thread(s)", tuner.experiment);
    }
    let mut runner = PlanRunner { store, backend: a.grid.backend, jobs };
    let Some(tuned) = tune::run(store, &tuner, a.force_reference, &mut runner)? else {
        outln!("stopped: what finished is in {}; the same command goes on from there", tuner.dir(store)?.join("trials.csv").display());
        return Ok(Exit::unless_interrupted(Exit::Success));
    };
    let rows = report::write(store, &tuner, &tuned)?;
    let figs = figures::write(store, &tuner, &tuned)?;
    let page = report::gallery(store, &tuner, &tuned, &rows, &figs)?;
    print_summary(&tuned.references, &rows);
    let dir = tuner.dir(store)?;
    outln!("wrote {} (trials.csv, summary.csv, best/, {} figure(s) in figures/) and {}", dir.display(), figs.len(), page.display());
    Ok(Exit::unless_interrupted(Exit::Success))
}

/// The references and the default-against-tuned table.
fn print_summary(refs: &[Reference], rows: &[report::SummaryRow]) {
    for r in refs {
        outln!("reference of {}: λ̂ = {}", r.problem, r.describe());
    }
    // λ̂ carries a combining mark: one char more than it displays. The best trial is
    // the one of lowest score √(error² + SE²), not always of lowest error.
    outln!(
        "{:<16}  {:<12}  {:>9}  {:>20}  {:>8}  {:>8}  {:>5}  {:>20}  {:>8}  {:>8}  best settings",
        "target",
        "method",
        "trials",
        "default λ̂ ± SE",
        "error",
        "score",
        "best",
        "tuned λ̂ ± SE",
        "error",
        "score"
    );
    let pm = |l: Option<f64>, se: Option<f64>| match (l, se) {
        (Some(l), Some(se)) => format!("{l:.4} ± {se:.4}"),
        _ => "-".into(),
    };
    for r in rows {
        let failed = if r.failed > 0 { format!(" ({} failed)", r.failed) } else { String::new() };
        outln!(
            "{:<16}  {:<12}  {:>9}  {:>19}  {:>8}  {:>8}  {:>5}  {:>19}  {:>8}  {:>8}  {}",
            r.problem,
            r.method,
            format!("{}{failed}", r.trials),
            pm(r.default_llc, r.default_se),
            fmt_opt(r.default_error, 4),
            fmt_opt(r.default_score, 4),
            r.best_trial.map_or("-".into(), |t| t.to_string()),
            pm(r.best_llc, r.best_se),
            fmt_opt(r.best_error, 4),
            fmt_opt(r.best_score, 4),
            r.best_params
        );
    }
}

/// `--dry-run`: the problems, the reference runs and the studies, and where each stands.
fn print_plan(store: &Store, tuner: &Tuner, jobs: usize) -> Result<()> {
    let cfg = &tuner.config;
    outln!(
        "tune of experiment `{}`: {} problem(s) × {} method(s), {} trials each ({} random, then TPE {} at a time), budget {} per trial{}",
        tuner.experiment,
        tuner.problems.len(),
        tuner.methods.len(),
        cfg.trials,
        cfg.startup,
        cfg.parallel,
        cfg.budget,
        match tuner.seeds.len() {
            1 => String::new(),
            k => format!(" and per seed: {k} runs a trial (seeds {:?}, scores averaged)", tuner.seeds),
        }
    );
    if jobs > 0 {
        outln!("local pool: {jobs} job(s)");
    }
    let ledger = Ledger::scan(store, &tuner.experiment)?;
    let refs_plan = tuner.reference_plan()?;
    let rows = trials::read(&tuner.dir(store)?.join("trials.csv"))?;
    for run in &refs_plan.runs {
        let stored = if target::find(store, &tuner.problems[run.target].id)?.is_some() { "stored" } else { "to build" };
        let state = match ledger.state_in(store, &tuner.experiment, &run.key) {
            RunState::Done(f) => format!("done ({})", f.dir.display()),
            other => other.word().to_string(),
        };
        outln!(
            "problem {} ({stored}): {} {} until {}, budget {}, key {}: {state}",
            run.target_id,
            run.tag.as_deref().unwrap_or("reference"),
            run.plugin,
            cfg.reference.until,
            cfg.reference.budget,
            run.key
        );
    }
    for m in &tuner.methods {
        let space: Vec<String> = m.spec.space.iter().map(|(k, p)| format!("{k}: {}", ron::to_string(p).unwrap_or_else(|_| format!("{p:?}")))).collect();
        outln!("method {} (plugin {} {}): {}", m.name(), m.plugin.name, m.plugin.version, space.join(", "));
    }
    match tuner.references(store, &refs_plan) {
        Ok(refs) => {
            for st in tuner.studies(&refs, &rows) {
                outln!(
                    "study {} ({} on {}): {} of {} trials recorded",
                    st.id,
                    tuner.methods[st.method].name(),
                    refs[st.problem].problem,
                    st.rows.len(),
                    cfg.trials
                );
            }
        }
        Err(_) => outln!("studies: they start once every reference is done"),
    }
    Ok(())
}
