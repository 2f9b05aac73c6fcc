//! `lh-host targets ls|show`: what the store holds.

use anyhow::Result;
use clap::Subcommand;
use lh_host::store::Store;
use lh_host::target::{self, TargetMeta};

use super::exit::Exit;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TargetsCommand,
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

pub fn exec(store: &Store, a: Args) -> Result<Exit> {
    match a.command {
        TargetsCommand::Ls => ls(store),
        TargetsCommand::Show { id } => show(store, &id),
    }
}

fn ls(store: &Store) -> Result<Exit> {
    let all = target::list(store)?;
    if all.is_empty() {
        outln!("no targets in {}", store.home.display());
        return Ok(Exit::Success);
    }
    outln!("{:<18} {:<9} {:>7} {:>7} {:<22} {:<9} {:>12}  created", "id", "kind", "D", "n", "sizes", "act", "L0");
    for (_, hash) in all {
        let m = store.load_meta::<TargetMeta>(&hash)?.meta;
        let (sizes, act) = match m.source.mlp() {
            Some(spec) => (spec.sizes().iter().map(ToString::to_string).collect::<Vec<_>>().join("-"), format!("{:?}", spec.activation).to_lowercase()),
            None => ("-".to_string(), "-".to_string()),
        };
        outln!("{:<18} {:<9} {:>7} {:>7} {:<22} {:<9} {:>12.5e}  {}", m.target_id, m.source.kind(), m.d, m.n, sizes, act, m.l0, m.provenance.created);
    }
    Ok(Exit::Success)
}

fn show(store: &Store, id: &str) -> Result<Exit> {
    let t = target::load(store, id)?;
    outln!("{}", serde_json::to_string_pretty(&store.load_meta::<serde_json::Value>(&t.hash)?)?);
    outln!("# files: {}", store.object_dir(&t.hash).join("payload").display());
    Ok(Exit::Success)
}
