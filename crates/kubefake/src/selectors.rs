//! Label and field selectors (`?labelSelector=`, `?fieldSelector=`): parsed once, matched
//! against objects.

use crate::error::ApiError;
use serde_json::Value;

/// Label and field selectors, as in `?labelSelector=` and `?fieldSelector=`.
#[derive(Debug, Default, Clone)]
pub struct Selectors {
    labels: Vec<Term>,
    fields: Vec<Term>,
}

#[derive(Debug, Clone)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

fn split_terms(s: &str) -> Vec<String> {
    // Commas inside `in (a,b)` do not separate terms.
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_terms(s: &str, sets: bool) -> Result<Vec<Term>, ApiError> {
    let bad = || ApiError::Invalid(format!("unable to parse selector {s:?}"));
    let mut out = Vec::new();
    for t in split_terms(s) {
        let set = |rest: &str| -> Option<Vec<String>> {
            let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            Some(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let term = if let Some((k, v)) = t.split_once("!=") {
            Term::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            Term::Eq(k.trim().into(), v.trim().into())
        } else if let (true, Some((k, rest))) = (sets, t.split_once(" notin ")) {
            Term::NotIn(k.trim().into(), set(rest).ok_or_else(bad)?)
        } else if let (true, Some((k, rest))) = (sets, t.split_once(" in ")) {
            Term::In(k.trim().into(), set(rest).ok_or_else(bad)?)
        } else if let (true, Some(k)) = (sets, t.strip_prefix('!')) {
            Term::Absent(k.trim().into())
        } else if sets && !t.contains(' ') {
            Term::Exists(t)
        } else {
            return Err(bad());
        };
        out.push(term);
    }
    Ok(out)
}

fn term_matches(t: &Term, get: impl Fn(&str) -> Option<String>) -> bool {
    match t {
        Term::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
        Term::Ne(k, v) => get(k).as_deref() != Some(v.as_str()),
        Term::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
        Term::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        Term::Exists(k) => get(k).is_some(),
        Term::Absent(k) => get(k).is_none(),
    }
}

impl Selectors {
    /// Parse `labelSelector` and `fieldSelector` values.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            labels: parse_terms(labels.unwrap_or(""), true)?,
            fields: parse_terms(fields.unwrap_or(""), false)?,
        })
    }

    /// Whether an object matches both.
    pub fn matches(&self, o: &Value) -> bool {
        let label = |k: &str| {
            o.get("metadata")?
                .get("labels")?
                .get(k)?
                .as_str()
                .map(str::to_string)
        };
        let field = |path: &str| {
            let mut v = o;
            for part in path.split('.') {
                v = v.get(part)?;
            }
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        self.labels.iter().all(|t| term_matches(t, label))
            && self.fields.iter().all(|t| term_matches(t, field))
    }

    /// The value the field selector requires `field` to equal (`field=value`), if it does.
    pub fn field_equals(&self, field: &str) -> Option<&str> {
        self.fields.iter().find_map(|t| match t {
            Term::Eq(k, v) if k == field => Some(v.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_labels_and_fields() {
        let o = json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}},
                       "spec": {"nodeName": "n1"}});
        let m = |l: &str, f: &str| Selectors::parse(Some(l), Some(f)).unwrap().matches(&o);
        assert!(m("app=web,tier in (fe, be)", "spec.nodeName=n1"));
        assert!(m("app==web,!gone,tier", "metadata.name!=q"));
        assert!(!m("app!=web", ""));
        assert!(!m("tier notin (fe)", ""));
        assert!(!m("", "spec.nodeName=n2"));
        assert!(Selectors::parse(Some("a in b"), None).is_err());
    }
}
