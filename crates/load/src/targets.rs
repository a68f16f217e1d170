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
//! targets. Parsing is pure; the caller reads body files.

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
    /// 1-based line of the `METHOD URL` line, for error messages.
    pub line: usize,
}

/// Parse a targets file. Errors name the line.
pub fn parse_targets(text: &str) -> Result<Vec<TargetSpec>, String> {
    let mut out: Vec<TargetSpec> = Vec::new();
    let mut current: Option<TargetSpec> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let n = i + 1;
        if line.starts_with('#') {
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
