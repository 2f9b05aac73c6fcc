//! `lh-host promote gallery|single`: run figures promoted out of the
//! artifact tree — a static HTML gallery (and a Markdown snippet) of the
//! newest run of each sampler on each target, or one named figure per sampler.

use std::path::PathBuf;

use anyhow::Result;
use lh_host::workflow::promote;

use super::exit::Exit;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// A gallery (index.html, figures copied beside it, a Markdown snippet) of the newest
    /// complete run of each sampler on each target under --runs-root.
    Gallery(GalleryArgs),
    /// One figure (--plot-name) of the newest complete run of each sampler, copied to
    /// <outdir>/<sampler>.png.
    Single(SingleArgs),
}

#[derive(clap::Args)]
struct Common {
    /// A runs folder, e.g. artifacts/experiments/dev/runs.
    #[arg(long)]
    runs_root: PathBuf,
    /// Only these samplers (plugin names or tags), e.g. --samplers sgld,hmc (default: all).
    #[arg(long, value_delimiter = ',')]
    samplers: Vec<String>,
    /// Where the promoted files go.
    #[arg(long)]
    outdir: PathBuf,
}

#[derive(clap::Args)]
struct GalleryArgs {
    #[command(flatten)]
    common: Common,
    /// Where the Markdown snippet goes (default: <outdir>/gallery.md).
    #[arg(long)]
    snippet_out: Option<PathBuf>,
    /// The figures shown per run (default: llc_convergence_combined.png,trace.png).
    #[arg(long, value_delimiter = ',')]
    plots: Vec<String>,
}

#[derive(clap::Args)]
struct SingleArgs {
    #[command(flatten)]
    common: Common,
    /// The figure, a file name in each run's diagnostics/ folder.
    #[arg(long)]
    plot_name: String,
}

pub fn exec(a: Args) -> Result<Exit> {
    match a.command {
        Sub::Gallery(g) => {
            let c = &g.common;
            let out = promote::gallery(&c.runs_root, &c.samplers, &c.outdir, g.snippet_out.as_deref(), &promote::plot_names(&g.plots)?)?;
            for n in &out.notes {
                outln!("note: {n}");
            }
            outln!("wrote {} ({} figures) and {}", out.html.display(), out.figures, out.snippet.display());
        }
        Sub::Single(s) => {
            let c = &s.common;
            for p in promote::single(&c.runs_root, &c.samplers, &c.outdir, &s.plot_name)? {
                outln!("wrote {}", p.display());
            }
        }
    }
    Ok(Exit::Success)
}
