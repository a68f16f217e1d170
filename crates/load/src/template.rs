//! Requests that vary: templates in a request's URL (path and query), header values and body.
//!
//! `{{seq}}` (a per-run sequence, 0, 1, 2, … over all workers), `{{uuid}}` (random, version 4),
//! `{{rand_int A B}}` (A ≤ n ≤ B), `{{rand_hex N}}` (N hex digits), `{{now_ms}}` (Unix time
//! in ms) and `{{csv.COLUMN}}` (from the spec's [`Data`]: one row per request, in turn over
//! the whole run, or at random). A loadbot runs its [`Share`] of the fleet's: bot `i` of `n`
//! sends `seq` values i, i+n, i+2n, … and takes the rows i, i+n, … in turn (or one of them at
//! random), so bots neither repeat each other's values nor share rows while the set of bots
//! holds (with fewer rows than bots, bot i takes row i mod rows). Within one request, `seq`, `now_ms` and the row are the same
//! in every place they appear; `uuid` and the random ones are drawn anew in each, from the
//! system's entropy (a new run sends new values). A value from a CSV row is percent-encoded in
//! the path and query where a URL cannot hold it as is (a space, `#`, non-ASCII). `\{{` is a
//! literal `{{`.
//!
//! A request is checked once when the spec is built: each hole is replaced by a marker and the
//! result goes through the same `Origin::parse` / `Request::new` as a fixed request, so every
//! rule of a request lives there. For HTTP/1.1 the marked wire bytes are cut at the markers
//! once; a send then writes literals and values into one buffer (one allocation per send).
//! For HTTP/2 the path, headers and body are rendered and the request built per send.

use bytes::{BufMut, Bytes, BytesMut};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use st_http::{Origin, Request};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod share;
pub use share::{Share, ShareControl};

/// Rows for `{{csv.COLUMN}}`: a CSV file's header and records, held in the spec so that it
/// means the same on every machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// Column names (the CSV header).
    pub columns: Vec<String>,
    /// Records, each as long as `columns`.
    pub rows: Vec<Vec<String>>,
    /// How each request picks its row.
    #[serde(default)]
    pub order: Order,
}

/// How requests take rows of [`Data`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// In turn: the run's n-th request takes row n (wrapping), whichever worker sends it.
    #[default]
    InTurn,
    /// A row at random for each request.
    Random,
}

impl std::str::FromStr for Order {
    type Err = String;
    fn from_str(s: &str) -> Result<Order, String> {
        match s {
            "in-turn" | "in_turn" => Ok(Order::InTurn),
            "random" => Ok(Order::Random),
            _ => Err(format!("unknown order {s:?} (expected in-turn or random)")),
        }
    }
}

/// One template function.
#[derive(Debug, Clone, PartialEq)]
enum Func {
    Seq,
    Uuid,
    RandInt(u64, u64),
    RandHex(usize),
    NowMs,
    Column(usize),
}

const FUNCS: &str = "seq, uuid, rand_int MIN MAX, rand_hex N, now_ms, csv.COLUMN";

impl Func {
    fn column(expr: &str, name: &str, data: Option<&Data>) -> Result<Func, String> {
        let Some(data) = data else {
            return Err(format!(
                "{{{{{expr}}}}} needs CSV rows (the spec's data: --data FILE.csv)"
            ));
        };
        data.columns
            .iter()
            .position(|c| c == name)
            .map(Func::Column)
            .ok_or_else(|| {
                format!(
                    "{{{{{expr}}}}}: the CSV file has no column {name:?} (its columns: {})",
                    data.columns.join(", ")
                )
            })
    }

