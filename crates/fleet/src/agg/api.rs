//! The aggregator's HTTP API as a route table: [`route`] names the route of a method and path,
//! [`refusal`] is the one bearer-token check and [`Route::body_limit`] the one body limit,
//! applied by [`handle`] (hyper) and [`Quick`], which then call the route's own small
//! function.
//!
//! Reads (the page, its assets, `/healthz`, `/metrics`, the read APIs, the live stream) need
//! no token on loopback; everything else does: without it, a path under `/api/` is a 401 and
//! any other a 404, so an unknown path says nothing more to a caller without the token. Off
//! loopback (unless `--public-read`) reads need it too, except `/healthz` (probes) and the
//! static assets (the same for every run): as the header, or `?token=` (the browser's page
//! and its live stream, which cannot send a header).
//!
//! Over cleartext, the POSTs that are answered at once (a bot's registration and pushes,
//! events, finish) are read and answered by [`Quick`] on `st_http::quick`'s hand-written
//! HTTP/1 path, without hyper: pushes are the aggregator's ingest, a request per bot every
//! second. The same route table, token check and handlers ([`at_once`]) serve both paths;
//! on the quick path the route and token are checked from the head, before any body is kept
//! (a caller without the token is left to hyper, which refuses it unread), and not again
//! when the body is in.

use super::{Body, Shared, LONG_POLL};
use crate::now_unix;
use crate::state::{LoadRequest, Refused, State};
use crate::wire::{Ack, Push, Register, MAX_BODY};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use st_http::quick;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Longest wait of a bot's leave for the save that records it (the next tick's).
const SAVE_WAIT: Duration = Duration::from_secs(2);

/// One route of the API.
pub(super) enum Route {
    /// A fixed file anyone may read (`/healthz` for probes, the static assets: nothing of the
    /// run): its content type and content.
    File(&'static str, &'static str),
    /// The live page.
    Page,
    Metrics,
    Summary,
    Series,
    Window,
    Events,
    BotsTable,
    Load,
    Stream,
    // With the token from here on.
    Register,
    Push(u64),
    Leave(u64),
    Assignment(u64),
    /// A bot route whose id is not a number.
    NoSuchBot,
    SetLoad,
    PostEvent,
    Finish,
}

impl Route {
    /// Whether the caller needs the bearer token; `private_reads`: reads need it too.
    fn needs_token(&self, private_reads: bool) -> bool {
        if private_reads {
            return !matches!(self, Route::File(..));
        }
        !matches!(
            self,
            Route::File(..)
                | Route::Page
                | Route::Metrics
                | Route::Summary
                | Route::Series
                | Route::Window
                | Route::Events
                | Route::BotsTable
                | Route::Load
                | Route::Stream
        )
    }

    /// Whether [`at_once`] answers it.
    fn at_once(&self) -> bool {
        matches!(
            self,
            Route::Register | Route::Push(_) | Route::NoSuchBot | Route::PostEvent | Route::Finish
        )
    }

    /// The largest body the route reads; `None`: it reads none.
    fn body_limit(&self) -> Option<usize> {
        match self {
            Route::Register => Some(64 << 10),
            Route::Push(_) => Some(MAX_BODY),
            Route::SetLoad => Some(256 << 10),
            Route::PostEvent => Some(4096),
            _ => None,
        }
    }
}

