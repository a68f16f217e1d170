//! What the control-plane tools measure: each API call's latency by (verb, resource) in HDR
//! histograms, outcomes by HTTP status (429s apart) with the API server's first message for
//! each status, how late scheduled operations started, and the client-side rate limit they
//! may wait for.

use crate::series::{Second, Seconds};
use hdrhistogram::Histogram;
use hist::{histogram_codec, new_histogram};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The verbs the Kubernetes API-call SLOs tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// POST of one object.
    Create,
    /// PATCH of one object.
    Patch,
    /// PUT of one object.
    Update,
    /// DELETE of one object.
    Delete,
    /// GET of one object.
    Get,
    /// LIST in one namespace.
    ListNamespace,
    /// LIST across the cluster (all namespaces, or a cluster-scoped resource).
    ListCluster,
}

impl Verb {
    /// Name as reported.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Patch => "patch",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Get => "get",
            Verb::ListNamespace => "list (namespace)",
            Verb::ListCluster => "list (cluster)",
        }
    }

    /// The p99 latency the Kubernetes API-call SLO allows for this verb.
    pub fn slo(self) -> Duration {
        match self {
            Verb::Create | Verb::Patch | Verb::Update | Verb::Delete | Verb::Get => {
                Duration::from_secs(1)
            }
            Verb::ListNamespace => Duration::from_secs(5),
            Verb::ListCluster => Duration::from_secs(30),
        }
    }
}

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Ok,
    /// An error status from the API server.
    Status(u16),
    /// No HTTP answer: connect, reset, timeout, or an undecodable body.
    Transport,
}

/// What the API server said the first time a kind of failure happened: its `Status`
/// object's reason and message (or, with no HTTP answer, what the client saw).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// The `reason` (`BadRequest`, `TooManyRequests`, ...); empty with no HTTP answer.
    pub reason: String,
    /// The `message`.
    pub message: String,
}

impl ErrorMessage {
    /// The status (None: no HTTP answer) and what was said, from a kube-rs error.
    pub fn of(e: &kube::Error) -> (Option<u16>, ErrorMessage) {
        match e {
            kube::Error::Api(s) => (
                Some(s.code),
                ErrorMessage {
                    reason: s.reason.clone(),
                    message: s.message.clone(),
                },
            ),
            e => {
                // The causes too: "HyperError: client error (Connect): tcp connect error: ...".
                let mut message = e.to_string();
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    let text = c.to_string();
                    if !message.contains(&text) {
                        message = format!("{message}: {text}");
                    }
                    cause = c.source();
                }
                (
                    None,
                    ErrorMessage {
                        reason: String::new(),
                        message,
                    },
                )
            }
        }
    }

    /// One line for a report: "BadRequest: the API version ...", cut at `max` characters.
    pub fn line(&self, max: usize) -> String {
        let s = if self.reason.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.reason, self.message)
        };
        let s = s.replace('\n', " ");
        match s.char_indices().nth(max) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s,
        }
    }
}

/// Keep `m` as the message of `status` (0: no HTTP answer) unless one is kept already.
pub fn keep_first(into: &mut BTreeMap<u16, ErrorMessage>, status: Option<u16>, m: ErrorMessage) {
    into.entry(status.unwrap_or(0)).or_insert(m);
}

/// The calls of one (verb, resource).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    /// The verb.
    pub verb: Verb,
    /// The resource (plural, with its group when not core).
    pub resource: String,
    /// Calls that got an answer (any status): their latency is in `latency`.
    pub answered: u64,
    /// Calls answered 2xx.
    pub ok: u64,
    /// Error answers by HTTP status; 429 (API Priority and Fairness) is among them and also
    /// reported on its own.
    pub status: BTreeMap<u16, u64>,
    /// Calls that got no HTTP answer.
    pub transport_errors: u64,
    /// The API server's first message for each error status (0: the first call with no HTTP
    /// answer, what the client saw).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub messages: BTreeMap<u16, ErrorMessage>,
    /// Latency of answered calls, µs.
    #[serde(with = "histogram_codec")]
    pub latency: Histogram<u64>,
}

