//! Server-side apply (`PATCH` with `application/apply-patch+yaml`), as the API server does it
//! for the cases scaletest uses: each field manager owns the fields of its last applied
//! configuration (recorded in `metadata.managedFields` as `FieldsV1`); a new apply by the same
//! manager removes the fields it no longer applies, sets the ones it does, and leaves fields
//! other managers own; a field another manager applied with a different value is a 409
//! conflict unless `force=true` (which moves ownership). A result equal to the stored object
//! is a no-op: no write, no new resourceVersion, no event (as the real server skips the write
//! when nothing changed). `generation` moves only when something outside metadata and status
//! changed.
//!
//! Simplification (stated, not hidden): every list is treated as atomic (owned whole, as
//! `f:name: {}`), where the real server merges associative lists such as `containers` by their
//! key. With one manager applying whole objects, as scaletest does, the results are the same.

use crate::error::ApiError;
use serde_json::{json, Map, Value};

/// The timestamp the fake puts wherever the real server puts "now".
pub const FAKE_TIME: &str = "2026-01-01T00:00:00Z";

/// The FieldsV1 set of an applied configuration: `{"f:spec": {"f:replicas": {}}}`. Maps are
/// walked; scalars and lists are leaves. `apiVersion`, `kind`, `metadata.name` and
/// `metadata.namespace` identify the object and are not owned.
pub fn fieldset(config: &Value) -> Value {
    fn walk(v: &Value, top: bool, in_meta: bool) -> Value {
        let mut out = Map::new();
        if let Value::Object(m) = v {
            for (k, child) in m {
                if top && (k == "apiVersion" || k == "kind" || k == "status") {
                    continue;
                }
                if in_meta
                    && matches!(
                        k.as_str(),
                        "name"
                            | "namespace"
                            | "managedFields"
                            | "resourceVersion"
                            | "uid"
                            | "generation"
                            | "creationTimestamp"
                    )
                {
                    continue;
                }
                let sub = match child {
                    Value::Object(_) => walk(child, false, top && k == "metadata"),
                    _ => json!({}),
                };
                out.insert(format!("f:{k}"), sub);
            }
        }
        Value::Object(out)
    }
    walk(config, true, false)
}

/// Every leaf path of a field set, as lists of plain keys.
fn leaves(set: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = set {
        if m.is_empty() && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (k, v) in m {
            prefix.push(k.trim_start_matches("f:").to_string());
            leaves(v, prefix, out);
            prefix.pop();
        }
    }
}

