//! `scaletest bot`: a long-running loadbot on the load engine.
//!
//! It registers with the aggregator, follows its assignment (a long-poll returns as soon as it
//! changes), and every second pushes what it measured in the last wall-clock second. The load
//! itself is a `load::run` with wall-clock ticks, so every bot cuts its seconds at the same
//! instants; a new rate is applied to the running schedule (`load::RateControl`), while any
//! other change of the spec ends the running run gracefully (in-flight requests finish) and
//! starts a new one.
//!
//! Nothing measured is lost: seconds wait in an outbox until the aggregator acknowledges them
//! (bounded at [`OUTBOX`] seconds, oldest dropped first and counted), and acknowledged ones are
//! kept for [`RETAIN`] seconds more, so that an aggregator restarted from its last saved
//! second gets again what it had not saved (its high-water mark for this bot tells which).
//! A push that is retried is never counted twice: the aggregator ignores seconds at or below
//! the bot's high-water mark.
//!
//! In modules: `outbox` (the seconds on their way), `driver` (registration with backoff,
//! pushes and acknowledgements, a restarted aggregator, the wind-down: plain code over the
//! outbox, its time from tokio's clock), `link` (the aggregator over HTTP or HTTPS; an
//! untrusted certificate ends the bot), `engine` (the load itself).

mod driver;
mod engine;
mod link;
mod outbox;
#[cfg(test)]
mod tests;

use load::Shutdown;
use std::time::Duration;
use tokio::sync::mpsc;

/// Seconds kept while the aggregator is unreachable (15 minutes).
pub const OUTBOX: usize = 900;
/// Acknowledged seconds kept for an aggregator that restarts.
pub const RETAIN: usize = 120;
/// A second is pushed this long after it ends (the engine reports it right after its end).
const PUSH_DELAY: f64 = 0.25;
/// Longest wait for one request to the aggregator (long-polls excepted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A bot's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The aggregator, `http://host:port` or `https://host:port`.
    pub aggregator: String,
    /// Over HTTPS: trust the CA certificates in this PEM file (else the public roots).
    pub cacert: Option<std::path::PathBuf>,
    /// Bearer token.
    pub token: String,
    /// Name shown in the bots table.
    pub name: String,
    /// Worker threads for the load (default: the CPUs this process may use).
    pub threads: Option<u64>,
    /// Exit when the aggregator says the run is over (else idle and wait for the next run).
    pub exit_when_finished: bool,
    /// Seconds kept while the aggregator is unreachable ([`OUTBOX`] by default).
    pub outbox: usize,
    /// Told of what goes wrong while the bot carries on (a refused push, a load that cannot
    /// run): the library reports, the caller decides where it goes.
    pub warn: fn(&str),
}

/// A bot that could not run.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The aggregator URL.
    #[error("--aggregator {0:?}: {1}")]
    Url(String, String),
    /// The aggregator refused the bot (wrong token, full, …).
    #[error("the aggregator refused this bot: {0}")]
    Refused(String),
    /// The aggregator's certificate does not verify (a wrong `--cacert`, another server).
    #[error("cannot trust the aggregator at {0}: {1} (check --cacert)")]
    Certificate(String, String),
}

/// What a bot did, for its exit message.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Answers it measured.
    pub responses: u64,
    /// Seconds dropped from its outbox.
    pub dropped: u64,
    /// Seconds it could not deliver before exiting.
    pub undelivered: usize,
}

/// This machine's host name (for the bots table), or "unknown".
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Run a bot until `stop` fires (SIGTERM) or, with `exit_when_finished`, the run is over.
pub async fn run(cfg: Config, stop: Shutdown) -> Result<Outcome, BotError> {
    let agg = std::rc::Rc::new(link::Agg::new(
        &cfg.aggregator,
        &cfg.token,
        cfg.cacert.as_deref(),
    )?);
    let (snaps_tx, snaps) = mpsc::unbounded_channel();
    let engine = engine::Engine::new(cfg.clone(), snaps_tx);
    driver::Driver::new(&cfg, agg, engine, snaps, stop, driver::Clock::Wall)
        .run()
        .await
}

/// How long a bot tries, at most, after SIGTERM to drain and deliver its last seconds.
pub const STOP_GRACE: Duration = Duration::from_secs(8);
