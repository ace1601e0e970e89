//! The Python bridge: every `type: python` function chaosflow does not implement natively is
//! called by a real Python (`$CHAOSFLOW_PYTHON`, else `python3` on `PATH`) running the small
//! script [`bridge.py`](SCRIPT), one process per call, exactly as chaoslib's
//! `run_python_activity` calls it: `configuration` and `secrets` are added to the arguments
//! only when the function's signature has them (`secrets` only when the provider declares
//! some), and what it raises fails the activity with chaoslib's text (`ValueError: boom`).
//!
//! Protocol (see `bridge.py`): the request is one JSON object on the child's stdin (secrets
//! never appear on its command line or environment); the replies are JSON lines on its stdout:
//! log records of the `chaostoolkit` logger as they happen, re-logged here at their level, then
//! one result, error, import error or missing function. The function's own prints go to the
//! child's stderr, which is ours, so they show on the console as they do under `chaos` and
//! cannot corrupt the replies (nor the event stream when `--events -` uses our stdout).
//!
//! The child inherits the environment plus the `.env` var files' variables (`chaos` exports
//! those into its own environment) and is killed when the call is dropped (a signal ends the
//! run). One process per call costs a Python start-up and the module's import each time; a
//! function cannot keep state in its module from one activity to the next as it can in `chaos`.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::Call;
use crate::sys;

/// The bridge script, run with `python -c`.
const SCRIPT: &str = include_str!("bridge.py");

/// The PyPI package of each Chaos Toolkit extension, by its top-level module, for the hint
/// when a module cannot be imported.
const PACKAGES: &[(&str, &str)] = &[
    ("chaosk8s", "chaostoolkit-kubernetes"),
    ("chaosaws", "chaostoolkit-aws"),
    ("chaosgcp", "chaostoolkit-google-cloud-platform"),
    ("chaosazure", "chaostoolkit-azure"),
    ("chaosprometheus", "chaostoolkit-prometheus"),
    ("chaoslib", "chaostoolkit-lib"),
    ("chaosslack", "chaostoolkit-slack"),
    ("chaostracing", "chaostoolkit-opentracing"),
    ("chaosaddons", "chaostoolkit-addons"),
    ("chaosreliably", "chaostoolkit-reliably"),
    ("chaosistio", "chaostoolkit-istio"),
    ("chaosgrafana", "chaostoolkit-grafana"),
    ("chaosdatadog", "chaostoolkit-datadog"),
    ("chaoshumio", "chaostoolkit-humio"),
    ("chaosinstana", "chaostoolkit-instana"),
    ("chaoscf", "chaostoolkit-cloud-foundry"),
    ("chaosspring", "chaostoolkit-spring"),
    ("chaostoxi", "chaostoolkit-toxiproxy"),
    ("chaoswm", "chaostoolkit-wiremock"),
    ("chaosk6", "chaostoolkit-k6"),
];

/// How to make `module` importable: `pip install <package>` for the known extensions.
pub fn install_hint(module: &str) -> String {
    let root = module.split('.').next().unwrap_or(module);
    match PACKAGES.iter().find(|(m, _)| *m == root) {
        Some((_, package)) => format!("pip install {package}"),
        None => format!(
            "install the package that provides '{root}' for that Python, or add its directory \
             to PYTHONPATH"
        ),
    }
}

/// The Python to run: `$CHAOSFLOW_PYTHON`, else `python3` on `PATH`.
fn python(call: &Call<'_>) -> Result<PathBuf, String> {
    let what = format!(
        "activity '{}' calls {}.{} through Python",
        call.activity, call.module, call.func
    );
    let fix = format!(
        "use an image with Python and the extension installed ({})",
        install_hint(call.module)
    );
    match std::env::var("CHAOSFLOW_PYTHON") {
        Ok(path) if !path.is_empty() => sys::which(&path).ok_or_else(|| {
            format!(
                "{what}, but CHAOSFLOW_PYTHON={path} is not an executable: point \
                 CHAOSFLOW_PYTHON at a python3 that has the extension, or {fix}"
            )
        }),
        _ => sys::which("python3").ok_or_else(|| {
            format!("{what}, but there is no python3 on PATH: set CHAOSFLOW_PYTHON or {fix}")
        }),
    }
}

/// Runs the function through the bridge.
///
/// # Errors
///
/// No Python, the module cannot be imported or lacks the function, or the function raised
/// (then the message is chaoslib's: `<Type>: <message>`).
pub async fn call(call: &Call<'_>) -> Result<Value, String> {
    let python = python(call)?;
    let shown = python.display();
    let request = json!({
        "activity": call.activity,
        "module": call.module,
        "func": call.func,
        "arguments": call.arguments,
        "configuration": call.configuration,
        "secrets": call.secrets_declared.then_some(call.secrets),
    });
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .envs(call.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Dropping the call (a signal interrupting the run) kills the function.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the Python bridge with {shown}: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    // The script reads the whole request before replying, so writing it all first cannot
    // deadlock; a write error means Python died early, which the missing reply reports.
    let _ = stdin.write_all(request.to_string().as_bytes()).await;
    drop(stdin);

    let mut lines = BufReader::new(stdout).lines();
    let mut reply = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let message: Value = serde_json::from_str(&line).map_err(|e| {
            format!("the Python bridge ({shown}) sent an unreadable reply ({e}): {line}")
        })?;
        match message.get("log").and_then(Value::as_i64) {
            Some(level) => log(level, message["message"].as_str().unwrap_or_default()),
            None => {
                reply = Some(message);
                break;
            }
        }
    }
    let status = child.wait().await;
    let Some(Value::Object(mut reply)) = reply else {
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        return Err(format!(
            "the Python bridge ({shown}) ended ({status}) before '{}' returned: see its output \
             above",
            call.func
        ));
    };
    if let Some(output) = reply.remove("result") {
        return Ok(output);
    }
    let text = |key: &str| reply.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(error) = text("error") {
        return Err(error);
    }
    if let Some(error) = text("import_error") {
        return Err(format!(
            "python3 at {shown} cannot import '{}' ({error}): {}",
            call.module,
            install_hint(call.module)
        ));
    }
    // chaoslib's validation wording (it says "probe"/"action" where we know "activity").
    Err(format!(
        "The python module '{}' does not expose a function called '{}' in activity '{}'",
        call.module, call.func, call.activity
    ))
}

/// Logs a record of the extension's `chaostoolkit` logger at its Python level.
fn log(level: i64, message: &str) {
    match level {
        ..20 => tracing::debug!("{message}"),
        20..30 => tracing::info!("{message}"),
        30..40 => tracing::warn!("{message}"),
        40..50 => tracing::error!("{message}"),
        _ => tracing::error!(critical = true, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_extensions_name_their_package() {
        assert_eq!(
            install_hint("chaosk8s.node.actions"),
            "pip install chaostoolkit-kubernetes"
        );
        assert_eq!(install_hint("chaosaws"), "pip install chaostoolkit-aws");
        assert!(install_hint("mycompany.chaos").contains("'mycompany'"));
    }
}