    fn parse(expr: &str, data: Option<&Data>) -> Result<Func, String> {
        if let Some(name) = expr.strip_prefix("csv.") {
            return Func::column(expr, name.trim(), data);
        }
        let words: Vec<&str> = expr.split_whitespace().collect();
        let number = |w: &str| {
            w.parse::<u64>()
                .map_err(|_| format!("{{{{{expr}}}}}: {w:?} is not a whole number ≥ 0"))
        };
        match words.as_slice() {
            ["seq"] => Ok(Func::Seq),
            ["uuid"] => Ok(Func::Uuid),
            ["now_ms"] => Ok(Func::NowMs),
            ["rand_int", a, b] => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("{{{{{expr}}}}}: MIN is above MAX"));
                }
                Ok(Func::RandInt(a, b))
            }
            ["rand_hex", n] => match number(n)? {
                n @ 1..=64 => Ok(Func::RandHex(n as usize)),
                _ => Err(format!("{{{{{expr}}}}}: N must be 1..=64")),
            },
            [f, ..] => Err(format!(
                "unknown template function {f:?} in {{{{{expr}}}}} (known: {FUNCS})"
            )),
            [] => Err(format!("an empty template {{{{}}}} (known: {FUNCS})")),
        }
    }
}

/// Marks holes in text that goes through the fixed request's checks: alphanumeric, so valid in
/// a path, a header value and a body, with a salt no template's text contains.
#[derive(Clone)]
struct Marker(String);

impl Marker {
    fn new(texts: &[&str]) -> Marker {
        let mut salt = 0x5eed_u32;
        loop {
            let m = Marker(format!("zSTt{salt:x}h"));
            if !texts.iter().any(|t| t.contains(&m.0)) {
                return m;
            }
            salt = salt.wrapping_mul(31).wrapping_add(7);
        }
    }

    fn of(&self, hole: usize) -> String {
        format!("{}{hole}e", self.0)
    }
}

/// Text cut at its holes.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Text(Bytes),
    Hole(usize),
    /// A hole in the request's path and query (a CSV value is percent-encoded there).
    PathHole(usize),
    /// The body's length (HTTP/1.1 `Content-Length` of a body with holes).
    BodyLength,
}

/// `text` with each `{{…}}` replaced by a marker; its functions are appended to `funcs`.
fn mark(
    text: &str,
    marker: &Marker,
    funcs: &mut Vec<Func>,
    data: Option<&Data>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if let Some(before) = rest[..open].strip_suffix('\\') {
            out += before;
            out += "{{";
            rest = &rest[open + 2..];
            continue;
        }
        out += &rest[..open];
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("an unclosed {{{{ in {text:?}"))?;
        funcs.push(Func::parse(after[..close].trim(), data)?);
        out += &marker.of(funcs.len() - 1);
        rest = &after[close + 2..];
    }
    Ok(out + rest)
}

/// Whether `text` holds a template.
pub fn has_template(text: &str) -> bool {
    text.contains("{{")
}

/// `marked` cut at its markers.
fn cut(marked: &[u8], marker: &Marker) -> Vec<Seg> {
    let m = marker.0.as_bytes();
    let mut segs = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < marked.len() {
        if marked[i..].starts_with(m) {
            let digits = marked[i + m.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let end = i + m.len() + digits;
            if digits > 0 && marked.get(end) == Some(&b'e') {
                let hole = std::str::from_utf8(&marked[i + m.len()..end])
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .expect("digits");
                if !lit.is_empty() {
                    segs.push(Seg::Text(Bytes::from(std::mem::take(&mut lit))));
                }
                segs.push(Seg::Hole(hole));
                i = end + 1;
                continue;
            }
        }
        lit.push(marked[i]);
        i += 1;
    }
    if !lit.is_empty() {
        segs.push(Seg::Text(Bytes::from(lit)));
    }
    segs
}

/// The holes of a request's path (the text before its first line break).
fn in_path(mut segs: Vec<Seg>) -> Vec<Seg> {
    for s in segs.iter_mut() {
        match s {
            Seg::Text(t) if t.windows(2).any(|w| w == b"\r\n") => break,
            Seg::Hole(i) => *s = Seg::PathHole(*i),
            _ => {}
        }
    }
    segs
}

/// What every template of a run shares: the sequence and the place in the rows.
#[derive(Debug, Default)]
pub struct Shared {
    seq: AtomicU64,
    next_row: AtomicU64,
    data: Option<Data>,
    share: ShareControl,
}

/// A worker's own state for templates: its random numbers.
pub struct Vars {
    rng: SmallRng,
    /// Scratch for a body rendered before its length is written (kept between sends).
    body: Vec<u8>,
}

impl Vars {
    /// A worker's (seeded from the system's entropy: values differ run to run).
    pub fn new() -> Vars {
        Vars {
            rng: SmallRng::from_entropy(),
            body: Vec::new(),
        }
    }
}

impl Default for Vars {
    fn default() -> Vars {
        Vars::new()
    }
}

/// The values of one request's holes that are the same wherever they appear.
struct Once<'a> {
    seq: u64,
    now_ms: u64,
    row: Option<&'a [String]>,
}

