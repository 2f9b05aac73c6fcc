//! `lh-host`: the Lambda-Hat command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use lh_host::backend::{BackendFactory, BackendKind};
use lh_host::config::{self, Precision};
use lh_host::store::Store;
use lh_host::analysis::{self, Mode};
use lh_host::{backend, bench, experiment, plugins, sample, target, target_diagnostics, truth};

#[derive(Parser)]
#[command(name = "lh-host", version, about = "Estimate the Local Learning Coefficient of small neural networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stage A: build the targets of an experiment file (data + trained w*) into the store.
    Build {
        /// Experiment file (RON), e.g. config/experiments/default.ron.
        #[arg(long)]
        config: PathBuf,
        /// Experiment to link the targets into (default: the file's `name`).
        #[arg(long)]
        experiment: Option<String>,
        /// CPU threads (default: LH_THREADS or all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Stage B: run a sampler plugin on a stored target; writes traces.npz and manifest.json.
    Sample {
        /// Target id (or a unique prefix).
        #[arg(long)]
        target: String,
        #[command(flatten)]
        args: SampleArgs,
    },
    /// The main job in one command: build or reuse a target, sample it, report λ̂ ± SE, R̂ and ESS.
    Run {
        /// Experiment file whose first target is used (default: the built-in config/experiments/default.ron).
        #[arg(long = "target-config", conflicts_with = "target")]
        target_config: Option<PathBuf>,
        /// Use this stored target instead.
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        args: SampleArgs,
    },
    /// List the sampler plugins found: name, version, API version, path, help and default config.
    Plugins,
    /// Stage C: analyse a run directory: analysis.json (λ̂ per chain and pooled, SE and
    /// block-bootstrap SE, R̂/ESS, sampler statistics, work, WNV) and diagnostics/*.png.
    Diagnose {
        /// The run directory (printed by `sample` and `run`).
        #[arg(long = "run-dir")]
        run_dir: PathBuf,
        /// light: every figure but the WNV curve; full: also wnv.png.
        #[arg(long, value_enum, default_value_t = Mode::Light)]
        mode: Mode,
    },
    /// Stage C for every run of an experiment (optionally only some plugins' runs).
    DiagnoseExperiment {
        #[arg(long)]
        experiment: String,
        /// Only the runs of these plugins, e.g. --samplers hmc,mclmc.
        #[arg(long, value_delimiter = ',')]
        samplers: Vec<String>,
        #[arg(long, value_enum, default_value_t = Mode::Light)]
        mode: Mode,
    },
    /// A built target's figures: train/test loss curves and student vs teacher
    /// predictions, in $LH_HOME/target-diagnostics/<id>/.
    DiagnoseTarget {
        /// Target id (or a unique prefix).
        #[arg(long)]
        target: String,
    },
    /// `diagnose-target` for every target of an experiment, with a summary count.
    DiagnoseTargets {
        #[arg(long)]
        experiment: String,
    },
    /// One row per (target, plugin) of an experiment: λ̂ ± SE, R̂, ESS/s, WNV; writes
    /// compare.csv and compare.png in the experiment's folder.
    Compare {
        #[arg(long)]
        experiment: String,
    },
    /// List or inspect the targets in the store.
    Targets {
        #[command(subcommand)]
        command: TargetsCommand,
    },
    /// Import a network trained elsewhere as a target (see README: "Importing a network").
    Import {
        /// The .npz holding X, Y, w_star, widths, activation, bias (and optionally X_test, Y_test, beta, gamma, loss).
        #[arg(long)]
        npz: PathBuf,
        /// Experiment to link the target into.
        #[arg(long, default_value = "dev")]
        experiment: String,
    },
    /// The analytic learning coefficient of a deep linear network (Aoyagi 2024).
    Truth {
        /// A deep-linear target (identity activation, no biases, deep_linear teacher).
        #[arg(long, conflicts_with_all = ["sizes", "rank"])]
        target: Option<String>,
        /// Layer sizes H_0,…,H_L (input, hidden…, output), e.g. 5,3,5.
        #[arg(long, value_delimiter = ',', requires = "rank")]
        sizes: Option<Vec<usize>>,
        /// Rank of the true product W_L⋯W_1.
        #[arg(long)]
        rank: Option<usize>,
    },
    /// Throughput of the full-batch loss-and-gradient (chain-gradients/s, GFLOP/s).
    Bench {
        /// Model preset: small, base, relu_8_32_32, or a .ron path.
        #[arg(long, default_value = "base")]
        preset: String,
        /// Chains per evaluation.
        #[arg(long, default_value_t = 4)]
        chains: usize,
        /// Training rows (default: 20000 for base, 1000 for relu_8_32_32, 100 for small).
        #[arg(long)]
        n: Option<usize>,
        /// Backend to measure: auto takes a hardware GPU when there is one (for f64 only
        /// if it has SHADER_F64), else the CPU.
        #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
        backend: BackendKind,
        /// Precision (default: both; f32 alone for wgpu on an adapter without SHADER_F64).
        #[arg(long, value_enum)]
        precision: Option<Precision>,
        /// Run the series C ∈ {1, 4, 16, 64} × n ∈ {10³, 10⁴, 10⁵} instead.
        #[arg(long)]
        series: bool,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 7)]
        reps: usize,
        /// CPU threads (default: LH_THREADS or all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Measure instead the host-side cost of a `logdensity_and_grad` call
        /// through the plugin ABI vs a direct backend call (quadratic target, --n = D).
        #[arg(long)]
        abi_overhead: bool,
    },
    /// List the GPU adapters wgpu finds (name, API, device type, f64 support).
    Devices {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Options shared by `sample` and `run`.
#[derive(clap::Args)]
struct SampleArgs {
    /// Sampler plugin: a name (found in LH_PLUGIN_PATH or beside lh-host) or a path to its library.
    #[arg(long, default_value = "hmc")]
    plugin: String,
    /// Plugin config file (RON struct of overrides, e.g. `(draws: 2000)`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one plugin config key (RON value), repeatable: --set draws=2000.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Number of chains.
    #[arg(long, default_value_t = 4)]
    chains: usize,
    /// Run seed (each chain gets its own stream from it).
    #[arg(long, default_value_t = 12345)]
    seed: u64,
    /// Evaluation backend: auto picks a hardware GPU when there is one (for f64 only
    /// if it has SHADER_F64), else the CPU.
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    backend: BackendKind,
    /// Arithmetic precision (default: the target's training precision; giving
    /// another one is how a mismatch is asked for, and the manifest records both).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Experiment the run is filed under.
    #[arg(long)]
    experiment: Option<String>,
    /// CPU threads (default: LH_THREADS or all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Then run `diagnose` on the run directory (analysis.json and plots).
    #[arg(long)]
    diagnose: bool,
}

#[derive(Subcommand)]
enum TargetsCommand {
    /// One line per target in the store.
    Ls,
    /// A target's meta.json, verified, and where its files are.
    Show {
        /// Target id (or a unique prefix).
        id: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let store = Store::from_env();
    match cli.command {
        Command::Build { config, experiment, threads } => build(&store, &config, experiment, threads),
        Command::Targets { command: TargetsCommand::Ls } => targets_ls(&store),
        Command::Targets { command: TargetsCommand::Show { id } } => targets_show(&store, &id),
        Command::Import { npz, experiment } => {
            let b = target::import(&store, &npz, &experiment, backend::cpu::default_threads())?;
            println!("{}  imported  D={} n={} L0={:.6e}", b.id, b.meta.d, b.meta.n, b.meta.l0);
            Ok(())
        }
        Command::Truth { target, sizes, rank } => truth_cmd(&store, target, sizes, rank),
        Command::Sample { target, args } => {
            let t = target::load(&store, &target)?;
            run_sampler(&store, &t, args, "dev").map(|_| ())
        }
        Command::Run { target_config, target, args } => run_cmd(&store, target_config, target, args),
        Command::Plugins => plugins_cmd(),
        Command::Diagnose { run_dir, mode } => {
            let (path, a) = analysis::diagnose(&run_dir, mode)?;
            print_analysis(&path, &a);
            Ok(())
        }
        Command::DiagnoseExperiment { experiment, samplers, mode } => diagnose_experiment(&store, &experiment, &samplers, mode),
        Command::DiagnoseTarget { target } => {
            let r = target_diagnostics::diagnose(&store, &target)?;
            print_target_report(&r);
            Ok(())
        }
        Command::DiagnoseTargets { experiment } => diagnose_targets(&store, &experiment),
        Command::Compare { experiment } => compare(&store, &experiment),
        Command::Bench { abi_overhead: true, chains, n, json, .. } => {
            let r = bench::abi_overhead(n.unwrap_or(1000), chains, 100_000)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "D = {}, C = {}: direct {:.3} µs/call, through the ABI {:.3} µs/call (overhead {:.3} µs, including the localisation term)",
                    r.d, r.chains, r.direct_us, r.via_abi_us, r.via_abi_us - r.direct_us
                );
            }
            Ok(())
        }
        Command::Devices { json } => devices(json),
        Command::Bench { preset, chains, n, backend: kind, precision, series, reps, threads, json, abi_overhead: false } => {
            let spec = config::model_preset(&preset)?;
            let threads = threads.unwrap_or_else(backend::cpu::default_threads);
            let factory = BackendFactory::new(kind, threads)?;
            let precisions = precision.map_or_else(|| factory.precisions(), |p| vec![p]);
            for note in precisions.iter().filter_map(|&p| factory.fallback_note(p)) {
                eprintln!("note: {note}");
            }
            let default_n = match preset.as_str() {
                "small" => 100,
                "relu_8_32_32" => 1000,
                _ => 20_000,
            };
            let grid: Vec<(usize, usize)> = if series {
                [1, 4, 16, 64].iter().flat_map(|&c| [1_000, 10_000, 100_000].map(|n| (c, n))).collect()
            } else {
                vec![(chains, n.unwrap_or(default_n))]
            };
            if !json {
                println!("{:<14} {:<8} {:>4} {:>7} {:>7} {:>5} {:>12} {:>16} {:>9}", "preset", "backend", "prec", "D", "n", "C", "s/eval", "chain-grads/s", "GFLOP/s");
            }
            for (c, n) in grid {
                for &p in &precisions {
                    let r = bench::run(&preset, &spec, n, c, p, &factory, reps)?;
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        println!(
                            "{:<14} {:<8} {:>4} {:>7} {:>7} {:>5} {:>12.3e} {:>16.1} {:>9.1}",
                            r.preset, r.backend, r.precision, r.d, r.n, r.chains, r.seconds, r.chain_grads_per_s, r.gflops
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

/// `v` with `digits` decimals, or `-` when it does not apply.
fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

/// `v` in scientific notation with `digits` decimals, or `-`.
fn fmt_sci(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$e}"))
}

fn print_analysis(path: &std::path::Path, a: &analysis::Analysis) {
    println!(
        "λ̂ = {:.4} ± {:.4} (bootstrap ± {}, b = {})  ({} chains × {} draws after burn-in {})",
        a.llc.mean,
        a.llc.se,
        fmt_opt(a.llc_bootstrap.se, 4),
        a.llc_bootstrap.block_len,
        a.chains,
        a.draws - a.burn_in,
        a.burn_in
    );
    println!("  per chain: {}", a.llc.per_chain.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(", "));
    for (name, t) in &a.traces {
        println!("  {name:<16} mean {:<12.6} R̂ {:<8} ESS bulk {:<10} tail {}", t.mean, fmt_opt(t.rhat, 4), fmt_opt(t.ess_bulk, 1), fmt_opt(t.ess_tail, 1));
    }
    if let Some(acc) = &a.acceptance {
        println!("  acceptance rate: {:.4}", acc.mean);
    }
    if let Some(d) = a.divergences {
        println!("  divergences after burn-in: {d}");
    }
    if let Some(e) = &a.energy_change {
        println!("  energy change: mean {:.3e}, sd {:.3e}, max |ΔE| {:.3e}", e.mean, e.sd, e.max_abs);
    }
    if let Some(e) = &a.elbo {
        println!("  final ELBO: {:.4}", e.final_mean);
    }
    println!(
        "  work: {:.1} gradient evaluations (FGE), {:.2} s; ESS/s {}; WNV {} (× grad evals), {} (× s)",
        a.work.grad_evals_fge,
        a.work.seconds,
        fmt_opt(a.ess_per_second, 1),
        fmt_opt(a.wnv.grad_evals, 4),
        fmt_opt(a.wnv.seconds, 6)
    );
    for n in &a.notes {
        println!("  note: {n}");
    }
    println!("wrote {} and diagnostics/{}", path.display(), a.plots.join(", diagnostics/"));
}

fn diagnose_experiment(store: &Store, exp: &str, samplers: &[String], mode: Mode) -> Result<()> {
    let dirs = experiment::run_dirs(store, exp, samplers)?;
    let n = dirs.len();
    let mut failed = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let name = dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        match analysis::diagnose(dir, mode) {
            Ok((_, a)) => println!(
                "[{}/{n}] {name}: λ̂ = {:.4} ± {:.4}, R̂ {}, ESS {:.0}; {} figures",
                i + 1,
                a.llc.mean,
                a.llc.se,
                fmt_opt(a.llc.rhat, 4),
                a.llc.ess_bulk,
                a.plots.len()
            ),
            Err(e) => {
                println!("[{}/{n}] FAILED: {name} - {e}", i + 1);
                failed.push(name);
            }
        }
    }
    println!("diagnosed {} of {n} runs in experiment `{exp}`", n - failed.len());
    if !failed.is_empty() {
        bail!("{} of {n} runs could not be diagnosed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

fn print_target_report(r: &target_diagnostics::Report) {
    println!(
        "{}: student vs teacher MSE train {:.4e}, test {}; wrote {} in {}",
        r.target_id,
        r.mse_vs_teacher_train,
        fmt_sci(r.mse_vs_teacher_test, 4),
        r.plots.join(", "),
        r.dir.display()
    );
}

fn diagnose_targets(store: &Store, exp: &str) -> Result<()> {
    let ids = target_diagnostics::experiment_targets(store, exp)?;
    let n = ids.len();
    println!("[diagnose-targets] Processing {n} targets in experiment '{exp}'");
    let mut failed = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        match target_diagnostics::diagnose(store, id) {
            Ok(r) => {
                print!("[diagnose-targets] [{}/{n}] ", i + 1);
                print_target_report(&r);
            }
            Err(e) => {
                println!("[diagnose-targets] [{}/{n}] FAILED: {id} - {e}", i + 1);
                failed.push(id.as_str());
            }
        }
    }
    println!("[diagnose-targets] Completed: {} success, {} failed out of {n} targets", n - failed.len(), failed.len());
    if !failed.is_empty() {
        println!("Failed targets:");
        for id in failed {
            println!("  • {id}");
        }
    }
    Ok(())
}

fn compare(store: &Store, exp: &str) -> Result<()> {
    let c = experiment::compare(store, exp)?;
    for (dir, e) in &c.failed {
        println!("skipped {}: {e}", dir.display());
    }
    if c.rows.is_empty() {
        bail!("experiment `{exp}` has no run that can be analysed");
    }
    // Files first, so that a closed stdout cannot leave them unwritten.
    let dir = experiment::experiment_dir(store, exp)?;
    experiment::write_csv(&c.rows, &dir.join("compare.csv"))?;
    experiment::plot(&c.rows, exp, &dir.join("compare.png"))?;
    println!(
        // λ̂ and R̂ carry a combining mark: one char more than they display.
        "{:<18} {:<10} {:>4} {:>23} {:>9} {:>9} {:>9} {:>10} {:>11} {:>11}",
        "target", "plugin", "runs", "λ̂ ± SE", "SE boot", "R̂", "ESS", "ESS/s", "WNV·grad", "WNV·s"
    );
    for r in &c.rows {
        println!(
            "{:<18} {:<10} {:>4} {:>22} {:>9} {:>8} {:>9.1} {:>10} {:>11} {:>11}",
            r.target_id,
            r.plugin,
            r.runs,
            format!("{:.4} ± {:.4}", r.llc, r.se),
            fmt_opt(r.se_bootstrap, 4),
            fmt_opt(r.rhat, 4),
            r.ess_bulk,
            fmt_opt(r.ess_per_second, 1),
            fmt_sci(r.wnv_grad_evals, 3),
            fmt_sci(r.wnv_seconds, 3)
        );
    }
    println!("wrote {} and {}", dir.join("compare.csv").display(), dir.join("compare.png").display());
    Ok(())
}

fn devices(json: bool) -> Result<()> {
    let all = backend::wgpu::list_adapters();
    if json {
        for a in &all {
            println!("{}", serde_json::to_string(a)?);
        }
        return Ok(());
    }
    if all.is_empty() {
        println!("wgpu finds no adapter: --backend auto uses the CPU, --backend wgpu fails");
        return Ok(());
    }
    println!("{:<40} {:<8} {:<14} {:<4} {:<7} driver", "adapter", "api", "type", "f64", "compute");
    for a in &all {
        let yn = |b: bool| if b { "yes" } else { "no" };
        println!("{:<40} {:<8} {:<14} {:<4} {:<7} {}", a.name, a.backend, a.device_type, yn(a.shader_f64), yn(a.compute), a.driver);
    }
    match all.iter().find(|a| a.hardware && a.compute) {
        Some(a) if a.shader_f64 => println!("--backend auto picks {} for f32 and f64", a.name),
        Some(a) => println!("--backend auto picks {} for f32 (it has no f64 in shaders: f64 runs on the CPU)", a.name),
        None => println!("--backend auto picks the CPU (no hardware GPU adapter)"),
    }
    Ok(())
}

fn build(store: &Store, path: &std::path::Path, experiment: Option<String>, threads: Option<usize>) -> Result<()> {
    let exp = config::load_experiment(path)?;
    let name = experiment.unwrap_or_else(|| exp.config.name.clone());
    let threads = threads.unwrap_or_else(backend::cpu::default_threads);
    for (i, cfg) in exp.targets.iter().enumerate() {
        let steps = match cfg {
            config::TargetRecipe::Mlp(c) => c.training.steps,
            config::TargetRecipe::Quadratic(_) => 0,
        };
        let bar = indicatif::ProgressBar::new(steps as u64).with_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps ({elapsed})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("target {}/{}: training", i + 1, exp.targets.len()));
        let built = target::build(store, cfg, &name, threads, |done, _| bar.set_position(done as u64))
            .with_context(|| format!("{}: targets[{i}]", path.display()))?;
        bar.finish_and_clear();
        let m = &built.meta;
        let how = if built.trained {
            let t = m.training.as_ref().map_or(0.0, |t| t.wall_s);
            format!("built in {t:.1} s")
        } else {
            "already in the store".to_string()
        };
        println!(
            "{}  D={} n={} L0={:.6e} β={:.5} γ={}  {how}  -> {}",
            built.id,
            m.d,
            m.n,
            m.l0,
            m.beta,
            m.gamma,
            store.object_dir(&built.hash).display()
        );
    }
    Ok(())
}

fn targets_ls(store: &Store) -> Result<()> {
    let all = target::list(store)?;
    if all.is_empty() {
        println!("no targets in {}", store.home.display());
        return Ok(());
    }
    println!("{:<18} {:<9} {:>7} {:>7} {:<22} {:<9} {:>12}  created", "id", "kind", "D", "n", "sizes", "act", "L0");
    for (_, hash) in all {
        let m = store.load_meta::<target::TargetMeta>(&hash)?.meta;
        let (sizes, act) = match m.source.mlp() {
            Some(spec) => (
                spec.sizes().iter().map(ToString::to_string).collect::<Vec<_>>().join("-"),
                format!("{:?}", spec.activation).to_lowercase(),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "{:<18} {:<9} {:>7} {:>7} {:<22} {:<9} {:>12.5e}  {}",
            m.target_id,
            m.source.kind(),
            m.d,
            m.n,
            sizes,
            act,
            m.l0,
            m.created
        );
    }
    Ok(())
}

fn targets_show(store: &Store, id: &str) -> Result<()> {
    let t = target::load(store, id)?;
    println!("{}", serde_json::to_string_pretty(&store.load_meta::<serde_json::Value>(&t.hash)?)?);
    println!("# files: {}", store.object_dir(&t.hash).join("payload").display());
    Ok(())
}

fn truth_cmd(store: &Store, target_id: Option<String>, sizes: Option<Vec<usize>>, rank: Option<usize>) -> Result<()> {
    let (sizes, rank) = match (target_id, sizes, rank) {
        (Some(id), _, _) => {
            let t = target::load(store, &id)?;
            let target::TargetModel::Mlp { spec, .. } = &t.model else {
                bail!("target {id} is quadratic: its learning coefficient is D/2 in the limit, not a deep linear network's");
            };
            let target::TargetSource::Built(cfg) = &t.meta.source else {
                bail!("target {id} was imported: its true rank is unknown; use --sizes and --rank");
            };
            let config::TeacherConfig::DeepLinear { rank, .. } = cfg.teacher else {
                bail!("target {id} has no deep_linear teacher, so it has no analytic learning coefficient");
            };
            if spec.activation != lh_host::model::Activation::Identity || spec.bias {
                bail!("target {id} is not a deep linear network (its model needs activation identity and bias false)");
            }
            (spec.sizes(), rank)
        }
        (None, Some(s), Some(r)) => (s, r),
        _ => bail!("give --target ID, or --sizes H0,…,HL with --rank R"),
    };
    let lambda = truth::dln_learning_coefficient(&sizes, rank)?;
    println!("{lambda}");
    Ok(())
}

/// Raised by Ctrl-C: plugins see it through `should_stop()`. A second Ctrl-C exits at once.
fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping: finishing the current draw and keeping the traces (Ctrl-C again to abort)");
    });
    flag
}

fn run_sampler(store: &Store, t: &target::Target, a: SampleArgs, default_exp: &str) -> Result<sample::Outcome> {
    let factory = BackendFactory::new(a.backend, a.threads.unwrap_or_else(backend::cpu::default_threads))?;
    let precision = a.precision.unwrap_or(t.meta.precision);
    if let Some(note) = factory.fallback_note(precision) {
        eprintln!("note: {note}");
    }
    let path = plugins::resolve(&a.plugin)?;
    let plugin = plugins::load(&path)?;
    let config = sample::resolve_config(&plugin.info.default_config, &plugin.info.name, a.config.as_deref(), &a.sets)?;
    let req = sample::Request {
        target: t,
        plugin,
        config,
        chains: a.chains,
        seed: a.seed,
        precision,
        backends: &factory,
        experiment: a.experiment.unwrap_or_else(|| default_exp.to_string()),
        stop: stop_flag(),
        show_progress: true,
    };
    if a.chains == 0 {
        bail!("--chains must be ≥ 1");
    }
    let out = sample::run(store, req)?;
    let m = &out.manifest;
    match &m.llc {
        Some(e) => {
            println!(
                "λ̂ = {:.4} ± {:.4}  (nβ = {:.4}, L0 = {:.6e}; per chain: {})",
                e.mean,
                e.se,
                e.n_beta,
                e.l0,
                e.per_chain.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ")
            );
            match e.rhat {
                Some(r) => println!("R̂(L_n) = {r:.4}, ESS bulk = {:.0}, tail = {:.0}", e.ess_bulk, e.ess_tail.unwrap_or(f64::NAN)),
                None => println!("independent draws: {} in all", e.ess_bulk),
            }
        }
        None => println!("no draws after burn-in: no estimate"),
    }
    println!(
        "{} {}: {} chains × {} draws (burn-in {}), {:.1} s, per chain {:.1} gradient and {} loss evaluations{}",
        m.plugin.name,
        m.plugin.version,
        m.chains,
        m.draws,
        m.burn_in,
        m.timings.get("total").copied().unwrap_or(0.0),
        m.work.grad_evals_fge,
        m.work.loss_evals,
        if m.status == sample::Status::Complete { String::new() } else { " (INCOMPLETE: stopped early)".into() }
    );
    println!("run: {}", out.dir.display());
    if a.diagnose {
        let (path, analysis) = analysis::diagnose(&out.dir, Mode::Light)?;
        println!("diagnostics: {} and diagnostics/{}", path.display(), analysis.plots.join(", diagnostics/"));
    }
    Ok(out)
}

/// The default experiment, built into the binary so `run` works from anywhere.
const DEFAULT_EXPERIMENT: &str = include_str!("../../config/experiments/default.ron");

fn run_cmd(store: &Store, target_config: Option<PathBuf>, target_id: Option<String>, args: SampleArgs) -> Result<()> {
    let threads = args.threads.unwrap_or_else(backend::cpu::default_threads);
    let (t, exp) = match target_id {
        Some(id) => (target::load(store, &id)?, "dev".to_string()),
        None => {
            let exp = match &target_config {
                Some(p) => config::load_experiment(p)?,
                None => config::parse_experiment(DEFAULT_EXPERIMENT, std::path::Path::new("config/experiments/default.ron"))?,
            };
            let recipe = exp.targets.first().context("the experiment has no targets")?;
            let built = target::build(store, recipe, &exp.config.name, threads, |_, _| {})?;
            println!(
                "target {} (D = {}, n = {}, L0 = {:.6e}){}",
                built.id,
                built.meta.d,
                built.meta.n,
                built.meta.l0,
                if built.trained { ", built now" } else { ", from the store" }
            );
            (target::load(store, &built.id)?, exp.config.name.clone())
        }
    };
    run_sampler(store, &t, args, &exp).map(|_| ())
}

fn plugins_cmd() -> Result<()> {
    let paths = plugins::discover_paths();
    if paths.is_empty() {
        println!("no plugins found in: {}", plugins::search_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    for p in paths {
        match plugins::load(&p) {
            Ok(l) => {
                let i = &l.info;
                println!("{} {} (plugin API {})\n  path: {}\n  {}\n  defaults: {}\n", i.name, i.version, i.api_version, i.path.display(), i.help, i.default_config);
            }
            Err(e) => println!("(unloadable) {e}\n"),
        }
    }
    Ok(())
}
