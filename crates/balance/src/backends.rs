//! The backend set: rebuilt off the hot path (admin API, file watch, health checks) and swapped
//! whole, so picking a backend takes one read of an `Arc` and never waits on a writer for long.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// A backend's health as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Takes new requests.
    Up,
    /// Its `/readyz` says 503: no new requests, in-flight ones finish.
    Draining,
    /// Failing health checks or refusing connections: no requests until it recovers.
    Down,
}

/// One backend and its counters.
#[derive(Debug)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    health: AtomicU8,
    /// Drained by the admin API: takes no new requests whatever its health.
    admin_drain: AtomicBool,
    /// Requests in flight to it now.
    pub in_flight: AtomicUsize,
    pub(crate) ok_streak: AtomicU32,
    pub(crate) fail_streak: AtomicU32,
    /// Requests answered by it.
    pub requests: AtomicU64,
    /// Requests that failed by its own doing (before retries; the rule is [`crate::retry`]'s).
    pub errors: AtomicU64,
    /// Requests moved from it to another backend.
    pub retried: AtomicU64,
}

impl Backend {
    fn new(addr: SocketAddr) -> Self {
        Backend {
            addr,
            health: AtomicU8::new(Health::Up as u8),
            admin_drain: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            ok_streak: AtomicU32::new(0),
            fail_streak: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        }
    }

    /// Current health.
    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            0 => Health::Up,
            1 => Health::Draining,
            _ => Health::Down,
        }
    }

    pub(crate) fn set_health(&self, h: Health) {
        self.health.store(h as u8, Ordering::Relaxed);
    }

    /// Whether the admin API drained it.
    pub fn admin_drained(&self) -> bool {
        self.admin_drain.load(Ordering::Relaxed)
    }

    /// Whether it may take a new request.
    pub fn eligible(&self) -> bool {
        self.health() == Health::Up && !self.admin_drained()
    }
}

/// The current set of backends.
#[derive(Debug, Default)]
pub struct Backends {
    set: RwLock<Arc<Vec<Arc<Backend>>>>,
}

impl Backends {
    /// A set holding `addrs`.
    pub fn new(addrs: &[SocketAddr]) -> Self {
        let b = Backends::default();
        for a in addrs {
            b.add(*a);
        }
        b
    }

    /// The set as it is now.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Backend>>> {
        self.set.read().expect("backend set lock").clone()
    }

    fn update(&self, f: impl FnOnce(&mut Vec<Arc<Backend>>) -> bool) -> bool {
        let mut guard = self.set.write().expect("backend set lock");
        let mut next = (**guard).clone();
        let changed = f(&mut next);
        if changed {
            *guard = Arc::new(next);
        }
        changed
    }

    /// Add a backend; false if it is already there.
    pub fn add(&self, addr: SocketAddr) -> bool {
        self.update(|v| {
            if v.iter().any(|b| b.addr == addr) {
                return false;
            }
            v.push(Arc::new(Backend::new(addr)));
            true
        })
    }

    /// Remove a backend; in-flight requests to it finish. False if it was not there.
    pub fn remove(&self, addr: SocketAddr) -> bool {
        self.update(|v| {
            let before = v.len();
            v.retain(|b| b.addr != addr);
            v.len() != before
        })
    }

    /// Stop (or resume) sending new requests to a backend. False if it is not there.
    pub fn drain(&self, addr: SocketAddr, drain: bool) -> bool {
        match self.snapshot().iter().find(|b| b.addr == addr) {
            Some(b) => {
                b.admin_drain.store(drain, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Make the set exactly `addrs`, keeping the state of backends that stay.
    pub fn replace_all(&self, addrs: &[SocketAddr]) -> bool {
        self.update(|v| {
            let before: Vec<SocketAddr> = v.iter().map(|b| b.addr).collect();
            v.retain(|b| addrs.contains(&b.addr));
            for a in addrs {
                if !v.iter().any(|b| b.addr == *a) {
                    v.push(Arc::new(Backend::new(*a)));
                }
            }
            before != v.iter().map(|b| b.addr).collect::<Vec<_>>()
        })
    }
}

/// Parse a backends file: one `host:port` per line, `#` comments and blank lines ignored.
pub fn parse_backends_file(text: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let a: SocketAddr = line.parse().map_err(|_| {
            format!(
                "line {}: {line:?} is not an address like 127.0.0.1:8081",
                i + 1
            )
        })?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_changes_by_swapping_and_keeps_state_of_survivors() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:3".parse().unwrap();
        let set = Backends::new(&[a, b]);
        let old = set.snapshot();
        old[0].requests.store(7, Ordering::Relaxed);
        assert!(!set.add(a));
        assert!(set.replace_all(&[a, c]));
        let new = set.snapshot();
        assert_eq!(new.iter().map(|x| x.addr).collect::<Vec<_>>(), vec![a, c]);
        assert_eq!(new[0].requests.load(Ordering::Relaxed), 7);
        // Readers holding the old snapshot are not disturbed.
        assert_eq!(old.len(), 2);
        assert!(set.drain(c, true) && !new[1].eligible());
        assert!(set.remove(a) && !set.remove(a));
    }

    #[test]
    fn backends_files_parse_with_comments() {
        let v = parse_backends_file("# pool\n127.0.0.1:1\n\n127.0.0.1:2 # second\n127.0.0.1:1\n")
            .unwrap();
        assert_eq!(v.len(), 2);
        assert!(parse_backends_file("localhost").is_err());
    }
}
