//! Promotion (Stage D): run figures gathered into galleries that open from
//! the file system, no server needed.
//!
//! - [`experiment_gallery`]: what `workflow sample --promote` writes after
//!   diagnosing every run, `experiments/<exp>/gallery/`: `index.html` (the λ̂
//!   table of `llc_runs.csv`, then per target and sampler each run's figures,
//!   each linked to its run directory), `gallery.md` (a snippet for docs) and
//!   `img/` (copies of the figures, so the folder can be moved or published);
//! - [`gallery`] (`promote gallery`): the same for the newest complete run
//!   of each sampler on each target under a runs folder;
//! - [`single`] (`promote single`): one named figure of the newest run of
//!   each sampler, copied to `<outdir>/<sampler>.png`.
//! - [`tune_page`]: `workflow tune`'s page beside an experiment's
//!   `index.html` (`tune.html`: its summary and figures), each linking to the other.

mod html;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::collect::LlcRow;
use crate::diagnose::{self, Mode};
use crate::error::{Error, Result};
use crate::sample::{Manifest, Status};
use crate::store::atomic::write_atomic;
use crate::store::layout::{entry_names, ANALYSIS, GALLERY_HTML, GALLERY_SNIPPET, MANIFEST, RUN_FIGURES};
use crate::store::record::read_record;
use crate::store::{sha256_hex, Store};

/// The figures a gallery shows per run unless told otherwise.
pub const DEFAULT_PLOTS: [&str; 2] = ["llc_convergence_combined.png", "trace.png"];

/// The figure names asked for (`--promote-plots`), or the defaults; each
/// must be a plain `.png` file name.
pub fn plot_names(given: &[String]) -> Result<Vec<String>> {
    if given.is_empty() {
        return Ok(DEFAULT_PLOTS.iter().map(|s| s.to_string()).collect());
    }
    for p in given {
        crate::ensure!(
            p.ends_with(".png") && crate::config::is_plain_name(p),
            "--promote-plots {p:?}: a figure is a file name in a run's diagnostics/ folder, e.g. trace.png"
        );
    }
    Ok(given.to_vec())
}

/// One run shown in a gallery: its row and its directory.
#[derive(Debug, Clone)]
pub struct Card {
    pub row: LlcRow,
    pub dir: PathBuf,
}

/// What a gallery writer wrote.
#[derive(Debug, Clone)]
pub struct GalleryOut {
    pub html: PathBuf,
    pub snippet: PathBuf,
    /// Figures copied and shown.
    pub figures: usize,
    /// Figures asked for that a run does not have, and runs that could not be diagnosed.
    pub notes: Vec<String>,
}

/// Diagnoses (Stage C, light) every complete run of `rows` that has no
/// analysis yet, then writes the experiment's gallery.
pub fn experiment_gallery(store: &Store, exp: &str, rows: &[LlcRow], plots: &[String]) -> Result<GalleryOut> {
    let mut notes = Vec::new();
    let mut cards = Vec::new();
    for r in rows.iter().filter(|r| r.status == "complete") {
        let dir = PathBuf::from(&r.run_dir);
        if !dir.join(ANALYSIS).exists() {
            if let Err(e) = diagnose::diagnose(&dir, Mode::Light) {
                notes.push(format!("diagnose {}: {e}", dir.display()));
            }
        }
        cards.push(Card { row: r.clone(), dir });
    }
    let outdir = store.gallery_dir(exp)?;
    let links: Vec<(String, PathBuf)> =
        outdir.join(TUNE_PAGE).exists().then(|| ("Tuning: default against tuned error, figures".to_string(), PathBuf::from(TUNE_PAGE))).into_iter().collect();
    let mut out = write(&outdir, &outdir.join(GALLERY_SNIPPET), &format!("Experiment {exp}"), &links, rows, &cards, plots)?;
    notes.append(&mut out.notes);
    out.notes = notes;
    Ok(out)
}

