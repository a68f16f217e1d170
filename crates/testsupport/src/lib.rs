//! Test-only helpers shared by the integration tests of several crates: a load run as the
//! engine's tests, `serve`'s and `balance`'s drive it ([`Run`], [`closed_loop`]), the
//! `scaletest` binary as the CLI tests run it ([`Bin`], [`Bin::listening`], [`text`],
//! [`tmpdir`]), waiting for an event or an exit with a deadline ([`wait_until`], [`exited`]),
//! signals ([`signal`]), damaged input for property tests ([`damaged`]), HTTP calls to a
//! server under test ([`call`]; [`call::crowd`]: many clients at once), a fleet's processes
//! ([`fleet`]) and arbitrary client requests ([`anyreq`]). It sits above `load` (which
//! `testkit` cannot depend on: `load` uses `testkit` in its own tests) and is never part of
//! the binary.

use bytes::Bytes;
use load::{Config, Mode, RunResult, Shutdown};
use pace::{Arrival, RateShape};
use st_http::{Connector, Origin, Protocol, Request, TlsOptions};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A load run of GETs to one URL, set up field by field.
pub struct Run {
    /// The URL every request goes to.
    pub url: String,
    /// HTTP/1.1 or HTTP/2.
    pub protocol: Protocol,
    /// Client TLS options.
    pub tls: TlsOptions,
    /// Closed or open loop.
    pub mode: Mode,
    /// Connections (closed loop) or starting connections (open loop).
    pub connections: usize,
    /// Streams per HTTP/2 connection.
    pub streams: usize,
    /// How long to run.
    pub duration: Option<Duration>,
    /// How many requests to send.
    pub requests: Option<u64>,
    /// Per-request timeout (and connect timeout).
    pub timeout: Duration,
    /// Worker threads.
    pub threads: usize,
}

impl Run {
    /// Closed loop over HTTP/1.1: 4 connections, 2 threads, 5 s timeout, no end set.
    pub fn new(url: &str) -> Run {
        Run {
            url: url.to_string(),
            protocol: Protocol::Http1,
            tls: TlsOptions::default(),
            mode: Mode::Closed { stages: None },
            connections: 4,
            streams: 1,
            duration: None,
            requests: None,
            timeout: Duration::from_secs(5),
            threads: 2,
        }
    }

    /// Open loop at a constant `rate` (uniform arrivals), with at most `max_connections`.
    pub fn open(mut self, rate: f64, max_connections: usize) -> Run {
        self.mode = Mode::Open {
            shape: RateShape::Constant { rate },
            arrival: Arrival::Uniform,
            max_connections,
            seed: 1,
        };
        self
    }

