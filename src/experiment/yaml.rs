//! YAML documents read the way PyYAML's `safe_load` reads them for `chaos`.
//!
//! YAML 1.1 resolution is not YAML 1.2's, and experiments depend on it: `yes`/`no`/`on`/`off`
//! are booleans but `y`/`n` are strings, `0755` is octal, `1_000` is an int, `1e5` is a string
//! while `1.0e+5` is a float, `1:30` is sexagesimal 90, merge keys (`<<`) merge. serde-saphyr,
//! our YAML crate for typed documents, resolves scalars its own way, so experiments are built
//! here from the events of its parser (granit-parser) with PyYAML's resolver rules. Mapping
//! keys become JSON strings as `json.dump` would write them; dates stay as written.

use granit_parser::{Event, Parser, ScalarStyle, Tag};
use serde_json::{Map, Number, Value};

/// A YAML document that PyYAML would not load, with its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        own: Map<String, Value>,
        merges: Vec<Map<String, Value>>,
        key: Option<Key>,
        anchor: usize,
    },
}

enum Key {
    Merge,
    Name(String),
}

/// Parses a single YAML document into JSON (`Value::Null` for an empty stream).
///
/// # Errors
///
/// Syntax errors, several documents, unhashable keys and tags PyYAML's safe loader refuses.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: Vec<(usize, Value)> = Vec::new();
    let mut documents = 0;
    let mut root = Value::Null;
    for next in Parser::new_from_str(text) {
        let (event, span) = next.map_err(|e| YamlError {
            line: e.marker().line() as u64,
            column: e.marker().col() as u64 + 1,
            message: e.info(),
        })?;
        let at = |message: String| YamlError {
            line: span.start.line() as u64,
            column: span.start.col() as u64 + 1,
            message,
        };
        let node = match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(at("expected a single document in the stream".into()));
                }
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => {
                let is_merge_key = style == ScalarStyle::Plain && tag.is_none() && value == "<<";
                if is_merge_key
                    && let Some(Frame::Map {
                        key: key @ None, ..
                    }) = stack.last_mut()
                {
                    *key = Some(Key::Merge);
                    continue;
                }
                let resolved = scalar(&value, style, tag.as_deref()).map_err(at)?;
                remember(&mut anchors, anchor, &resolved);
                resolved
            }
            Event::Alias(id) => anchors
                .iter()
                .rev()
                .find(|(a, _)| *a == id)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| at("found undefined alias".into()))?,
            Event::SequenceStart(_, anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq").map_err(at)?;
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                });
                continue;
            }
            Event::MappingStart(_, anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map").map_err(at)?;
                stack.push(Frame::Map {
                    own: Map::new(),
                    merges: Vec::new(),
                    key: None,
                    anchor,
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { items, anchor }) => {
                    let v = Value::Array(items);
                    remember(&mut anchors, anchor, &v);
                    v
                }
                _ => return Err(at("unbalanced sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    own,
                    merges,
                    anchor,
                    ..
                }) => {
                    // PyYAML (6.0.4) puts merged entries first, in order, the first source of a
                    // key winning; the mapping's own entries win over merged ones.
                    let mut map = Map::new();
                    for merged in merges {
                        for (k, v) in merged {
                            map.entry(k).or_insert(v);
                        }
                    }
                    for (k, v) in own {
                        map.insert(k, v);
                    }
                    let v = Value::Object(map);
                    remember(&mut anchors, anchor, &v);
                    v
                }
                _ => return Err(at("unbalanced mapping".into())),
            },
            _ => continue,
        };
        match stack.last_mut() {
            None => root = node,
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                own, merges, key, ..
            }) => match key.take() {
                None => *key = Some(Key::Name(key_string(node).map_err(at)?)),
                Some(Key::Merge) => match node {
                    Value::Object(m) => merges.push(m),
                    Value::Array(items) => {
                        let mut maps = Vec::new();
                        for item in items {
                            match item {
                                Value::Object(m) => maps.push(m),
                                _ => {
                                    return Err(at(
                                        "expected a mapping for merging, but found a scalar".into(),
                                    ));
                                }
                            }
                        }
                        merges.extend(maps);
                    }
                    _ => {
                        return Err(at(
                            "expected a mapping or list of mappings for merging".into()
                        ));
                    }
                },
                Some(Key::Name(name)) => {
                    own.insert(name, node);
                }
            },
        }
    }
    Ok(root)
}

fn remember(anchors: &mut Vec<(usize, Value)>, anchor: usize, value: &Value) {
    if anchor != 0 {
        anchors.push((anchor, value.clone()));
    }
}

