//! The profiling endpoint of scaletest's long-running commands (`serve`, `balance`,
//! `aggregate`, `bot`, `load`): `GET /debug/pprof/profile?seconds=N` answers a CPU profile of
//! the whole process over N seconds (1 to 60, default 30), in pprof's protobuf format,
//! gzip'ed: what `go tool pprof` and speedscope read. The `pprof` crate samples and symbolizes.
//!
//! Nothing runs until a profile is asked for: the sampler (a SIGPROF timer and its handler)
//! exists only for the N seconds of one request, and one profile is taken at a time (a request
//! meanwhile gets 409). The endpoint has a thread, a runtime and a listener of its own, so it
//! answers while the command's own threads are saturated. It listens on loopback, or on any
//! address when a bearer token is required (`Authorization: Bearer`, checked as the balancer's
//! admin API and the aggregator check theirs: [`st_http::server::bearer_ok`]).
//!
//! There is no heap profile (`/debug/pprof/heap` says so): pprof-rs samples CPU only, and a
//! heap profile needs an allocator that records allocations (jemalloc's profiling), which
//! would replace the system allocator for every command to serve one endpoint.

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use st_http::runner::{self, Servers};
use st_http::server::{self, Activity, Limits, Phase, Stats};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The one path that answers a profile.
pub const PROFILE_PATH: &str = "/debug/pprof/profile";

/// Samples per second and CPU; 99, not 100, so that sampling does not run in step with
/// work done every 10 ms (pprof-rs's default, and near Go's 100).
const HZ: i32 = 99;

/// Samples landing in these libraries are dropped: unwinding from a signal taken inside
/// them (the dynamic loader's lock in `dl_iterate_phdr`, libgcc's unwinder itself) can
/// deadlock or crash. The cost: time inside libc's system-call wrappers is not counted.
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

/// Why there is no heap profile, as `/debug/pprof/heap` answers it.
const NO_HEAP: &str = "no heap profile: pprof-rs samples CPU only, and a heap profile needs a \
                       recording allocator (jemalloc's profiling) that scaletest does not use";

/// Where the endpoint listens and what it asks of callers.
#[derive(Debug, Clone)]
pub struct Config {
    /// Its address; a non-loopback one needs `token`.
    pub bind: SocketAddr,
    /// A bearer token every request must carry.
    pub token: Option<String>,
}

/// The endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A non-loopback address without a token: anyone who can reach it could make the
    /// process spend CPU on profiling and read its function names.
    #[error("{0} is not a loopback address, and no token is required")]
    Exposed(SocketAddr),
    /// Its address cannot be bound, or its thread not started.
    #[error(transparent)]
    Start(#[from] runner::StartError),
}

/// The running endpoint; it stops listening when dropped.
pub struct Running {
    /// Where it listens (the port chosen when the address asked for port 0).
    pub addr: SocketAddr,
    busy: Arc<AtomicBool>,
    servers: Servers,
}

impl Running {
    /// A profile is being taken now.
    pub fn profiling(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.servers.set_phase(Phase::Stopping);
    }
}

/// Bind the endpoint and serve it on a thread of its own.
pub fn start(cfg: Config) -> Result<Running, Error> {
    if !cfg.bind.ip().is_loopback() && cfg.token.is_none() {
        return Err(Error::Exposed(cfg.bind));
    }
    let (listeners, addr) = runner::bind(cfg.bind, 1)?;
    let busy = Arc::new(AtomicBool::new(false));
    let state = Arc::new(State {
        token: cfg.token,
        busy: busy.clone(),
    });
    let mut servers = Servers::new();
    // A handful of callers at most: an operator, a script.
    let limits = Limits {
        max_connections: 16,
        ..Limits::default()
    };
    servers.per_thread("pprof", listeners, Arc::new(Stats::default()), move |w| {
        let state = state.clone();
        let make = move |_peer: SocketAddr, activity: Arc<Activity>| {
            let state = state.clone();
            hyper::service::service_fn(move |req| {
                let (state, activity) = (state.clone(), activity.clone());
                async move {
                    // Counted in flight, so that a long profile is not a quiet connection.
                    let h2 = req.version() == http::Version::HTTP_2;
                    let resp = activity.during(h2, answer(&state, req)).await;
                    Ok::<_, std::convert::Infallible>(resp)
                }
            })
        };
        let limits = limits.clone();
        async move {
            let _ = server::serve(w.listener, None, limits, w.stats, w.phase, make).await;
        }
    })?;
    Ok(Running {
        addr,
        busy,
        servers,
    })
}

