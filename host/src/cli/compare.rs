//! `lh-host compare`: the ablation table of an experiment, and its files.

use anyhow::{bail, Result};
use lh_host::diagnose::compare;
use lh_host::store::layout::{COMPARE_CSV, COMPARE_PNG};
use lh_host::store::Store;

use super::exit::Exit;
use super::format::{fmt_opt, fmt_sci};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    experiment: String,
}

pub fn exec(store: &Store, a: Args) -> Result<Exit> {
    let exp = &a.experiment;
    let c = compare::compare(store, exp)?;
    for (dir, e) in &c.failed {
        outln!("skipped {}: {e}", dir.display());
    }
    if c.rows.is_empty() {
        bail!("experiment `{exp}` has no run that can be analysed");
    }
    // Files first, so that a closed stdout cannot leave them unwritten.
    let dir = store.existing_experiment_dir(exp)?;
    compare::write_csv(&c.rows, &dir.join(COMPARE_CSV))?;
    compare::plot(&c.rows, exp, &dir.join(COMPARE_PNG))?;
    outln!(
        // λ̂ and R̂ carry a combining mark: one char more than they display.
        "{:<18} {:<10} {:<12} {:>4} {:>23} {:>9} {:>9} {:>9} {:>10} {:>11} {:>11}",
        "target",
        "plugin",
        "restrict",
        "runs",
        "λ̂ ± SE",
        "SE boot",
        "R̂",
        "ESS",
        "ESS/s",
        "WNV·grad",
        "WNV·s"
    );
    for r in &c.rows {
        outln!(
            "{:<18} {:<10} {:<12} {:>4} {:>22} {:>9} {:>8} {:>9.1} {:>10} {:>11} {:>11}",
            r.target_id,
            r.plugin,
            if r.restriction.is_empty() { "-" } else { &r.restriction },
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
    for s in compare::layer_sums(&c.rows) {
        let layers: Vec<String> = s.layers.iter().map(|k| format!("layer:{k}")).collect();
        let whole = s.whole.map_or_else(|| "no unrestricted run".to_string(), |(m, se)| format!("whole network {m:.4} ± {se:.4}"));
        outln!("{} {}: Σ λ̂ over {} = {:.4} ± {:.4}; {whole}", s.target_id, s.plugin, layers.join(", "), s.llc, s.se);
    }
    outln!("wrote {} and {}", dir.join(COMPARE_CSV).display(), dir.join(COMPARE_PNG).display());
    Ok(Exit::Success)
}
