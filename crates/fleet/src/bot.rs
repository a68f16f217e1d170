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

use crate::now_unix;
use crate::wire::{Ack, Assignment, Interval, Push, Register, Registered, MAX_BATCH};
use bytes::Bytes;
use hist::{Intervals, Snapshot};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use load::{Live, RateControl, Shutdown, Spec};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
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
    /// The aggregator, `http://host:port`.
    pub aggregator: String,
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

struct Agg {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Debug)]
enum Fail {
    /// The aggregator answered with this status and reason.
    Status(u16, String),
    /// No answer.
    Unreachable,
}

impl Agg {
    fn new(base: &str, token: &str) -> Result<Agg, BotError> {
        let u = url::Url::parse(base).map_err(|e| BotError::Url(base.into(), e.to_string()))?;
        if u.scheme() != "http" || u.host_str().is_none() {
            return Err(BotError::Url(
                base.into(),
                "expected http://HOST:PORT".into(),
            ));
        }
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(REQUEST_TIMEOUT));
        Ok(Agg {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(conn),
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<T, Fail> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| Fail::Unreachable)?;
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|_| Fail::Unreachable)?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|_| Fail::Unreachable)?
                .to_bytes();
            if status != 200 {
                let why = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
                return Err(Fail::Status(status, why));
            }
            serde_json::from_slice(&bytes).map_err(|e| Fail::Status(status, e.to_string()))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or(Err(Fail::Unreachable))
    }
}

/// This machine's host name (for the bots table), or "unknown".
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The load a bot is running.
struct Running {
    spec: Spec,
    shutdown: Shutdown,
    rate: Option<RateControl>,
    done: tokio::task::JoinHandle<()>,
}

/// Two specs that differ at most in their rate (a live change, not a new run).
fn same_but_rate(a: &Spec, b: &Spec) -> bool {
    a.rate.is_some()
        && b.rate.is_some()
        && Spec {
            rate: None,
            ..a.clone()
        } == Spec {
            rate: None,
            ..b.clone()
        }
}