/// A request with holes, checked, ready to be rendered per send.
pub struct Template {
    shared: Arc<Shared>,
    funcs: Vec<Func>,
    /// What its holes need once per send (found at build, not per send).
    uses_row: bool,
    uses_seq: bool,
    uses_now: bool,
    /// HTTP/1.1: the whole wire request cut at its holes.
    h1: Option<Vec<Seg>>,
    /// Body cut at its holes (HTTP/1.1: written after the head; HTTP/2: the body).
    body: Vec<Seg>,
    /// HTTP/2: what `Request::new` takes, cut at the holes.
    origin: Origin,
    method: String,
    /// The request as checked (its method and HEAD-ness for the rendered HTTP/1.1 bytes).
    sample: Request,
    path: Vec<Seg>,
    headers: Vec<(String, Vec<Seg>)>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("funcs", &self.funcs)
            .finish()
    }
}

/// A request's parts as the spec gives them, templates included.
pub struct Parts<'a> {
    /// The request's absolute URL.
    pub url: &'a str,
    /// Its method.
    pub method: &'a str,
    /// Its headers, "Name: value" already split.
    pub headers: &'a [(String, String)],
    /// Its body.
    pub body: &'a str,
}

impl Template {
    /// Check a templated request (`build` is the fixed request's builder: origin, path, headers
    /// and body in, the request out) and cut it at its holes. The origin must hold none.
    pub fn new(
        parts: &Parts<'_>,
        shared: &Arc<Shared>,
        http1: bool,
        build: impl Fn(&Origin, &str, &[(String, String)], Bytes) -> Result<Request, String>,
    ) -> Result<(Template, Origin), String> {
        let mut texts = vec![parts.url, parts.method, parts.body];
        for (k, v) in parts.headers {
            texts.extend([k.as_str(), v.as_str()]);
        }
        let marker = Marker::new(&texts);
        let data = shared.data.as_ref();
        let mut funcs = Vec::new();
        let url = mark(parts.url, &marker, &mut funcs, data)?;
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), mark(v, &marker, &mut funcs, data)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let body = mark(parts.body, &marker, &mut funcs, data)?.into_bytes();
        // Checked before the host is resolved.
        let (scheme, rest) = url.split_once("://").unwrap_or(("", &url));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if scheme.contains(&marker.0) || authority.contains(&marker.0) {
            return Err(
                "templates go in a URL's path and query, not in its scheme://host:port".into(),
            );
        }
        let (origin, path) = Origin::parse(&url).map_err(|e| e.to_string())?;
        let sample = build(&origin, &path, &headers, Bytes::from(body.clone()))?;
        let body_segs = cut(&body, &marker);
        let h1 = http1.then(|| {
            let wire = sample.h1_bytes();
            let head = &wire[..wire.len() - body.len()];
            let mut segs = in_path(cut(head, &marker));
            if body_segs.iter().any(|s| matches!(s, Seg::Hole(_))) {
                // The length line is the head's last: "Content-Length: N\r\n\r\n".
                let Some(Seg::Text(last)) = segs.pop() else {
                    unreachable!("a head ends with its blank line")
                };
                let at = find(&last, b"Content-Length: ").expect("a body has a length");
                segs.push(Seg::Text(last.slice(..at + 16)));
                segs.push(Seg::BodyLength);
                segs.push(Seg::Text(Bytes::from_static(b"\r\n\r\n")));
            }
            segs
        });
        let uses = |want: &dyn Fn(&Func) -> bool| funcs.iter().any(want);
        let (uses_row, uses_seq, uses_now) = (
            uses(&|f| matches!(f, Func::Column(_))),
            uses(&|f| *f == Func::Seq),
            uses(&|f| *f == Func::NowMs),
        );
        let t = Template {
            shared: shared.clone(),
            funcs,
            uses_row,
            uses_seq,
            uses_now,
            h1,
            body: body_segs,
            origin: origin.clone(),
            method: parts.method.to_string(),
            sample,
            path: in_path(cut(path.as_bytes(), &marker)),
            headers: headers
                .iter()
                .map(|(k, v)| (k.clone(), cut(v.as_bytes(), &marker)))
                .collect(),
        };
        // A hole the URL's parsing dropped (a fragment, a "/.." after it) would never be sent.
        let sent = |i: usize| {
            let mut all = t
                .path
                .iter()
                .chain(&t.body)
                .chain(t.headers.iter().flat_map(|h| &h.1));
            all.any(|s| matches!(s, Seg::Hole(j) | Seg::PathHole(j) if *j == i))
        };
        if let Some(i) = (0..t.funcs.len()).find(|i| !sent(*i)) {
            return Err(format!(
                "template {} of the request is not sent (in the URL's #fragment, or before a /..)",
                i + 1
            ));
        }
        // Every row lands where a request may hold it: check each once, here.
        if let (true, Some(d)) = (t.uses_row, &shared.data) {
            let mut vars = Vars::new();
            for (r, row) in d.rows.iter().enumerate() {
                let once = Once {
                    seq: 0,
                    now_ms: 0,
                    row: Some(row),
                };
                t.build_with(&once, &mut vars, &build)
                    .map_err(|e| format!("CSV line {}: {e}", r + 2))?;
            }
        }
        Ok((t, origin))
    }

    fn once(&self, vars: &mut Vars) -> Once<'_> {
        let share = self.shared.share.get();
        let row = match (&self.shared.data, self.uses_row) {
            (Some(d), true) if !d.rows.is_empty() => {
                let n = match d.order {
                    Order::InTurn => self.shared.next_row.fetch_add(1, Ordering::Relaxed),
                    Order::Random => vars.rng.gen(),
                };
                Some(d.rows[share.row(n, d.rows.len())].as_slice())
            }
            _ => None,
        };
        Once {
            seq: if self.uses_seq {
                share.seq(self.shared.seq.fetch_add(1, Ordering::Relaxed))
            } else {
                0
            },
            now_ms: if self.uses_now {
                (st_http::stamp::now_unix() * 1000.0) as u64
            } else {
                0
            },
            row,
        }
    }

    /// Write hole `i`'s value (`in_path`: where a URL's path and query go).
    fn value(
        &self,
        i: usize,
        in_path: bool,
        once: &Once<'_>,
        rng: &mut SmallRng,
        out: &mut impl BufMut,
    ) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut num = itoa::Buffer::new();
        match &self.funcs[i] {
            Func::Seq => out.put_slice(num.format(once.seq).as_bytes()),
            Func::NowMs => out.put_slice(num.format(once.now_ms).as_bytes()),
            Func::RandInt(a, b) => out.put_slice(num.format(rng.gen_range(*a..=*b)).as_bytes()),
            Func::RandHex(n) => {
                for _ in 0..*n {
                    out.put_u8(HEX[rng.gen_range(0..16)]);
                }
            }
            Func::Uuid => {
                let mut b: [u8; 16] = rng.gen();
                b[6] = (b[6] & 0x0f) | 0x40;
                b[8] = (b[8] & 0x3f) | 0x80;
                for (k, byte) in b.iter().enumerate() {
                    if matches!(k, 4 | 6 | 8 | 10) {
                        out.put_u8(b'-');
                    }
                    out.put_u8(HEX[usize::from(byte >> 4)]);
                    out.put_u8(HEX[usize::from(byte & 0xf)]);
                }
            }
            Func::Column(c) => {
                let v = once.row.map_or("", |row| row[*c].as_str());
                if in_path {
                    encode_in_path(v, out);
                } else {
                    out.put_slice(v.as_bytes());
                }
            }
        }
    }

    fn render(&self, segs: &[Seg], once: &Once<'_>, vars: &mut Vars, out: &mut impl BufMut) {
        for s in segs {
            match s {
                Seg::Text(t) => out.put_slice(t),
                Seg::Hole(i) => self.value(*i, false, once, &mut vars.rng, out),
                Seg::PathHole(i) => self.value(*i, true, once, &mut vars.rng, out),
                Seg::BodyLength => {
                    out.put_slice(itoa::Buffer::new().format(vars.body.len()).as_bytes())
                }
            }
        }
    }

    fn render_string(&self, segs: &[Seg], once: &Once<'_>, vars: &mut Vars) -> String {
        let mut out = Vec::new();
        self.render(segs, once, vars, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The parts of one send with `once`'s values, rendered, through `build`.
    fn build_with(
        &self,
        once: &Once<'_>,
        vars: &mut Vars,
        build: &impl Fn(&Origin, &str, &[(String, String)], Bytes) -> Result<Request, String>,
    ) -> Result<Request, String> {
        let path = self.render_string(&self.path, once, vars);
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), self.render_string(v, once, vars)))
            .collect();
        let mut body = Vec::new();
        self.render(&self.body, once, vars, &mut body);
        build(&self.origin, &path, &headers, Bytes::from(body))
    }

    /// The request of one send.
    pub fn render_request(&self, vars: &mut Vars) -> Request {
        let once = self.once(vars);
        let Some(h1) = &self.h1 else {
            return self
                .build_with(&once, vars, &|o, p, h, b| {
                    Request::new(o, &self.method, p, h, b).map_err(|e| e.to_string())
                })
                .expect("every value was checked when the spec was built");
        };
        let mut body = std::mem::take(&mut vars.body);
        body.clear();
        self.render(&self.body, &once, vars, &mut body);
        vars.body = body;
        let size = h1
            .iter()
            .map(|s| match s {
                Seg::Text(t) => t.len(),
                _ => 40,
            })
            .sum::<usize>()
            + vars.body.len();
        let mut out = BytesMut::with_capacity(size);
        self.render(h1, &once, vars, &mut out);
        out.put_slice(&vars.body);
        self.sample.with_h1_wire(out.freeze())
    }
}

