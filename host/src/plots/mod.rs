//! Chart primitives (a leaf, used by Stage A's and Stage C's figures): chart
//! specs flow in, PNG files flow out. PNG figures with plotters' bitmap backend. Text is drawn with DejaVu Sans,
//! embedded in the binary (no system font lookup, so plots render on a bare
//! machine); the RGB canvas is encoded with the `png` crate.
//!
//! Two chart kinds cover every figure lh-host draws: [`Chart`] (lines,
//! points, bars, a shaded band and a vertical marker on numeric axes) and
//! [`Categorical`] (one value ± error per labelled slot, coloured by group).

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::store::atomic::write_atomic;

/// The font family every text element uses.
const FONT: &str = "sans-serif";
/// DejaVu Sans (Bitstream Vera licence, see assets/DejaVuSans-LICENSE.txt).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Default figure size in pixels.
pub const SIZE: (u32, u32) = (1000, 560);

/// The drawing area a figure is drawn on.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// What drawing code returns: plotters' errors as text.
pub type DrawResult = std::result::Result<(), String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Registers the embedded font once per process.
fn font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("the embedded DejaVu Sans font could not be parsed"))
    }
}

/// Renders `draw` on a white canvas of `size` pixels and writes it as a PNG
/// at `path` (atomically); returns the file name.
pub fn write_png(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<String> {
    font()?;
    let (w, h) = size;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let fail = |e: String| Error::invalid(format!("{}: {e}", path.display()));
    {
        let area = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        area.fill(&WHITE).map_err(|e| fail(err(e)))?;
        draw(&area).map_err(fail)?;
        area.present().map_err(|e| fail(err(e)))?;
    }
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| fail(err(e)))?;
        writer.write_image_data(&rgb).map_err(|e| fail(err(e)))?;
        writer.finish().map_err(|e| fail(err(e)))?;
    }
    write_atomic(path, &bytes)?;
    Ok(path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default())
}

/// The colour of series `i` (chains, plugins).
pub fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    /// A polyline of the given width.
    Line(u32),
    /// A dashed polyline.
    Dashed,
    /// A dot at every point.
    Points,
    /// Bars from 0 to y, each centred on x with the given width.
    Bars(f64),
}

/// One labelled series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub mark: Mark,
}

impl Series {
    /// Chain `c`'s line.
    pub fn chain(c: usize, points: Vec<(f64, f64)>) -> Self {
        Self { label: format!("chain {c}"), points, color: color(c), mark: Mark::Line(1) }
    }
    /// Any series.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor, mark: Mark) -> Self {
        Self { label: label.into(), points, color, mark }
    }
}

/// A labelled shaded band: points (x, lo, hi).
#[derive(Debug, Clone)]
pub struct Band {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// A chart on numeric axes.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub caption: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    /// A shaded band drawn beneath the series.
    pub band: Option<Band>,
    /// A dashed vertical marker (x, label).
    pub vline: Option<(f64, String)>,
    /// Plot log10(y) and label the ticks with y (values ≤ 0 are dropped).
    pub log_y: bool,
    /// Include y = 0 in the range.
    pub y_zero: bool,
    /// Put the legend in the upper left corner (default: upper right).
    pub legend_left: bool,
}

/// (lo, hi) of the finite values, widened by 5 % on each side when `pad`;
/// a range around a constant; (0, 1) when there is none.
fn span(values: impl Iterator<Item = f64>, pad: bool) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi > lo {
        let p = if pad { 0.05 * (hi - lo) } else { 0.0 };
        (lo - p, hi + p)
    } else {
        let p = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        (lo - p, hi + p)
    }
}

impl Chart {
    /// A chart with a caption and axis descriptions.
    pub fn new(caption: impl Into<String>, x_desc: impl Into<String>, y_desc: impl Into<String>) -> Self {
        Self { caption: caption.into(), x_desc: x_desc.into(), y_desc: y_desc.into(), ..Self::default() }
    }

