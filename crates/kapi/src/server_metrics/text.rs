//! The Prometheus text exposition format (version 0.0.4), as kube-apiserver writes `/metrics`:
//! `# HELP`/`# TYPE` and other comments skipped, one sample a line, `name{label="value",...}
//! value [timestamp]`, label values with `\\`, `\"` and `\n` escapes, values as Go writes
//! floats (`+Inf`, `-Inf`, `NaN`, `1e-05`). A small parser of our own: the crates that parse
//! this format pull in a regex engine and a date library for what is fifty lines here.

/// One sample: metric name, labels sorted by name, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `apiserver_request_total`, `etcd_request_duration_seconds_bucket`, ...
    pub name: String,
    /// Sorted by label name.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// A label's value, "" when absent (as PromQL treats a missing label).
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Every sample of `text` whose metric name `keep` accepts; the first malformed line is the
/// error, with its line number.
pub fn parse(text: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !keep(name) {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {line:.120}", i + 1);
        if name.is_empty() {
            return Err(bad("no metric name"));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            labels(&line[name_end + 1..]).ok_or_else(|| bad("malformed labels"))?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let value = rest
            .split_whitespace()
            .next()
            .and_then(float)
            .ok_or_else(|| bad("no value"))?;
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// The labels after `{` up to the closing `}`, sorted by name; and what follows.
fn labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            out.sort();
            return Some((out, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key, value));
        s = &s[end + 1..];
    }
}

/// A value as Go writes it.
pub fn float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of `k8s-reference/metrics-sample.txt` (kube-apiserver v1.28.7), as recorded.
    const REFERENCE: &str = r#"# HELP apiserver_current_inflight_requests [STABLE] Maximal number of currently used inflight request limit of this apiserver per request kind in last second.
# TYPE apiserver_current_inflight_requests gauge
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/readyz",verb="GET",version=""} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="namespaces",scope="resource",subresource="",verb="GET",version="v1"} 14
apiserver_request_duration_seconds_bucket{component="",dry_run="",group="",resource="",scope="",subresource="/readyz",verb="GET",version="",le="0.005"} 17
etcd_request_duration_seconds_bucket{operation="create",type="apiservices.apiregistration.k8s.io",le="0.4"} 21
apiserver_current_inflight_requests{request_kind="mutating"} 0
"#;

    #[test]
    fn the_reference_recording_parses_with_every_label() {
        let s = parse(REFERENCE, |_| true).expect("parses");
        assert_eq!(s.len(), 5);
        assert_eq!(s[1].name, "apiserver_request_total");
        assert_eq!(s[1].label("resource"), "namespaces");
        assert_eq!(s[1].label("scope"), "resource");
        assert_eq!(s[1].labels.len(), 9);
        assert_eq!(s[1].value, 14.0);
        assert_eq!(s[2].label("le"), "0.005");
        assert_eq!(s[3].label("type"), "apiservices.apiregistration.k8s.io");
        assert_eq!(s[4].label("request_kind"), "mutating");
        assert_eq!(s[0].label("subresource"), "/readyz");
        let only = parse(REFERENCE, |n| n.starts_with("etcd_")).expect("parses");
        assert_eq!(only.len(), 1);
    }

    #[test]
    fn escapes_go_floats_and_timestamps_are_read() {
        let s = parse(
            "a{x=\"q\\\"uo\\\\te\\nd\",le=\"+Inf\"} 1e-05 1700000000000\nb 3\nc{} NaN\nd{le=\"-Inf\"} +Inf",
            |_| true,
        )
        .expect("parses");
        assert_eq!(s[0].label("x"), "q\"uo\\te\nd");
        assert_eq!(float(s[0].label("le")), Some(f64::INFINITY));
        assert_eq!(s[0].value, 1e-5);
        assert_eq!((s[1].name.as_str(), s[1].value), ("b", 3.0));
        assert!(s[2].value.is_nan());
        assert_eq!(s[3].value, f64::INFINITY);
    }

    #[test]
    fn a_malformed_line_is_named() {
        let e = parse("ok 1\nbad{x=\"1\" 2\n", |_| true).unwrap_err();
        assert!(e.starts_with("line 2: malformed labels"), "{e}");
        let e = parse("novalue\n", |_| true).unwrap_err();
        assert!(e.starts_with("line 1: no value"), "{e}");
        // Families not kept are not even checked.
        assert!(parse("bad{x=\n", |n| n != "bad").is_ok());
    }
}
