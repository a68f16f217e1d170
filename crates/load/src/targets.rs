//! vegeta's text targets format, which users already know:
//!
//! ```text
//! # comment
//! GET http://127.0.0.1:8080/a
//! X-Account-ID: 8675309
//!
//! POST http://127.0.0.1:8080/things
//! Content-Type: application/json
//! @body.json
//! ```
//!
//! A target is a `METHOD URL` line, then header lines, then optionally `@path` naming a body
//! file (relative paths are taken from the targets file's directory); blank lines separate
//! targets. A `# name: checkout` line names the target after it (its own row in the report),
//! a `# weight: 3` line sets its share of the mix.
//!
//! Or JSON lines, one target per line (a file whose first non-blank line starts with `{`):
//!
//! ```text
//! {"name": "checkout", "method": "POST", "url": "http://h/buy", "headers": {"Content-Type": "application/json"}, "body": "{}", "weight": 3}
//! {"name": "home", "url": "http://h/", "weight": 7}
//! ```
//!
//! `weight` (default 1) is the target's share of the mix. Parsing is pure; the caller reads
//! body files.

/// One target as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// HTTP method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers in file order.
    pub headers: Vec<(String, String)>,
    /// `@path` body file, as written.
    pub body_file: Option<String>,
    /// The body itself (JSON lines' `body`).
    pub body: Option<String>,
    /// Its name (`# name:` before it, JSON lines' `name`).
    pub name: Option<String>,
    /// Its share of the mix.
    pub weight: u64,
    /// 1-based line of the `METHOD URL` line, for error messages.
    pub line: usize,
}

/// One line of the JSON-lines form.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTarget {
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_file: Option<String>,
    #[serde(default = "one")]
    weight: u64,
}

fn get() -> String {
    "GET".into()
}

fn one() -> u64 {
    1
}

/// Parse a targets file in either form (JSON lines when its first non-blank line starts with
/// `{`). Errors name the line.
pub fn parse(text: &str) -> Result<Vec<TargetSpec>, String> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    if first.is_some_and(|l| l.starts_with('{')) {
        parse_json_lines(text)
    } else {
        parse_targets(text)
    }
}

fn parse_json_lines(text: &str) -> Result<Vec<TargetSpec>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let t: JsonTarget = serde_json::from_str(line).map_err(|e| format!("line {n}: {e}"))?;
        if t.body.is_some() && t.body_file.is_some() {
            return Err(format!("line {n}: give body or body_file, not both"));
        }
        let name = t.name.map(|s| s.trim().to_string());
        if name.as_deref() == Some("") {
            return Err(format!("line {n}: the name is empty"));
        }
        if !t.method.chars().all(|c| c.is_ascii_uppercase()) || t.method.is_empty() {
            return Err(format!("line {n}: invalid method {:?}", t.method));
        }
        out.push(TargetSpec {
            method: t.method,
            url: t.url,
            headers: t.headers.into_iter().collect(),
            body_file: t.body_file,
            body: t.body,
            name,
            weight: t.weight,
            line: n,
        });
    }
    if out.is_empty() {
        return Err("no targets in file".into());
    }
    Ok(out)
}