    /// True when no series has a finite point to show.
    pub fn is_empty(&self) -> bool {
        !self.series.iter().flat_map(|s| &s.points).any(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0))
    }

    fn ty(&self, y: f64) -> f64 {
        if self.log_y {
            if y > 0.0 {
                y.log10()
            } else {
                f64::NAN
            }
        } else {
            y
        }
    }

    /// Draws the chart onto `area`.
    pub fn draw(&self, area: &Area<'_>) -> DrawResult {
        let bar_half = |s: &Series| {
            if let Mark::Bars(w) = s.mark {
                w / 2.0
            } else {
                0.0
            }
        };
        let xs = self.series.iter().flat_map(|s| s.points.iter().flat_map(move |p| [p.0 - bar_half(s), p.0 + bar_half(s)]));
        let band_x = self.band.iter().flat_map(|b| b.points.iter().map(|p| p.0));
        // Lines and bars run to the edges; scatter plots get a margin.
        let scatter = self.series.iter().any(|s| s.mark == Mark::Points);
        let (x0, x1) = span(xs.chain(band_x).chain(self.vline.iter().map(|v| v.0)), scatter);
        let ys = self.series.iter().flat_map(|s| s.points.iter().map(|p| self.ty(p.1)));
        let band_y = self.band.iter().flat_map(|b| b.points.iter().flat_map(|p| [self.ty(p.1), self.ty(p.2)]));
        let zero = (self.y_zero || self.series.iter().any(|s| matches!(s.mark, Mark::Bars(_)))).then_some(0.0);
        let (y0, y1) = span(ys.chain(band_y).chain(zero), true);
        let log_y = self.log_y;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.caption, (FONT, 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 14))
            .y_label_formatter(&|v: &f64| if log_y { log_tick(*v) } else { tick(*v) })
            .x_label_formatter(&|v: &f64| tick(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        if let Some(Band { label, points }) = &self.band {
            let mut poly: Vec<(f64, f64)> = points.iter().map(|p| (p.0, self.ty(p.2))).collect();
            poly.extend(points.iter().rev().map(|p| (p.0, self.ty(p.1))));
            poly.retain(|p| p.1.is_finite());
            let fill = RGBColor(120, 120, 120).mix(0.25);
            chart
                .draw_series(std::iter::once(Polygon::new(poly, fill.filled())))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], fill.filled()));
        }
        let mut labelled = self.band.is_some();
        for s in &self.series {
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, self.ty(p.1))).filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            let c = s.color;
            let anno = match s.mark {
                Mark::Line(w) => chart.draw_series(LineSeries::new(pts, c.stroke_width(w))).map_err(err)?,
                Mark::Dashed => chart.draw_series(DashedLineSeries::new(pts, 8, 6, c.stroke_width(2))).map_err(err)?,
                Mark::Points => chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.mix(0.6).filled()))).map_err(err)?,
                Mark::Bars(w) => {
                    chart.draw_series(pts.into_iter().map(|(x, y)| Rectangle::new([(x - w / 2.0, 0.0), (x + w / 2.0, y)], c.mix(0.5).filled()))).map_err(err)?
                }
            };
            if !s.label.is_empty() {
                labelled = true;
                anno.label(&s.label).legend(move |(x, y)| Rectangle::new([(x, y - 2), (x + 18, y + 2)], c.filled()));
            }
        }
        if let Some((x, label)) = &self.vline {
            labelled = true;
            chart
                .draw_series(DashedLineSeries::new(vec![(*x, y0), (*x, y1)], 6, 6, BLACK.stroke_width(1)))
                .map_err(err)?
                .label(label)
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
        }
        if labelled {
            chart
                .configure_series_labels()
                .label_font((FONT, 14))
                .border_style(BLACK)
                .background_style(WHITE.mix(0.85))
                .position(if self.legend_left { SeriesLabelPosition::UpperLeft } else { SeriesLabelPosition::UpperRight })
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }
}