    /// Run it to the end on a runtime of its own.
    pub fn go(self) -> RunResult {
        let (origin, path) = Origin::parse(&self.url).expect("a valid URL");
        let req = Request::new(&origin, "GET", &path, &[], Bytes::new()).expect("a request");
        let cfg = Config {
            connector: Connector::new(origin, self.protocol, &self.tls, self.timeout)
                .expect("a connector"),
            requests: Arc::new(vec![load::Prepared::Fixed(req)]),
            mix: Arc::new(load::mix::Mix::one()),
            mode: self.mode,
            connections: self.connections,
            streams: self.streams,
            duration: self.duration,
            max_requests: self.requests,
            timeout: self.timeout,
            threads: self.threads,
            live: Default::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(load::run(cfg, Shutdown::new(), |_| {}))
            .expect("the run starts")
    }
}

/// `n` GETs to `url`, closed loop on one thread: 4 connections (8 streams each over HTTP/2),
/// any certificate trusted.
pub fn closed_loop(url: &str, protocol: Protocol, n: u64) -> RunResult {
    Run {
        protocol,
        tls: TlsOptions {
            insecure: true,
            ca_file: None,
        },
        streams: if protocol == Protocol::Http2 { 8 } else { 1 },
        requests: Some(n),
        threads: 1,
        ..Run::new(url)
    }
    .go()
}

/// A binary under test, by path (`Bin(env!("CARGO_BIN_EXE_scaletest"))`).
#[derive(Debug, Clone, Copy)]
pub struct Bin(pub &'static str);

impl Bin {
    /// A command for it.
    pub fn command(self) -> Command {
        Command::new(self.0)
    }

    /// Run it with `args` to the end.
    pub fn run(self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run the binary")
    }

    /// Start it with `args` as a server (see [`listening`]).
    pub fn listening(self, args: &[&str]) -> Listening {
        let mut cmd = self.command();
        cmd.args(args);
        listening(cmd)
    }

    /// Start it with its output piped; killed when dropped.
    pub fn spawn(self, args: &[&str]) -> testkit::Proc {
        testkit::Proc(
            self.command()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn the binary"),
        )
    }
}

/// A started server (see [`listening`]).
pub struct Listening {
    /// The process; killed when dropped.
    pub proc: testkit::Proc,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its first line.
    pub first: String,
    /// The rest of its stdout, once it has exited.
    pub rest: std::thread::JoinHandle<String>,
}

/// Start a server child (`serve`, `balance`, `aggregate`, ...) whose first line on stdout is
/// "listening on http(s)://ADDR ..."; its address and that line. The child is owned at once
/// (a panic never leaves it running); the rest of stdout is read in the background so it
/// never blocks, and returned by [`Listening::rest`]; stderr is dropped.
pub fn listening(mut cmd: Command) -> Listening {
    use std::io::{BufRead, BufReader, Read};
    let mut proc = testkit::Proc(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server"),
    );
    let mut out = BufReader::new(proc.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("read the first line");
    let addr = first
        .split("://")
        .nth(1)
        .and_then(|r| r.split(|c: char| c.is_whitespace() || c == '/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no listening address in {first:?}"));
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    Listening {
        proc,
        addr,
        first,
        rest,
    }
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An empty directory for one test's files (named by the test and this process).
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("st-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `seed` as text with bytes overwritten at `flips` (positions wrap), and cut short at `cut`
/// if given (wrapping; at least one byte is kept): a file or a request body damaged in
/// transit or by hand, for property tests of the readers of outside input. Give `cut` only
/// in some cases (`proptest::option::of`): a cut file rarely parses, so damage deep inside a
/// file that does is reached only uncut.
pub fn damaged(seed: &serde_json::Value, flips: &[(usize, u8)], cut: Option<usize>) -> String {
    let text = damaged_bytes(seed.to_string().as_bytes(), flips, cut);
    String::from_utf8_lossy(&text).into_owned()
}

/// [`damaged`] for a binary seed (a bot's push).
pub fn damaged_bytes(seed: &[u8], flips: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for &(at, b) in flips {
        let i = at % bytes.len();
        bytes[i] = b;
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1) + 1);
    }
    bytes
}

/// Poll `ready` until it holds; fail the test, naming `what`, after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait for `child` to exit and return its status; fail the test after `limit`.
pub fn exited(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let mut status = None;
    wait_until("the process to exit", limit, || {
        status = child.try_wait().expect("wait for the child");
        status.is_some()
    });
    status.expect("checked by wait_until")
}

/// [`wait_until`] inside a tokio runtime: checks every 10 ms without blocking its thread.
pub async fn wait_until_async(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Send signal `sig` ("INT", "TERM", "KILL", ...) to a process through the `kill` command
/// (the workspace forbids unsafe code); true when it was delivered.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Send SIGINT (Ctrl-C) to a process (see [`signal`]).
pub fn interrupt(pid: u32) -> bool {
    signal(pid, "INT")
}

pub mod anyreq;
pub mod fleet;

/// Blocking HTTP calls for tests that poke an API or /metrics (over `st_http::blocking`); a
/// failure to get any answer fails the test.
pub mod call {
    use serde_json::Value;
    use st_http::blocking::Reply;
    use std::net::SocketAddr;
    use std::time::Duration;

    /// `method path` with an optional bearer token and a JSON body; an answer within 10 s.
    pub fn call(
        addr: SocketAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Reply {
        st_http::blocking::call(addr, method, path, token, body, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
    }

    /// GET `path`; the body, which must come with a 200.
    pub fn get(addr: SocketAddr, path: &str) -> String {
        let r = call(addr, "GET", path, None, "");
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    }

    /// GET `path` as JSON, which must come with a 200.
    pub fn json(addr: SocketAddr, path: &str) -> Value {
        let body = get(addr, path);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// What a crowd of clients got ([`crowd`]).
    #[derive(Debug, Default)]
    pub struct Crowd {
        /// Answers by status.
        pub statuses: std::collections::BTreeMap<u16, u64>,
        /// What overload must never cause: a call with no answer (a reset, a close before the
        /// response, a timeout) or a 503 without `Retry-After`.
        pub failures: Vec<String>,
    }

    /// `clients` threads at once, each making `calls` GETs of `path` one after another, each
    /// on a new connection (so that connections keep closing and those waiting get their
    /// turn); every call has 30 s to connect and for each read.
    pub fn crowd(addr: SocketAddr, clients: usize, calls: usize, path: &str) -> Crowd {
        let start = std::sync::Arc::new(std::sync::Barrier::new(clients));
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let (start, path) = (start.clone(), path.to_string());
                std::thread::spawn(move || {
                    start.wait();
                    (0..calls)
                        .map(|_| {
                            st_http::blocking::call(
                                addr,
                                "GET",
                                &path,
                                None,
                                "",
                                Duration::from_secs(30),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Crowd::default();
        for t in threads {
            for r in t.join().expect("a client thread") {
                match r {
                    Ok(r) => {
                        let retry = r.head.to_ascii_lowercase().contains("\r\nretry-after: ");
                        if r.status == 503 && !retry {
                            out.failures
                                .push(format!("503 without Retry-After: {}", r.head));
                        }
                        *out.statuses.entry(r.status).or_default() += 1;
                    }
                    Err(e) => out.failures.push(e.to_string()),
                }
            }
        }
        out
    }

    /// Write `request` as it stands on a new connection and read until the server closes; the
    /// answer as text. For the tests that must write the bytes themselves (malformed or
    /// oversized heads, pipelining, framings `call` never sends). The request is written
    /// while the answer is read, so a server that answers early and stops reading cannot
    /// stall it; a reset instead of an orderly close fails the test.
    pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        let mut w = s.try_clone().expect("a second handle");
        let request = request.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&request);
        });
        let mut out = Vec::new();
        let read = s.read_to_end(&mut out);
        let _ = writer.join();
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(read.is_ok(), "{read:?} after {text:?}");
        text
    }
}
