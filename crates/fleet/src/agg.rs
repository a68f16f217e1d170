//! `scaletest aggregate`: the HTTP face of [`State`]: the bots' API, the control and read APIs,
//! the live stream, the web UI, `/metrics` (their route table: `api`), and the run directory
//! written every second.
//!
//! Over HTTPS when given a certificate ([`Config::tls`]: the bots' token then never crosses
//! the network in clear); reads need the token too when it listens off loopback
//! ([`Config::private_reads`]).
//!
//! One thread with a single-threaded runtime serves everything (ingest is cheap: a push is
//! read on a hand-written HTTP/1 path over cleartext, decoded outside the lock and merged
//! under it), so "bots per core" is what it measures.
//! Once a second a ticker publishes the seconds that ended (SSE `point`), revisions of
//! earlier ones (`revision`) and events (`event`), and hands the run to the thread that saves
//! it (`saver`, which owns the [`Store`]: no push waits for the disk unless it is 30 s
//! behind); a bot's leave is answered after the next save (or after 2 s, or a failed save), so
//! that a bot never exits with seconds that only a crashed aggregator had.
//! `GET /api/summary` merges the run's seconds once per call for its figures and the
//! thresholds' live `verdicts` (the same [`Threshold::judge`] as at the end).
//!
//! The end of a run ([`Running::finish`], `POST /api/finish`, the `--run-for` deadline; for
//! a schedule given at the start, the end of its stages or `--run-for` from its start):
//! bots are told the run is over, the aggregator waits until each live bot has drained and
//! pushed its last interval (or [`FLUSH_WAIT`]), closes every second, and writes
//! `results.json` and `report.html`.

// The aggregator is control plane on one thread: its state sits behind one Mutex that is never
// contended on the hot path of any load.
#![allow(clippy::disallowed_types)]

mod api;
pub mod cert;
mod saver;

use crate::now_unix;
use crate::state::{self, Plan, State};
use crate::store::{Store, StoreError};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use load::Spec;
use report::threshold::Threshold;
use report::{RunFile, RunInfo};
use st_http::server::{self, Limits, Phase, Stats};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// After the end of a run, the longest wait for bots to drain and push their last interval.
pub const FLUSH_WAIT: Duration = Duration::from_secs(10);

/// Longest hold of an assignment long-poll.
const LONG_POLL: Duration = Duration::from_secs(20);

type Body = BoxBody<Bytes, Infallible>;

/// An aggregator's configuration, validated.
#[derive(Clone)]
pub struct Config {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Bearer token for writes (and for bots).
    pub token: String,
    /// The run directory.
    pub out: PathBuf,
    /// The load spec bots get.
    pub spec: Spec,
    /// How it is split at the start.
    pub plan: Plan,
    /// End the run after this long (`None`: when told, or when a schedule's stages end).
    pub run_for: Option<Duration>,
    /// Windows and limits.
    pub state: state::Config,
    /// Pass/fail checks on the run's totals, judged at the end (results.json's verdicts) and
    /// on the totals so far at each `GET /api/summary` (its `verdicts`, the live page's header).
    pub thresholds: Vec<Threshold>,
    /// End the run as soon as a threshold can no longer pass.
    pub abort_on_fail: bool,
    /// Serve HTTPS with this config (API, UI and the bots' pushes); `None`: plain HTTP.
    pub tls: Option<rustls::ServerConfig>,
    /// Reads need no token even off loopback (`--public-read`).
    pub public_read: bool,
}

impl Config {
    /// Whether reads (the page, the read APIs, the stream, `/metrics`) need the token: when
    /// the aggregator listens on anything but loopback, unless `public_read`.
    pub fn private_reads(&self) -> bool {
        !self.bind.ip().is_loopback() && !self.public_read
    }
}

/// An aggregator that could not start.
#[derive(Debug, thiserror::Error)]
pub enum AggError {
    /// The run directory.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address cannot be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// A thread or runtime could not be made.
    #[error("cannot start: {0}")]
    Start(std::io::Error),
}

/// What a finished run left.
#[derive(Debug)]
pub struct Outcome {
    /// The run.
    pub run: RunFile,
    /// Where results.json was written.
    pub results: PathBuf,
    /// Where report.html was written.
    pub report: PathBuf,
    /// A file could not be written (the run is still returned).
    pub write_error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    token: String,
    instance: String,
    /// The newest assignment generation: long-polls wait on it.
    generation: watch::Sender<u64>,
    /// SSE frames for the UI.
    stream: broadcast::Sender<Bytes>,
    /// Set to end the run.
    finish: watch::Sender<bool>,
    /// Judged on the totals so far for `/api/summary`, and at the end for results.json.
    thresholds: Vec<Threshold>,
    /// Saves of the run begun (counted under the state lock, as the state is copied) and
    /// finished: a bot's leave is answered once a save begun after it has finished.
    saves_begun: AtomicU64,
    saved: watch::Sender<u64>,
    /// Reads need the token too ([`Config::private_reads`]).
    private_reads: bool,
}

