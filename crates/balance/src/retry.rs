//! The retry policy and the attempt loop, shared by both forwarding paths (the pipelined
//! HTTP/1.1 one in [`crate::front`] and the hyper one in [`crate::forward`]).
//!
//! One rule, from what failed and the method (RFC 9110 §9.2.2):
//! - the backend certainly did not process the request (the connection was never made, or the
//!   backend had announced it would close before this request): send it elsewhere, any method;
//! - it may have (sent, then the connection ended, or the answer was not valid HTTP): send it
//!   elsewhere only if the method is idempotent, which makes a second copy harmless;
//! - no answer within the timeout: never (the request has had its time), 504.
//!
//! A request is tried at most twice, the second time on another backend. A connect failure
//! also ejects the backend until its health check passes again.

use crate::backends::{Backend, Backends, Health};
use crate::pick::{pick, Algorithm};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Why an attempt got no response.
#[derive(Debug, thiserror::Error)]
pub enum Fail {
    /// The connection could not be made: nothing was sent.
    #[error("connect: {0}")]
    Connect(String),
    /// The backend closed the connection (announced) before this request: not processed.
    #[error("connection closed by the backend before the request")]
    Unsent,
    /// The connection ended after the request was sent, before any response byte.
    #[error("connection lost before the response: {0}")]
    Lost(String),
    /// The backend's response was not valid HTTP.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// No response within the request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Send the request to another backend.
    pub retry: bool,
    /// Take the backend out of the set until its health check passes.
    pub eject: bool,
    /// The status to answer with when not retrying.
    pub status: u16,
}

impl Fail {
    /// Whether the backend may have processed the request.
    pub fn maybe_seen(&self) -> bool {
        !matches!(self, Fail::Connect(_) | Fail::Unsent)
    }

    /// The policy: what to do after this failure on attempt `attempt` (0 is the first).
    pub fn decide(&self, idempotent: bool, attempt: u32) -> Decision {
        let timeout = matches!(self, Fail::Timeout(_));
        Decision {
            retry: attempt == 0 && !timeout && (idempotent || !self.maybe_seen()),
            eject: matches!(self, Fail::Connect(_)),
            status: if timeout { 504 } else { 502 },
        }
    }
}

/// Methods that may be sent twice (RFC 9110 §9.2.2): the one list, in `st_http`.
pub use st_http::idempotent;

/// Counts a request in flight at a backend (for least-requests) however the attempt ends.
pub(crate) struct InFlight<'a>(&'a Backend);

impl<'a> InFlight<'a> {
    pub(crate) fn new(b: &'a Backend) -> Self {
        b.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(b)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request the balancer answers itself, with a status and a reason.
pub(crate) struct Refused(pub u16, pub String);

/// Pick a backend and `send` the request to it, and once more to another when [`Fail::decide`]
/// says so. Keeps the per-backend counters.
pub(crate) async fn attempt<T, F, Fut>(
    backends: &Backends,
    algorithm: Algorithm,
    turn: &AtomicUsize,
    idempotent: bool,
    mut send: F,
) -> Result<T, Refused>
where
    F: FnMut(&Backend) -> Fut,
    Fut: Future<Output = Result<T, Fail>>,
{
    let mut tried: Option<SocketAddr> = None;
    for n in 0..2 {
        let set = backends.snapshot();
        let Some(b) = pick(algorithm, &set, turn, tried) else {
            return Err(Refused(503, "no backend available".into()));
        };
        let guard = InFlight::new(&b);
        let result = send(&b).await;
        drop(guard);
        let fail = match result {
            Ok(t) => {
                b.requests.fetch_add(1, Ordering::Relaxed);
                return Ok(t);
            }
            Err(f) => f,
        };
        b.errors.fetch_add(1, Ordering::Relaxed);
        let d = fail.decide(idempotent, n);
        if d.eject {
            b.set_health(Health::Down);
            b.ok_streak.store(0, Ordering::Relaxed);
        }
        if !d.retry {
            return Err(Refused(
                d.status,
                format!("backend {} failed: {fail}", b.addr),
            ));
        }
        b.retried.fetch_add(1, Ordering::Relaxed);
        tried = Some(b.addr);
    }
    Err(Refused(502, "no backend could take the request".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_decides_for_both_paths() {
        let d = Duration::from_secs(1);
        let s = String::new;
        // (failure, idempotent, attempt) → (retry, eject, status)
        let table: &[(Fail, bool, u32, bool, bool, u16)] = &[
            (Fail::Connect(s()), false, 0, true, true, 502),
            (Fail::Connect(s()), true, 0, true, true, 502),
            (Fail::Connect(s()), true, 1, false, true, 502),
            (Fail::Unsent, false, 0, true, false, 502),
            (Fail::Unsent, true, 1, false, false, 502),
            (Fail::Lost(s()), true, 0, true, false, 502),
            (Fail::Lost(s()), false, 0, false, false, 502),
            (Fail::Lost(s()), true, 1, false, false, 502),
            (Fail::Malformed(s()), true, 0, true, false, 502),
            (Fail::Malformed(s()), false, 0, false, false, 502),
            (Fail::Timeout(d), true, 0, false, false, 504),
            (Fail::Timeout(d), false, 0, false, false, 504),
        ];
        for (fail, idem, attempt, retry, eject, status) in table {
            let got = fail.decide(*idem, *attempt);
            let want = Decision {
                retry: *retry,
                eject: *eject,
                status: *status,
            };
            assert_eq!(got, want, "{fail:?} idempotent={idem} attempt={attempt}");
        }
    }

    #[test]
    fn only_safe_methods_are_idempotent() {
        for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
            assert!(idempotent(m.as_bytes()), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "get", "FOO"] {
            assert!(!idempotent(m.as_bytes()), "{m}");
        }
    }
}
