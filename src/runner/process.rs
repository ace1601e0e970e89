//! The `process` provider: runs an executable, as `chaos` does with `subprocess.run`.
//!
//! `arguments` given as a string run through `/bin/sh -c "<path> <arguments>"` (pipes and
//! expansions work); as a list they are the argv, with `null` and `""` dropped and other values
//! rendered with Python's `str()`; a mapping (deprecated) is flattened to `k1 v1 k2 v2`. The
//! child inherits the environment (plus `.env` var files), the working directory and stdin.
//! The output is always `{"status", "stdout", "stderr"}`; a non-zero exit is not a failure. A
//! `timeout` kills the child and fails the activity.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

use super::ProviderError;
use crate::substitute::{Scope, substitute};
use crate::{python, sys};

/// Runs a process provider and returns its output.
pub(crate) async fn run(
    provider: &serde_json::Map<String, Value>,
    has_tolerance: bool,
    scope: &Scope,
    env: &BTreeMap<String, String>,
) -> Result<Value, ProviderError> {
    let raw_path = provider
        .get("path")
        .map(python::to_str)
        .ok_or_else(|| ProviderError::Fatal("a process activity must have a path".into()))?;
    let mut arguments = provider
        .get("arguments")
        .cloned()
        .unwrap_or(Value::Array(vec![]));
    if python::truthy(&arguments) && !scope.is_empty() {
        arguments = substitute(&arguments, scope);
    }
    let timeout = match provider.get("timeout") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let secs = n.as_f64().unwrap_or(0.0);
            Some(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX))
        }
        Some(other) => {
            return Err(ProviderError::Fatal(format!(
                "process timeout must be a number of seconds, not {}",
                python::repr(other)
            )));
        }
    };
    let path = sys::which(&raw_path).ok_or_else(|| {
        ProviderError::Failed(format!(
            "path '{raw_path}' cannot be found or is not executable"
        ))
    })?;
    let path = path.to_string_lossy().into_owned();

    let mut command = match &arguments {
        Value::String(args) => {
            let line = format!("{path} {args}");
            tracing::debug!("Running: {line}");
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(line);
            c
        }
        Value::Array(_) | Value::Object(_) => {
            let items: Vec<Value> = match &arguments {
                Value::Array(items) => items.clone(),
                Value::Object(map) => map
                    .iter()
                    .flat_map(|(k, v)| [Value::String(k.clone()), v.clone()])
                    .collect(),
                _ => unreachable!("matched above"),
            };
            let argv: Vec<String> = items
                .iter()
                .filter(|v| !matches!(v, Value::Null) && v.as_str() != Some(""))
                .map(python::to_str)
                .collect();
            let shown: Vec<Value> = std::iter::once(Value::String(path.clone()))
                .chain(argv.iter().cloned().map(Value::String))
                .collect();
            let shown = python::repr(&Value::Array(shown));
            tracing::debug!("Running: {shown}");
            let mut c = Command::new(&path);
            c.args(argv);
            c
        }
        Value::Null => Command::new(&path),
        other => {
            return Err(ProviderError::Fatal(format!(
                "process arguments must be a string, a list or a mapping, not {}",
                python::type_name(other)
            )));
        }
    };
    command
        .envs(env)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropping the future (timeout, signal) kills the child, as subprocess.run does.
        .kill_on_drop(true);

    let child = command
        .spawn()
        .map_err(|e| ProviderError::Failed(format!("cannot start '{path}': {e}")))?;
    let waited = child.wait_with_output();
    let output = match timeout {
        Some(limit) => match tokio::time::timeout(limit, waited).await {
            Ok(out) => out,
            Err(_) => {
                return Err(ProviderError::Failed(
                    "process activity took too long to complete".into(),
                ));
            }
        },
        None => waited.await,
    }
    .map_err(|e| ProviderError::Failed(format!("cannot wait for '{path}': {e}")))?;

    let status = exit_code(&output.status);
    if !has_tolerance && status > 0 {
        tracing::warn!(
            "This process returned a non-zero exit code. This may indicate some error and not \
             what you expected. Please have a look at the logs."
        );
    }
    Ok(json!({
        "status": status,
        "stdout": String::from_utf8_lossy(&output.stdout),
        "stderr": String::from_utf8_lossy(&output.stderr),
    }))
}

/// The exit code, or minus the signal number for a killed child (Python's convention).
fn exit_code(status: &std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => i64::from(code),
        (None, Some(sig)) => -i64::from(sig),
        (None, None) => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn string_arguments_go_through_the_shell() {
        let p = provider(json!({"path": "echo", "arguments": "hello | tr a-z A-Z"}));
        let out = run(&p, true, &Scope::default(), &BTreeMap::new())
            .await
            .unwrap();
        assert_eq!(out, json!({"status": 0, "stdout": "HELLO\n", "stderr": ""}));
    }

    #[tokio::test]
    async fn list_arguments_drop_empty_and_null_and_use_python_str() {
        let p = provider(json!({"path": "echo", "arguments": ["a", "", null, 1, 2.5, true]}));
        let out = run(&p, true, &Scope::default(), &BTreeMap::new())
            .await
            .unwrap();
        assert_eq!(out["stdout"], json!("a 1 2.5 True\n"));
    }

    #[tokio::test]
    async fn non_zero_exit_is_an_output_and_timeouts_fail() {
        let p = provider(json!({"path": "sh", "arguments": ["-c", "echo err >&2; exit 3"]}));
        let out = run(&p, false, &Scope::default(), &BTreeMap::new())
            .await
            .unwrap();
        assert_eq!(out, json!({"status": 3, "stdout": "", "stderr": "err\n"}));
        let p = provider(json!({"path": "sleep", "arguments": ["5"], "timeout": 0.2}));
        let started = std::time::Instant::now();
        let err = run(&p, true, &Scope::default(), &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Failed(m) if m.contains("too long")));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn substitution_only_with_a_scope() {
        let p = provider(json!({"path": "echo", "arguments": "${who} $HOME_NOT_SET_X"}));
        let out = run(&p, true, &Scope::default(), &BTreeMap::new())
            .await
            .unwrap();
        assert_eq!(out["stdout"], json!("\n"));
        let mut scope = Scope::default();
        scope.configuration.insert("who".into(), json!("world"));
        let p = provider(json!({"path": "echo", "arguments": ["${who}"]}));
        let out = run(&p, true, &scope, &BTreeMap::new()).await.unwrap();
        assert_eq!(out["stdout"], json!("world\n"));
    }

    #[tokio::test]
    async fn env_overlay_reaches_the_child() {
        let p = provider(json!({"path": "sh", "arguments": ["-c", "echo $CHAOSFLOW_X"]}));
        let env = BTreeMap::from([("CHAOSFLOW_X".to_string(), "from-env-file".to_string())]);
        let out = run(&p, true, &Scope::default(), &env).await.unwrap();
        assert_eq!(out["stdout"], json!("from-env-file\n"));
    }
}
