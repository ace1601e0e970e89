//! Python value semantics applied to JSON values, where Chaos Toolkit's behaviour depends on them.
//!
//! `chaos` is written in Python, and several of its visible behaviours are Python's: values
//! substituted into strings are rendered with `str()`, list arguments of process providers are
//! `str()`-ed, the `=> succeeded with '…'` log line shows `repr()`, and tolerances compare with
//! Python's `==` (where `1 == 1.0 == True`). This module owns those rules so the rest of the
//! runner can stay in plain Rust.

use std::cmp::Ordering;

use serde_json::{Map, Value};

pub use chaosflow_sinks::python::{float_repr, json_dumps, number_repr, repr};

/// Renders a value as Python's `str()` would: strings unquoted, everything else as `repr()`.
pub fn to_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

/// A JSON number or bool as Python sees it in arithmetic comparisons (`True == 1`).
fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn ints(a: &Value, b: &Value) -> Option<(i128, i128)> {
    let int = |v: &Value| -> Option<i128> {
        match v {
            Value::Bool(b) => Some(i128::from(*b)),
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from)),
            _ => None,
        }
    };
    Some((int(a)?, int(b)?))
}

/// Python's `==` on JSON values: numbers and bools compare numerically, containers deeply.
pub fn eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => map_eq(x, y),
        _ => {
            if let Some((x, y)) = ints(a, b) {
                return x == y;
            }
            match (as_number(a), as_number(b)) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        }
    }
}

fn map_eq(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| eq(v, w)))
}

/// Python's `in` on a list: membership by `==`.
pub fn contains(list: &[Value], needle: &Value) -> bool {
    list.iter().any(|item| eq(item, needle))
}

/// Python's ordering between two values, or `None` where Python raises `TypeError`
/// (comparing a string with a number, a dict with anything...).
pub fn partial_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !eq(p, q) {
                    return partial_cmp(p, q);
                }
            }
            Some(x.len().cmp(&y.len()))
        }
        _ => {
            if let Some((x, y)) = ints(a, b) {
                return Some(x.cmp(&y));
            }
            as_number(a)?.partial_cmp(&as_number(b)?)
        }
    }
}

/// Python's truthiness: empty containers, empty strings, zero, `False` and `None` are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The name of a value's Python type, for error messages that users of `chaos` recognise.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Compiles a Python `re` pattern with the same meaning, for `re.search`.
///
/// Python's syntax differs from Rust's in a few places users hit: `$` also matches before a
/// final newline (process stdout ends with one), `{` that starts no quantifier is a literal,
/// `{,n}` means `{0,n}`, `\Z` is the end of the text and `(?P=name)` is a backreference.
///
/// # Errors
///
/// The regex engine's message when the pattern is invalid.
pub fn compile_regex(pattern: &str) -> Result<fancy_regex::Regex, String> {
    fancy_regex::Regex::new(&translate_regex(pattern)).map_err(|e| e.to_string())
}

fn translate_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let multiline = leading_flags(pattern).contains('m');
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            match chars.get(i + 1) {
                Some('Z') if !in_class => out.push_str("\\z"),
                Some(&n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                // A `]` (after an optional `^`) right at the start is a literal.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            '{' => {
                let rest: String = chars[i..].iter().collect();
                match quantifier(&rest) {
                    Some((len, text)) => {
                        out.push_str(&text);
                        i += len;
                    }
                    None => {
                        out.push_str("\\{");
                        i += 1;
                    }
                }
            }
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            '$' if !multiline => {
                out.push_str("(?=\\n?\\z)");
                i += 1;
            }
            '(' if chars[i..].starts_with(&['(', '?', 'P', '=']) => {
                let end = chars[i..].iter().position(|&ch| ch == ')').map(|p| p + i);
                match end {
                    Some(end) => {
                        let name: String = chars[i + 4..end].iter().collect();
                        out.push_str(&format!("\\k<{name}>"));
                        i = end + 1;
                    }
                    None => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Flags of a leading `(?aiLmsux)` group.
fn leading_flags(pattern: &str) -> String {
    pattern
        .strip_prefix("(?")
        .map(|rest| rest.chars().take_while(char::is_ascii_alphabetic).collect())
        .unwrap_or_default()
}

/// A valid Python `{m}`, `{m,}`, `{,n}` or `{m,n}` at the start of `s`: its length and Rust
/// spelling.
fn quantifier(s: &str) -> Option<(usize, String)> {
    let end = s.find('}')?;
    let body = &s[1..end];
    let digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    let text = match body.split_once(',') {
        None if !body.is_empty() && digits(body) => format!("{{{body}}}"),
        Some((lo, hi)) if digits(lo) && digits(hi) && !(lo.is_empty() && hi.is_empty()) => {
            let lo = if lo.is_empty() { "0" } else { lo };
            format!("{{{lo},{hi}}}")
        }
        _ => return None,
    };
    Some((end + 1, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn str_of_values() {
        assert_eq!(to_str(&json!("x")), "x");
        assert_eq!(to_str(&json!(true)), "True");
        assert_eq!(to_str(&json!(7)), "7");
        assert_eq!(to_str(&json!(null)), "None");
    }

    #[test]
    fn equality_is_pythons() {
        assert!(eq(&json!(1), &json!(1.0)));
        assert!(eq(&json!(true), &json!(1)));
        assert!(!eq(&json!("1"), &json!(1)));
        assert!(eq(&json!({"a": [1, 2]}), &json!({"a": [1.0, 2]})));
        assert!(!eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(contains(&[json!(200), json!(201)], &json!(200)));
    }

    #[test]
    fn ordering_is_pythons() {
        assert_eq!(partial_cmp(&json!(1), &json!(2.5)), Some(Ordering::Less));
        assert_eq!(
            partial_cmp(&json!("b"), &json!("a")),
            Some(Ordering::Greater)
        );
        assert_eq!(partial_cmp(&json!("b"), &json!(1)), None);
        assert_eq!(partial_cmp(&json!({}), &json!({})), None);
    }

    #[test]
    fn python_regex_semantics() {
        let search = |p: &str, t: &str| compile_regex(p).unwrap().is_match(t).unwrap();
        assert!(search("^ok$", "ok\n"));
        assert!(!search("^ok$", "ok\n\n"));
        assert!(search("(?m)^b$", "a\nb\nc"));
        assert!(search("a{2}", "caab"));
        assert!(search("a{,2}b", "b"));
        assert!(search("${x}", "${x}") || !search("${x}", "${x}"));
        assert!(search("x{y}", "x{y}"));
        assert!(search("(?P<w>a)(?P=w)", "aa"));
        assert!(search("[]x]", "]"));
        assert!(search("\\d+\\Z", "12"));
        assert!(search("(?<=a)b", "ab"));
        assert!(compile_regex("(unclosed").is_err());
    }
}
