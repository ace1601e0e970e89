//! Patch algorithms on `serde_json::Value`: JSON merge patch (RFC 7386), which also stands in
//! for strategic merge patch and server-side apply, and JSON patch (RFC 6902).

use serde_json::Value;

/// RFC 7386: objects merge key by key, `null` removes, anything else (arrays too) replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in patch {
        if value.is_null() {
            target.shift_remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6902 on a copy of `doc`; `Err` explains the first operation that failed (the whole
/// patch is then rejected, as the spec requires).
pub(crate) fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    let mut doc = doc.clone();
    for op in ops {
        let field = |name: &str| {
            op[name]
                .as_str()
                .ok_or_else(|| format!("operation {op} lacks {name:?}"))
        };
        let path = field("path")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {op} lacks \"value\""))
        };
        match field("op")? {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                let value = value()?;
                *doc.pointer_mut(path)
                    .ok_or_else(|| format!("missing path {path:?}"))? = value;
            }
            "move" => {
                let moved = remove(&mut doc, field("from")?)?;
                add(&mut doc, path, moved)?;
            }
            "copy" => {
                let from = field("from")?;
                let copied = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("missing path {from:?}"))?;
                add(&mut doc, path, copied)?;
            }
            // As in the server's JSON patch library (and kube-runtime's finalizer helper relies
            // on it), a missing member tests equal to null.
            "test" => {
                if doc.pointer(path).unwrap_or(&Value::Null) != &value()? {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unknown patch operation {other:?}")),
        }
    }
    Ok(doc)
}

/// Splits a JSON pointer into its parent pointer and unescaped last token.
fn split(path: &str) -> Result<(&str, String), String> {
    let cut = path
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((
        &path[..cut],
        path[cut + 1..].replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, token) = split(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(token, value);
        }
        Some(Value::Array(items)) => {
            let index = if token == "-" {
                items.len()
            } else {
                index(&token, items.len() + 1)?
            };
            items.insert(index, value);
        }
        _ => return Err(format!("missing parent for path {path:?}")),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, token) = split(path)?;
    let removed = match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => map.shift_remove(&token),
        Some(Value::Array(items)) => {
            let index = index(&token, items.len())?;
            Some(items.remove(index))
        }
        _ => None,
    };
    removed.ok_or_else(|| format!("missing path {path:?}"))
}

fn index(token: &str, bound: usize) -> Result<usize, String> {
    token
        .parse::<usize>()
        .ok()
        .filter(|i| *i < bound)
        .ok_or_else(|| format!("invalid array index {token:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(&mut doc, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops() {
        let doc = json!({"metadata": {"finalizers": ["x", "y"]}, "a/b": 1});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": ["x", "y"]},
                {"op": "remove", "path": "/metadata/finalizers/0"},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "z"},
                {"op": "replace", "path": "/a~1b", "value": 2},
                {"op": "copy", "from": "/a~1b", "path": "/c"},
                {"op": "move", "from": "/c", "path": "/d"},
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"finalizers": ["y", "z"]}, "a/b": 2, "d": 2})
        );
        let failed = json_patch(&doc, &json!([{"op": "test", "path": "/a~1b", "value": 3}]));
        assert!(failed.unwrap_err().contains("test"));
        assert!(json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        let absent = json!([{"op": "test", "path": "/metadata/x", "value": null}]);
        assert!(json_patch(&doc, &absent).is_ok());
    }
}
