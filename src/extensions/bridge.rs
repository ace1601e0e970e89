//! The Python bridge: every `type: python` function chaosflow does not implement natively is
//! called by a real Python (`$CHAOSFLOW_PYTHON`, else `python3` on `PATH`) running the small
//! script [`bridge.py`](SCRIPT), exactly as chaoslib's `run_python_activity` calls it:
//! `configuration` and `secrets` are added to the arguments only when the function's signature
//! has them (`secrets` only when the provider declares some), and what it raises fails the
//! activity with chaoslib's text (`ValueError: boom`).
//!
//! One bridge process serves the whole run, started by its first bridged call, as one `chaos`
//! process does: Python starts and each module is imported once, a module keeps its state from
//! one activity to the next, and the calls `chaos` makes off its main thread (background
//! activities, the hypothesis checked during the method: see [`off_main_thread`]) run on
//! threads of their own, the others on the bridge's main thread. A call that is cancelled
//! (a signal interrupting the run) kills the bridge, since a Python thread cannot be stopped
//! from outside: the next call starts a new one.
//!
//! Protocol (see `bridge.py`): requests are JSON lines on the child's stdin (secrets never
//! appear on its command line or environment), each with an id; the replies are JSON lines on
//! its stdout: log records of the `chaostoolkit` logger as they happen, re-logged here at their
//! level, and for each request one result, error, import error or missing function. The
//! function's own prints go to the child's stderr, which is ours, so they show on the console
//! as they do under `chaos` and cannot corrupt the replies (nor the event stream when
//! `--events -` uses our stdout).
//!
//! The child inherits the environment plus the `.env` var files' variables (`chaos` exports
//! those into its own environment); it ends when its stdin does, so it never outlives
//! chaosflow, even one killed with SIGKILL.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

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