/// The route of `method` and `path`, if any.
fn route(method: &Method, path: &str) -> Option<Route> {
    if method == Method::GET {
        if let Some(r) = read(path) {
            return Some(r);
        }
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let bot = |id: &str, r: fn(u64) -> Route| id.parse().map_or(Route::NoSuchBot, r);
    Some(match (method.clone(), parts.as_slice()) {
        (Method::POST, ["api", "bots"]) => Route::Register,
        (Method::POST, ["api", "bots", id, "snapshots"]) => bot(id, Route::Push),
        (Method::DELETE, ["api", "bots", id]) => bot(id, Route::Leave),
        (Method::GET, ["api", "bots", id, "assignment"]) => bot(id, Route::Assignment),
        (Method::PUT, ["api", "load"]) => Route::SetLoad,
        (Method::POST, ["api", "events"]) => Route::PostEvent,
        (Method::POST, ["api", "finish"]) => Route::Finish,
        _ => return None,
    })
}

/// The route of a `GET` of `path` that needs no token, if any.
fn read(path: &str) -> Option<Route> {
    const JS: &str = "text/javascript; charset=utf-8";
    const CSS: &str = "text/css; charset=utf-8";
    Some(match path {
        "/" | "/index.html" => Route::Page,
        "/assets/app.js" => Route::File(JS, crate::ui::APP_JS),
        "/assets/app.css" => Route::File(CSS, crate::ui::APP_CSS),
        "/assets/uplot.js" => Route::File(JS, report::assets::UPLOT_JS),
        "/assets/charts.js" => Route::File(JS, report::assets::CHARTS_JS),
        "/assets/uplot.css" => Route::File(CSS, report::assets::UPLOT_CSS),
        "/healthz" => Route::File("text/plain", "ok\n"),
        "/metrics" => Route::Metrics,
        "/api/summary" => Route::Summary,
        "/api/series" => Route::Series,
        "/api/window" => Route::Window,
        "/api/events" => Route::Events,
        "/api/bots" => Route::BotsTable,
        "/api/load" => Route::Load,
        "/api/stream" => Route::Stream,
        _ => return None,
    })
}

/// Answer one request.
pub(super) async fn handle(sh: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let route = route(req.method(), req.uri().path());
    let query = req.uri().query().unwrap_or_default().to_string();
    let authorization = req.headers().get(header::AUTHORIZATION);
    let auth = authorization.map(HeaderValue::as_bytes);
    if let Some(no) = refusal(sh, route.as_ref(), req.uri().path(), auth, Query(&query)) {
        return no.into();
    }
    let Some(route) = route else {
        return error(404, "not found");
    };
    let body = match route.body_limit() {
        Some(limit) => match Limited::new(req.into_body(), limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(413, &format!("body over {limit} bytes")),
        },
        None => Bytes::new(),
    };
    let now = now_unix();
    let q = Query(&query);
    match route {
        Route::File(ctype, content) => full(StatusCode::OK, ctype, content),
        Route::Page => full(StatusCode::OK, "text/html; charset=utf-8", crate::ui::INDEX),
        Route::Metrics => metrics(sh),
        Route::Summary => summary(sh, now),
        Route::Series => series(sh, q),
        Route::Window => window(sh, q, now),
        Route::Events => events(sh),
        Route::BotsTable => bots_table(sh, q),
        Route::Load => load(sh),
        Route::Stream => stream(sh),
        Route::Leave(id) => leave(sh, id, now).await,
        Route::Assignment(id) => assignment(sh, id, q).await,
        Route::SetLoad => parsed(&body, |r| set_load(sh, r, now)),
        Route::Register | Route::Push(_) | Route::NoSuchBot | Route::PostEvent | Route::Finish => {
            at_once(sh, &route, &body, now).into()
        }
    }
}

/// Why the caller may not take `route` (at `path`), answered at once; `None`: it may.
fn refusal(
    sh: &Shared,
    route: Option<&Route>,
    path: &str,
    authorization: Option<&[u8]>,
    q: Query,
) -> Option<Json> {
    if allowed(sh, route, authorization, q) {
        return None;
    }
    Some(if path.starts_with("/api/") {
        error(401, "missing or wrong bearer token")
    } else if route.is_some() {
        // The page off loopback: say how to open it.
        error(
            401,
            "this aggregator's reads need its token: open /?token=TOKEN",
        )
    } else {
        error(404, "not found")
    })
}

/// The answer to a route that writes and answers at once, whichever path read it: a bot's
/// registration and pushes, events, finish.
fn at_once(sh: &Shared, route: &Route, body: &[u8], now: f64) -> Json {
    match route {
        Route::Register => parsed(body, |r| register(sh, r, now)),
        Route::Push(id) => match Push::decode(body) {
            Ok(p) => push(sh, *id, p, now),
            Err(e) => error(400, &e),
        },
        Route::NoSuchBot => error(404, "no such bot"),
        Route::PostEvent => parsed(body, |p| post_event(sh, p, now)),
        Route::Finish => {
            sh.finish.send_replace(true);
            ok()
        }
        _ => error(405, "not answered at once"),
    }
}

/// The POSTs of [`at_once`] on the quick path (cleartext HTTP/1.1); anything else, and a
/// body over its route's limit (413), is hyper's through [`handle`].
pub(super) struct Quick(pub(super) Arc<Shared>);

const JSON_HEAD: &[u8] = b"content-type: application/json\r\n";

impl quick::Responder for Quick {
    fn answer(&self, _target: &str) -> Option<quick::Answer<'_>> {
        None
    }

    /// The route, its caller's token checked.
    type Admitted = Route;

    fn post_limit(&self, target: &str, authorization: Option<&[u8]>) -> Option<(usize, Route)> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let r = route(&Method::POST, path).filter(Route::at_once)?;
        // A caller without the token is hyper's, which refuses it from the head, unread.
        if refusal(&self.0, Some(&r), path, authorization, Query(query)).is_some() {
            return None;
        }
        Some((r.body_limit().unwrap_or(0), r))
    }

    fn post(
        &self,
        route: Route,
        req: &quick::Post<'_>,
        body: &mut Vec<u8>,
    ) -> Option<(StatusCode, &'static [u8])> {
        let j = at_once(&self.0, &route, req.body, now_unix());
        body.extend_from_slice(&j.body);
        Some((j.status, JSON_HEAD))
    }

    fn answered(&self, _status: u16, _took: Duration) {}
}