struct State {
    token: Option<String>,
    busy: Arc<AtomicBool>,
}

/// Holds the endpoint's one profile slot; frees it when dropped (the answer sent, or the
/// caller gone: hyper drops the request's future, and the sampler stops with it).
struct Slot<'a>(&'a AtomicBool);

impl<'a> Slot<'a> {
    fn take(busy: &'a AtomicBool) -> Option<Self> {
        (!busy.swap(true, Ordering::AcqRel)).then_some(Slot(busy))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

async fn answer(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(t) = &state.token {
        if !server::bearer_ok(req.headers(), t) {
            return line(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        }
    }
    match req.uri().path() {
        PROFILE_PATH => {}
        "/debug/pprof/heap" => return line(StatusCode::NOT_IMPLEMENTED, NO_HEAP),
        _ => {
            return line(
                StatusCode::NOT_FOUND,
                "not found: try /debug/pprof/profile?seconds=N",
            )
        }
    }
    if req.method() != Method::GET {
        return line(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    let secs = match seconds(req.uri().query()) {
        Ok(s) => s,
        Err(e) => return line(StatusCode::BAD_REQUEST, &e),
    };
    let Some(_slot) = Slot::take(&state.busy) else {
        return line(
            StatusCode::CONFLICT,
            "a profile is being taken already: ask again when it is done",
        );
    };
    match profile(Duration::from_secs(secs)).await {
        Ok(gz) => {
            let mut r = Response::new(Full::new(Bytes::from(gz)));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                header::HeaderValue::from_static("attachment; filename=\"profile.pb.gz\""),
            );
            r
        }
        Err(e) => line(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot take a profile: {e}"),
        ),
    }
}

/// One line of text as the whole answer.
fn line(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `seconds=N` from a query string: 1 to 60, 30 when absent (Go's net/http/pprof default).
pub fn seconds(query: Option<&str>) -> Result<u64, String> {
    let given = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("seconds="));
    match given {
        None => Ok(30),
        Some(v) => match v.parse::<u64>() {
            Ok(n @ 1..=60) => Ok(n),
            _ => Err(format!("seconds={v}: give a whole number from 1 to 60")),
        },
    }
}

/// Sample the whole process for `d`; the profile in pprof's format, gzip'ed.
async fn profile(d: Duration) -> Result<Vec<u8>, String> {
    use pprof::protos::Message;
    use std::io::Write;
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(HZ)
        .blocklist(BLOCKLIST)
        .build()
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(d).await;
    let report = guard.report().build().map_err(|e| e.to_string())?;
    // The sampler stops here, before the encoding.
    drop(guard);
    let bytes = report
        .pprof()
        .map_err(|e| e.to_string())?
        .write_to_bytes()
        .map_err(|e| e.to_string())?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&bytes).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

/// The names of the functions on a profile's sampled stacks, from the endpoint's answer
/// (gzip'ed protobuf), decoded with pprof's own types: what a check of a profile reads.
pub fn sampled_functions(gz: &[u8]) -> Result<BTreeSet<String>, String> {
    use pprof::protos::{Message, Profile};
    use std::collections::HashMap;
    use std::io::Read;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not gzip: {e}"))?;
    let p = Profile::parse_from_bytes(&raw).map_err(|e| format!("not a pprof profile: {e}"))?;
    let name = |i: i64| p.string_table.get(i as usize).cloned().unwrap_or_default();
    let functions: HashMap<u64, String> = p.function.iter().map(|f| (f.id, name(f.name))).collect();
    let locations: HashMap<u64, _> = p.location.iter().map(|l| (l.id, l)).collect();
    Ok(p.sample
        .iter()
        .flat_map(|s| &s.location_id)
        .filter_map(|id| locations.get(id))
        .flat_map(|l| &l.line)
        .filter_map(|l| functions.get(&l.function_id).cloned())
        .collect())
}

#[cfg(test)]
mod tests;
