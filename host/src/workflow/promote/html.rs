//! The text of a gallery: a static HTML page (inline CSS, every path
//! relative, a small script that checks every image loaded and says so in
//! the page), and a Markdown snippet with one figure per sampler.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::Card;
use crate::workflow::collect::LlcRow;

/// A card with what was copied for it.
pub struct Shown<'a> {
    pub card: &'a Card,
    /// (figure name, path relative to the gallery folder).
    pub figures: Vec<(String, PathBuf)>,
    /// The run directory, relative to the gallery folder.
    pub run_link: PathBuf,
}

/// `s` with HTML's special characters escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A relative path as a URL path (forward slashes, each segment percent-escaped where needed).
fn url(p: &Path) -> String {
    let prefix = if p.is_absolute() { "file://" } else { "" };
    let path = p
        .components()
        .filter(|c| !matches!(c, std::path::Component::RootDir | std::path::Component::Prefix(_)))
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .chars()
                .map(|ch| if ch.is_ascii_alphanumeric() || "-._~+".contains(ch) { ch.to_string() } else { format!("%{:02X}", ch as u32) })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/");
    if prefix.is_empty() {
        path
    } else {
        format!("{prefix}/{path}")
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:.9em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#eee}td.l{text-align:left}\
tr.failed td{background:#fdd}tr.incomplete td,tr.not_run td{background:#ffd}\
.cards{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;border:1px solid #ddd;padding:.5em;background:#fafafa}\
figure img{width:420px;display:block}figcaption{font-size:.85em;margin-top:.3em}#image-check.ok{color:#080}#image-check.bad{color:#c00;font-weight:bold}";

/// Sets `#image-check` to how many images loaded (naturalWidth > 0) once the page has.
const CHECK: &str = "<script>\nwindow.addEventListener('load', function () {\n  var imgs = Array.prototype.slice.call(document.images);\n  \
var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });\n  var p = document.getElementById('image-check');\n  \
p.textContent = bad.length === 0 ? 'all ' + imgs.length + ' images loaded'\n    : bad.length + ' of ' + imgs.length + ' images failed to load: ' + \
bad.map(function (i) { return i.getAttribute('src'); }).join(', ');\n  p.className = bad.length === 0 ? 'ok' : 'bad';\n});\n</script>\n";

/// A page's head, its title and the line the image check fills in, then
/// `links` (text, page-relative target), one paragraph each.
fn head(title: &str, links: &[(String, PathBuf)]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(title)
    );
    let _ = writeln!(h, "<h1>{}</h1>\n<p id=\"image-check\">checking images…</p>", esc(title));
    for (text, target) in links {
        let _ = writeln!(h, "<p><a href=\"{}\">{}</a></p>", url(target), esc(text));
    }
    h
}

/// The gallery page: `links` to other pages, the λ̂ table of `rows`, then the
/// figures of each run, grouped by target and sampler. `link` makes a run
/// directory relative to the page.
pub fn page(title: &str, links: &[(String, PathBuf)], rows: &[LlcRow], shown: &[Shown<'_>], link: impl Fn(&Path) -> PathBuf) -> String {
    let mut h = head(title, links);
    h.push_str("<h2>LLC estimates</h2>\n<table>\n<tr><th>target</th><th>sampler</th><th>seed</th><th>λ̂</th><th>SE</th><th>R̂</th><th>ESS bulk</th><th>gradient evaluations</th><th>seconds</th><th>status</th><th>run</th></tr>\n");
    for r in rows {
        let run = if r.run_dir.is_empty() { "–".to_string() } else { format!("<a href=\"{}\">run</a>", url(&link(Path::new(&r.run_dir)))) };
        let status = if r.error.is_empty() { esc(&r.status) } else { format!("{}: {}", esc(&r.status), esc(&r.error)) };
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{status}</td><td>{run}</td></tr>",
            esc(&r.status),
            esc(&r.target),
            esc(&r.label()),
            r.seed,
            num(r.llc, 4),
            num(r.se, 4),
            num(r.rhat, 4),
            num(r.ess_bulk, 0),
            num(r.grad_evals, 0),
            num(r.wall_s, 1)
        );
    }
    h.push_str("</table>\n");
    let mut by_target: BTreeMap<&str, BTreeMap<String, Vec<&Shown<'_>>>> = BTreeMap::new();
    for s in shown {
        by_target.entry(&s.card.row.target).or_default().entry(s.card.row.label()).or_default().push(s);
    }
    for (target, samplers) in by_target {
        let _ = writeln!(h, "<h2>Target {}</h2>", esc(target));
        for (label, runs) in samplers {
            let _ = writeln!(h, "<h3>{}</h3>\n<div class=\"cards\">", esc(&label));
            for s in runs {
                let r = &s.card.row;
                for (name, rel) in &s.figures {
                    let _ = writeln!(
                        h,
                        "<figure><a href=\"{src}\"><img src=\"{src}\" alt=\"{alt}\"></a><figcaption>seed {seed} · {name} · λ̂ = {llc} · <a href=\"{run}\">run directory</a></figcaption></figure>",
                        src = url(rel),
                        alt = esc(&format!("{name} of {label}, seed {}, on {target}", r.seed)),
                        seed = r.seed,
                        name = esc(name),
                        llc = num(r.llc, 3),
                        run = url(&s.run_link),
                    );
                }
                if s.figures.is_empty() {
                    let _ = writeln!(h, "<p>seed {}: no figures (<a href=\"{}\">run directory</a>)</p>", r.seed, url(&s.run_link));
                }
            }
            h.push_str("</div>\n");
        }
    }
    h.push_str(CHECK);
    h.push_str("</body>\n</html>\n");
    h
}

/// A page of a table (`header`, `rows` of plain text) and figures (caption,
/// page-relative path), after `links` to other pages.
pub fn figures_page(title: &str, links: &[(String, PathBuf)], header: &[&str], rows: &[Vec<String>], figures: &[(String, PathBuf)]) -> String {
    let mut h = head(title, links);
    h.push_str("<table>\n<tr>");
    for c in header {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>\n");
    for r in rows {
        h.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let _ = write!(h, "<td{}>{}</td>", if i < 2 || i + 1 == r.len() { " class=\"l\"" } else { "" }, esc(c));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<div class=\"cards\">\n");
    for (caption, rel) in figures {
        let _ = writeln!(
            h,
            "<figure><a href=\"{src}\"><img src=\"{src}\" alt=\"{alt}\" style=\"width:840px\"></a><figcaption>{alt}</figcaption></figure>",
            src = url(rel),
            alt = esc(caption)
        );
    }
    h.push_str("</div>\n");
    h.push_str(CHECK);
    h.push_str("</body>\n</html>\n");
    h
}

/// A Markdown snippet: a heading and an HTML table with the first figure of
/// the first run of each sampler. `link` makes a gallery-relative path
/// relative to the snippet.
pub fn snippet(title: &str, shown: &[Shown<'_>], link: impl Fn(&Path) -> PathBuf) -> String {
    let mut firsts: BTreeMap<String, (&Shown<'_>, &PathBuf)> = BTreeMap::new();
    for s in shown {
        if let Some((_, rel)) = s.figures.first() {
            firsts.entry(s.card.row.label()).or_insert((s, rel));
        }
    }
    let mut m = format!("### {}\n\n<table>\n<tr>", esc(title));
    for (label, (s, _)) in &firsts {
        let _ = write!(m, "<th>{} (λ̂ = {})</th>", esc(label), num(s.card.row.llc, 3));
    }
    m.push_str("</tr>\n<tr>");
    for (label, (_, rel)) in &firsts {
        let _ = write!(m, "<td><img src=\"{}\" alt=\"{}\" width=\"320\"></td>", url(&link(rel)), esc(label));
    }
    m.push_str("</tr>\n</table>\n");
    m
}
