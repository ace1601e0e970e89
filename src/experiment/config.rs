//! Configuration, secrets and `--var`/`--var-file` values, resolved as `chaos` resolves them.
//!
//! Configuration entries are plain values, `{type: env, key, default?, env_var_type?}`
//! lookups, or `{type: probe, ...}` *dynamic* entries evaluated by the runner once everything
//! else is known. Secrets are `{scope: {name: value | {type: env, key} | {type: vault, ...}}}`.
//! Variables override configuration entries that exist (and only those), and var files may
//! replace whole secret scopes or inject environment variables (`.env` files).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::python;

/// Variables given on the command line: configuration and secret overrides.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// Configuration key => value (or a full configuration definition, from a var file).
    pub configuration: Map<String, Value>,
    /// Secret scope => replacement scope.
    pub secrets: Map<String, Value>,
}

/// A configuration or secret that cannot be resolved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `{type: env}` configuration whose variable is unset and has no default.
    #[error("Configuration makes reference to an environment key that does not exist: {key}")]
    MissingConfigEnv {
        /// Configuration entry name.
        entry: String,
        /// Environment variable name.
        key: String,
    },
    /// `{type: env}` secret whose variable is unset.
    #[error("Secrets make reference to an environment key that does not exist: {key}")]
    MissingSecretEnv {
        /// `scope.name` of the secret.
        entry: String,
        /// Environment variable name.
        key: String,
    },
    /// An `env_var_type` conversion failed or the type is unknown.
    #[error("configuration '{entry}': {reason}")]
    Conversion {
        /// Configuration entry name.
        entry: String,
        /// What went wrong.
        reason: String,
    },
    /// A section has the wrong shape (`configuration` not a mapping...).
    #[error("{section} must be a mapping")]
    NotAMapping {
        /// `configuration`, `secrets` or `secrets.<scope>`.
        section: String,
    },
    /// An env definition without a `key`.
    #[error("{entry}: an env reference needs a 'key' naming the environment variable")]
    MissingKey {
        /// Where the definition is.
        entry: String,
    },
}

/// How to look up environment variables (injectable for tests).
pub trait Env {
    /// The variable's value, if set.
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
}

/// Resolves the `configuration` section (without dynamic probes, which the runner evaluates).
///
/// `vars` override entries that exist in the section; the override may itself be an env
/// definition (from a var file).
///
/// # Errors
///
/// The first unresolvable entry, with `chaos`'s message.
pub fn load_configuration(
    section: Option<&Value>,
    vars: &Map<String, Value>,
    env: &dyn Env,
) -> Result<Map<String, Value>, ConfigError> {
    let Some(entries) = mapping(section, "configuration")? else {
        return Ok(Map::new());
    };
    let mut out = Map::new();
    for (key, definition) in entries {
        let definition = vars.get(key).unwrap_or(definition);
        let value = match env_definition(definition) {
            Some(def) => {
                let env_key = def
                    .get("key")
                    .map(python::to_str)
                    .ok_or_else(|| ConfigError::MissingKey { entry: key.clone() })?;
                let picked = match env.get(&env_key) {
                    Some(v) => Value::String(v),
                    None => match def.get("default") {
                        Some(default) => default.clone(),
                        None => {
                            return Err(ConfigError::MissingConfigEnv {
                                entry: key.clone(),
                                key: env_key,
                            });
                        }
                    },
                };
                convert_to_type(def.get("env_var_type"), picked).map_err(|reason| {
                    ConfigError::Conversion {
                        entry: key.clone(),
                        reason,
                    }
                })?
            }
            None => definition.clone(),
        };
        out.insert(key.clone(), value);
    }
    Ok(out)
}

/// A section that must be a mapping when present.
fn mapping<'a>(
    section: Option<&'a Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, ConfigError> {
    match section {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(ConfigError::NotAMapping {
            section: name.into(),
        }),
    }
}

fn env_definition(value: &Value) -> Option<&Map<String, Value>> {
    value
        .as_object()
        .filter(|m| m.get("type").and_then(Value::as_str) == Some("env"))
}

