//! Python's notations of JSON values: `repr()` and `json.dumps()`, floats included.
//!
//! Chaos Toolkit is Python, and some of what it writes is Python's rendering of values: the
//! JSON bodies `requests` sends (`json.dumps`: `", "` separators, non-ASCII escaped), the log
//! lines showing outputs (`repr()`), the floats in both. The http sink needs the former to send
//! Chaos Toolkit's notification bodies byte for byte; the runner needs both.

use std::fmt::Write;

use serde_json::{Number, Value};

/// Renders a value as Python's `repr()` would (`{'a': True, 'b': None}`).
pub fn repr(value: &Value) -> String {
    let mut out = String::new();
    write(&mut out, value, Notation::Repr);
    out
}

/// Renders a value as Python's `json.dumps(value)` would: `", "` and `": "` separators,
/// non-ASCII characters escaped (`requests` sends JSON bodies this way).
pub fn json_dumps(value: &Value) -> String {
    let mut out = String::new();
    write(&mut out, value, Notation::Json);
    out
}

/// Python's two renderings of nested values, which differ only in their scalars.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Notation {
    Repr,
    Json,
}

fn write(out: &mut String, value: &Value, notation: Notation) {
    let json = notation == Notation::Json;
    match value {
        Value::Null => out.push_str(if json { "null" } else { "None" }),
        Value::Bool(b) => out.push_str(match (b, json) {
            (true, true) => "true",
            (false, true) => "false",
            (true, false) => "True",
            (false, false) => "False",
        }),
        Value::Number(n) => out.push_str(&number_repr(n)),
        Value::String(s) if json => write_json_str(out, s),
        Value::String(s) => write_str_repr(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(out, item, notation);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if json {
                    write_json_str(out, k);
                } else {
                    write_str_repr(out, k);
                }
                out.push_str(": ");
                write(out, v, notation);
            }
            out.push('}');
        }
    }
}

/// A JSON string with Python's `ensure_ascii=True` escaping.
fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's string `repr()`: single quotes unless the text holds a `'` and no `"`.
fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c => {
                let code = c as u32;
                // Writing to a String cannot fail.
                let _ = if code < 0x100 {
                    write!(out, "\\x{code:02x}")
                } else if code < 0x10000 {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
        }
    }
    out.push(quote);
}

/// An approximation of Python's `str.isprintable()`: control and separator characters other
/// than the plain space are escaped by `repr()`.
fn is_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{a0}' | '\u{ad}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
        ))
}

/// Python's `repr()` of an int or a float.
pub fn number_repr(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    float_repr(n.as_f64().unwrap_or(f64::NAN))
}

/// Python's `repr()` of a float: the shortest round-tripping digits, in positional notation for
/// exponents in `-4..16` and scientific notation (`1e+16`, `1.5e-05`) outside.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the shortest digits that read back as `f`. When two strings of that
    // length do, Python takes the nearest to `f`, and on an exact tie the even one
    // (0.0195560455322265625 -> ...562): that is the correctly rounded value at that length,
    // which `{:.N$e}` gives (it rounds ties to even).
    let shortest = format!("{f:e}");
    let length = shortest
        .split_once('e')
        .map_or(0, |(m, _)| m.chars().filter(char::is_ascii_digit).count());
    let sci = format!("{f:.*e}", length.saturating_sub(1));
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // position of the decimal point within `digits`
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repr_matches_python() {
        let v = json!({"status": 0, "stdout": "burp\n", "stderr": "", "ok": true, "x": null});
        assert_eq!(
            repr(&v),
            r"{'status': 0, 'stdout': 'burp\n', 'stderr': '', 'ok': True, 'x': None}"
        );
        assert_eq!(repr(&json!("it's")), r#""it's""#);
        assert_eq!(repr(&json!("it's \"q\"")), r#"'it\'s "q"'"#);
        assert_eq!(repr(&json!("\u{1}é")), r"'\x01é'");
        assert_eq!(repr(&json!([1, 2.5, "a"])), "[1, 2.5, 'a']");
    }

    #[test]
    fn json_dumps_matches_python() {
        assert_eq!(
            json_dumps(&json!({"a": 1, "b": [true, null, 2.5], "c": "\u{e9}\n\"", "d": {}})),
            r#"{"a": 1, "b": [true, null, 2.5], "c": "\u00e9\n\"", "d": {}}"#
        );
    }

    #[test]
    fn float_repr_matches_python() {
        for (f, s) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (2.5, "2.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.0, "123456789012345.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-3.25, "-3.25"),
            (1e300, "1e+300"),
            (0.0, "0.0"),
            // An exact tie between two 17-digit strings: Python takes the even one.
            (0.019_556_045_532_226_562, "0.019556045532226562"),
            (0.1 + 0.2, "0.30000000000000004"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(float_repr(f), s, "{f}");
        }
    }
}