/// Runs the function through the run's bridge (started by the first call).
///
/// # Errors
///
/// No Python, the module cannot be imported or lacks the function, or the function raised
/// (then the message is chaoslib's: `<Type>: <message>`).
pub async fn call(call: &Call<'_>) -> Result<Value, String> {
    let python = python(call)?;
    let shown = python.display();
    let mut request = json!({
        "main": !OFF_MAIN_THREAD.try_with(|off| *off).unwrap_or(false),
        "activity": call.activity,
        "module": call.module,
        "func": call.func,
        "arguments": call.arguments,
        "configuration": call.configuration,
        "secrets": call.secrets_declared.then_some(call.secrets),
    });
    let (bridge, id, reply) = Bridge::for_call(&python, call.env)
        .map_err(|e| format!("cannot start the Python bridge with {shown}: {e}"))?;
    // Dropping the call (a signal interrupting the run) must stop the function: a thread
    // cannot be stopped from outside, so the bridge is killed (the next call starts another).
    let mut in_flight = InFlight {
        bridge: &bridge,
        done: false,
    };
    request["id"] = id.into();
    bridge.send(&request);
    let reply = reply.await;
    in_flight.done = true;
    let Ok(mut reply) = reply else {
        return Err(format!(
            "the Python bridge ({shown}) ended ({}) before '{}' returned: see its output above",
            bridge.ended(),
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

tokio::task_local! {
    /// Set for the work `chaos` runs off its main thread.
    static OFF_MAIN_THREAD: bool;
}

/// Runs `work` as `chaos` runs background activities and the hypothesis checked during the
/// method: on threads of their own, so their bridged calls do too. Every other call runs on
/// the bridge's main thread, as the method, rollbacks and configuration do in `chaos` (some
/// libraries only work there: signal handlers, asyncio's default loop).
pub fn off_main_thread<F: std::future::Future>(
    work: F,
) -> impl std::future::Future<Output = F::Output> {
    OFF_MAIN_THREAD.scope(true, work)
}

/// A reply: the JSON object the script sent for one call.
type Reply = Map<String, Value>;

/// The bridges of this process, one per Python and environment: in practice one per run.
static BRIDGES: Mutex<Vec<Arc<Bridge>>> = Mutex::new(Vec::new());

/// One bridge process, serving every call of the run. Plain threads rather than runtime
/// tasks: a bridge may outlive the runtime of the call that started it.
struct Bridge {
    python: PathBuf,
    env: BTreeMap<String, String>,
    child: Mutex<Child>,
    /// `None` once closed: the script then exits.
    stdin: Mutex<Option<ChildStdin>>,
    /// Calls waiting for their reply, by id; `None` once the process has ended.
    waiting: Mutex<Option<HashMap<u64, oneshot::Sender<Reply>>>>,
    next_id: AtomicU64,
    /// How the process ended, once it has.
    ended: Mutex<Option<String>>,
}

impl Bridge {
    /// A live bridge for this Python and environment (started when there is none), with a
    /// call registered on it: its id and where its reply will come.
    fn for_call(
        python: &Path,
        env: &BTreeMap<String, String>,
    ) -> io::Result<(Arc<Self>, u64, oneshot::Receiver<Reply>)> {
        let mut bridges = lock(&BRIDGES);
        loop {
            // Ended bridges (killed with a cancelled call, crashed) are replaced.
            bridges.retain(|b| lock(&b.waiting).is_some());
            let bridge = match bridges.iter().find(|b| b.python == python && b.env == *env) {
                Some(bridge) => bridge.clone(),
                None => {
                    let bridge = Self::start(python, env)?;
                    bridges.push(bridge.clone());
                    bridge
                }
            };
            let id = bridge.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            // Registered under the lock that an ending bridge is marked under: once
            // registered, the call gets its reply or fails, it never waits forever.
            let registered = match lock(&bridge.waiting).as_mut() {
                Some(waiting) => waiting.insert(id, tx).is_none(),
                None => false,
            };
            if registered {
                return Ok((bridge, id, rx));
            }
        }
    }

    fn start(python: &Path, env: &BTreeMap<String, String>) -> io::Result<Arc<Self>> {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(SCRIPT)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let bridge = Arc::new(Self {
            python: python.to_owned(),
            env: env.clone(),
            child: Mutex::new(child),
            stdin: Mutex::new(Some(stdin)),
            waiting: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU64::new(1),
            ended: Mutex::new(None),
        });
        let reader = bridge.clone();
        let spawned = std::thread::Builder::new()
            .name("python-bridge".into())
            .spawn(move || reader.read_replies(stdout));
        if let Err(e) = spawned {
            bridge.kill("no thread to read its replies");
            return Err(e);
        }
        Ok(bridge)
    }

    /// Sends a request. The script reads its stdin on a thread of its own, so this write does
    /// not wait on a running function; a write error means Python has ended, which the reader
    /// tells the waiting call.
    fn send(&self, request: &Value) {
        let mut line = request.to_string();
        line.push('\n');
        if let Some(stdin) = lock(&self.stdin).as_mut() {
            let _ = stdin.write_all(line.as_bytes());
        }
    }

    /// Log records are logged, replies handed to their calls; at the end, the waiting calls
    /// are failed and the process reaped.
    fn read_replies(&self, stdout: ChildStdout) {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut message = match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(message)) => message,
                _ => {
                    tracing::warn!(
                        "the Python bridge ({}) sent an unreadable reply: {line}",
                        self.python.display()
                    );
                    continue;
                }
            };
            if let Some(level) = message.get("log").and_then(Value::as_i64) {
                log(level, message["message"].as_str().unwrap_or_default());
            } else if let Some(id) = message.remove("id").and_then(|id| id.as_u64()) {
                let waiting = lock(&self.waiting).as_mut().and_then(|w| w.remove(&id));
                if let Some(tx) = waiting {
                    let _ = tx.send(message);
                }
            }
        }
        let waiting = lock(&self.waiting).take();
        let status = {
            let mut child = lock(&self.child);
            let _ = child.kill();
            child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string())
        };
        lock(&self.ended).get_or_insert(status);
        drop(waiting);
    }

    /// Stops the bridge and whatever its functions are doing, and fails the calls still
    /// waiting. Marked ended at once, so that the next call (a rollback after an interrupted
    /// method) starts a new bridge rather than finding this one dying.
    fn kill(&self, why: &str) {
        let waiting = lock(&self.waiting).take();
        let _ = lock(&self.child).kill();
        lock(&self.ended).get_or_insert_with(|| format!("killed: {why}"));
        drop(waiting);
    }

    fn has_ended(&self) -> bool {
        lock(&self.ended).is_some()
    }

    fn ended(&self) -> String {
        lock(&self.ended)
            .clone()
            .unwrap_or_else(|| "its output closed".into())
    }
}

/// Ends the run's bridges: their stdin is closed, on which the script exits at once (threads
/// a function left running end with it, as they end with the `chaos` process), and each is
/// reaped, so that no Python outlives the run and its resources count as the run's. One that
/// has not exited within `grace` is killed.
pub async fn close_all(grace: Duration) {
    let bridges = std::mem::take(&mut *lock(&BRIDGES));
    if bridges.is_empty() {
        return;
    }
    for bridge in &bridges {
        lock(&bridge.stdin).take();
    }
    let deadline = tokio::time::Instant::now() + grace;
    while bridges.iter().any(|b| !b.has_ended()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for bridge in bridges.iter().filter(|b| !b.has_ended()) {
        tracing::debug!("The Python bridge did not end when asked; killed.");
        bridge.kill("it did not end when the run did");
    }
}

/// A call waiting for its reply; dropped before it, the call was cancelled.
struct InFlight<'a> {
    bridge: &'a Bridge,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.bridge.kill("a call it ran was cancelled");
        }
    }
}

/// A poisoned lock only means a panic elsewhere; the data stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
