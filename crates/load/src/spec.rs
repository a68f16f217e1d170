//! The load spec: what to send and how, as plain data (serde), checked here once.
//!
//! `scaletest load` turns its flags into a [`Spec`]; a loadbot receives one from the aggregator
//! as JSON. Both get the same [`Spec::build`], so a spec the CLI would reject is rejected with
//! the same one-line reason wherever it comes from. Files (targets, bodies) are read by the
//! caller: a spec holds their content, so it means the same on every machine.

use crate::mix::{Entry, Mix};
use crate::template::{self, has_template, Data, Parts, Prepared, Template};
use crate::{Config, Live, Mode};
use bytes::Bytes;
use pace::{Arrival, Concurrency, RateShape};
use serde::{Deserialize, Serialize};
use st_http::{Connector, Origin, Protocol, Request, TlsOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One request of a spec (a line group of a vegeta targets file, with its body read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// HTTP method.
    #[serde(default = "get")]
    pub method: String,
    /// Absolute URL; every target of a spec shares one origin.
    pub url: String,
    /// Headers of this target (after the spec's own).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Body of this target (the spec's body when absent).
    #[serde(default)]
    pub body: Option<String>,
    /// Its name: its own row of figures (requests, p50/p99, failures) beside the total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its share of the mix, against the other targets' weights.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: u64,
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

fn get() -> String {
    "GET".into()
}
fn one() -> u64 {
    1
}
fn fifty() -> u64 {
    50
}
fn thirty() -> f64 {
    30.0
}

/// What to send and how. Field names follow `scaletest load`'s flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Target URL (or give `targets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Requests, in turn by their weights, all on one origin (instead of `url`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    /// Method for `url`.
    #[serde(default = "get")]
    pub method: String,
    /// Headers, "Name: value", for every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Request body for every request without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Open loop: total requests/s, in `--rate`'s text (`1000`, `ramp:A..B`, `steps:…@10s`,
    /// `stages:…`). Absent: closed loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateShape>,
    /// Open loop: `uniform` or `poisson`.
    #[serde(default = "uniform")]
    pub arrival: Arrival,
    /// Open loop: most connections to open [default: [`DEFAULT_MAX_CONNECTIONS`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Connections (closed loop: all of them; open loop: opened before the start).
    #[serde(default = "fifty")]
    pub connections: u64,
    /// Closed loop in stages of busy connections (`30s:10c,2m:100c`, k6's ramping VUs)
    /// instead of a fixed `connections`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_stages: Option<Concurrency>,
    /// Streams per HTTP/2 connection.
    #[serde(default = "one")]
    pub streams: u64,
    /// HTTP/2 (ALPN h2 over TLS, h2c over http).
    #[serde(default)]
    pub http2: bool,
    /// Do not verify the server's certificate.
    #[serde(default)]
    pub insecure: bool,
    /// Trust these CA certificates (a PEM file on the machine that runs the load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<PathBuf>,
    /// Per-request timeout in seconds, connect included.
    #[serde(default = "thirty")]
    pub timeout_s: f64,
    /// Stop after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Stop after this many requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Worker threads (default: the CPUs this process may use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
    /// Seed for Poisson arrivals (and for templates' random values).
    #[serde(default = "one")]
    pub seed: u64,
    /// Rows for `{{csv.COLUMN}}` templates (a CSV file's content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
    /// Named requests: most names kept apart (the rest are counted as `other`) [default:
    /// [`crate::mix::DEFAULT_MAX_NAMES`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_names: Option<u64>,
}

fn uniform() -> Arrival {
    Arrival::Uniform
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            url: None,
            targets: Vec::new(),
            method: get(),
            headers: Vec::new(),
            body: None,
            rate: None,
            arrival: Arrival::Uniform,
            max_connections: None,
            connections: fifty(),
            connection_stages: None,
            streams: 1,
            http2: false,
            insecure: false,
            cacert: None,
            timeout_s: thirty(),
            duration_s: None,
            requests: None,
            threads: None,
            seed: 1,
            data: None,
            max_names: None,
        }
    }
}

/// A spec that cannot be run: one line saying why, naming the spec's fields in braces (the
/// CLI shows its flags instead).
pub use st_http::spec::SpecError;

fn bad(e: impl std::fmt::Display) -> SpecError {
    SpecError::plain(e)
}

impl Spec {
    /// What [`Spec::build`] checks of the URL and headers, short of resolving the host:
    /// for a target that resolves only where the bots run (a Service's name in a cluster).
    pub fn check_unresolved(&self) -> Result<(), SpecError> {
        if let Some(url) = &self.url {
            Origin::check(url).map_err(bad)?;
        }
        for h in &self.headers {
            parse_header(h)?;
        }
        Ok(())
    }
}