fn check_collection_tag(tag: Option<&Tag>, expected: &str) -> Result<(), String> {
    match tag {
        None => Ok(()),
        Some(t) if t.core_suffix() == Some(expected) => Ok(()),
        Some(t) => Err(format!(
            "could not determine a constructor for the tag '{}{}'",
            t.original_handle(),
            t.suffix()
        )),
    }
}

/// A mapping key as `json.dump` writes it.
fn key_string(key: Value) -> Result<String, String> {
    match key {
        Value::String(s) => Ok(s),
        Value::Null => Ok("null".into()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(crate::python::number_repr(&n)),
        _ => Err("found unhashable key".into()),
    }
}

fn scalar(value: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        return tagged(value, tag);
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(value.to_owned()));
    }
    Ok(resolve_plain(value))
}

fn tagged(value: &str, tag: &Tag) -> Result<Value, String> {
    let unsupported = || {
        format!(
            "could not determine a constructor for the tag '{}{}'",
            tag.original_handle(),
            tag.suffix()
        )
    };
    // The non-specific tag `!` makes a plain scalar a string.
    if tag.suffix().is_empty() && tag.original_handle() == "!" {
        return Ok(Value::String(value.to_owned()));
    }
    match tag.core_suffix() {
        Some("str") => Ok(Value::String(value.to_owned())),
        Some("null") => Ok(Value::Null),
        Some("bool") => bool_value(value)
            .map(Value::Bool)
            .ok_or_else(|| format!("invalid boolean {value:?}")),
        Some("int") => int_value(value).ok_or_else(|| format!("invalid int {value:?}")),
        Some("float") => float_value(value)
            .or_else(|| int_value(value))
            .ok_or_else(|| format!("invalid float {value:?}")),
        _ if tag.is_yaml_core_schema_tag("timestamp") => Ok(Value::String(value.to_owned())),
        _ => Err(unsupported()),
    }
}

/// PyYAML's implicit resolvers, in their order of precedence.
fn resolve_plain(s: &str) -> Value {
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = bool_value(s) {
        return Value::Bool(b);
    }
    if is_int(s)
        && let Some(v) = int_value(s)
    {
        return v;
    }
    if is_float(s)
        && let Some(v) = float_value(s)
    {
        return v;
    }
    Value::String(s.to_owned())
}

fn bool_value(s: &str) -> Option<bool> {
    match s {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn strip_sign(s: &str) -> (bool, &str) {
    match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    }
}

fn all(s: &str, f: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(f)
}

/// Sexagesimal tail `(:[0-5]?[0-9])+`.
fn sexagesimal_tail(parts: &[&str]) -> bool {
    !parts.is_empty()
        && parts.iter().all(|p| {
            (1..=2).contains(&p.len())
                && all(p, |c| c.is_ascii_digit())
                && (p.len() == 1 || p.as_bytes()[0] <= b'5')
        })
}

/// `[-+]?0b[0-1_]+ | [-+]?0[0-7_]+ | [-+]?(0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+ |
///  [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+`
fn is_int(s: &str) -> bool {
    let (_, body) = strip_sign(s);
    if let Some(b) = body.strip_prefix("0b") {
        return all(b, |c| matches!(c, '0' | '1' | '_'));
    }
    if let Some(x) = body.strip_prefix("0x") {
        return all(x, |c| c.is_ascii_hexdigit() || c == '_');
    }
    if body == "0" {
        return true;
    }
    if let Some(o) = body.strip_prefix('0') {
        return all(o, |c| matches!(c, '0'..='7' | '_'));
    }
    let mut parts = body.split(':');
    let head = parts.next().unwrap_or("");
    let head_ok = head.starts_with(|c: char| matches!(c, '1'..='9'))
        && all(head, |c| c.is_ascii_digit() || c == '_');
    let tail: Vec<&str> = parts.collect();
    head_ok && (tail.is_empty() || sexagesimal_tail(&tail))
}

fn int_value(s: &str) -> Option<Value> {
    let cleaned = s.replace('_', "");
    let (negative, body) = strip_sign(&cleaned);
    let magnitude: i128 = if body == "0" {
        0
    } else if let Some(b) = body.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if let Some(x) = body.strip_prefix("0x") {
        i128::from_str_radix(x, 16).ok()?
    } else if body.contains(':') {
        body.split(':')
            .try_fold(0i128, |acc, p| p.parse::<i128>().ok().map(|d| acc * 60 + d))?
    } else if let Some(o) = body.strip_prefix('0') {
        i128::from_str_radix(o, 8).ok()?
    } else {
        body.parse().ok()?
    };
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value)
        .map(Value::from)
        .or_else(|_| u64::try_from(value).map(Value::from))
        .ok()
}

