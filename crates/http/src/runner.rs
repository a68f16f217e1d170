//! The one way a scaletest server runs: listeners bound with SO_REUSEPORT, threads, a runtime
//! for each, and one [`Phase`] that every thread follows to a graceful stop. `serve` and
//! `balance` start their workers here; so does anything else that serves (an aggregator, a
//! metrics endpoint), whichever runtime suits it:
//!
//! - [`Servers::per_thread`]: one OS thread per listener, each with a current-thread runtime
//!   and a `LocalSet` (`spawn_local` works, nothing is shared on the hot path): the data plane.
//! - [`Servers::multi_thread`]: one multi-thread runtime whose workers share the listeners'
//!   accept loops: for `Send` services that want work stealing more than locality.
//!
//! What each thread runs is the caller's: usually [`crate::server::serve`] (hyper) on the
//! [`Worker`]'s listener, or a hand-written accept loop built on [`crate::server::accept`].

use crate::server::{self, Phase, Stats};
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What one accept loop gets.
pub struct Worker {
    /// Its place among the group's listeners (0-based).
    pub index: usize,
    /// Its listener.
    pub listener: TcpListener,
    /// The servers' phase.
    pub phase: watch::Receiver<Phase>,
    /// Counts shared by the group.
    pub stats: Arc<Stats>,
}

/// Groups of server threads that stop together.
pub struct Servers {
    phase: watch::Sender<Phase>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Default for Servers {
    fn default() -> Self {
        Servers::new()
    }
}

/// A server that could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An address cannot be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, io::Error),
    /// A thread or runtime could not be made.
    #[error("cannot start: {0}")]
    Start(io::Error),
}

/// Bind `threads` listeners to `addr` (see [`server::bind`]); the address they share.
pub fn bind(
    addr: SocketAddr,
    threads: usize,
) -> Result<(Vec<TcpListener>, SocketAddr), StartError> {
    let listeners = server::bind(addr, threads).map_err(|e| StartError::Bind(addr, e))?;
    let bound = listeners[0]
        .local_addr()
        .map_err(|e| StartError::Bind(addr, e))?;
    Ok((listeners, bound))
}

impl Servers {
    /// No threads yet; the phase is `Serving`.
    pub fn new() -> Self {
        let (phase, _) = watch::channel(Phase::Serving);
        Servers {
            phase,
            threads: Vec::new(),
        }
    }

    /// The phase, for tasks of the caller's that should follow it too.
    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Move every thread to `phase` (`Stopping` closes the listeners).
    pub fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// One thread named `name-i` for each listener, with its own current-thread runtime and
    /// `LocalSet`, running the future `run` makes for it there (so it need not be `Send`).
    /// If a thread cannot start, those already started are stopped.
    pub fn per_thread<F, Fut>(
        &mut self,
        name: &str,
        listeners: Vec<TcpListener>,
        stats: Arc<Stats>,
        run: F,
    ) -> Result<(), StartError>
    where
        F: Fn(Worker) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let run = Arc::new(run);
        for (index, listener) in listeners.into_iter().enumerate() {
            let worker = Worker {
                index,
                listener,
                phase: self.phase.subscribe(),
                stats: stats.clone(),
            };
            let run = run.clone();
            let started = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|rt| {
                    std::thread::Builder::new()
                        .name(format!("{name}-{index}"))
                        .spawn(move || {
                            let local = tokio::task::LocalSet::new();
                            // `run` itself runs inside the runtime too: it may spawn.
                            let fut = {
                                let _in = rt.enter();
                                let _local = local.enter();
                                run(worker)
                            };
                            local.block_on(&rt, fut);
                        })
                });
            self.push(started)?;
        }
        Ok(())
    }

    /// One thread named `name` with a multi-thread runtime of `workers` threads, on which the
    /// future `run` makes for each listener runs as a task.
    pub fn multi_thread<F, Fut>(
        &mut self,
        name: &str,
        listeners: Vec<TcpListener>,
        stats: Arc<Stats>,
        workers: usize,
        run: F,
    ) -> Result<(), StartError>
    where
        F: Fn(Worker) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let group: Vec<Worker> = listeners
            .into_iter()
            .enumerate()
            .map(|(index, listener)| Worker {
                index,
                listener,
                phase: self.phase.subscribe(),
                stats: stats.clone(),
            })
            .collect();
        let started = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name(format!("{name}-worker"))
            .enable_all()
            .build()
            .and_then(|rt| {
                std::thread::Builder::new()
                    .name(name.to_string())
                    .spawn(move || {
                        rt.block_on(async move {
                            let tasks: Vec<_> =
                                group.into_iter().map(|w| tokio::spawn(run(w))).collect();
                            for t in tasks {
                                let _ = t.await;
                            }
                        })
                    })
            });
        self.push(started)
    }

    fn push(&mut self, started: io::Result<std::thread::JoinHandle<()>>) -> Result<(), StartError> {
        match started {
            Ok(t) => {
                self.threads.push(t);
                Ok(())
            }
            Err(e) => {
                self.set_phase(Phase::Stopping);
                Err(StartError::Start(e))
            }
        }
    }

    /// Wait for the threads, after `Stopping`, up to `timeout`; true if all finished. Threads
    /// still running are left to end with the process.
    pub fn wait(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for t in &self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if !self.threads.iter().all(|t| t.is_finished()) {
            return false;
        }
        for t in self.threads {
            let _ = t.join();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{serve, Activity, Limits};
    use std::io::{Read, Write};

    fn get(addr: SocketAddr) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn hello(
        _peer: SocketAddr,
        _a: Arc<Activity>,
    ) -> impl hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = hyper::Response<String>,
        Error = std::convert::Infallible,
        Future = std::future::Ready<Result<hyper::Response<String>, std::convert::Infallible>>,
    > + Send {
        hyper::service::service_fn(|_req| {
            std::future::ready(Ok(hyper::Response::new(format!(
                "from {}",
                std::thread::current().name().unwrap_or("?")
            ))))
        })
    }

    #[test]
    fn both_runtimes_serve_until_stopped_and_then_finish() {
        let mut servers = Servers::new();
        let (local, local_addr) = bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let (shared, shared_addr) = bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        servers
            .per_thread("local", local, Arc::default(), |w| async move {
                let _ = serve(w.listener, None, Limits::default(), w.stats, w.phase, hello).await;
            })
            .unwrap();
        servers
            .multi_thread("shared", shared, Arc::default(), 2, |w| async move {
                let _ = serve(w.listener, None, Limits::default(), w.stats, w.phase, hello).await;
            })
            .unwrap();
        let r = get(local_addr);
        assert!(r.contains("from local-"), "{r}");
        let r = get(shared_addr);
        assert!(r.contains("from shared-worker"), "{r}");
        servers.set_phase(Phase::Stopping);
        assert!(servers.wait(Duration::from_secs(5)));
        assert!(std::net::TcpStream::connect(local_addr).is_err());
        assert!(std::net::TcpStream::connect(shared_addr).is_err());
    }
}
