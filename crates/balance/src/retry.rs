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
//! A request is tried at most twice, the second time on another backend when the first
//! failed by the backend's doing.
//!
//! And one rule for blame: only what the backend's own address did counts against it (its
//! `errors`, and passive ejection). A connection to it that could not be made ejects it until
//! its health check passes again; a connection lost, a malformed answer or no answer in time
//! count as its errors. What the request or the balancer caused never does: a request that
//! cannot be sent as it is, an attempt the balancer abandoned, a backend's announced close
//! (well-behaved HTTP), a wait for a connection that another request gave up. Requests refused before any attempt (a target that cannot be
//! forwarded: [`crate::target`]; a body over the limit; a malformed request; a client gone
//! before its request was whole) never reach a backend at all.

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
    /// The request cannot be sent as it is (the client library refused it): not the
    /// backend's doing, and no other backend would take it either.
    #[error("the request cannot be forwarded: {0}")]
    Unsendable(String),
    /// The balancer ended the attempt itself (it is stopping, or the backend was removed).
    #[error("abandoned by the balancer: {0}")]
    Abandoned(String),
    /// The request waited for a connection another request was opening, and that request
    /// went away (its client did): nothing was sent, and nothing said about the backend.
    #[error("the connection it waited for was canceled: {0}")]
    Canceled(String),
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Send the request to another backend.
    pub retry: bool,
    /// Take the backend out of the set until its health check passes.
    pub eject: bool,
    /// Count the failure against the backend (its `errors`).
    pub blame: bool,
    /// The status to answer with when not retrying.
    pub status: u16,
}

impl Fail {
    /// Whether the backend may have processed the request.
    pub fn maybe_seen(&self) -> bool {
        !matches!(
            self,
            Fail::Connect(_) | Fail::Unsent | Fail::Unsendable(_) | Fail::Canceled(_)
        )
    }

    /// The policy: what to do after this failure on attempt `attempt` (0 is the first).
    pub fn decide(&self, idempotent: bool, attempt: u32) -> Decision {
        let timeout = matches!(self, Fail::Timeout(_));
        let unsendable = matches!(self, Fail::Unsendable(_));
        Decision {
            retry: attempt == 0 && !timeout && !unsendable && (idempotent || !self.maybe_seen()),
            eject: matches!(self, Fail::Connect(_)),
            blame: matches!(
                self,
                Fail::Connect(_) | Fail::Lost(_) | Fail::Malformed(_) | Fail::Timeout(_)
            ),
            status: match self {
                Fail::Timeout(_) => 504,
                Fail::Unsendable(_) => 400,
                _ => 502,
            },
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

/// What both paths send in `Retry-After` with a 503 of the balancer's own (it has no backend
/// to take the request now): a second, about one health-check interval, after which one may
/// be back; clients that honour it come back rather than fail or hammer.
pub(crate) const RETRY_AFTER_S: &str = "1";

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
        let d = fail.decide(idempotent, n);
        if d.blame {
            b.errors.fetch_add(1, Ordering::Relaxed);
        }
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
        // Elsewhere when the backend failed it; a backend not to blame may take it again
        // (it may be the only one).
        tried = d.blame.then_some(b.addr);
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
        // (failure, idempotent, attempt) → (retry, eject, blame, status)
        let table: &[(Fail, bool, u32, bool, bool, bool, u16)] = &[
            // The backend's own address: it could not be reached, or read.
            (Fail::Connect(s()), false, 0, true, true, true, 502),
            (Fail::Connect(s()), true, 0, true, true, true, 502),
            (Fail::Connect(s()), true, 1, false, true, true, 502),
            (Fail::Lost(s()), true, 0, true, false, true, 502),
            (Fail::Lost(s()), false, 0, false, false, true, 502),
            (Fail::Lost(s()), true, 1, false, false, true, 502),
            (Fail::Malformed(s()), true, 0, true, false, true, 502),
            (Fail::Malformed(s()), false, 0, false, false, true, 502),
            (Fail::Timeout(d), true, 0, false, false, true, 504),
            (Fail::Timeout(d), false, 0, false, false, true, 504),
            // A close the backend announced is HTTP working as it should.
            (Fail::Unsent, false, 0, true, false, false, 502),
            (Fail::Unsent, true, 1, false, false, false, 502),
            // The request's or the balancer's doing: never the backend's.
            (Fail::Unsendable(s()), true, 0, false, false, false, 400),
            (Fail::Unsendable(s()), false, 0, false, false, false, 400),
            (Fail::Abandoned(s()), true, 0, true, false, false, 502),
            (Fail::Abandoned(s()), false, 0, false, false, false, 502),
            (Fail::Canceled(s()), false, 0, true, false, false, 502),
            (Fail::Canceled(s()), true, 1, false, false, false, 502),
        ];
        for (fail, idem, attempt, retry, eject, blame, status) in table {
            let got = fail.decide(*idem, *attempt);
            let want = Decision {
                retry: *retry,
                eject: *eject,
                blame: *blame,
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
