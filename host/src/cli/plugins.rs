//! `lh-host plugins`: every plugin found, loaded and described.

use std::path::PathBuf;

use anyhow::Result;
use lh_host::sample::plugins;

use super::exit::Exit;

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// The library to load.
    path: PathBuf,
}

/// Loads the library in this (child) process: a crash here is the verdict.
pub fn exec_probe(a: ProbeArgs) -> Result<Exit> {
    plugins::load(&a.path)?;
    Ok(Exit::Success)
}

pub fn exec() -> Result<Exit> {
    let paths = plugins::discover_paths();
    if paths.is_empty() {
        outln!("no plugins found in: {}", plugins::search_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    for p in paths {
        match plugins::load(&p) {
            Ok(l) => {
                let i = &l.info;
                outln!(
                    "{} {} (plugin API {})\n  path: {}\n  {}\n  defaults: {}\n",
                    i.name,
                    i.version,
                    i.api_version,
                    i.path.display(),
                    i.help,
                    i.default_config
                );
            }
            Err(e) => outln!("(unloadable) {e}\n"),
        }
    }
    Ok(Exit::Success)
}