/// Parse "Name: value".
pub fn parse_header(h: &str) -> Result<(String, String), SpecError> {
    match h.split_once(':') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(SpecError::new(format!(
            "invalid header {}: expected \"Name: value\"",
            st_http::spec::quote(&format!("{h:?}"))
        ))),
    }
}

/// Open loop: most connections when `max_connections` is not given (per run: per bot in a
/// fleet). Connections are what an overloaded target cannot refuse without resets, so the
/// engine grows only to what a healthy target needs: it keeps rate × recent service time × 2
/// lanes (Little's law with headroom). The demo's `max-rate` search gives each of its two
/// bots 12,000 req/s at its last fixed step, and the open-loop benchmarks ask up to 50,000
/// req/s of one generator: at the 10 ms p99 the search still calls sustained, that needs
/// 50,000 × 0.01 × 2 = 1,000. Past that the target is saturated and more connections only
/// add to its load (and to ours: connecting costs the CPU the sends need); sends that find
/// every connection busy wait and are reported late, capped, or unsent at the end, never as
/// the target's errors. Two bots' worth stays well under `serve`'s and `balance`'s default
/// connection limit (10,000).
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1_000;

/// Raise the soft open-file limit to the hard one (every connection is a descriptor) and
/// return it.
pub fn open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// One target checked and prepared: fixed bytes, or a template when it has one.
fn prepare(
    t: &Target,
    headers: &[(String, String)],
    body: &str,
    shared: &Arc<template::Shared>,
    protocol: Protocol,
) -> Result<(Origin, Prepared), SpecError> {
    let templated =
        has_template(&t.url) || has_template(body) || headers.iter().any(|(_, v)| has_template(v));
    if !templated {
        let (origin, path) = Origin::parse(&t.url).map_err(bad)?;
        let req = Request::new(
            &origin,
            &t.method,
            &path,
            headers,
            Bytes::from(body.to_string()),
        )
        .map_err(bad)?;
        return Ok((origin, Prepared::Fixed(req)));
    }
    let parts = Parts {
        url: &t.url,
        method: &t.method,
        headers,
        body,
    };
    let (tpl, origin) = Template::new(&parts, shared, protocol == Protocol::Http1, |o, p, h, b| {
        Request::new(o, &t.method, p, h, b).map_err(|e| e.to_string())
    })
    .map_err(bad)?;
    Ok((origin, Prepared::Varying(tpl)))
}

/// `field` (seconds) as a duration.
fn seconds(field: &str, v: f64) -> Result<Duration, SpecError> {
    if v.is_finite() && v > 0.0 {
        Duration::try_from_secs_f64(v).map_err(|e| SpecError::new(format!("{{{field}}}: {e}")))
    } else {
        Err(SpecError::new(format!("{{{field}}} must be > 0, got {v}")))
    }
}

impl Spec {
    /// Its requests vary per send (templates, CSV rows): what a loadbot's
    /// [`template::Share`] splits.
    pub fn varies(&self) -> bool {
        let texts = (self.url.iter())
            .chain(self.body.iter())
            .chain(self.headers.iter())
            .chain(self.targets.iter().flat_map(|t| {
                std::iter::once(&t.url)
                    .chain(t.body.iter())
                    .chain(t.headers.iter())
            }));
        self.data.is_some() || texts.into_iter().any(|t| has_template(t))
    }

    /// The same spec with a constant total rate of `rate` requests/s (open loop).
    pub fn with_rate(&self, rate: f64) -> Spec {
        Spec {
            rate: Some(RateShape::Constant { rate }),
            ..self.clone()
        }
    }

    /// The URL reports show: `url`, or the first target's.
    pub fn display_url(&self) -> String {
        self.url
            .clone()
            .or_else(|| self.targets.first().map(|t| t.url.clone()))
            .unwrap_or_default()
    }