/// A tick label: `v` to at most `sig` significant digits, trailing zeros
/// dropped; scientific for very large or small magnitudes.
fn tick_sig(v: f64, sig: i32) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".to_string();
    }
    if !(1e-4..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let decimals = sig - 1 - a.log10().floor() as i32;
    if decimals < 0 {
        let scale = 10f64.powi(-decimals);
        return format!("{:.0}", (v / scale).round() * scale);
    }
    let digits = decimals as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A linear axis tick: six significant digits (ticks are round numbers, so
/// this stays short and never merges neighbours).
fn tick(v: f64) -> String {
    tick_sig(v, 6)
}

/// A log axis tick at log10 value `v`: 10^v to two significant digits.
fn log_tick(v: f64) -> String {
    tick_sig(10f64.powf(v), 2)
}

/// One value (± an error) in a labelled slot of a [`Categorical`] chart.
#[derive(Debug, Clone, Copy)]
pub struct Cat {
    /// Slot index (into `slots`).
    pub slot: usize,
    /// Group index (into `groups`): the colour and legend entry.
    pub group: usize,
    pub y: f64,
    pub err: Option<f64>,
}

/// Values per labelled slot (x), coloured by group, with optional error bars.
#[derive(Debug, Clone, Default)]
pub struct Categorical {
    pub caption: String,
    pub x_desc: String,
    pub y_desc: String,
    pub slots: Vec<String>,
    pub groups: Vec<String>,
    pub values: Vec<Cat>,
    /// Plot log10(y) and label the ticks with y.
    pub log_y: bool,
    /// A dashed horizontal reference line (y, label).
    pub hline: Option<(f64, String)>,
}

impl Categorical {
    /// Draws the chart onto `area`.
    pub fn draw(&self, area: &Area<'_>) -> DrawResult {
        let ty = |y: f64| {
            if self.log_y {
                if y > 0.0 {
                    y.log10()
                } else {
                    f64::NAN
                }
            } else {
                y
            }
        };
        let vals: Vec<Cat> = self.values.iter().copied().filter(|v| ty(v.y).is_finite()).collect();
        let ys = vals.iter().flat_map(|v| {
            let e = v.err.filter(|e| e.is_finite()).unwrap_or(0.0);
            [ty(v.y - e), ty(v.y + e), ty(v.y)]
        });
        let (y0, y1) = span(ys.chain(self.hline.iter().map(|h| ty(h.0))), true);
        let n = self.slots.len().max(1);
        let groups = self.groups.len().max(1);
        // Groups sit side by side within a slot.
        let x_of = |v: &Cat| v.slot as f64 + (v.group as f64 + 0.5) / groups as f64 * 0.6 - 0.3;
        let slots = self.slots.clone();
        let log_y = self.log_y;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.caption, (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .x_labels(n + 1)
            .x_label_formatter(&|v: &f64| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    slots.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v: &f64| if log_y { log_tick(*v) } else { tick(*v) })
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        for (g, name) in self.groups.iter().enumerate() {
            let c = color(g);
            let mine: Vec<&Cat> = vals.iter().filter(|v| v.group == g).collect();
            chart
                .draw_series(mine.iter().map(|v| Circle::new((x_of(v), ty(v.y)), 5, c.filled())))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, c.filled()));
            let bars = mine.iter().filter_map(|v| v.err.filter(|e| e.is_finite() && *e > 0.0).map(|e| (x_of(v), v.y, e)));
            chart
                .draw_series(bars.flat_map(|(x, y, e)| {
                    let (lo, hi) = (ty(y - e), ty(y + e));
                    let lo = if lo.is_finite() { lo } else { y0 };
                    [
                        PathElement::new(vec![(x, lo), (x, hi)], c.stroke_width(2)),
                        PathElement::new(vec![(x - 0.04, lo), (x + 0.04, lo)], c.stroke_width(2)),
                        PathElement::new(vec![(x - 0.04, hi), (x + 0.04, hi)], c.stroke_width(2)),
                    ]
                }))
                .map_err(err)?;
        }
        if let Some((y, label)) = &self.hline {
            chart
                .draw_series(DashedLineSeries::new(vec![(-0.5, ty(*y)), (n as f64 - 0.5, ty(*y))], 6, 6, BLACK.stroke_width(1)))
                .map_err(err)?
                .label(label)
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Chart::new("a test: λ ± SE", "draw", "L_n");
        c.series.push(Series::chain(0, (0..50).map(|i| (i as f64, (i as f64 * 0.3).sin())).collect()));
        c.series.push(Series::chain(1, (0..50).map(|i| (i as f64, (i as f64 * 0.2).cos())).collect()));
        c.vline = Some((10.0, "end of burn-in".into()));
        let name = write_png(&dir.path().join("t.png"), SIZE, |a| c.draw(a)).unwrap();
        assert_eq!(name, "t.png");
        let bytes = std::fs::read(dir.path().join("t.png")).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 5_000);
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(0.0015), "0.0015");
        assert_eq!(tick(1.8), "1.8");
        assert_eq!(tick(1.001), "1.001");
        assert_eq!(tick(0.1 + 0.2), "0.3");
        assert_eq!(tick(1500.0), "1500");
        assert_eq!(tick(2.0e-5), "2.0e-5");
        assert_eq!(tick(0.0), "0");
        assert_eq!(log_tick(0.0), "1");
        assert_eq!(log_tick(-0.2), "0.63");
        assert_eq!(log_tick(2.8), "630");
        assert_eq!(log_tick(4.5), "32000");
    }
}
