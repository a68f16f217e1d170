//! Choosing a backend for one request, from the eligible ones.

use crate::backends::Backend;
use rand::Rng;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How backends are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// In turn.
    RoundRobin,
    /// The one with the fewest requests in flight.
    LeastRequests,
    /// Two at random, the one with fewer requests in flight (power of two choices).
    PowerOfTwo,
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "round-robin" | "rr" => Ok(Algorithm::RoundRobin),
            "least-requests" | "least" => Ok(Algorithm::LeastRequests),
            "p2c" | "power-of-two" => Ok(Algorithm::PowerOfTwo),
            _ => Err(format!(
                "unknown algorithm {s:?} (expected round-robin, least-requests or p2c)"
            )),
        }
    }
}

/// Pick an eligible backend other than `except`; `None` when there is none.
pub fn pick(
    alg: Algorithm,
    set: &[Arc<Backend>],
    turn: &AtomicUsize,
    except: Option<SocketAddr>,
) -> Option<Arc<Backend>> {
    let ok = |b: &&Arc<Backend>| b.eligible() && Some(b.addr) != except;
    let n = set.len();
    if n == 0 {
        return None;
    }
    match alg {
        Algorithm::RoundRobin => {
            let start = turn.fetch_add(1, Ordering::Relaxed);
            (0..n).map(|i| &set[(start + i) % n]).find(ok).cloned()
        }
        Algorithm::LeastRequests => {
            // Start the scan in turn so that ties spread out.
            let start = turn.fetch_add(1, Ordering::Relaxed);
            (0..n)
                .map(|i| &set[(start + i) % n])
                .filter(ok)
                .min_by_key(|b| b.in_flight.load(Ordering::Relaxed))
                .cloned()
        }
        Algorithm::PowerOfTwo => {
            // Counted, then indexed, so that picking allocates nothing. The health checker
            // may change a backend's eligibility between the count and the index, so an
            // index past the end falls back to the first eligible one (or none).
            let m = set.iter().filter(ok).count();
            let first = || set.iter().find(ok);
            let nth = |k: usize| set.iter().filter(ok).nth(k);
            match m {
                0 => None,
                1 => first().cloned(),
                m => {
                    let mut rng = rand::thread_rng();
                    let i = rng.gen_range(0..m);
                    let mut j = rng.gen_range(0..m - 1);
                    if j >= i {
                        j += 1;
                    }
                    let (a, b) = match (nth(i), nth(j)) {
                        (Some(a), Some(b)) => (a, b),
                        (Some(x), None) | (None, Some(x)) => return Some(x.clone()),
                        (None, None) => return first().cloned(),
                    };
                    let pick = if b.in_flight.load(Ordering::Relaxed)
                        < a.in_flight.load(Ordering::Relaxed)
                    {
                        b
                    } else {
                        a
                    };
                    Some(pick.clone())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::Backends;

    fn set(n: u16) -> (Backends, Vec<SocketAddr>) {
        let addrs: Vec<SocketAddr> = (1..=n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        (Backends::new(&addrs), addrs)
    }

    #[test]
    fn round_robin_takes_turns_and_skips_drained() {
        let (b, a) = set(3);
        let turn = AtomicUsize::new(0);
        let s = b.snapshot();
        let got: Vec<_> = (0..6)
            .map(|_| pick(Algorithm::RoundRobin, &s, &turn, None).unwrap().addr)
            .collect();
        assert_eq!(got, vec![a[0], a[1], a[2], a[0], a[1], a[2]]);
        b.drain(a[1], true);
        assert!((0..6).all(|_| pick(Algorithm::RoundRobin, &s, &turn, None).unwrap().addr != a[1]));
        assert_eq!(
            pick(Algorithm::RoundRobin, &s, &turn, Some(a[0]))
                .unwrap()
                .addr,
            a[2]
        );
    }

    #[test]
    fn least_requests_and_p2c_avoid_the_busy_backend() {
        let (b, a) = set(2);
        let s = b.snapshot();
        s[0].in_flight.store(10, Ordering::Relaxed);
        let turn = AtomicUsize::new(0);
        for alg in [Algorithm::LeastRequests, Algorithm::PowerOfTwo] {
            assert!(
                (0..50).all(|_| pick(alg, &s, &turn, None).unwrap().addr == a[1]),
                "{alg:?}"
            );
        }
        b.drain(a[1], true);
        assert_eq!(
            pick(Algorithm::PowerOfTwo, &s, &turn, None).unwrap().addr,
            a[0]
        );
        b.drain(a[0], true);
        assert!(pick(Algorithm::PowerOfTwo, &s, &turn, None).is_none());
    }
}
