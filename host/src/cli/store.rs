//! `lh-host store gc`: the store's housekeeping.

use anyhow::Result;
use clap::Subcommand;
use lh_host::store::Store;

use super::exit::Exit;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Remove what killed processes left behind (half-built objects, temporary links, unfinished run folders).
    Gc,
}

pub fn exec(store: &Store, a: Args) -> Result<Exit> {
    match a.command {
        StoreCommand::Gc => {
            let removed = store.gc()?;
            for p in &removed {
                outln!("removed {}", p.display());
            }
            outln!("{} leftovers removed from {}", removed.len(), store.home.display());
        }
    }
    Ok(Exit::Success)
}