/// A running aggregator.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The picked-up run, when `--out` held an unfinished one.
    pub resumed: bool,
    shared: Arc<Shared>,
    thread: std::thread::JoinHandle<Outcome>,
}

pub use st_http::stamp::random_hex;

/// Bind, pick up or start the run, and serve.
pub fn start(cfg: Config) -> Result<Running, AggError> {
    let (mut store, loaded) = Store::open(&cfg.out)?;
    let now = now_unix();
    let resumed = loaded.is_some();
    let mut state = match loaded {
        Some(l) => State::restore(cfg.state.clone(), l.saved, l.closed, now),
        None => State::new(
            cfg.state.clone(),
            random_hex()[..12].to_string(),
            now,
            cfg.spec.clone(),
            cfg.plan.clone(),
        ),
    };
    store.save(&[], &state.saved())?;
    let listeners = server::bind(cfg.bind, 1).map_err(|e| AggError::Bind(cfg.bind, e))?;
    let addr = listeners[0].local_addr().map_err(AggError::Start)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AggError::Start)?;
    let _ = state.tick(now);
    let shared = Arc::new(Shared {
        generation: watch::channel(state.generation()).0,
        state: Mutex::new(state),
        token: cfg.token.clone(),
        instance: random_hex()[..12].to_string(),
        stream: broadcast::channel(1024).0,
        finish: watch::channel(false).0,
        thresholds: cfg.thresholds.clone(),
        saves_begun: AtomicU64::new(0),
        saved: watch::channel(0).0,
        private_reads: cfg.private_reads(),
    });
    let sh = shared.clone();
    let listener = listeners
        .into_iter()
        .next()
        .expect("bind returns one listener");
    let saver = saver::Saver::start(store, shared.clone()).map_err(AggError::Start)?;
    let thread = std::thread::Builder::new()
        .name("aggregate".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, serve(sh, cfg, saver, listener))
        })
        .map_err(AggError::Start)?;
    Ok(Running {
        addr,
        resumed,
        shared,
        thread,
    })
}

/// Ends a run from another thread (a signal handler).
#[derive(Clone)]
pub struct Finisher(Arc<Shared>);

impl Finisher {
    /// End the run (as `POST /api/finish` does).
    pub fn finish(&self) {
        self.0.finish.send_replace(true);
    }
}

impl Running {
    /// End the run (as `POST /api/finish` does).
    pub fn finish(&self) {
        self.shared.finish.send_replace(true);
    }

    /// A handle that ends the run.
    pub fn finisher(&self) -> Finisher {
        Finisher(self.shared.clone())
    }

    /// Wait for the run to end and its results to be written.
    pub fn wait(self) -> Outcome {
        match self.thread.join() {
            Ok(o) => o,
            Err(_) => panic!("the aggregator thread panicked"),
        }
    }
}

