//! The one place progress is drawn: an indicatif bar per piece of work the
//! library reports, and the stop request of a signal passed back to it.

use std::cell::Cell;

use indicatif::{ProgressBar, ProgressStyle};
use lh_host::progress::{Monitor, Progress};

use super::signals;

/// Draws a bar on stderr (hidden when it is not a terminal) for each piece of work.
pub struct Bars {
    bar: Option<ProgressBar>,
    prefix: String,
    /// Whether the stop request was announced yet.
    announced: Cell<bool>,
}

impl Bars {
    /// Bars, with signals handled from now on.
    pub fn new() -> Self {
        signals::install();
        Self { bar: None, prefix: String::new(), announced: Cell::new(false) }
    }

    /// Text put before the name of the work on each bar (`target 2/7: `).
    pub fn set_prefix(&mut self, prefix: impl Into<String>) {
        self.prefix = prefix.into();
    }
}

impl Monitor for Bars {
    fn report(&mut self, progress: Progress<'_>) {
        match progress {
            Progress::Start { what, total } => {
                let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})").expect("valid template").progress_chars("=> ");
                let bar = ProgressBar::new(total).with_style(style);
                bar.set_message(format!("{}{what}", self.prefix));
                self.bar = Some(bar);
            }
            Progress::Advance { done, total } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            }
            Progress::Finish => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }

    fn should_stop(&self) -> bool {
        let stop = signals::interrupted().is_some();
        if stop && !self.announced.replace(true) {
            eprintln!("\nstopping: finishing the current draw and keeping the traces (Ctrl-C again to abort)");
        }
        stop
    }

    fn note(&mut self, message: &str) {
        eprintln!("note: {message}");
    }
}