/// `[-+]?([0-9][0-9_]*)\.[0-9_]*([eE][-+][0-9]+)? | \.[0-9][0-9_]*([eE][-+][0-9]+)? |
///  [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]* | [-+]?\.(inf|Inf|INF) | \.(nan|NaN|NAN)`
fn is_float(s: &str) -> bool {
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let signed = s.starts_with(['-', '+']);
    let (_, body) = strip_sign(s);
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if let Some(exp) = exponent {
        let ok = exp.starts_with(['-', '+']) && all(&exp[1..], |c| c.is_ascii_digit());
        if !ok {
            return false;
        }
    }
    let Some((int_part, frac)) = mantissa.split_once('.') else {
        return false;
    };
    let frac_ok = frac.chars().all(|c| c.is_ascii_digit() || c == '_');
    if int_part.is_empty() {
        // `.5`: no sign allowed, a digit first.
        return !signed && frac.starts_with(|c: char| c.is_ascii_digit()) && frac_ok;
    }
    let mut parts = int_part.split(':');
    let head = parts.next().unwrap_or("");
    let head_ok = head.starts_with(|c: char| c.is_ascii_digit())
        && all(head, |c| c.is_ascii_digit() || c == '_');
    let tail: Vec<&str> = parts.collect();
    if !tail.is_empty() {
        return exponent.is_none() && head_ok && sexagesimal_tail(&tail) && frac_ok;
    }
    head_ok && frac_ok
}

fn float_value(s: &str) -> Option<Value> {
    let cleaned = s.replace('_', "").to_ascii_lowercase();
    let (negative, body) = strip_sign(&cleaned);
    let magnitude: f64 = if body == ".inf" || body == ".nan" {
        // JSON has no infinities or NaN: keep the text, as `json.dump` could not write them.
        return Some(Value::String(s.to_owned()));
    } else if body.contains(':') {
        let mut total = 0.0;
        for part in body.split(':') {
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        total
    } else {
        body.parse().ok()?
    };
    let value = if negative { -magnitude } else { magnitude };
    Number::from_f64(value).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_resolve_like_pyyaml() {
        let doc = parse(
            "a: yes\nb: y\nc: 0755\nd: 1_000\ne: 1e5\nf: 1.0e+5\ng: 1:30\nh: ~\ni: ''\nj: 'yes'\n\
             k: 0x1F\nl: 0b101\nm: .5\nn: -1.5\no: 1.\np: 2020-01-01\nq: off\nr: 010\ns: +7\n\
             t: 1:30.5\nu: 12_3.4_5\nv: .inf\nw: N\nx: 1e-05\n",
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({
                "a": true, "b": "y", "c": 493, "d": 1000, "e": "1e5", "f": 100000.0, "g": 90,
                "h": null, "i": "", "j": "yes", "k": 31, "l": 5, "m": 0.5, "n": -1.5, "o": 1.0,
                "p": "2020-01-01", "q": false, "r": 8, "s": 7, "t": 90.5, "u": 123.45,
                "v": ".inf", "w": "N", "x": "1e-05"
            })
        );
    }

    #[test]
    fn anchors_aliases_and_merges() {
        let doc = parse(
            "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\n\
             one: {<<: *b, y: 9}\nmany:\n  <<: [*b, *o]\n  w: 0\nalias: *b\n",
        )
        .unwrap();
        assert_eq!(doc["one"], json!({"x": 1, "y": 9}));
        assert_eq!(doc["many"], json!({"x": 1, "y": 2, "z": 4, "w": 0}));
        let keys: Vec<_> = doc["many"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["x", "y", "z", "w"]);
        assert_eq!(doc["alias"], json!({"x": 1, "y": 2}));
    }

    #[test]
    fn keys_become_json_strings_and_order_is_kept() {
        let doc = parse("z: 1\n1: a\ntrue: b\nnull: c\na: 2\nz: 3\n").unwrap();
        let keys: Vec<_> = doc.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "1", "true", "null", "a"]);
        assert_eq!(doc["z"], json!(3));
    }

    #[test]
    fn tags_and_block_scalars() {
        let doc = parse("a: !!str 123\nb: !!int '7'\nc: |\n  x\n  y\nd: >\n  p\n  q\ne: \"1\"\n")
            .unwrap();
        assert_eq!(
            doc,
            json!({"a": "123", "b": 7, "c": "x\ny\n", "d": "p q\n", "e": "1"})
        );
        assert!(parse("a: !custom x\n").is_err());
    }

    #[test]
    fn errors_have_positions_and_one_document() {
        let err = parse("a: [1,\nb: 2\n").unwrap_err();
        assert!(err.line >= 1, "{err:?}");
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.message, "expected a single document in the stream");
        assert_eq!(parse("").unwrap(), Value::Null);
        assert_eq!(parse("# only a comment\n").unwrap(), Value::Null);
    }
}
