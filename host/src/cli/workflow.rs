//! `lh-host workflow sample|status|collect`: an experiment file's grid
//! (targets × samplers × seeds) on a local worker pool or as SLURM job
//! arrays; where its runs stand; and `llc_runs.csv` from what is on disk.

use std::path::Path;

use anyhow::Result;
use lh_host::store::layout::LLC_RUNS_CSV;
use lh_host::store::lock::FileLock;
use lh_host::store::Store;
use lh_host::target;
use lh_host::workflow::collect::{self, Counts, LlcRow};
use lh_host::workflow::plan::{self, Plan};
use lh_host::workflow::state::{Ledger, RunState};
use lh_host::workflow::{local, promote, slurm};

use super::exit::Exit;
use super::format::fmt_opt;
use super::grid::{Backend, Grid, GridArgs};
use super::pool_bar::PoolBar;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Run an experiment file's grid, targets × samplers × seeds: targets first (each
    /// built once), then every run not done yet; writes llc_runs.csv in the experiment's
    /// folder and prints a summary (exit 1 when a run failed).
    Sample(SampleArgs),
    /// Where the runs of an experiment's latest plan stand, and its SLURM jobs.
    Status(ExperimentArgs),
    /// Write llc_runs.csv from what is on disk now and print the summary.
    Collect(ExperimentArgs),
    /// Tune samplers' hyperparameters against a reference λ̂ (the file's `tune:`
    /// section): a reference run per target, then a TPE search per target and
    /// method under a fixed budget per trial; writes tune/ in the experiment's
    /// folder (trials.csv, summary.csv, best/…ron, figures/) and prints a summary.
    Tune(super::tune::Args),
}

#[derive(clap::Args)]
struct SampleArgs {
    #[command(flatten)]
    grid: GridArgs,
    /// Then diagnose every run (Stage C) and write the experiment's gallery (gallery/index.html).
    #[arg(long)]
    promote: bool,
    /// The figures the gallery shows per run (default: llc_convergence_combined.png,trace.png).
    #[arg(long, value_delimiter = ',', value_name = "A.png,B.png")]
    promote_plots: Vec<String>,
    /// SLURM: submit and return; follow with `workflow status`, finish with `workflow collect`.
    #[arg(long)]
    no_wait: bool,
}

#[derive(clap::Args)]
struct ExperimentArgs {
    #[arg(long)]
    experiment: String,
}

pub fn exec(store: &Store, a: Args) -> Result<Exit> {
    match a.command {
        Sub::Sample(a) => exec_sample(store, a),
        Sub::Status(a) => exec_status(store, &a.experiment),
        Sub::Collect(a) => exec_collect(store, &a.experiment),
        Sub::Tune(a) => super::tune::exec(store, a),
    }
}

fn exec_sample(store: &Store, a: SampleArgs) -> Result<Exit> {
    if a.grid.backend == Backend::Local && a.no_wait {
        anyhow::bail!("--no-wait is for --backend slurm (a local workflow runs here, to the end)");
    }
    let Grid { exp, settings, jobs, threads } = a.grid.load(|exp| exp.targets.len() * exp.config.samplers.len() * exp.config.seeds.len())?;
    let plots = promote::plot_names(&a.promote_plots)?;
    let plan = plan::make(store, &exp, settings, threads, a.promote)?;
    let ledger = Ledger::scan(store, &plan.experiment)?;
    let todo: Vec<usize> = (0..plan.runs.len()).filter(|&r| !matches!(state(store, &plan, &ledger, r), RunState::Done(_))).collect();
    if a.grid.dry_run {
        print_plan(store, &plan, &ledger, &a.grid.config, jobs)?;
        if a.grid.backend == Backend::Slurm {
            let sub = slurm::Submission::prepare(store, &plan, &todo)?;
            outln!("\nsbatch commands (nothing submitted):");
            for cmd in sub.commands("<targets job id>") {
                outln!("  {}", slurm::shell_words(&cmd));
            }
            outln!("\njob script ({}):\n{}", sub.script_path().display(), sub.script());
        }
        return Ok(Exit::Success);
    }
    let lock_path = store.experiment_lock_path(&plan.experiment)?;
    let _lock = match FileLock::try_acquire(&lock_path)? {
        Ok(lock) => lock,
        Err(holder) => anyhow::bail!("experiment `{}` is being run by {holder} ({}): wait for it", plan.experiment, lock_path.display()),
    };
    plan.write(&store.plan_path(&plan.experiment)?)?;
    outln!(
        "experiment `{}`: {} target(s), {} runs, {} already done{}",
        plan.experiment,
        plan.targets.len(),
        plan.runs.len(),
        plan.runs.len() - todo.len(),
        match a.grid.backend {
            Backend::Local => format!("; {jobs} job(s) × {threads} thread(s)"),
            Backend::Slurm => String::new(),
        }
    );
    let interrupted = match a.grid.backend {
        Backend::Local => {
            let bar = PoolBar::new(&plan, local::needed_targets(&plan, &todo).len() + todo.len());
            local::run(store, &plan, &todo, jobs, &bar);
            bar.finish();
            super::signals::interrupted()
        }
        Backend::Slurm => {
            let sub = slurm::Submission::prepare(store, &plan, &todo)?;
            let ids = sub.submit()?;
            outln!("submitted: {}", ids.describe());
            if a.no_wait {
                outln!(
                    "not waiting: `lh-host workflow status --experiment {0}` follows it, `lh-host workflow collect --experiment {0}` gathers the results",
                    plan.experiment
                );
                return Ok(Exit::Success);
            }
            super::signals::install();
            slurm::wait(store, &plan, &sub, &ids, &mut |line| outln!("{line}"), &|| super::signals::interrupted().is_some())?;
            super::signals::interrupted()
        }
    };
    let rows = finish(store, &plan)?;
    if a.promote && interrupted.is_none() {
        let out = promote::experiment_gallery(store, &plan.experiment, &rows, &plots)?;
        for n in &out.notes {
            outln!("note: {n}");
        }
        outln!("gallery: {} ({} figures)", out.html.display(), out.figures);
    }
    if let Some(code) = interrupted {
        return Ok(Exit::Interrupted(code));
    }
    Ok(if Counts::of(&rows).failed > 0 { Exit::SomeFailed } else { Exit::Success })
}