/// Parse a targets file. Errors name the line.
pub fn parse_targets(text: &str) -> Result<Vec<TargetSpec>, String> {
    let mut out: Vec<TargetSpec> = Vec::new();
    let mut current: Option<TargetSpec> = None;
    let mut name: Option<String> = None;
    let mut weight: Option<u64> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let n = i + 1;
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(v) = comment.trim().strip_prefix("name:") {
                if current.is_some() || name.is_some() {
                    return Err(format!(
                        "line {n}: a name goes once, before its target's METHOD URL line"
                    ));
                }
                if v.trim().is_empty() {
                    return Err(format!("line {n}: the name is empty"));
                }
                name = Some(v.trim().to_string());
            }
            if let Some(v) = comment.trim().strip_prefix("weight:") {
                if current.is_some() || weight.is_some() {
                    return Err(format!(
                        "line {n}: a weight goes once, before its target's METHOD URL line"
                    ));
                }
                let w = v.trim().parse::<u64>().map_err(|_| {
                    format!("line {n}: weight {:?} is not a whole number ≥ 0", v.trim())
                })?;
                weight = Some(w);
            }
            continue;
        }
        if line.is_empty() {
            out.extend(current.take());
            continue;
        }
        match current.as_mut() {
            None => {
                let (method, url) = line
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| format!("line {n}: expected \"METHOD URL\", got {line:?}"))?;
                if !method.chars().all(|c| c.is_ascii_uppercase()) {
                    return Err(format!("line {n}: invalid method {method:?}"));
                }
                current = Some(TargetSpec {
                    method: method.to_string(),
                    url: url.trim().to_string(),
                    headers: Vec::new(),
                    body_file: None,
                    body: None,
                    name: name.take(),
                    weight: weight.take().unwrap_or(1),
                    line: n,
                });
            }
            Some(t) => {
                if let Some(path) = line.strip_prefix('@') {
                    t.body_file = Some(path.trim().to_string());
                } else if let Some((k, v)) = line.split_once(':') {
                    if k.trim().is_empty() || k.contains(char::is_whitespace) {
                        return Err(format!("line {n}: invalid header {line:?}"));
                    }
                    t.headers.push((k.trim().to_string(), v.trim().to_string()));
                } else {
                    return Err(format!(
                        "line {n}: expected \"Header: value\" or \"@bodyfile\", got {line:?}"
                    ));
                }
            }
        }
    }
    out.extend(current);
    if name.is_some() || weight.is_some() {
        return Err("the file ends with a name or weight and no target after it".into());
    }
    if out.is_empty() {
        return Err("no targets in file".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vegeta_targets() {
        let t = parse_targets(
            "# c\nGET http://h/a\nX-A: 1\n\n\nPOST http://h/b\nContent-Type: text/plain\n@body.txt\nDELETE http://h/c\n",
        );
        // DELETE directly after a body line is a header error: vegeta needs a blank line.
        assert!(t.is_err());
        let t = parse_targets("GET http://h/a\nX-A: 1\n\nPOST http://h/b\n@b.txt\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].headers, vec![("X-A".to_string(), "1".to_string())]);
        assert_eq!(t[1].body_file.as_deref(), Some("b.txt"));
        assert_eq!(t[1].line, 4);
    }

    #[test]
    fn names_and_json_lines_with_weights() {
        let t = parse("# name: home\nGET http://h/\n\n# just a note\nGET http://h/b\n").unwrap();
        assert_eq!(t[0].name.as_deref(), Some("home"));
        assert_eq!(t[1].name, None);
        assert!(parse("GET http://h/\n# name: late\n").is_err());
        assert!(parse("# name: a\n# name: b\nGET http://h/\n").is_err());
        assert!(parse("# name:  \nGET http://h/\n").is_err());
        assert!(parse("GET http://h/\n\n# name: dangling\n").is_err());
        let t = parse("# name: a\n# weight: 3\nGET http://h/\n\nGET http://h/b\n").unwrap();
        assert_eq!((t[0].weight, t[1].weight), (3, 1));
        assert!(parse("# weight: -1\nGET http://h/\n").is_err());
        assert!(parse("GET http://h/\n\n# weight: 2\n").is_err());
        assert!(parse("{\"url\": \"u\", \"name\": \" \"}").is_err());
        let t = parse(concat!(
            "{\"name\": \"buy\", \"method\": \"POST\", \"url\": \"http://h/buy\", ",
            "\"headers\": {\"X-A\": \"1\"}, \"body\": \"{}\", \"weight\": 3}\n\n",
            "{\"url\": \"http://h/\"}\n"
        ))
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].name.as_deref(), t[0].weight, t[0].body.as_deref()),
            (Some("buy"), 3, Some("{}"))
        );
        assert_eq!(t[0].headers, vec![("X-A".to_string(), "1".to_string())]);
        assert_eq!(
            (t[1].method.as_str(), t[1].weight, t[1].line),
            ("GET", 1, 3)
        );
        let e = parse("{\"url\": \"http://h/\", \"wieght\": 2}").unwrap_err();
        assert!(e.starts_with("line 1: unknown field `wieght`"), "{e}");
        assert!(parse("{\"url\": \"u\", \"body\": \"a\", \"body_file\": \"b\"}").is_err());
    }

    #[test]
    fn rejects_empty_and_malformed_files() {
        assert!(parse_targets("\n# only\n").is_err());
        assert!(parse_targets("get http://h/").is_err());
        assert!(parse_targets("http://h/").is_err());
    }
}

/// Arbitrary text as a targets file: no panic, and targets or an error that fit it.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn file() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            Just("GET http://127.0.0.1:1/a".to_string()),
            Just("POST http://h/".to_string()),
            Just("X-A: b".to_string()),
            Just("@body.json".to_string()),
            Just("# note".to_string()),
            Just("# name: a".to_string()),
            Just("# weight: 2".to_string()),
            Just(String::new()),
            "[ -~]{0,30}",
            any::<String>(),
        ];
        prop_oneof![any::<String>(), vec(line, 0..60).prop_map(|l| l.join("\n")),]
    }

    proptest! {
        #[test]
        fn a_targets_file_parses_or_names_its_line(text in file()) {
            let lines = text.lines().count();
            match parse_targets(&text) {
                Ok(targets) => {
                    prop_assert!(targets.len() <= lines);
                    for t in &targets {
                        prop_assert!(t.line >= 1 && t.line <= lines);
                        prop_assert!(!t.method.is_empty() && t.method.chars().all(|c| c.is_ascii_uppercase()));
                    }
                }
                Err(e) => prop_assert!(e.starts_with("line ") || e.contains("no target"), "{}", e),
            }
        }
    }
}