    /// Every target checked and prepared (the URL is a target of its own: one rule for
    /// both), and their one origin.
    fn requests(
        &self,
        headers: &[(String, String)],
        protocol: Protocol,
        share: template::ShareControl,
    ) -> Result<(Origin, Vec<Prepared>, Mix), SpecError> {
        let url_target;
        let targets: &[Target] = match (&self.url, self.targets.is_empty()) {
            (Some(_), false) => return Err(SpecError::new("give {url} or {targets}, not both")),
            (None, true) => return Err(SpecError::new("give a target {url} or {targets}")),
            (Some(url), true) => {
                url_target = [Target {
                    method: self.method.clone(),
                    url: url.clone(),
                    headers: Vec::new(),
                    body: None,
                    name: None,
                    weight: 1,
                }];
                &url_target
            }
            (None, false) => &self.targets,
        };
        if let Some(d) = &self.data {
            d.check().map_err(|e| bad(e).within("{data}"))?;
        }
        let shared = Prepared::shared(self.data.clone(), share);
        let mut origin: Option<Origin> = None;
        let mut requests = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            // A URL's errors are its own; a targets file's name the target.
            let at = |e: SpecError| match &self.url {
                Some(_) => e,
                None => e.within(&format!("{{targets}} {}", i + 1)),
            };
            let mut h = headers.to_vec();
            for line in &t.headers {
                h.push(parse_header(line).map_err(at)?);
            }
            let body = t.body.as_deref().or(self.body.as_deref()).unwrap_or("");
            let (o, req) = prepare(t, &h, body, &shared, protocol).map_err(at)?;
            if let Some(first) = &origin {
                if !first.same_as(&o) {
                    return Err(at(SpecError::plain(format!(
                        "all targets must share one origin; {} differs from {}",
                        o.url(),
                        first.url()
                    ))));
                }
            }
            requests.push(req);
            origin.get_or_insert(o);
        }
        let origin = origin.expect("at least one target");
        let entries: Vec<Entry> = targets
            .iter()
            .map(|t| Entry {
                name: t.name.as_deref(),
                weight: t.weight,
                method: &t.method,
                url: &t.url,
            })
            .collect();
        let max_names = match self.max_names {
            Some(n) if !(1..=hist::record::MAX_NAMES as u64).contains(&n) => {
                return Err(SpecError::new(format!(
                    "{{max_names}} must be in 1..={}",
                    hist::record::MAX_NAMES
                )))
            }
            Some(n) => n,
            None => crate::mix::DEFAULT_MAX_NAMES,
        };
        let mix =
            Mix::new(&entries, max_names).map_err(|e| SpecError::plain(e).within("{targets}"))?;
        if self.data.is_some() && !requests.iter().any(Prepared::uses_data) {
            return Err(SpecError::new(
                "{data} is given but no request has a {{{{csv.COLUMN}} template",
            ));
        }
        Ok((origin, requests, mix))
    }

    /// Check everything and build the engine's configuration. Runs `until_stopped` (loadbots)
    /// may have neither a duration nor a request count.
    pub fn build(&self, live: Live) -> Result<Config, SpecError> {
        let headers = self
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        let protocol = if self.http2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        let (origin, requests, mix) = self.requests(&headers, protocol, live.share.clone())?;
        if self.streams == 0 || self.streams > 1000 {
            return Err(SpecError::new(format!(
                "{{streams}} must be 1..=1000, got {}",
                self.streams
            )));
        }
        if self.streams > 1 && protocol != Protocol::Http2 {
            return Err(SpecError::new(
                "{streams} needs {http2} (HTTP/1.1 carries one request at a time)",
            ));
        }
        if self.connections == 0 {
            return Err(SpecError::new("{connections} must be ≥ 1"));
        }
        let ramp = self.connection_stages.clone();
        if ramp.is_some() && self.rate.is_some() {
            return Err(SpecError::new(
                "{connection_stages} make a closed loop and {rate} an open one: give one",
            ));
        }
        let timeout = seconds("timeout_s", self.timeout_s)?;
        let shape = self.rate.clone();
        // Stages last as long as they say unless the spec's duration says otherwise (or the
        // run lasts until stopped: a bot's stages are the fleet's, started before it was).
        let duration = self
            .duration_s
            .map(|d| seconds("duration_s", d))
            .transpose()?
            .or(shape
                .as_ref()
                .and_then(RateShape::own_duration)
                .filter(|_| !live.until_stopped))
            .or(ramp.as_ref().map(Concurrency::duration));
        if self.requests == Some(0) {
            return Err(SpecError::new("{requests} must be ≥ 1"));
        }
        let tls = TlsOptions {
            insecure: self.insecure,
            ca_file: self.cacert.clone(),
        };
        let connector = Connector::new(origin, protocol, &tls, timeout).map_err(bad)?;
        // Leave room for the process's own descriptors.
        let fd_room = open_file_limit().saturating_sub(64);
        // A closed loop in stages holds as many connections as its busiest stage.
        let connections = ramp.as_ref().map_or(self.connections, |r| r.peak() as u64);
        let mode = match shape {
            None => {
                if connections > fd_room {
                    let what = if ramp.is_some() {
                        format!("{{connection_stages}} peak at {connections} connections, which")
                    } else {
                        format!("{{connections}} {connections}")
                    };
                    return Err(SpecError::new(format!(
                        "{what} exceeds the open-file limit ({fd_room} usable)"
                    )));
                }
                Mode::Closed { stages: ramp }
            }
            Some(shape) => {
                let max = self
                    .max_connections
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS.min(fd_room).max(connections));
                if max > fd_room {
                    return Err(SpecError::new(format!(
                        "{{max_connections}} {max} exceeds the open-file limit ({fd_room} usable)"
                    )));
                }
                if max < connections {
                    return Err(SpecError::new(format!(
                        "{{max_connections}} {max} is below {{connections}} {connections}"
                    )));
                }
                if matches!(shape, RateShape::Ramp { .. }) && duration.is_none() {
                    return Err(SpecError::new(
                        "a ramp {rate} needs {duration_s} to ramp over",
                    ));
                }
                Mode::Open {
                    shape,
                    arrival: self.arrival,
                    max_connections: max as usize,
                    seed: self.seed,
                }
            }
        };
        if duration.is_none() && self.requests.is_none() && !live.until_stopped {
            return Err(SpecError::new("a run needs {duration_s} or {requests}"));
        }
        if live.rate.is_some() && !matches!(mode, Mode::Open { .. }) {
            return Err(SpecError::new(
                "a live rate needs an open-loop spec ({rate})",
            ));
        }
        let threads = match self.threads {
            Some(0) => return Err(SpecError::new("{threads} must be ≥ 1")),
            Some(t) => t.min(1024) as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Config {
            connector,
            requests: Arc::new(requests),
            mix: Arc::new(mix),
            mode,
            connections: connections as usize,
            streams: self.streams as usize,
            duration,
            max_requests: self.requests,
            timeout,
            threads,
            live,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<Config, SpecError> {
        let s: Spec = serde_json::from_str(json).map_err(bad)?;
        s.build(Live::default())
    }

    #[test]
    fn a_minimal_json_spec_builds_with_the_cli_defaults() {
        let c = spec(r#"{"url":"http://127.0.0.1:9/","duration_s":1}"#).unwrap();
        assert_eq!((c.connections, c.streams), (50, 1));
        assert!(matches!(c.mode, Mode::Closed { stages: None }));
        assert_eq!(c.timeout, Duration::from_secs(30));
        let c =
            spec(r#"{"url":"http://127.0.0.1:9/","rate":"ramp:10..20","duration_s":2}"#).unwrap();
        let Mode::Open {
            max_connections, ..
        } = c.mode
        else {
            panic!("not an open loop");
        };
        let fd_room = open_file_limit().saturating_sub(64);
        let want = DEFAULT_MAX_CONNECTIONS.min(fd_room).max(50);
        assert_eq!(max_connections as u64, want);
    }

    #[test]
    fn bad_specs_get_the_cli_reasons() {
        let cases = [
            (r#"{"duration_s":1}"#, "give a target url"),
            (r#"{"url":"ftp://x/","duration_s":1}"#, "scheme"),
            (
                r#"{"url":"http://127.0.0.1:9/","streams":4,"duration_s":1}"#,
                "streams needs http2",
            ),
            (
                r#"{"url":"http://127.0.0.1:9/","rate":"0","duration_s":1}"#,
                "rate must be",
            ),
            (
                r#"{"url":"http://127.0.0.1:9/","rate":"ramp:1..2"}"#,
                "ramp",
            ),
            (
                r#"{"url":"http://127.0.0.1:9/"}"#,
                "needs duration_s or requests",
            ),
            (
                r#"{"url":"http://127.0.0.1:9/","headers":["nocolon"],"duration_s":1}"#,
                "invalid header",
            ),
            (
                r#"{"url":"http://127.0.0.1:9/","rate":"10","max_connections":1,"connections":5,"duration_s":1}"#,
                "max_connections 1 is below connections 5",
            ),
            (
                r#"{"url":"http://127.0.0.1:9/","timeout_s":-1,"duration_s":1}"#,
                "timeout",
            ),
            (
                r#"{"url":"http://127.0.0.1:9/","bogus":1}"#,
                "unknown field",
            ),
        ];
        for (json, want) in cases {
            let e = spec(json)
                .err()
                .unwrap_or_else(|| panic!("{json} was accepted"));
            let e = e.to_string();
            assert!(e.contains(want), "{json}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn stages_give_the_run_their_duration_unless_it_has_one() {
        let c = spec(r#"{"url":"http://127.0.0.1:9/","rate":"stages:2s:10,1s:10"}"#).unwrap();
        assert_eq!(c.duration, Some(Duration::from_secs(3)));
        let c =
            spec(r#"{"url":"http://127.0.0.1:9/","rate":"stages:2s:10","duration_s":5}"#).unwrap();
        assert_eq!(c.duration, Some(Duration::from_secs(5)));
    }

    #[test]
    fn a_live_rate_needs_an_open_loop_and_no_duration() {
        let s: Spec =
            serde_json::from_str(r#"{"url":"http://127.0.0.1:9/","rate":"100"}"#).unwrap();
        let live = Live {
            rate: Some(crate::RateControl::new()),
            wall_clock_ticks: true,
            until_stopped: true,
            shape_start_unix: None,
            ..Default::default()
        };
        assert!(s.build(live.clone()).is_ok());
        let closed = Spec { rate: None, ..s };
        assert!(closed.build(live).is_err());
    }
}
