//! The shape of the tree, checked so that it stays as ARCHITECTURE.md says: no source file
//! over 900 lines, no function outside tests over 150 lines, and dependencies between our crates
//! only along the graph below (down the flow, never sideways).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 900;
const MAX_FN_LINES: usize = 150;

/// Each crate (by directory) and the workspace crates its `[dependencies]` may name. A new
/// edge goes into ARCHITECTURE.md's graph first, then here.
const GRAPH: &[(&str, &[&str])] = &[
    ("pace", &[]),
    ("hist", &[]),
    ("http", &[]),
    ("report", &["hist"]),
    ("load", &["pace", "hist", "st-http"]),
    ("serve", &["st-http"]),
    ("balance", &["st-http"]),
    ("prof", &["st-http"]),
    ("kapi", &["pace", "hist", "report", "st-http"]),
    ("fleet", &["hist", "load", "pace", "report", "st-http"]),
    ("demo", &["hist", "pace", "report", "st-http"]),
    ("nodes", &["kapi", "hist", "report", "st-http"]),
    ("k8s", &["kapi", "load", "report", "st-http"]),
    (
        "cli",
        &[
            "pace", "hist", "st-http", "load", "report", "serve", "balance", "kapi", "nodes",
            "fleet", "demo", "k8s", "st-prof",
        ],
    ),
    // Test-only crates (dev-dependencies of the others).
    ("kubefake", &["st-http"]),
    ("testkit", &[]),
    ("testsupport", &["load", "pace", "st-http", "testkit"]),
];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for c in std::fs::read_dir(crates_dir()).unwrap().flatten() {
        let src = c.path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut out);
        }
    }
    out.sort();
    out
}

/// A line without its comment and with string and char literals emptied, for brace counting.
fn code(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => break,
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            // A char literal ('{', '\n'); a lifetime ('a) has no closing quote right after.
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                if let Some(escaped) = rest.strip_prefix('\\') {
                    if let Some(end) = escaped.find('\'') {
                        for _ in 0..end + 2 {
                            chars.next();
                        }
                    }
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.next();
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Functions outside `#[cfg(test)]` modules with their length in lines: (name, first line,
/// lines).
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .get(i + 1)
                .is_some_and(|n| n.trim_start().starts_with("mod "))
        {
            // The rest of a file from its test module on is tests.
            break;
        }
        if let Some(name) = fn_name(t) {
            let (mut depth, mut opened, mut j) = (0i64, false, i);
            while j < lines.len() {
                let c = code(lines[j]);
                if !opened && c.contains(';') && !c.contains('{') {
                    break; // a declaration without a body
                }
                for ch in c.chars() {
                    match ch {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if opened && depth <= 0 {
                    break;
                }
                j += 1;
            }
            if opened {
                out.push((name, i + 1, j - i + 1));
            }
        }
        i += 1;
    }
    out
}

fn fn_name(line: &str) -> Option<String> {
    let mut rest = line;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[test]
fn no_source_file_is_over_900_lines_and_no_function_outside_tests_over_150() {
    let mut long = Vec::new();
    for p in sources() {
        let text = std::fs::read_to_string(&p).unwrap();
        let p = Path::new("crates").join(p.strip_prefix(crates_dir()).unwrap());
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            long.push(format!("{}: {n} lines", p.display()));
        }
        for (name, at, len) in functions(&text) {
            if len > MAX_FN_LINES {
                long.push(format!("{}:{at}: fn {name} is {len} lines", p.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split by concept (files ≤ {MAX_FILE_LINES} lines, functions ≤ {MAX_FN_LINES}):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_function_measure_counts_bodies_not_strings_or_tests() {
    let text = "fn a() {\n    let s = \"{{\";\n    let c = '}';\n}\n\
                pub(crate) async fn b<'x>(v: &'x str) -> &'x str {\n    v // }\n}\n\
                fn c();\n#[cfg(test)]\nmod tests {\n    fn d() {}\n}\n";
    assert_eq!(
        functions(text),
        vec![("a".to_string(), 1, 4), ("b".to_string(), 5, 3)]
    );
}

#[test]
fn our_crates_depend_on_each_other_only_along_the_graph() {
    let graph: BTreeMap<&str, &[&str]> = GRAPH.iter().copied().collect();
    let manifests: Vec<(String, String)> = std::fs::read_dir(crates_dir())
        .unwrap()
        .flatten()
        .filter_map(|c| {
            let toml = std::fs::read_to_string(c.path().join("Cargo.toml")).ok()?;
            Some((c.file_name().to_string_lossy().to_string(), toml))
        })
        .collect();
    // Our crates by package name (a dependency names the package, not the directory).
    let ours: Vec<String> = manifests
        .iter()
        .filter_map(|(_, toml)| {
            let line = toml.lines().find(|l| l.starts_with("name = "))?;
            Some(
                line.trim_start_matches("name = ")
                    .trim_matches('"')
                    .to_string(),
            )
        })
        .collect();
    let mut wrong = Vec::new();
    for (dir, toml) in &manifests {
        let Some(allowed) = graph.get(dir.as_str()) else {
            wrong.push(format!("crates/{dir} is not in this test's graph"));
            continue;
        };
        let mut section = "";
        for line in toml.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section != "[dependencies]" {
                continue;
            }
            let name = line
                .split(['.', ' ', '='])
                .next()
                .unwrap_or_default()
                .trim();
            if ours.iter().any(|o| o == name) && !allowed.contains(&name) {
                wrong.push(format!("crates/{dir} depends on {name}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies off ARCHITECTURE.md's graph (down the flow, never sideways):\n{}",
        wrong.join("\n")
    );
}