/// `v` as a URL's path and query may hold it: bytes a URL cannot carry as they are
/// (controls, space, `"#<>\`{}|^`, non-ASCII) percent-encoded, the rest (`/`, `?`, `&`, `=`,
/// `%`, …) kept, so a value can still be a query or a pre-encoded path.
fn encode_in_path(v: &str, out: &mut impl BufMut) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in v.as_bytes() {
        if b <= b' ' || b >= 0x7f || b"\"#<>\\`{}|^".contains(&b) {
            out.put_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.put_u8(b);
        }
    }
}

impl Data {
    /// At least one row, each as long as the header.
    pub fn check(&self) -> Result<(), String> {
        if self.rows.is_empty() {
            return Err("no rows".into());
        }
        let n = self.columns.len();
        match self.rows.iter().position(|r| r.len() != n) {
            Some(i) => Err(format!(
                "row {} has {} fields, the header {n}",
                i + 1,
                self.rows[i].len()
            )),
            None => Ok(()),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// What a spec's request becomes: fixed bytes, or a template rendered per send.
// A run holds a few of these; the fixed request stays inline, off a pointer, on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Prepared {
    /// Serialized once, sent as is.
    Fixed(Request),
    /// Rendered for each send.
    Varying(Template),
}

impl Prepared {
    /// Whether it takes rows of the spec's data.
    pub fn uses_data(&self) -> bool {
        matches!(self, Prepared::Varying(t) if t.uses_row)
    }

    /// Shared state for the templates of a run holding `data`, taking `share` of the
    /// sequence and rows.
    pub fn shared(data: Option<Data>, share: ShareControl) -> Arc<Shared> {
        Arc::new(Shared {
            seq: AtomicU64::new(0),
            next_row: AtomicU64::new(0),
            data,
            share,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(o: &Origin, p: &str, h: &[(String, String)], b: Bytes) -> Result<Request, String> {
        Request::new(o, "POST", p, h, b).map_err(|e| e.to_string())
    }

    fn template(
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
        data: Option<Data>,
    ) -> Result<Template, String> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let parts = Parts {
            url,
            method: "POST",
            headers: &headers,
            body,
        };
        Template::new(
            &parts,
            &Prepared::shared(data, ShareControl::default()),
            true,
            build,
        )
        .map(|(t, _)| t)
    }

    /// The rendered HTTP/1.1 request: path, headers, body (checked against Content-Length).
    fn parsed(req: &Request) -> (String, Vec<(String, String)>, String) {
        let wire = req.h1_bytes();
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Request::new(&mut hs);
        let httparse::Status::Complete(n) = r.parse(wire).unwrap() else {
            panic!("incomplete: {wire:?}")
        };
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let body = String::from_utf8_lossy(&wire[n..]).into_owned();
        let len = headers.iter().find(|(k, _)| k == "Content-Length").unwrap();
        assert_eq!(len.1, body.len().to_string(), "{wire:?}");
        (r.path.unwrap().to_string(), headers, body)
    }

    #[test]
    fn holes_are_filled_per_send_with_one_seq_per_request() {
        let t = template(
            "http://127.0.0.1:9/item/{{seq}}?r={{rand_int 5 7}}",
            &[("X-Id", "{{uuid}}"), ("X-Seq", "{{ seq }}")],
            r#"{"n": {{seq}}, "hex": "{{rand_hex 6}}", "at": {{now_ms}}}"#,
            None,
        )
        .unwrap();
        let mut vars = Vars::new();
        let mut seen = std::collections::BTreeSet::new();
        for want in 0..50u64 {
            let (path, headers, body) = parsed(&t.render_request(&mut vars));
            let (p, q) = path.split_once("?r=").unwrap();
            assert_eq!(p, format!("/item/{want}"));
            assert!(matches!(q, "5" | "6" | "7"), "{q}");
            let h = |k: &str| headers.iter().find(|(n, _)| n == k).unwrap().1.clone();
            assert_eq!(h("X-Seq"), want.to_string());
            let id = h("X-Id");
            let groups: Vec<usize> = id.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
            assert_eq!(&id[14..15], "4", "version 4: {id}");
            assert!(seen.insert(id));
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["n"], want);
            assert_eq!(v["hex"].as_str().unwrap().len(), 6);
            assert!(v["at"].as_u64().unwrap() > 1_700_000_000_000);
        }
        // A body of another length gets its own Content-Length (checked in `parsed`).
        let (_, _, body) = parsed(&t.render_request(&mut vars));
        assert!(body.contains("\"n\": 50"));
    }

    #[test]
    fn http2_requests_are_built_per_send() {
        let parts = Parts {
            url: "http://127.0.0.1:9/a/{{seq}}",
            method: "GET",
            headers: &[],
            body: "",
        };
        let get = |o: &Origin, p: &str, h: &[(String, String)], b: Bytes| {
            Request::new(o, "GET", p, h, b).map_err(|e| e.to_string())
        };
        let (t, _) = Template::new(
            &parts,
            &Prepared::shared(None, ShareControl::default()),
            false,
            get,
        )
        .unwrap();
        assert!(t.h1.is_none());
        let mut vars = Vars::new();
        for want in 0..3 {
            let r = t.render_request(&mut vars);
            let wire = String::from_utf8_lossy(r.h1_bytes()).into_owned();
            assert!(
                wire.starts_with(&format!("GET /a/{want} HTTP/1.1")),
                "{wire}"
            );
        }
    }

    fn data(order: Order) -> Data {
        Data {
            columns: vec!["user".into(), "token".into()],
            rows: (0..5)
                .map(|i| vec![format!("u{i}"), format!("t{i}")])
                .collect(),
            order,
        }
    }

    #[test]
    fn rows_go_in_turn_over_all_workers_and_one_row_per_request() {
        let t = template(
            "http://127.0.0.1:9/u/{{csv.user}}/{{seq}}",
            &[("Authorization", "Bearer {{csv.token}}")],
            "",
            Some(data(Order::InTurn)),
        )
        .unwrap();
        let take = |vars: &mut Vars| {
            let (path, headers, _) = parsed(&t.render_request(vars));
            let auth = headers.iter().find(|(k, _)| k == "Authorization").unwrap();
            let (user, seq) = path.trim_start_matches("/u/u").split_once('/').unwrap();
            assert_eq!(auth.1, format!("Bearer t{user}"), "one row per request");
            (user.to_string(), seq.to_string())
        };
        // Two workers: the run's n-th request takes row n, whoever sends it; the rows were
        // checked without using up the sequence.
        let (mut w0, mut w1) = (Vars::new(), Vars::new());
        let got: Vec<(String, String)> = (0..7)
            .map(|i| take(if i % 3 == 0 { &mut w0 } else { &mut w1 }))
            .collect();
        let want: Vec<(String, String)> = (0..7)
            .map(|i| ((i % 5).to_string(), i.to_string()))
            .collect();
        assert_eq!(got, want);
        // At random: every row is drawn from the file.
        let t = template(
            "http://127.0.0.1:9/u/{{csv.user}}",
            &[],
            "",
            Some(data(Order::Random)),
        )
        .unwrap();
        let mut vars = Vars::new();
        let drawn: std::collections::BTreeSet<String> = (0..200)
            .map(|_| parsed(&t.render_request(&mut vars)).0)
            .collect();
        assert_eq!(drawn.len(), 5, "{drawn:?}");
    }

    #[test]
    fn csv_values_are_encoded_in_the_path_and_kept_elsewhere() {
        let d = Data {
            columns: vec!["city name".into()],
            rows: vec![vec!["new york".into()], vec!["José#1?x=a b".into()]],
            order: Order::InTurn,
        };
        let t = template(
            "http://127.0.0.1:9/c/{{ csv.city name }}",
            &[("X-City", "{{csv.city name}}")],
            "{\"city\": \"{{csv.city name}}\", \"raw\": \"\\{{seq}}\"}",
            Some(d),
        )
        .unwrap();
        let mut vars = Vars::new();
        let (path, headers, body) = parsed(&t.render_request(&mut vars));
        assert_eq!(path, "/c/new%20york");
        assert_eq!(
            headers.iter().find(|(k, _)| k == "X-City").unwrap().1,
            "new york"
        );
        assert_eq!(body, "{\"city\": \"new york\", \"raw\": \"{{seq}}\"}");
        let (path, _, _) = parsed(&t.render_request(&mut vars));
        assert_eq!(path, "/c/Jos%C3%A9%231?x=a%20b");
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        let cases: &[(&str, &str, Option<Data>, &str)] = &[
            (
                "http://127.0.0.1:9/{{sequence}}",
                "",
                None,
                "unknown template function \"sequence\"",
            ),
            (
                "http://127.0.0.1:9/{{csv.name}}",
                "",
                Some(data(Order::InTurn)),
                "no column \"name\" (its columns: user, token)",
            ),
            (
                "http://127.0.0.1:9/{{csv.user}}",
                "",
                None,
                "needs CSV rows",
            ),
            ("http://127.0.0.1:9/{{seq", "", None, "unclosed"),
            (
                "http://127.0.0.1:9/",
                "{{rand_int 9 1}}",
                None,
                "MIN is above MAX",
            ),
            ("http://127.0.0.1:9/", "{{rand_hex 0}}", None, "1..=64"),
            (
                "http://127.0.0.1:9/",
                "{{rand_int a 1}}",
                None,
                "not a whole number",
            ),
            (
                "http://host{{seq}}:9/",
                "",
                None,
                "not in its scheme://host:port",
            ),
        ];
        for (url, body, d, want) in cases {
            let e = template(url, &[], body, d.clone()).unwrap_err();
            assert!(e.contains(want), "{url} {body}: {e}");
        }
        // A row that cannot go where the template puts it is named by its line (the header
        // is line 1): a line break in a header value would inject a header.
        // Checked whatever the order, every row.
        for (order, row, line) in [
            (Order::InTurn, 2, "CSV line 4: "),
            (Order::Random, 4, "CSV line 6: "),
        ] {
            let mut d = data(order);
            d.rows[row][1] = "t\r\nX-Injected: 1".into();
            let e = template(
                "http://127.0.0.1:9/",
                &[("X-T", "{{csv.token}}")],
                "",
                Some(d),
            )
            .unwrap_err();
            assert!(e.starts_with(line), "{e}");
        }
        // A template the URL's parsing drops is refused, not silently unsent.
        for url in [
            "http://127.0.0.1:9/a#{{seq}}",
            "http://127.0.0.1:9/{{seq}}/..",
        ] {
            let e = template(url, &[], "", None).unwrap_err();
            assert!(e.contains("is not sent"), "{url}: {e}");
        }
    }
}