/// A request's query string.
#[derive(Clone, Copy)]
struct Query<'a>(&'a str);

impl<'a> Query<'a> {
    /// The value of `key`, if given.
    fn get(self, key: &str) -> Option<&'a str> {
        self.0.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }

    /// The value of `key` as a number, if given and one.
    fn num<T: std::str::FromStr>(self, key: &str) -> Option<T> {
        self.get(key)?.parse().ok()
    }
}

/// Whether the caller may take `route` (`None`: an unknown path, which needs the token too):
/// one that needs no token, the bearer token, or for a read the token in the query, which is
/// how a browser's page and its live stream carry it.
fn allowed(sh: &Shared, route: Option<&Route>, authorization: Option<&[u8]>, q: Query) -> bool {
    let bearer = || st_http::server::bearer_value_ok(authorization, &sh.token);
    let Some(r) = route else { return bearer() };
    if !r.needs_token(sh.private_reads) || bearer() {
        return true;
    }
    let read = !r.needs_token(false);
    read && q
        .get("token")
        .is_some_and(|t| st_http::server::token_eq(t, &sh.token))
}

/// The body as JSON, handed to `f`; a 400 saying why when it is not.
fn parsed<T: serde::de::DeserializeOwned, R: From<Json>>(body: &[u8], f: impl FnOnce(T) -> R) -> R {
    match serde_json::from_slice(body) {
        Ok(v) => f(v),
        Err(e) => error(400, &format!("bad JSON: {e}")),
    }
}

fn metrics(sh: &Shared) -> Response<Body> {
    let st = sh.state.lock().expect("state lock");
    full(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        crate::metrics::encode(&st),
    )
}