async fn serve(
    sh: Arc<Shared>,
    cfg: Config,
    saver: saver::Saver,
    listener: std::net::TcpListener,
) -> Outcome {
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let limits = Limits {
        max_connections: 50_000,
        idle_timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    let stats = Arc::new(Stats::default());
    let make = {
        let sh = sh.clone();
        move |_peer: SocketAddr, activity: Arc<server::Activity>| {
            let sh = sh.clone();
            hyper::service::service_fn(move |req| {
                let (sh, activity) = (sh.clone(), activity.clone());
                // Counted: a connection that pushes every second, or waits on a long poll, is
                // not quiet (uncounted, every bot's connections were closed every ~10 s).
                async move {
                    let h2 = req.version() == http::Version::HTTP_2;
                    Ok::<_, Infallible>(activity.during(h2, api::handle(&sh, req)).await)
                }
            })
        }
    };
    // Cleartext: the bots' pushes on the quick path (see `api`); over TLS, hyper serves all.
    let server = match cfg.tls.clone() {
        None => {
            let quick = std::rc::Rc::new(api::Quick(sh.clone()));
            let serve = st_http::quick::serve(listener, limits, stats, phase_rx, make, quick);
            tokio::task::spawn_local(serve)
        }
        Some(c) => {
            let tls = Some(tokio_rustls::TlsAcceptor::from(Arc::new(c)));
            let serve = server::serve(listener, tls, limits, stats, phase_rx, make);
            tokio::task::spawn_local(serve)
        }
    };
    // From the run's start, not this process's: a restarted aggregator ends the run when the
    // first one would have.
    let (started, scheduled) = {
        let st = sh.state.lock().expect("state lock");
        (st.started_unix, st.scheduled_run())
    };
    // A run started with a schedule (stages) lasts from the schedule's start: --run-for of
    // load, or the stages themselves; checked at each tick, as the start comes with a bot.
    let deadline = cfg.run_for.filter(|_| !scheduled).map(|d| {
        let left = started + d.as_secs_f64() - now_unix();
        Instant::now() + Duration::from_secs_f64(left.max(0.0))
    });
    let mut finish_rx = sh.finish.subscribe();
    // Tick just after each wall-clock second.
    loop {
        let now = now_unix();
        let next = now.floor() + 1.02 - now;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(next)) => {}
            _ = finish_rx.wait_for(|f| *f) => break,
            _ = sleep_until_opt(deadline) => break,
        }
        tick(&sh, &saver);
        if scheduled {
            let run_for = cfg.run_for.map(|d| d.as_secs_f64());
            let end = sh.state.lock().expect("state lock").scheduled_end(run_for);
            if end.is_some_and(|end| now_unix() >= end) {
                break;
            }
        }
        if cfg.abort_on_fail {
            let mut st = sh.state.lock().expect("state lock");
            let total = st.total();
            if let Some(t) = cfg.thresholds.iter().find(|t| t.failed_for_good(&total)) {
                st.threshold_failed(now_unix(), &t.to_string());
                break;
            }
        }
    }
    // The end: bots idle and flush; then close everything.
    let finished_at = now_unix();
    {
        let mut st = sh.state.lock().expect("state lock");
        st.finish(finished_at);
        sh.generation.send_replace(st.generation());
    }
    let flush_deadline = Instant::now() + FLUSH_WAIT;
    while Instant::now() < flush_deadline {
        if sh.state.lock().expect("state lock").all_flushed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tick(&sh, &saver);
    // The saves left so far land first; the run's last save is made here.
    let dir = saver.dir().to_path_buf();
    let (mut store, mut closed) = saver.finish();
    let now = now_unix();
    let (run, write_error) = {
        let mut st = sh.state.lock().expect("state lock");
        // After the seconds that missed the journal (a closed second never opens again).
        closed.extend(st.close_all());
        let saved = st.saved();
        let mut err = match &mut store {
            Ok(store) => store.save(&closed, &saved).err().map(|e| e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        let mut run = st.results(now, run_info(&st.spec, &st.ran));
        run.verdicts = report::threshold::judge(&cfg.thresholds, &run.total, run.elapsed_s);
        let results = dir.join("results.json");
        if let Err(e) = report::write_json_atomic(&run, &results) {
            err.get_or_insert(format!("{}: {e}", results.display()));
        }
        (run, err)
    };
    let report = dir.join("report.html");
    let mut write_error = write_error;
    if let Err(e) = crate::store::write_atomic(&report, report::html::render(&run).as_bytes()) {
        write_error.get_or_insert(e.to_string());
    }
    phase_tx.send_replace(Phase::Stopping);
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Outcome {
        run,
        results: dir.join("results.json"),
        report,
        write_error,
    }
}

/// How the run was set up, for the report header.
fn run_info(spec: &Spec, plan: &Plan) -> RunInfo {
    RunInfo {
        url: spec.display_url(),
        targets: spec.targets.len().max(1),
        weights: load::mix::weights_text(
            &spec.targets.iter().map(|t| t.weight).collect::<Vec<_>>(),
        ),
        mode: if matches!(plan, Plan::Connections { .. }) {
            "closed"
        } else {
            "open"
        }
        .into(),
        protocol: if spec.http2 { "HTTP/2" } else { "HTTP/1.1" }.into(),
        connections: spec.connections as usize,
        streams: spec.streams as usize,
        rate: match plan {
            Plan::Total { rate } => Some(format!("{rate}/s in total")),
            Plan::Shaped { shape, .. } => Some(format!("{shape} in total")),
            Plan::PerBot { rate } => Some(format!("{rate}/s per bot")),
            _ => None,
        },
        timeout_s: spec.timeout_s,
        ..Default::default()
    }
}

async fn sleep_until_opt(d: Option<Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn tick(sh: &Shared, saver: &saver::Saver) {
    let now = now_unix();
    let (t, saved, n) = {
        let mut st = sh.state.lock().expect("state lock");
        let t = st.tick(now);
        let g = st.generation();
        sh.generation
            .send_if_modified(|old| std::mem::replace(old, g) != g);
        let save = sh.saves_begun.fetch_add(1, Ordering::Relaxed) + 1;
        (t, st.saved(), save)
    };
    for p in &t.points {
        let _ = sh.stream.send(sse("point", &p));
    }
    for p in &t.revisions {
        let _ = sh.stream.send(sse("revision", &p));
    }
    for e in &t.events {
        let _ = sh.stream.send(sse("event", &e));
    }
    saver.save(saver::Job {
        closed: t.closed,
        saved,
        n,
    });
}

fn sse<T: serde::Serialize>(event: &str, data: &T) -> Bytes {
    let json = serde_json::to_string(data).expect("serializable");
    Bytes::from(format!("event: {event}\ndata: {json}\n\n"))
}