/// Resolves the `secrets` section. Vault references resolve to an empty mapping, as with a
/// `chaos` installed without `hvac`, and are reported by the caller.
///
/// # Errors
///
/// The first unresolvable secret, with `chaos`'s message.
pub fn load_secrets(
    section: Option<&Value>,
    vars: &Map<String, Value>,
    env: &dyn Env,
) -> Result<Map<String, Value>, ConfigError> {
    let Some(scopes) = mapping(section, "secrets")? else {
        return Ok(Map::new());
    };
    let mut out = Map::new();
    for (scope, value) in scopes {
        let resolved = match vars.get(scope) {
            // A var file replaces the whole scope, as written.
            Some(replacement) if value.is_object() && !replacement.is_null() => replacement.clone(),
            _ => resolve_secret(scope, value, env)?,
        };
        out.insert(scope.clone(), resolved);
    }
    Ok(out)
}

fn resolve_secret(path: &str, value: &Value, env: &dyn Env) -> Result<Value, ConfigError> {
    let Some(map) = value.as_object() else {
        return Ok(value.clone());
    };
    match map.get("type").and_then(Value::as_str) {
        Some("env") => {
            let key = map
                .get("key")
                .map(python::to_str)
                .ok_or_else(|| ConfigError::MissingKey { entry: path.into() })?;
            env.get(&key)
                .map(Value::String)
                .ok_or(ConfigError::MissingSecretEnv {
                    entry: path.into(),
                    key,
                })
        }
        Some("vault") => Ok(Value::Object(Map::new())),
        _ => {
            let mut out = Map::new();
            for (name, inner) in map {
                out.insert(
                    name.clone(),
                    resolve_secret(&format!("{path}.{name}"), inner, env)?,
                );
            }
            Ok(Value::Object(out))
        }
    }
}

/// The secret values an experiment declares (inline, or read from the environment), known as
/// soon as it is loaded, so they can be masked before anything is written about it.
pub fn declared_secret_values(section: Option<&Value>, env: &dyn Env) -> Vec<Value> {
    fn walk(value: &Value, env: &dyn Env, out: &mut Vec<Value>) {
        match value {
            Value::Object(map) => match map.get("type").and_then(Value::as_str) {
                Some("env") => {
                    if let Some(v) = map.get("key").and_then(|k| env.get(&python::to_str(k))) {
                        out.push(Value::String(v));
                    }
                }
                Some("vault") => {}
                _ => map.values().for_each(|v| walk(v, env, out)),
            },
            Value::Null => {}
            other => out.push(other.clone()),
        }
    }
    let mut out = Vec::new();
    if let Some(Value::Object(scopes)) = section {
        scopes.values().for_each(|v| walk(v, env, &mut out));
    }
    out
}

/// Paths (`scope.name`) of vault references, which chaosflow cannot resolve.
pub fn vault_references(section: Option<&Value>) -> Vec<String> {
    fn walk(path: &str, value: &Value, out: &mut Vec<String>) {
        if let Some(map) = value.as_object() {
            if map.get("type").and_then(Value::as_str) == Some("vault") {
                out.push(path.to_owned());
                return;
            }
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(&p, v, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(section) = section {
        walk("", section, &mut out);
    }
    out
}

/// Python's `convert_to_type`, used by `env_var_type` and typed `--var`s.
///
/// # Errors
///
/// A message in the spirit of Python's `ValueError` when the value cannot be converted.
pub fn convert_to_type(kind: Option<&Value>, value: Value) -> Result<Value, String> {
    let kind = match kind {
        None | Some(Value::Null) => return Ok(value),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(format!(
                "variable type {} is not a type name",
                python::repr(other)
            ));
        }
    };
    match kind {
        "str" | "string" => Ok(value),
        "int" | "integer" => py_int(&value).map(Value::from),
        "float" | "number" => {
            let f = py_float(&value)?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| format!("{f} cannot be represented in JSON"))
        }
        // JSON has no bytes: a `bytes` value stays the same text.
        "bytes" => match value {
            Value::String(_) => Ok(value),
            other => Err(format!("cannot encode {} as bytes", python::repr(&other))),
        },
        "bool" => match value {
            Value::Bool(_) => Ok(value),
            Value::String(s) => Ok(Value::Bool(!matches!(
                s.to_lowercase().as_str(),
                "false" | "0" | "no"
            ))),
            other => Err(format!("cannot read {} as a bool", python::repr(&other))),
        },
        "json" => match value {
            Value::String(s) if s.is_empty() => Ok(Value::String(s)),
            Value::String(s) => serde_json::from_str(&s).map_err(|e| format!("invalid JSON: {e}")),
            other => Ok(other),
        },
        _ => Err("variable type can only be: bool, str, int, float, bytes or json".into()),
    }
}

/// Python's `int()` on a value.
fn py_int(value: &Value) -> Result<i64, String> {
    match value {
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
            .ok_or_else(|| format!("invalid int {n}")),
        Value::String(s) => {
            let t = s.trim();
            let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
            let valid = !digits.is_empty()
                && !digits.starts_with('_')
                && !digits.ends_with('_')
                && !digits.contains("__")
                && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(format!(
                    "invalid literal for int() with base 10: {}",
                    python::repr(value)
                ));
            }
            t.replace('_', "").parse().map_err(|_| {
                format!(
                    "invalid literal for int() with base 10: {}",
                    python::repr(value)
                )
            })
        }
        other => Err(format!(
            "int() argument must be a string or a number, not '{}'",
            python::type_name(other)
        )),
    }
}