impl CallStats {
    fn new(verb: Verb, resource: &str) -> CallStats {
        CallStats {
            verb,
            resource: resource.to_string(),
            answered: 0,
            ok: 0,
            status: BTreeMap::new(),
            transport_errors: 0,
            messages: BTreeMap::new(),
            latency: new_histogram(),
        }
    }

    /// Calls made: answered or not.
    pub fn total(&self) -> u64 {
        self.answered + self.transport_errors
    }

    /// Calls that failed (error status or no answer).
    pub fn errors(&self) -> u64 {
        self.status.values().sum::<u64>() + self.transport_errors
    }

    /// 429 answers.
    pub fn throttled(&self) -> u64 {
        self.status.get(&429).copied().unwrap_or(0)
    }

    /// Add another's counts (the same verb and resource).
    pub fn merge(&mut self, o: &CallStats) {
        self.answered += o.answered;
        self.ok += o.ok;
        self.transport_errors += o.transport_errors;
        for (k, v) in &o.status {
            *self.status.entry(*k).or_default() += v;
        }
        for (k, m) in &o.messages {
            keep_first(&mut self.messages, Some(*k), m.clone());
        }
        let _ = self.latency.add(&o.latency);
    }
}

/// A call's key in the per-second records: `create configmaps`, `list (namespace) pods`.
pub fn call_key(verb: Verb, resource: &str) -> String {
    format!("{} {resource}", verb.name())
}

/// Add runs' calls into `into`: the same (verb, resource) merged, new ones added, in
/// (verb, resource) order.
pub fn merge_calls(into: &mut Vec<CallStats>, from: &[CallStats]) {
    for c in from {
        match into
            .iter_mut()
            .find(|o| o.verb == c.verb && o.resource == c.resource)
        {
            Some(o) => o.merge(c),
            None => into.push(c.clone()),
        }
    }
    into.sort_by(|a, b| (a.verb, &a.resource).cmp(&(b.verb, &b.resource)));
}

fn us(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

/// Everything one run recorded; shared by its tasks behind a mutex (held for a few
/// hundred nanoseconds per call). Each call is also counted in its second
/// ([`crate::series`]), apart, so that a copy of the totals does not copy every second.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Recorded>,
    seconds: Mutex<Seconds>,
}

/// The recorded values.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// By (verb, resource).
    pub calls: BTreeMap<(Verb, String), CallStats>,
    /// Open loop: start − intended start of each operation, µs.
    pub lateness: Option<Histogram<u64>>,
}

impl Recorder {
    /// Record one call.
    pub fn call(&self, verb: Verb, resource: &str, took: Duration, outcome: Outcome) {
        // An answered call is timed; any but a 2xx failed.
        let timed = (outcome != Outcome::Transport).then(|| us(took).max(1));
        let failed = outcome != Outcome::Ok;
        // Both locks at once (seconds first, as `with_seconds`), so that a copy of both sees
        // every call in both or in neither.
        let key = call_key(verb, resource);
        let mut seconds = self.seconds.lock().expect("recorder lock");
        seconds.record(Instant::now(), &key, timed, failed);
        let mut r = self.inner.lock().expect("recorder lock");
        let c = r
            .calls
            .entry((verb, resource.to_string()))
            .or_insert_with(|| CallStats::new(verb, resource));
        if let Some(us) = timed {
            c.answered += 1;
            let _ = c.latency.record(us);
        }
        match outcome {
            Outcome::Ok => c.ok += 1,
            Outcome::Status(s) => *c.status.entry(s).or_default() += 1,
            Outcome::Transport => c.transport_errors += 1,
        }
    }

    /// Record one call by its result, keeping the first message of each kind of failure.
    pub fn result<T>(
        &self,
        verb: Verb,
        resource: &str,
        took: Duration,
        r: &Result<T, kube::Error>,
    ) {
        let e = match r {
            Ok(_) => return self.call(verb, resource, took, Outcome::Ok),
            Err(e) => e,
        };
        let (status, m) = ErrorMessage::of(e);
        self.call(
            verb,
            resource,
            took,
            status.map_or(Outcome::Transport, Outcome::Status),
        );
        let mut r = self.inner.lock().expect("recorder lock");
        if let Some(c) = r.calls.get_mut(&(verb, resource.to_string())) {
            keep_first(&mut c.messages, status, m);
        }
    }