fn summary(sh: &Shared, now: f64) -> Response<Body> {
    let st = sh.state.lock().expect("state lock");
    // One merge of the run's seconds serves the figures and the verdicts.
    let total = st.total();
    let summary = st.summary_of(now, &total);
    let verdicts = report::threshold::judge(&sh.thresholds, &total, summary.elapsed_s);
    let mut v = serde_json::to_value(summary).expect("serializable");
    v["verdicts"] = serde_json::to_value(verdicts).expect("serializable");
    v["run_id"] = st.run_id.clone().into();
    v["started_unix"] = st.started_unix.into();
    v["finished"] = st.finished.into();
    v["offered"] = st.offered().into();
    v["plan"] = serde_json::to_value(&st.plan).expect("serializable");
    v["spec"] = serde_json::to_value(&st.spec).expect("serializable");
    json(StatusCode::OK, &v)
}

fn series(sh: &Shared, q: Query) -> Response<Body> {
    let since = q.num("since").unwrap_or(0);
    let st = sh.state.lock().expect("state lock");
    let points = st.points_since(since, 600);
    json(StatusCode::OK, &serde_json::json!({ "points": points }))
}

fn window(sh: &Shared, q: Query, now: f64) -> Response<Body> {
    let (Some(from), Some(to)) = (q.num::<u64>("from"), q.num::<u64>("to")) else {
        return error(400, "give from and to, Unix seconds");
    };
    if to <= from || to - from > 7 * 24 * 3600 {
        return error(400, "a window is from < to, at most a week");
    }
    let st = sh.state.lock().expect("state lock");
    json(StatusCode::OK, &st.window(from, to, now))
}

fn events(sh: &Shared) -> Response<Body> {
    let st = sh.state.lock().expect("state lock");
    json(
        StatusCode::OK,
        &serde_json::json!({ "events": st.events() }),
    )
}

fn bots_table(sh: &Shared, q: Query) -> Response<Body> {
    let sort = q.get("sort").unwrap_or_default();
    let desc = q.get("dir") == Some("desc");
    let st = sh.state.lock().expect("state lock");
    let (offset, limit) = (q.num("offset").unwrap_or(0), q.num("limit").unwrap_or(50));
    let (total, bots) = st.bots_page(offset, limit, sort, desc);
    json(
        StatusCode::OK,
        &serde_json::json!({ "total": total, "bots": bots }),
    )
}

fn load(sh: &Shared) -> Response<Body> {
    let st = sh.state.lock().expect("state lock");
    json(
        StatusCode::OK,
        &serde_json::json!({ "plan": st.plan, "spec": st.spec, "offered": st.offered() }),
    )
}

fn register(sh: &Shared, r: Register, now: f64) -> Json {
    let mut st = sh.state.lock().expect("state lock");
    // The new bot's first long-poll gets its assignment; the others are woken only if their
    // share changed (a small fleet is re-split at once).
    let out = st.register(now, &r, &sh.instance);
    notify(sh, &st);
    match out {
        Ok(reg) => json(StatusCode::OK, &reg),
        Err(e) => refused(e),
    }
}

fn push(sh: &Shared, id: u64, p: Push, now: f64) -> Json {
    if !p.instance.is_empty() && p.instance != sh.instance {
        return error(409, "this aggregator restarted: register again");
    }
    let mut st = sh.state.lock().expect("state lock");
    let out = st.push(now, id, p);
    notify(sh, &st);
    match out {
        Ok((hwm, generation)) => json(
            StatusCode::OK,
            &Ack {
                hwm,
                generation,
                instance: sh.instance.clone(),
            },
        ),
        Err(e) => refused(e),
    }
}