/// Python's `float()` on a value.
fn py_float(value: &Value) -> Result<f64, String> {
    match value {
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("invalid float {n}")),
        Value::String(s) => {
            let t = s.trim().replace('_', "");
            match t.to_ascii_lowercase().trim_start_matches(['+', '-']) {
                "inf" | "infinity" | "nan" => {}
                _ if t
                    .chars()
                    .any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E')) =>
                {
                    return Err(format!(
                        "could not convert string to float: {}",
                        python::repr(value)
                    ));
                }
                _ => {}
            }
            t.parse()
                .map_err(|_| format!("could not convert string to float: {}", python::repr(value)))
        }
        other => Err(format!(
            "float() argument must be a string or a real number, not '{}'",
            python::type_name(other)
        )),
    }
}

/// Parses one `--var key[:type]=value`.
///
/// # Errors
///
/// A message naming the expected format or the failed conversion.
pub fn parse_var(raw: &str) -> Result<(String, Value), String> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("'{raw}': var needs to be in the format name[:type]=value"))?;
    let (key, kind) = match key.rsplit_once(':') {
        Some((k, t)) => (k, Some(Value::String(t.to_owned()))),
        None => (key, None),
    };
    let value = convert_to_type(kind.as_ref(), Value::String(value.to_owned()))
        .map_err(|e| format!("'{raw}': {e}"))?;
    Ok((key.to_owned(), value))
}

/// What a `--var-file` contributed.
#[derive(Debug, Clone, Default)]
pub struct VarFile {
    /// Configuration and secret overrides (JSON/YAML files).
    pub vars: Vars,
    /// Environment variables to set (`.env` files), in file order.
    pub env: Vec<(String, String)>,
}

