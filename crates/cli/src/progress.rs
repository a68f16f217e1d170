//! Live progress on stderr, only when stderr is a terminal (indicatif).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A progress line, or nothing when stderr is not a terminal.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// `duration`: the planned length, for a bar; `None` shows a spinner.
    pub fn new(duration: Option<Duration>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = match duration {
            Some(d) => {
                let b = ProgressBar::new(d.as_secs().max(1));
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s  {msg}",
                    )
                    .expect("valid template"),
                );
                b
            }
            None => {
                let b = ProgressBar::new_spinner();
                b.set_style(
                    ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                        .expect("valid template"),
                );
                b
            }
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress(Some(bar))
    }

    /// One second of the run is complete.
    pub fn update(&self, p: &load::Progress) {
        use report::format::count;
        self.set(
            p.elapsed,
            format!(
                "{} req/s, {} errors in the last second; {} done, {} errors",
                count(p.last.requests),
                count(p.last.errors),
                count(p.responses),
                count(p.errors)
            ),
        );
    }

    /// Move to `elapsed` and show `msg`.
    pub fn set(&self, elapsed: Duration, msg: String) {
        if let Some(b) = &self.0 {
            b.set_position(elapsed.as_secs());
            b.set_message(msg);
        }
    }

    /// Whether anything is shown (stderr is a terminal).
    pub fn shown(&self) -> bool {
        self.0.is_some()
    }

    /// Remove the line before the report is printed.
    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
