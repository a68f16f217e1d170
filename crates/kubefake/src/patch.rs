//! JSON merge patches (RFC 7386) and strategic merge patches, as the API server applies them
//! to the fields the fake's users patch.

use serde_json::{json, Value};

/// The list merge keys of a strategic merge patch for the fields the fake's users patch
/// (`patchMergeKey` in the Kubernetes API types); other lists are replaced whole, as their
/// `patchStrategy` is not `merge`.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "conditions" | "addresses" => Some("type"),
        "podIPs" | "hostIPs" => Some("ip"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// A strategic merge patch as the API server applies it to the fields the fake knows: maps
/// merge as in a JSON merge patch, lists with a merge key (node and pod conditions by
/// `type`, pod IPs by `ip`) merge item by item, other lists are replaced.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    merge(target, patch, true)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    merge(target, patch, false)
}

fn merge(target: &mut Value, patch: &Value, strategic: bool) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("made an object");
            for (k, v) in p {
                if strategic && (k.starts_with("$setElementOrder/") || k == "$retainKeys") {
                    continue;
                }
                let key = if strategic { merge_key(k) } else { None };
                match (v, key, t.get_mut(k)) {
                    (Value::Null, _, _) => {
                        t.remove(k);
                    }
                    (Value::Array(items), Some(key), Some(Value::Array(cur))) => {
                        for item in items {
                            let id = item.get(key);
                            match cur.iter_mut().find(|c| id.is_some() && c.get(key) == id) {
                                Some(c) => merge(c, item, true),
                                None => cur.push(item.clone()),
                            }
                        }
                    }
                    _ => merge(t.entry(k.clone()).or_insert(Value::Null), v, strategic),
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategic_merge_patch_merges_conditions_by_type() {
        let mut t = json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "a"}, {"name": "b"}]}});
        strategic_merge(
            &mut t,
            &json!({"status": {
            "$setElementOrder/conditions": [{"type": "Ready"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}],
            "containerStatuses": [{"name": "a", "ready": true}]}}),
        );
        let types: Vec<&str> = t["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["PodScheduled", "Ready", "Initialized"]);
        assert_eq!(t["status"]["conditions"][1]["status"], "True");
        assert_eq!(
            t["status"]["containerStatuses"].as_array().unwrap().len(),
            1,
            "no merge key: replaced"
        );
        assert!(t["status"].get("$setElementOrder/conditions").is_none());
    }
}