/// The newest complete run of each (target, sampler) under `runs_root`
/// whose plugin or tag is in `samplers` (all when empty), sorted by target
/// and sampler.
pub fn newest_runs(runs_root: &Path, samplers: &[String]) -> Result<Vec<Card>> {
    let mut newest: BTreeMap<(String, String), (Manifest, PathBuf)> = BTreeMap::new();
    for name in entry_names(runs_root)? {
        let dir = runs_root.join(&name);
        let Ok(m) = read_record::<Manifest>(&dir.join(MANIFEST)) else { continue };
        let name = m.tag.clone().unwrap_or_else(|| m.plugin.name.clone());
        let label = super::plan::label(&name, m.restriction.as_ref().map(|r| r.spec.as_str()));
        if m.status != Status::Complete || !(samplers.is_empty() || samplers.contains(&m.plugin.name) || samplers.contains(&name)) {
            continue;
        }
        let slot = (m.target_id.clone(), label);
        if newest.get(&slot).is_none_or(|(old, _)| old.run_id < m.run_id) {
            newest.insert(slot, (m, dir));
        }
    }
    if newest.is_empty() {
        let which =
            if samplers.is_empty() { String::new() } else { format!(" of {}", samplers.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")) };
        return Err(Error::invalid(format!("{}: no complete run{which}", runs_root.display())));
    }
    if let Some(s) = samplers.iter().find(|s| !newest.keys().any(|(_, l)| l == *s) && !newest.values().any(|(m, _)| &m.plugin.name == *s)) {
        return Err(Error::invalid(format!("{}: no complete run of `{s}`", runs_root.display())));
    }
    Ok(newest
        .into_values()
        .map(|(m, dir)| {
            let hash = sha256_hex(m.config.as_bytes())[..12].to_string();
            Card { row: LlcRow::from_manifest(&m, &dir, &hash, "complete"), dir }
        })
        .collect())
}

/// `promote gallery`: a gallery of the newest complete run of each sampler
/// on each target under `runs_root`, in `outdir` (snippet to `snippet_out`,
/// default `outdir/gallery.md`).
pub fn gallery(runs_root: &Path, samplers: &[String], outdir: &Path, snippet_out: Option<&Path>, plots: &[String]) -> Result<GalleryOut> {
    let cards = newest_runs(runs_root, samplers)?;
    let rows: Vec<LlcRow> = cards.iter().map(|c| c.row.clone()).collect();
    let snippet = snippet_out.map_or_else(|| outdir.join(GALLERY_SNIPPET), Path::to_path_buf);
    write(outdir, &snippet, &format!("Runs in {}", runs_root.display()), &[], &rows, &cards, plots)
}

/// The page of `workflow tune` in an experiment's gallery.
pub const TUNE_PAGE: &str = "tune.html";

/// Writes `gallery/tune.html` of experiment `exp`: a table (`header`,
/// `rows`) and `figures` (caption, file), copied into `gallery/img/tune/`;
/// it links to the experiment's `index.html`, which links back to it.
pub fn tune_page(store: &Store, exp: &str, header: &[&str], rows: &[Vec<String>], figures: &[(String, PathBuf)]) -> Result<PathBuf> {
    let outdir = store.gallery_dir(exp)?;
    let mut shown = Vec::new();
    for (caption, src) in figures {
        let rel = PathBuf::from("img/tune").join(src.file_name().unwrap_or_default());
        copy_atomic(src, &outdir.join(&rel))?;
        shown.push((caption.clone(), rel));
    }
    let links: Vec<(String, PathBuf)> =
        outdir.join(GALLERY_HTML).exists().then(|| ("The experiment's runs".to_string(), PathBuf::from(GALLERY_HTML))).into_iter().collect();
    let page = outdir.join(TUNE_PAGE);
    write_atomic(&page, html::figures_page(&format!("Experiment {exp}: tuning"), &links, header, rows, &shown).as_bytes())?;
    Ok(page)
}

/// `promote single`: figure `plot` of the newest complete run of each
/// sampler under `runs_root`, copied to `outdir/<sampler>.png`.
pub fn single(runs_root: &Path, samplers: &[String], outdir: &Path, plot: &str) -> Result<Vec<PathBuf>> {
    plot_names(&[plot.to_string()])?;
    let mut by_sampler: BTreeMap<String, Card> = BTreeMap::new();
    for c in newest_runs(runs_root, samplers)? {
        let label = c.row.label();
        if by_sampler.get(&label).is_none_or(|old| run_id(&old.dir) < run_id(&c.dir)) {
            by_sampler.insert(label, c);
        }
    }
    by_sampler
        .into_iter()
        .map(|(label, c)| {
            let src = c.dir.join(RUN_FIGURES).join(plot);
            crate::ensure!(src.exists(), "{}: no {plot} (run `lh-host diagnose --run-dir {}` first)", src.display(), c.dir.display());
            let dest = outdir.join(format!("{label}.png"));
            copy_atomic(&src, &dest)?;
            Ok(dest)
        })
        .collect()
}

fn run_id(dir: &Path) -> String {
    dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Copies `src` to `dest` atomically.
fn copy_atomic(src: &Path, dest: &Path) -> Result<()> {
    let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
    write_atomic(dest, &bytes)
}

/// Copies each card's figures into `outdir/img/<run id>/` and writes
/// `index.html` there and the snippet at `snippet`.
fn write(outdir: &Path, snippet: &Path, title: &str, links: &[(String, PathBuf)], rows: &[LlcRow], cards: &[Card], plots: &[String]) -> Result<GalleryOut> {
    std::fs::create_dir_all(outdir).map_err(|e| Error::io(outdir, e))?;
    let mut notes = Vec::new();
    let mut shown = Vec::new();
    for c in cards {
        let mut figs = Vec::new();
        for p in plots {
            let src = c.dir.join(RUN_FIGURES).join(p);
            if !src.exists() {
                notes.push(format!("{}: no {p}", c.dir.display()));
                continue;
            }
            let rel = PathBuf::from("img").join(run_id(&c.dir)).join(p);
            copy_atomic(&src, &outdir.join(&rel))?;
            figs.push((p.clone(), rel));
        }
        shown.push(html::Shown { card: c, figures: figs, run_link: relative(outdir, &c.dir) });
    }
    let figures = shown.iter().map(|s| s.figures.len()).sum();
    let page = outdir.join(GALLERY_HTML);
    write_atomic(&page, html::page(title, links, rows, &shown, |dir| relative(outdir, dir)).as_bytes())?;
    let snippet_dir = snippet.parent().unwrap_or(Path::new("."));
    write_atomic(snippet, html::snippet(title, &shown, |rel| relative(snippet_dir, &outdir.join(rel))).as_bytes())?;
    Ok(GalleryOut { html: page, snippet: snippet.to_path_buf(), figures, notes })
}

/// A path to `to` relative to the folder `from` (both made absolute first),
/// so that links survive moving the whole tree; `to` itself when they share
/// no root.
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let abs = |p: &Path| std::fs::canonicalize(p).or_else(|_| std::path::absolute(p)).unwrap_or_else(|_| p.to_path_buf());
    let (from, to) = (abs(from), abs(to));
    let (f, t): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return to;
    }
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_and_plot_names() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("exp/gallery"), d.path().join("exp/runs/r1"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        assert_eq!(relative(&a, &b), PathBuf::from("../runs/r1"));
        assert_eq!(relative(&a, &a.join("img/x.png")), PathBuf::from("img/x.png"));
        assert_eq!(plot_names(&[]).unwrap(), DEFAULT_PLOTS.to_vec());
        assert!(plot_names(&["../x.png".into()]).is_err());
        assert!(plot_names(&["trace.svg".into()]).is_err());
    }
}