/// Run a bot until `stop` fires (SIGTERM) or, with `exit_when_finished`, the run is over.
pub async fn run(cfg: Config, stop: Shutdown) -> Result<Outcome, BotError> {
    let agg = std::rc::Rc::new(Agg::new(&cfg.aggregator, &cfg.token)?);
    let (snap_tx, mut snap_rx) = mpsc::unbounded_channel::<(u64, Snapshot)>();
    let (asg_tx, mut asg_rx) = mpsc::unbounded_channel::<Assignment>();
    let mut out = Outcome::default();
    let mut id: Option<u64> = None;
    // The id this bot had: asked for again after the aggregator forgot or restarted.
    let mut last_id: Option<u64> = None;
    // When SIGTERM came: the last delivery is bounded by STOP_GRACE from then.
    let mut stop_at: Option<Instant> = None;
    let mut instance = String::new();
    // The run it was in: said when registering again, so that a new aggregator on an empty
    // directory knows the run restarted.
    let mut run = String::new();
    let mut acc = Intervals::new();
    // Seconds up to this one have been moved to the outbox.
    let mut moved: u64 = 0;
    let mut outbox: VecDeque<Interval> = VecDeque::new();
    let mut retained: VecDeque<Interval> = VecDeque::new();
    let mut generation: u64 = 0;
    let mut current: Option<Running> = None;
    let mut finishing: Vec<Running> = Vec::new();
    let mut poller: Option<tokio::task::JoinHandle<()>> = None;
    let mut finished = false;
    let mut backoff = Duration::from_millis(200);
    loop {
        // (Re-)register when needed.
        if id.is_none() {
            let r = Register {
                id: last_id,
                name: cfg.name.clone(),
                host: host_name(),
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").into(),
                clock_unix: now_unix(),
                previous_run: (!run.is_empty()).then(|| run.clone()),
            };
            match agg
                .call::<Registered>(
                    http::Method::POST,
                    "/api/bots",
                    Some(serde_json::to_vec(&r).expect("serializable")),
                    REQUEST_TIMEOUT,
                )
                .await
            {
                Ok(reg) => {
                    // Seconds the aggregator had not saved go again.
                    let mut again: VecDeque<Interval> =
                        retained.drain(..).filter(|i| i.t > reg.hwm).collect();
                    again.extend(outbox.drain(..).filter(|i| i.t > reg.hwm));
                    outbox = again;
                    id = Some(reg.id);
                    last_id = Some(reg.id);
                    instance = reg.instance;
                    run = reg.run;
                    backoff = Duration::from_millis(200);
                    if let Some(p) = poller.take() {
                        p.abort();
                    }
                    poller = Some(tokio::task::spawn_local(poll(
                        agg.clone(),
                        reg.id,
                        asg_tx.clone(),
                    )));
                }
                Err(Fail::Status(code, why)) if code == 401 || code == 400 => {
                    return Err(BotError::Refused(why));
                }
                Err(_) => {
                    // SIGTERM while the aggregator cannot be reached: the load stops as it
                    // would registered, and delivery gets the same grace.
                    if stop_at.is_none() && stop.is_finishing() {
                        stop_at = Some(Instant::now());
                        wind_down(&mut current, &mut finishing);
                    }
                    // A bot that never registered ran no load: nothing to deliver, it exits.
                    let give_up =
                        stop_at.is_some_and(|t| last_id.is_none() || t.elapsed() > STOP_GRACE);
                    if stop.is_triggered() || give_up {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.finishing(), if stop_at.is_none() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let bot_id = id.expect("registered above");
        // Wait for the next push time, an assignment, or the stop signal.
        let now = now_unix();
        let next_push = now.floor() + 1.0 + PUSH_DELAY - now;
        let next_push = if next_push > 1.0 {
            next_push - 1.0
        } else {
            next_push
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(next_push)) => {}
            Some((t, s)) = snap_rx.recv() => {
                out.responses += s.responses;
                // A second already pushed (a draining run's last part) joins the next one.
                acc.add(t.max(moved + 1), &s);
                continue;
            }
            Some(a) = asg_rx.recv() => {
                if a.generation != generation {
                    generation = a.generation;
                    finished = a.finished;
                    apply(&a, &mut current, &mut finishing, &cfg, &snap_tx);
                }
                continue;
            }
            _ = stop.finishing(), if stop_at.is_none() => {
                stop_at = Some(Instant::now());
                wind_down(&mut current, &mut finishing);
                continue;
            }
        }
        // Runs that ended: their last intervals are in the channel already.
        finishing.retain(|r| !r.done.is_finished());
        let idle = current.is_none() && finishing.is_empty();
        while let Ok((t, s)) = snap_rx.try_recv() {
            out.responses += s.responses;
            acc.add(t.max(moved + 1), &s);
        }
        // Move complete seconds to the outbox (all of them once idle).
        let complete = if idle {
            u64::MAX
        } else {
            (now_unix() - PUSH_DELAY).floor() as u64
        };
        for (t, _, s) in acc.pop_before(complete) {
            outbox.push_back(Interval {
                t,
                snap: (&s).into(),
            });
            moved = moved.max(t);
        }
        while outbox.len() > cfg.outbox.max(1) {
            outbox.pop_front();
            out.dropped += 1;
        }
        // Push (several batches when catching up).
        let mut delivered_all = false;
        loop {
            let batch: Vec<Interval> = outbox.iter().take(MAX_BATCH).cloned().collect();
            let last_batch = batch.len() == outbox.len();
            let p = Push {
                clock_unix: now_unix(),
                dropped: out.dropped,
                intervals: batch,
                generation,
                idle: idle && last_batch && acc.is_empty(),
                instance: instance.clone(),
            };
            match agg
                .call::<Ack>(
                    http::Method::POST,
                    &format!("/api/bots/{bot_id}/snapshots"),
                    Some(serde_json::to_vec(&p).expect("serializable")),
                    REQUEST_TIMEOUT,
                )
                .await
            {
                Ok(ack) => {
                    if ack.instance != instance {
                        // Restarted aggregator: register again to learn what it kept.
                        id = None;
                        break;
                    }
                    while outbox.front().is_some_and(|i| i.t <= ack.hwm) {
                        retained.push_back(outbox.pop_front().expect("checked"));
                    }
                    while retained.len() > RETAIN {
                        retained.pop_front();
                    }
                    if outbox.is_empty() {
                        delivered_all = true;
                        break;
                    }
                }
                Err(Fail::Status(404 | 409, _)) => {
                    // It does not know us, or it restarted: register again to learn what it
                    // has, then re-send the rest in order.
                    id = None;
                    break;
                }
                Err(Fail::Status(code, why)) if (400..500).contains(&code) && code != 429 => {
                    // A push it will never take: drop the batch rather than loop forever.
                    (cfg.warn)(&format!("the aggregator refused a push: {why}"));
                    let n = p.intervals.len().max(1);
                    for _ in 0..n {
                        outbox.pop_front();
                    }
                    out.dropped += n as u64;
                }
                Err(_) => break,
            }
        }
        // Exit: stopped (SIGTERM) or told the run is over, once idle and delivered (or out of
        // time to deliver).
        let done_asked = stop_at.is_some() || (finished && cfg.exit_when_finished);
        let out_of_time = stop.is_triggered() || stop_at.is_some_and(|t| t.elapsed() > STOP_GRACE);
        if done_asked && current.is_none() && finishing.is_empty() && (delivered_all || out_of_time)
        {
            {
                if let Some(id) = id {
                    let _ = agg
                        .call::<serde_json::Value>(
                            http::Method::DELETE,
                            &format!("/api/bots/{id}"),
                            None,
                            REQUEST_TIMEOUT,
                        )
                        .await;
                }
                break;
            }
        }
        if done_asked {
            wind_down(&mut current, &mut finishing);
        }
    }
    if let Some(p) = poller {
        p.abort();
    }
    out.undelivered = outbox.len();
    Ok(out)
}

/// Follow the assignment: a long-poll that returns when it changes.
async fn poll(agg: std::rc::Rc<Agg>, id: u64, tx: mpsc::UnboundedSender<Assignment>) {
    let mut after = u64::MAX;
    loop {
        match agg
            .call::<Assignment>(
                http::Method::GET,
                &format!("/api/bots/{id}/assignment?after={after}"),
                None,
                Duration::from_secs(30),
            )
            .await
        {
            Ok(a) => {
                after = a.generation;
                if tx.send(a).is_err() {
                    return;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Ask the running load (if any) to finish gracefully; it drains among `finishing`.
fn wind_down(current: &mut Option<Running>, finishing: &mut Vec<Running>) {
    if let Some(r) = current.take() {
        r.shutdown.finish();
        finishing.push(r);
    }
}

/// Make the running load match the assignment.
fn apply(
    a: &Assignment,
    current: &mut Option<Running>,
    finishing: &mut Vec<Running>,
    cfg: &Config,
    snaps: &mpsc::UnboundedSender<(u64, Snapshot)>,
) {
    let Some(spec) = &a.spec else {
        wind_down(current, finishing);
        return;
    };
    if let Some(r) = current.as_mut() {
        if same_but_rate(&r.spec, spec) {
            if let (Some(ctl), Ok(Some(shape))) = (&r.rate, spec.rate_shape()) {
                ctl.set(shape.rate_at(0.0, 1.0));
                r.spec = spec.clone();
                return;
            }
        }
        if &r.spec == spec {
            return;
        }
    }
    wind_down(current, finishing);
    let spec = Spec {
        threads: spec.threads.or(cfg.threads),
        ..spec.clone()
    };
    let rate = match spec.rate_shape() {
        Ok(Some(shape)) => Some(RateControl::new(shape.rate_at(0.0, 1.0))),
        _ => None,
    };
    let live = Live {
        wall_clock_ticks: true,
        rate: rate.clone(),
        until_stopped: true,
    };
    let config = match spec.build(live) {
        Ok(c) => c,
        Err(e) => {
            (cfg.warn)(&format!("cannot run the assigned load: {e}"));
            return;
        }
    };
    let shutdown = Shutdown::new();
    let tx = snaps.clone();
    let sd = shutdown.clone();
    let warn = cfg.warn;
    let done = tokio::task::spawn_local(async move {
        let r = load::run(config, sd, move |p| {
            let _ = tx.send((p.wall_second, p.snapshot.clone()));
        })
        .await;
        if let Err(e) = r {
            warn(&format!("the load stopped: {e}"));
        }
    });
    *current = Some(Running {
        spec,
        shutdown,
        rate,
        done,
    });
}

/// How long a bot tries, at most, after SIGTERM to drain and deliver its last seconds.
pub const STOP_GRACE: Duration = Duration::from_secs(8);
