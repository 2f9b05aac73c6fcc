//! The command line: one file per command, each an args struct and an
//! `exec`. Parsed arguments flow in; the library does the work; every line
//! printed and every progress bar drawn is drawn here.

#[macro_use]
mod out;

mod bench;
mod build;
mod compare;
mod devices;
mod diagnose;
mod diagnose_target;
mod exit;
mod format;
mod grid;
mod import;
mod monitor;
mod plugins;
mod pool_bar;
mod promote;
mod sample;
mod signals;
mod store;
mod targets;
mod threads;
mod truth;
mod tune;
mod workflow;
mod workflow_task;

use clap::{Parser, Subcommand};
use lh_host::store::Store;

pub use self::exit::{Exit, ERROR_EXIT};

#[derive(Parser)]
#[command(name = "lh-host", version, about = "Estimate the Local Learning Coefficient of small neural networks")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stage A: build the targets of an experiment file (data + trained w*) into the store.
    Build(build::Args),
    /// Stage B: run a sampler plugin on a stored target; writes traces.npz and manifest.json.
    Sample(sample::SampleArgs),
    /// The main job in one command: build or reuse a target, sample it, report λ̂ ± SE, R̂ and ESS.
    Run(sample::RunArgs),
    /// List the sampler plugins found: name, version, API version, path, help and default config.
    Plugins,
    /// Stage C: analyse a run directory: analysis.json (λ̂ per chain and pooled, SE and
    /// block-bootstrap SE, R̂/ESS, sampler statistics, work, WNV) and diagnostics/*.png.
    Diagnose(diagnose::Args),
    /// Stage C for every run of an experiment (optionally only some plugins' runs).
    DiagnoseExperiment(diagnose::ExperimentArgs),
    /// A built target's figures: train/test loss curves and student vs teacher
    /// predictions, in $LH_HOME/target-diagnostics/<id>/.
    DiagnoseTarget(diagnose_target::Args),
    /// `diagnose-target` for every target of an experiment, with a summary count.
    DiagnoseTargets(diagnose_target::ExperimentArgs),
    /// One row per (target, plugin) of an experiment: λ̂ ± SE, R̂, ESS/s, WNV; writes
    /// compare.csv and compare.png in the experiment's folder.
    Compare(compare::Args),
    /// List or inspect the targets in the store.
    Targets(targets::Args),
    /// Store housekeeping: `store gc` removes what killed processes left behind.
    Store(store::Args),
    /// Import a network trained elsewhere as a target (see README: "Importing a network").
    Import(import::Args),
    /// The analytic learning coefficient of a deep linear network (Aoyagi 2024).
    Truth(truth::Args),
    /// Stage D: an experiment file's grid (targets × samplers × seeds) on a local pool or
    /// SLURM (`workflow sample`), where it stands (`status`), its results (`collect`).
    Workflow(workflow::Args),
    /// Stage D: galleries of run figures (`promote gallery`) and single figures (`promote single`).
    Promote(promote::Args),
    /// Throughput of the full-batch loss-and-gradient (chain-gradients/s, GFLOP/s).
    Bench(bench::Args),
    /// List the GPU adapters wgpu finds (name, API, device type, f64 support).
    Devices(devices::Args),
    /// Internal: load one plugin library and exit (0: it loads, 2: a clean error), so
    /// that a library that crashes while loading crashes this child, not the host.
    #[command(name = "__probe-plugin", hide = true)]
    ProbePlugin(plugins::ProbeArgs),
    /// Internal: one SLURM array task of a workflow plan.
    #[command(name = "__workflow-task", hide = true)]
    WorkflowTask(workflow_task::Args),
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    let command = match cli.command {
        Command::ProbePlugin(a) => return plugins::exec_probe(a),
        // Its store is the plan's.
        Command::WorkflowTask(a) => return workflow_task::exec(a),
        other => other,
    };
    let store = Store::from_env()?;
    if let Ok(exe) = std::env::current_exe() {
        lh_host::sample::probe::isolate(exe, store.cache_dir().join("plugin-probes"));
    }
    match command {
        Command::Build(a) => build::exec(&store, a),
        Command::Sample(a) => sample::exec_sample(&store, a),
        Command::Run(a) => sample::exec_run(&store, a),
        Command::Plugins => plugins::exec(),
        Command::Diagnose(a) => diagnose::exec(a),
        Command::DiagnoseExperiment(a) => diagnose::exec_experiment(&store, a),
        Command::DiagnoseTarget(a) => diagnose_target::exec(&store, a),
        Command::DiagnoseTargets(a) => diagnose_target::exec_experiment(&store, a),
        Command::Compare(a) => compare::exec(&store, a),
        Command::Targets(a) => targets::exec(&store, a),
        Command::Store(a) => store::exec(&store, a),
        Command::Import(a) => import::exec(&store, a),
        Command::Truth(a) => truth::exec(&store, a),
        Command::Bench(a) => bench::exec(a),
        Command::Devices(a) => devices::exec(a),
        Command::Workflow(a) => workflow::exec(&store, a),
        Command::Promote(a) => promote::exec(a),
        Command::ProbePlugin(_) | Command::WorkflowTask(_) => unreachable!("handled above"),
    }
}
