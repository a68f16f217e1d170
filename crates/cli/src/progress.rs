//! Live progress on stderr, only when stderr is a terminal (indicatif); and, when asked
//! (`load --log-rates`), periodic rate lines on stderr for runs without one.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        use report::format::{bytes, count};
        self.set(
            p.elapsed,
            format!(
                "{} req/s, {}/s in, {} errors in the last second; {} done, {} errors",
                count(p.snapshot.responses),
                bytes(p.snapshot.bytes as f64),
                count(p.snapshot.error_count()),
                count(p.responses),
                count(p.errors)
            ),
        );
    }

    /// A line of its own on stderr, above the progress line when there is one.
    pub fn line(&self, msg: &str) {
        match &self.0 {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// Move to `elapsed` and show `msg`.
    pub fn set(&self, elapsed: Duration, msg: String) {
        if let Some(b) = &self.0 {
            b.set_position(elapsed.as_secs());
            b.set_message(msg);
        }
    }

    /// Whether anything is shown (stderr is a terminal).
    fn shown(&self) -> bool {
        self.0.is_some()
    }

    /// Remove the line before the report is printed.
    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// A progress line refreshed once a second from `msg`, for runs with no per-second callback of
/// their own; `finish` removes it.
pub struct Ticking {
    progress: Arc<Progress>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Ticking {
    /// Start (inside a tokio runtime); nothing runs when stderr is not a terminal.
    pub fn start(
        duration: Option<Duration>,
        mut msg: impl FnMut() -> String + Send + 'static,
    ) -> Ticking {
        let progress = Arc::new(Progress::new(duration));
        let task = progress.shown().then(|| {
            let progress = progress.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    progress.set(start.elapsed(), msg());
                }
            })
        });
        Ticking { progress, task }
    }

    /// Stop refreshing and remove the line.
    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        self.progress.finish();
    }
}

/// `--log-rates`: every period, one line of what was sent and received per second over it
/// (as go_httperf logs its transmit and receive rates), whether or not stderr is a terminal.
pub struct RateLog {
    every: u32,
    /// Over the period so far: seconds, bytes read, bytes written, responses, errors.
    acc: (f64, u64, u64, u64, u64),
}

impl RateLog {
    /// A line every `every` (whole seconds, at least one: the engine reports per second).
    pub fn new(every: Duration) -> RateLog {
        RateLog {
            every: every.as_secs_f64().round().max(1.0) as u32,
            acc: Default::default(),
        }
    }

    /// Add a second of the run; the line when a period is complete.
    pub fn second(&mut self, p: &load::Progress) -> Option<String> {
        use report::format::{bytes, count, trim};
        let s = p.snapshot;
        let a = &mut self.acc;
        *a = (
            a.0 + s.seconds(),
            a.1 + s.bytes,
            a.2 + s.bytes_sent,
            a.3 + s.responses,
            a.4 + s.error_count(),
        );
        if !(p.second + 1).is_multiple_of(self.every) {
            return None;
        }
        let (secs, rx, tx, n, e) = std::mem::take(a);
        let per = |v: u64| v as f64 / secs.max(1e-9);
        Some(format!(
            "scaletest: {}s: rx {}/s, tx {}/s, {} responses/s, {} errors/s",
            trim(p.elapsed.as_secs_f64(), 0),
            bytes(per(rx)),
            bytes(per(tx)),
            count(per(n).round() as u64),
            trim(per(e), 1)
        ))
    }
}
