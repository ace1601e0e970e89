//! `${name}` substitution, exactly as Chaos Toolkit applies it.
//!
//! The syntax is Python's `string.Template`: `${name}` and bare `$name` (ASCII identifiers),
//! `$$` for a literal `$`, unknown names left verbatim. Names are looked up in the
//! configuration first, then in every secret scope in declaration order ([`Scope`]).
//!
//! The *typed whole-string rule*: when a string is exactly one braced `${name}` and the name
//! exists, the result is the value itself with its JSON type (an int stays an int); in every
//! other case values are rendered with Python's `str()`. Substituted values are never
//! substituted again.

use serde_json::{Map, Value};

use crate::python;

/// The values `${name}` can refer to: the loaded configuration and secrets of a run.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Configuration entries, resolved (env lookups done, dynamic probes evaluated).
    pub configuration: Map<String, Value>,
    /// Secret scopes: scope name => mapping of secret name => value.
    pub secrets: Map<String, Value>,
}

impl Scope {
    /// Looks a name up: configuration first, then each secret scope in order.
    pub fn lookup(&self, name: &str) -> Option<&Value> {
        self.configuration.get(name).or_else(|| {
            self.secrets
                .values()
                .filter_map(Value::as_object)
                .find_map(|scope| scope.get(name))
        })
    }

    /// Whether the scope holds nothing at all. Process arguments are substituted only when it
    /// does not (a `chaos` rule that lets shell `$VARS` through untouched).
    pub fn is_empty(&self) -> bool {
        self.configuration.is_empty() && self.secrets.is_empty()
    }
}

/// Substitutes recursively inside strings, arrays and objects (keys are left alone).
pub fn substitute(value: &Value, scope: &Scope) -> Value {
    match value {
        Value::String(s) => substitute_str(s, scope),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, scope)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute(v, scope)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Substitutes one string, applying the typed whole-string rule.
pub fn substitute_str(template: &str, scope: &Scope) -> Value {
    if let Some(name) = whole_braced_name(template)
        && let Some(value) = scope.lookup(name)
    {
        return value.clone();
    }
    Value::String(render(template, scope))
}

/// `Some(name)` when the whole template is exactly `${name}`.
fn whole_braced_name(template: &str) -> Option<&str> {
    let inner = template.strip_prefix("${")?.strip_suffix('}')?;
    (identifier_len(inner) == inner.len() && !inner.is_empty()).then_some(inner)
}

/// Length of the ASCII identifier (`[_a-zA-Z][_a-zA-Z0-9]*`) at the start of `s`.
fn identifier_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {}
        _ => return 0,
    }
    1 + bytes[1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
}

/// Python's `Template.safe_substitute`: every known name is replaced by `str(value)`.
fn render(template: &str, scope: &Scope) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        if let Some(braced) = after.strip_prefix('{') {
            let len = identifier_len(braced);
            if len > 0 && braced[len..].starts_with('}') {
                let name = &braced[..len];
                match scope.lookup(name) {
                    Some(v) => out.push_str(&python::to_str(v)),
                    None => {
                        out.push_str("${");
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &braced[len + 1..];
                continue;
            }
        } else {
            let len = identifier_len(after);
            if len > 0 {
                let name = &after[..len];
                match scope.lookup(name) {
                    Some(v) => out.push_str(&python::to_str(v)),
                    None => {
                        out.push('$');
                        out.push_str(name);
                    }
                }
                rest = &after[len..];
                continue;
            }
        }
        // A `$` that starts no placeholder stays as it is.
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        let configuration =
            json!({"who": "world", "num": 7, "port": 42, "obj": {"a": 1}, "f": 2.5});
        let secrets = json!({"s1": {"token": "abc", "num": 99}, "s2": {"pw": "pass"}});
        Scope {
            configuration: configuration.as_object().unwrap().clone(),
            secrets: secrets.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn whole_braced_keeps_type() {
        assert_eq!(substitute_str("${port}", &scope()), json!(42));
        assert_eq!(substitute_str("${obj}", &scope()), json!({"a": 1}));
        assert_eq!(substitute_str("${pw}", &scope()), json!("pass"));
        // bare form is never typed
        assert_eq!(substitute_str("$port", &scope()), json!("42"));
    }

    #[test]
    fn mixed_strings_use_python_str() {
        let s = scope();
        assert_eq!(
            substitute_str("echo ${who} '${num}'", &s),
            json!("echo world '7'")
        );
        assert_eq!(substitute_str("x=$f;", &s), json!("x=2.5;"));
        assert_eq!(substitute_str("o=${obj}", &s), json!("o={'a': 1}"));
        assert_eq!(substitute_str("$${who}", &s), json!("${who}"));
        assert_eq!(
            substitute_str("$HOME ${nope} $ $1 ${1x}", &s),
            json!("$HOME ${nope} $ $1 ${1x}")
        );
        assert_eq!(substitute_str("cost: 5$", &s), json!("cost: 5$"));
        assert_eq!(substitute_str("${who}${who}", &s), json!("worldworld"));
    }

    #[test]
    fn configuration_shadows_secrets() {
        assert_eq!(substitute_str("${num}", &scope()), json!(7));
        assert_eq!(substitute_str("${token}", &scope()), json!("abc"));
    }

    #[test]
    fn recursion_and_no_resubstitution() {
        let mut s = scope();
        s.configuration.insert("tricky".into(), json!("${who}"));
        let v = json!({"a": ["${who}", 1, {"b": "${tricky}"}], "${who}": "$who"});
        assert_eq!(
            substitute(&v, &s),
            json!({"a": ["world", 1, {"b": "${who}"}], "${who}": "world"})
        );
    }
}