    /// Record how late a scheduled operation started.
    pub fn late(&self, by: Duration) {
        let mut r = self.inner.lock().expect("recorder lock");
        let _ = r.lateness.get_or_insert_with(new_histogram).record(us(by));
    }

    /// Calls and failed calls so far (cheap: for a progress line).
    pub fn totals(&self) -> (u64, u64) {
        let r = self.inner.lock().expect("recorder lock");
        r.calls
            .values()
            .fold((0, 0), |(n, e), c| (n + c.total(), e + c.errors()))
    }

    /// A copy of what was recorded so far.
    pub fn snapshot(&self) -> Recorded {
        self.inner.lock().expect("recorder lock").clone()
    }

    /// For the run's file: what was recorded, the calls of every second from this
    /// recorder's creation, and the second they stop at although calls went on
    /// ([`Seconds::cut`]); one copy, so that the seconds add up to the calls even while
    /// tasks still call.
    pub fn with_seconds(&self) -> (Recorded, Vec<Second>, Option<u64>) {
        let s = self.seconds.lock().expect("recorder lock");
        let r = self.inner.lock().expect("recorder lock").clone();
        (r, s.all(), s.cut())
    }

    /// When its second 0 began (other series of the run count from it too).
    pub fn start(&self) -> Instant {
        self.seconds.lock().expect("recorder lock").start()
    }
}

/// A client-side QPS/burst limit (a token bucket, as client-go's): each caller reserves a
/// token and is told how long to wait for it, so waiters are served in order without polling.
#[derive(Debug)]
pub struct Limiter {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Limiter {
    /// `qps` tokens per second, at most `burst` saved up (the bucket starts full).
    pub fn new(qps: f64, burst: u32) -> Limiter {
        let burst = f64::from(burst.max(1));
        Limiter {
            qps,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Reserve a token; returns how long to wait before using it.
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut s = self.state.lock().expect("limiter lock");
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.qps).min(self.burst) - 1.0;
        s.1 = s.1.max(now);
        if s.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(-s.0 / self.qps).unwrap_or(Duration::MAX)
        }
    }

    /// Wait for a token.
    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_allows_a_burst_then_spaces_calls_by_one_over_qps() {
        let l = Limiter::new(10.0, 3);
        let t = Instant::now();
        let waits: Vec<Duration> = (0..6).map(|_| l.reserve(t)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        let ms: Vec<u128> = waits[3..].iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 300]);
        // A second later the debt (3 tokens) is paid and 7 more accrued, capped at the burst.
        let later = t + Duration::from_secs(1);
        let w: Vec<Duration> = (0..4).map(|_| l.reserve(later)).collect();
        assert_eq!(&w[..3], &[Duration::ZERO; 3]);
        assert_eq!(w[3].as_millis(), 100);
    }

    #[test]
    fn calls_are_kept_by_verb_and_resource_with_429_among_the_statuses() {
        let r = Recorder::default();
        r.call(
            Verb::Create,
            "configmaps",
            Duration::from_millis(2),
            Outcome::Ok,
        );
        r.call(
            Verb::Create,
            "configmaps",
            Duration::from_millis(4),
            Outcome::Status(429),
        );
        r.call(
            Verb::Create,
            "configmaps",
            Duration::from_millis(4),
            Outcome::Transport,
        );
        r.call(
            Verb::Delete,
            "configmaps",
            Duration::from_millis(1),
            Outcome::Ok,
        );
        let s = r.snapshot();
        let c = &s.calls[&(Verb::Create, "configmaps".to_string())];
        assert_eq!((c.answered, c.ok, c.errors(), c.throttled()), (2, 1, 2, 1));
        assert_eq!(c.latency.len(), 2);
        assert_eq!(s.calls.len(), 2);
    }
}
