//! `lh-host import`: a network trained elsewhere as a target.

use std::path::PathBuf;

use anyhow::Result;
use lh_host::backend::cpu::default_threads;
use lh_host::store::Store;
use lh_host::target;

use super::exit::Exit;

#[derive(clap::Args)]
pub struct Args {
    /// The .npz holding X, Y, w_star, widths, activation, bias (and optionally X_test, Y_test, beta, gamma, loss).
    #[arg(long)]
    npz: PathBuf,
    /// Experiment to link the target into.
    #[arg(long, default_value = "dev")]
    experiment: String,
}

pub fn exec(store: &Store, a: Args) -> Result<Exit> {
    let b = target::import(store, &a.npz, &a.experiment, default_threads()?)?;
    outln!("{}  imported  D={} n={} L0={:.6e}", b.id, b.meta.d, b.meta.n, b.meta.l0);
    Ok(Exit::Success)
}