fn contains(set: &Value, path: &[String]) -> bool {
    let mut cur = set;
    for p in path {
        match cur.get(format!("f:{p}")) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    Some(cur)
}

fn remove(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Merge an applied configuration into an object: maps recursively, everything else replaced.
fn merge(target: &mut Value, config: &Value) {
    match (target.as_object_mut(), config) {
        (Some(t), Value::Object(c)) => {
            for (k, v) in c {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = config.clone(),
    }
}

fn managed(o: &Value) -> Vec<Value> {
    o.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The object after `manager` applies `config` to `current` (None: it does not exist yet).
/// Identity fields (uid, resourceVersion, ...) are the caller's to keep.
pub fn apply(
    current: Option<&Value>,
    config: &Value,
    api_version: &str,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let new_set = fieldset(config);
    let mut entries = current.map(managed).unwrap_or_default();
    let mut obj = current.cloned().unwrap_or_else(|| json!({}));
    let mut new_leaves = Vec::new();
    leaves(&new_set, &mut Vec::new(), &mut new_leaves);
    // Conflicts: a field another manager applied, set here to a different value.
    let mut conflicts = Vec::new();
    for e in entries.iter_mut() {
        if e["manager"] == manager {
            continue;
        }
        let their = e.get("fieldsV1").cloned().unwrap_or(json!({}));
        let mut theirs = Vec::new();
        leaves(&their, &mut Vec::new(), &mut theirs);
        for path in &new_leaves {
            let owned = theirs
                .iter()
                .any(|t| t.starts_with(path) || path.starts_with(t));
            if owned && get(&obj, path) != get(config, path) {
                conflicts.push(format!(
                    "conflict with {:?}: .{}",
                    e["manager"].as_str().unwrap_or(""),
                    path.join(".")
                ));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApiError::Conflict(format!(
            "Apply failed with {} conflict(s): {}",
            conflicts.len(),
            conflicts.join("; ")
        )));
    }
    // Fields this manager applied before and applies no more go, unless another owns them.
    let before = entries
        .iter()
        .find(|e| e["manager"] == manager)
        .and_then(|e| e.get("fieldsV1").cloned())
        .unwrap_or(json!({}));
    let mut old_leaves = Vec::new();
    leaves(&before, &mut Vec::new(), &mut old_leaves);
    for path in old_leaves {
        let still = contains(&new_set, &path);
        let others = entries.iter().any(|e| {
            e["manager"] != manager && contains(e.get("fieldsV1").unwrap_or(&Value::Null), &path)
        });
        if !still && !others {
            remove(&mut obj, &path);
        }
    }
    merge(&mut obj, config);
    // With force, the applier takes the contested fields from the others.
    if force {
        for e in entries.iter_mut() {
            if e["manager"] != manager {
                if let Some(fs) = e.get_mut("fieldsV1") {
                    for path in &new_leaves {
                        drop_path(fs, path);
                    }
                }
            }
        }
        entries.retain(|e| {
            e["manager"] == manager || e.get("fieldsV1").is_some_and(|f| f != &json!({}))
        });
    }
    let mine = json!({"manager": manager, "operation": "Apply", "apiVersion": api_version,
                      "time": FAKE_TIME, "fieldsType": "FieldsV1", "fieldsV1": new_set});
    match entries.iter_mut().find(|e| e["manager"] == manager) {
        Some(e) => *e = mine,
        None => entries.push(mine),
    }
    obj["metadata"]["managedFields"] = Value::Array(entries);
    Ok(obj)
}

fn drop_path(set: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let key = format!("f:{first}");
    if let Some(m) = set.as_object_mut() {
        if rest.is_empty() {
            m.remove(&key);
        } else if let Some(child) = m.get_mut(&key) {
            drop_path(child, rest);
            if child == &json!({}) {
                m.remove(&key);
            }
        }
    }
}

/// Whether two versions of an object differ outside metadata and status (what moves
/// `metadata.generation`).
pub fn spec_changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(a) != strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(replicas: u32, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "d", "labels": labels},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c"}]}}}})
    }

    #[test]
    fn a_second_apply_removes_what_the_manager_no_longer_applies() {
        let first = apply(
            None,
            &cfg(1, json!({"a": "1", "b": "2"})),
            "apps/v1",
            "me",
            false,
        )
        .unwrap();
        assert_eq!(first["metadata"]["labels"]["b"], "2");
        let second = apply(
            Some(&first),
            &cfg(3, json!({"a": "1"})),
            "apps/v1",
            "me",
            false,
        )
        .unwrap();
        assert_eq!(second["spec"]["replicas"], 3);
        assert!(second["metadata"]["labels"].get("b").is_none());
        assert_eq!(
            second["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // The same configuration again gives the same object.
        let again = apply(
            Some(&second),
            &cfg(3, json!({"a": "1"})),
            "apps/v1",
            "me",
            false,
        )
        .unwrap();
        assert_eq!(again, second);
    }

    #[test]
    fn another_managers_field_conflicts_unless_forced() {
        let first = apply(None, &cfg(1, json!({})), "apps/v1", "me", false).unwrap();
        let other = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "d"}, "spec": {"replicas": 5}});
        let e = apply(Some(&first), &other, "apps/v1", "them", false).unwrap_err();
        assert!(
            matches!(e, ApiError::Conflict(ref m) if m.contains(".spec.replicas")),
            "{e:?}"
        );
        let forced = apply(Some(&first), &other, "apps/v1", "them", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        // "me" no longer owns replicas, so its next apply without it leaves it alone.
        let mut mine = cfg(1, json!({}));
        mine["spec"].as_object_mut().unwrap().remove("replicas");
        let after = apply(Some(&forced), &mine, "apps/v1", "me", false).unwrap();
        assert_eq!(after["spec"]["replicas"], 5);
        assert!(!spec_changed(&after, &forced));
    }
}