/// A bot leaves; answered once saved (at the next tick's save, or the end of the run's): a
/// bot that left exits, and could not send its last seconds again to an aggregator restarted
/// from an earlier save.
async fn leave(sh: &Shared, id: u64, now: f64) -> Response<Body> {
    let (out, begun, finished) = {
        let mut st = sh.state.lock().expect("state lock");
        let out = st.deregister(now, id);
        notify(sh, &st);
        (out, sh.saves_begun.load(Ordering::Relaxed), st.finished)
    };
    if out.is_ok() && !finished {
        let mut saved = sh.saved.subscribe();
        let _ = tokio::time::timeout(SAVE_WAIT, saved.wait_for(|n| *n > begun)).await;
    }
    match out {
        Ok(()) => ok(),
        Err(e) => refused(e),
    }
}

/// The bot's assignment once its generation differs from `after` (a long-poll of at most
/// [`LONG_POLL`]).
async fn assignment(sh: &Shared, id: u64, q: Query<'_>) -> Response<Body> {
    let after: u64 = q.num("after").unwrap_or(0);
    let mut rx = sh.generation.subscribe();
    let deadline = Instant::now() + LONG_POLL;
    loop {
        {
            let st = sh.state.lock().expect("state lock");
            match st.assignment(id) {
                None => return error(404, &format!("unknown bot {id}: register first")),
                Some(a) if a.generation != after || Instant::now() >= deadline => {
                    return json(StatusCode::OK, a)
                }
                Some(_) => {}
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return error(503, "shutting down") },
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

fn set_load(sh: &Shared, r: LoadRequest, now: f64) -> Response<Body> {
    let mut st = sh.state.lock().expect("state lock");
    if st.finished {
        return error(409, "the run is finished");
    }
    let out = st.set_load(now, &r);
    sh.generation.send_replace(st.generation());
    match out {
        Ok(()) => json(
            StatusCode::OK,
            &serde_json::json!({ "ok": true, "offered": st.offered() }),
        ),
        Err(e) => refused(e),
    }
}

/// `POST /api/events`: one line of text.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Posted {
    text: String,
}

fn post_event(sh: &Shared, p: Posted, now: f64) -> Json {
    let mut st = sh.state.lock().expect("state lock");
    match st.post_event(now, &p.text) {
        Ok(()) => ok(),
        Err(e) => refused(e),
    }
}

/// The live stream: SSE frames from the ticker, with a comment every 15 s to keep proxies
/// from closing an idle stream. A client too slow to keep up skips frames (the page
/// refetches the series when it notices a gap).
fn stream(sh: &Shared) -> Response<Body> {
    let rx = sh.stream.subscribe();
    let s = futures::stream::unfold(rx, |mut rx| async move {
        let r = tokio::time::timeout(Duration::from_secs(15), rx.recv()).await;
        let frame = match r {
            Ok(Ok(b)) => b,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                Bytes::from_static(b"event: lagged\ndata: {}\n\n")
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            Err(_) => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok::<_, Infallible>(Frame::data(frame)), rx))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(s)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Wake the assignment long-polls if an assignment changed.
fn notify(sh: &Shared, st: &State) {
    let g = st.generation();
    sh.generation
        .send_if_modified(|old| std::mem::replace(old, g) != g);
}

fn full(code: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// An answer in JSON (every answer of the API but the page, its assets, `/metrics` and the
/// stream): hyper's path makes a response of it, the quick path writes it as it is.
pub(super) struct Json {
    status: StatusCode,
    body: Vec<u8>,
}

impl From<Json> for Response<Body> {
    fn from(j: Json) -> Self {
        let mut r = full(j.status, "application/json", j.body);
        if j.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn json<T: serde::Serialize, R: From<Json>>(code: StatusCode, v: &T) -> R {
    Json {
        status: code,
        body: serde_json::to_vec(v).expect("serializable"),
    }
    .into()
}

fn ok<R: From<Json>>() -> R {
    json(StatusCode::OK, &serde_json::json!({ "ok": true }))
}

fn error<R: From<Json>>(code: u16, why: &str) -> R {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    json(code, &serde_json::json!({ "error": why }))
}

fn refused<R: From<Json>>(r: Refused) -> R {
    error(r.0, &r.1)
}
