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

/// One line per stored object, verified; an object that fails verification is
/// one line marked CORRUPTED with the reason, and the listing goes on.
fn ls(store: &Store) -> Result<Exit> {
    let hashes = store.object_hashes()?;
    if hashes.is_empty() {
        outln!("no targets in {}", store.home.display());
        return Ok(Exit::Success);
    }
    outln!("{:<18} {:<9} {:>7} {:>7} {:<22} {:<9} {:>12}  created", "id", "kind", "D", "n", "sizes", "act", "L0");
    let mut rows = Vec::new();
    for hash in hashes {
        match store.load_meta::<TargetMeta>(&hash) {
            Ok(o) if o.meta.object_type == "target" => rows.push((o.meta.target_id.clone(), Some((o.meta, hash)), String::new())),
            Ok(_) => {}
            Err(e) => rows.push((format!("{}…", &hash[..hash.len().min(12)]), None, e.to_string())),
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, target, why) in rows {
        let Some((m, hash)) = target else {
            outln!("{id:<18} CORRUPTED  {why}");
            continue;
        };
        let (sizes, act) = match m.source.mlp() {
            Some(spec) => (spec.sizes().iter().map(ToString::to_string).collect::<Vec<_>>().join("-"), format!("{:?}", spec.activation).to_lowercase()),
            None => ("-".to_string(), "-".to_string()),
        };
        let created = store.load_provenance(&hash).map_or_else(|_| "-".to_string(), |p| p.made.created);
        outln!("{:<18} {:<9} {:>7} {:>7} {:<22} {:<9} {:>12.5e}  {}", m.target_id, m.source.kind(), m.d, m.n, sizes, act, m.l0, created);
    }
    Ok(Exit::Success)
}

fn show(store: &Store, id: &str) -> Result<Exit> {
    let t = target::load(store, id)?;
    outln!("{}", serde_json::to_string_pretty(&store.load_meta::<serde_json::Value>(&t.hash)?)?);
    outln!("# files: {}", store.object_dir(&t.hash).join("payload").display());
    Ok(Exit::Success)
}