/// Reads a `--var-file`: JSON or YAML with `configuration`/`secrets` mappings, or `.env` lines.
///
/// # Errors
///
/// A message naming the file, the line and the fix when the file cannot be read or parsed.
pub fn read_var_file(path: &Path) -> Result<VarFile, String> {
    let content = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read var file '{}': {e}", path.display()))?;
    let mut out = VarFile::default();
    if content.is_empty() {
        return Ok(out);
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let data = match ext {
        "json" => Some(
            crate::experiment::load::parse_json(&content, &path.display().to_string())
                .map_err(|e| e.to_string())?,
        ),
        "yaml" | "yml" => Some(
            crate::experiment::load::parse_yaml(&content, &path.display().to_string())
                .map_err(|e| e.to_string())?,
        ),
        _ => None,
    };
    match data {
        Some(data) if python::truthy(&data) => {
            let Some(map) = data.as_object() else {
                return Err(format!(
                    "var file '{}' must hold a mapping with 'configuration' and/or 'secrets'",
                    path.display()
                ));
            };
            for (section, target) in [
                ("configuration", &mut out.vars.configuration),
                ("secrets", &mut out.vars.secrets),
            ] {
                match map.get(section) {
                    None => {}
                    Some(Value::Object(m)) => target.extend(m.clone()),
                    Some(_) => {
                        return Err(format!(
                            "var file '{}': '{section}' must be a mapping",
                            path.display()
                        ));
                    }
                }
            }
        }
        _ => {
            for (n, line) in content.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (k, v) = line.split_once('=').ok_or_else(|| {
                    format!(
                        "{}:{}: expected KEY=VALUE in this .env var file",
                        path.display(),
                        n + 1
                    )
                })?;
                out.env.push((k.to_owned(), v.to_owned()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn configuration_env_defaults_and_types() {
        let section = json!({
            "plain": 1,
            "host": {"type": "env", "key": "H", "default": "localhost"},
            "port": {"type": "env", "key": "P", "env_var_type": "int"},
            "dflt": {"type": "env", "key": "NOPE", "default": 9},
            "flag": {"type": "env", "key": "F", "env_var_type": "bool"},
            "other": {"type": "probe", "name": "x"}
        });
        let e = env(&[("P", "8080"), ("F", "No")]);
        let c = load_configuration(Some(&section), &Map::new(), &e).unwrap();
        assert_eq!(
            Value::Object(c),
            json!({"plain": 1, "host": "localhost", "port": 8080, "dflt": 9, "flag": false,
                   "other": {"type": "probe", "name": "x"}})
        );
    }

    #[test]
    fn missing_env_is_an_error_unless_overridden() {
        let section = json!({"k": {"type": "env", "key": "MISSING"}});
        let err = load_configuration(Some(&section), &Map::new(), &env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Configuration makes reference to an environment key that does not exist: MISSING"
        );
        let vars = json!({"k": "given"}).as_object().unwrap().clone();
        let c = load_configuration(Some(&section), &vars, &env(&[])).unwrap();
        assert_eq!(c["k"], json!("given"));
    }

    #[test]
    fn vars_only_override_existing_keys() {
        let section = json!({"a": 1});
        let vars = json!({"a": 2, "b": 3}).as_object().unwrap().clone();
        let c = load_configuration(Some(&section), &vars, &env(&[])).unwrap();
        assert_eq!(Value::Object(c), json!({"a": 2}));
    }

    #[test]
    fn secrets_resolve_env_and_scopes() {
        let section = json!({
            "s1": {"token": {"type": "env", "key": "TOK"}, "inline": "v"},
            "s2": {"pw": "p"},
            "v": {"x": {"type": "vault", "path": "a/b"}}
        });
        let s = load_secrets(Some(&section), &Map::new(), &env(&[("TOK", "t0k")])).unwrap();
        assert_eq!(
            Value::Object(s),
            json!({"s1": {"token": "t0k", "inline": "v"}, "s2": {"pw": "p"}, "v": {"x": {}}})
        );
        let err = load_secrets(Some(&section), &Map::new(), &env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("Secrets make reference"));
        assert_eq!(vault_references(Some(&section)), vec!["v.x".to_string()]);
    }

    #[test]
    fn var_parsing() {
        assert_eq!(parse_var("a=b").unwrap(), ("a".into(), json!("b")));
        assert_eq!(parse_var("n:int=42").unwrap(), ("n".into(), json!(42)));
        assert_eq!(parse_var("f:float=2.5").unwrap(), ("f".into(), json!(2.5)));
        assert_eq!(parse_var("b:bool=no").unwrap(), ("b".into(), json!(false)));
        assert_eq!(
            parse_var("j:json={\"x\":[1]}").unwrap(),
            ("j".into(), json!({"x": [1]}))
        );
        assert_eq!(
            parse_var("url=http://h:1/?a=b").unwrap().1,
            json!("http://h:1/?a=b")
        );
        assert!(parse_var("novalue").is_err());
        assert!(
            parse_var("n:int=abc")
                .unwrap_err()
                .contains("invalid literal for int()")
        );
        assert!(
            parse_var("n:weird=1")
                .unwrap_err()
                .contains("variable type can only be")
        );
    }

    #[test]
    fn python_number_parsing() {
        assert_eq!(py_int(&json!(" 1_000 ")).unwrap(), 1000);
        assert_eq!(py_int(&json!(2.9)).unwrap(), 2);
        assert!(py_int(&json!("1.5")).is_err());
        assert_eq!(py_float(&json!("1e3")).unwrap(), 1000.0);
        assert!(py_float(&json!("abc")).is_err());
    }
}