/// Where run `r` of `plan` stands.
fn state<'a>(store: &Store, plan: &Plan, ledger: &'a Ledger, r: usize) -> RunState<'a> {
    ledger.state_in(store, &plan.experiment, &plan.runs[r].key)
}

/// Prints the plan: targets, runs and where each stands.
fn print_plan(store: &Store, plan: &Plan, ledger: &Ledger, file: &Path, jobs: usize) -> Result<()> {
    outln!("plan of experiment `{}` ({}): {} target(s), {} runs", plan.experiment, file.display(), plan.targets.len(), plan.runs.len());
    if jobs > 0 {
        outln!("local pool: {jobs} job(s) × {} thread(s)", plan.threads);
    }
    outln!("targets:");
    for t in &plan.targets {
        let stored = if target::find(store, &t.id)?.is_some() { "stored" } else { "to build" };
        outln!("  {}  {stored}  (targets[{}])", t.id, t.entries.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "));
    }
    outln!("runs:");
    outln!("  {:<16}  {:<16}  {:<12}  {:>6}  {:<12}  state", "key", "target", "sampler", "seed", "config");
    let mut to_run = 0;
    for (r, run) in plan.runs.iter().enumerate() {
        let st = state(store, plan, ledger, r);
        let word = match &st {
            RunState::Done(f) => format!("done: skipped ({})", f.dir.display()),
            RunState::Incomplete(f) => format!("incomplete: redone ({})", f.dir.display()),
            RunState::Failed { error, .. } => format!("failed: redone (last error: {error})"),
            RunState::New => "new".into(),
        };
        if !matches!(st, RunState::Done(_)) {
            to_run += 1;
        }
        outln!("  {:<16}  {:<16}  {:<12}  {:>6}  {:<12}  {word}", run.key, run.target_id, run.label(), run.seed, run.config_hash);
    }
    outln!("{} runs: {} done, {to_run} to run", plan.runs.len(), plan.runs.len() - to_run);
    Ok(())
}

/// Writes llc_runs.csv and prints the summary table; returns the rows.
fn finish(store: &Store, plan: &Plan) -> Result<Vec<LlcRow>> {
    let rows = collect::rows(store, plan)?;
    let path = store.experiment_dir(&plan.experiment)?.join(LLC_RUNS_CSV);
    collect::write_csv(&rows, &path)?;
    print_summary(&rows);
    outln!("wrote {}", path.display());
    Ok(rows)
}

/// The summary table of `rows` and their counts.
fn print_summary(rows: &[LlcRow]) {
    // λ̂ and R̂ carry a combining mark: one char more than they display.
    outln!("{:<16}  {:<12}  {:>6}  {:>21}  {:>8}  {:>7}  {:>8}  status", "target", "sampler", "seed", "λ̂ ± SE", "R̂", "ESS", "s");
    for r in rows {
        let llc = match (r.llc, r.se) {
            (Some(l), Some(se)) => format!("{l:.4} ± {se:.4}"),
            _ => "-".into(),
        };
        let status = if r.error.is_empty() { r.status.clone() } else { format!("{}: {}", r.status, r.error) };
        outln!(
            "{:<16}  {:<12}  {:>6}  {:>20}  {:>7}  {:>7}  {:>8}  {status}",
            r.target,
            r.label(),
            r.seed,
            llc,
            fmt_opt(r.rhat, 4),
            fmt_opt(r.ess_bulk, 0),
            fmt_opt(r.wall_s, 1)
        );
    }
    let c = Counts::of(rows);
    outln!("{} runs: {} complete, {} incomplete, {} failed, {} not run", rows.len(), c.complete, c.incomplete, c.failed, c.not_run);
}

fn exec_status(store: &Store, exp: &str) -> Result<Exit> {
    let plan = Plan::latest(store, exp)?;
    let rows = collect::rows(store, &plan)?;
    print_summary(&rows);
    for line in slurm::status_lines(store, exp)? {
        outln!("{line}");
    }
    Ok(Exit::Success)
}

fn exec_collect(store: &Store, exp: &str) -> Result<Exit> {
    let plan = Plan::latest(store, exp)?;
    if !slurm::settle_latest(store, exp)? {
        outln!("note: SLURM jobs of `{exp}` are still queued or running: their runs show as not run yet");
    }
    let rows = finish(store, &plan)?;
    Ok(if Counts::of(&rows).failed > 0 { Exit::SomeFailed } else { Exit::Success })
}
