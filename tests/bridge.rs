//! The Python bridge (`src/extensions/bridge.rs`): Python functions that chaosflow does not
//! implement natively, run by `chaosflow` through python3 and by the real `chaos`, compared
//! with the conformance suite's journal comparison (statuses, outputs, exception texts,
//! tolerance results, keys and order) and console lines; plus what only chaosflow does: clear
//! failures without Python or without the module, prints kept off stdout, the child killed on
//! interruption, and outputs `chaos` cannot write.
//!
//! The demo module and experiments are in `tests/bridge/`; both tools import the module through
//! `PYTHONPATH`, and chaosflow runs `.venv/bin/python` (the Python `chaos` runs in).

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::conformance::{STRICT, diff_journal};
use crate::support::{self, Outcome, Run};

fn fixtures() -> PathBuf {
    support::repo().join("tests/bridge")
}

fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn venv_python() -> String {
    support::repo()
        .join(".venv/bin/python")
        .display()
        .to_string()
}

/// Either tool, able to import the demo module, with the experiments' environment.
fn with_demo(run: Run) -> Run {
    run.env("PYTHONPATH", &fixtures().display().to_string())
        .env("CHAOSFLOW_PYTHON", &venv_python())
        .env("BRIDGE_WHO", "world")
        .env("BRIDGE_TOKEN", "s3cret")
        .env("BRIDGE_REGION", "eu-west-1")
}

/// Runs both tools with the same arguments, at the same time.
fn both(args: &[&str]) -> (Outcome, Outcome) {
    let chaos = with_demo(Run::chaos()).args(args.iter().copied());
    let ours = with_demo(Run::chaosflow()).args(args.iter().copied());
    let handle = thread::spawn(move || chaos.run());
    let flow = ours.run();
    (handle.join().expect("the chaos run"), flow)
}

/// Our validation's warnings about bridged activities: `chaos` has none.
fn is_bridge_warning(line: &str) -> bool {
    line.starts_with("WARNING: ") && line.contains("through the Python bridge")
}

/// Same exit code, same journal, same console lines (ours without the bridge warnings).
fn assert_same(chaos: &Outcome, flow: &Outcome) {
    let mut diffs = Vec::new();
    if chaos.code != flow.code {
        diffs.push(format!(
            "exit code: chaos={} chaosflow={}",
            chaos.code, flow.code
        ));
    }
    diff_journal(chaos.journal(), flow.journal(), STRICT, &mut diffs);
    let ours: Vec<String> = flow
        .console_lines()
        .into_iter()
        .filter(|l| !is_bridge_warning(l))
        .collect();
    if chaos.console_lines() != ours {
        diffs.push(format!(
            "console lines differ:\n  chaos:\n    {}\n  chaosflow:\n    {}",
            chaos.console_lines().join("\n    "),
            ours.join("\n    ")
        ));
    }
    assert!(
        diffs.is_empty(),
        "chaosflow differs from chaos:\n- {}\n\nchaos stderr:\n{}\nchaosflow stderr:\n{}",
        diffs.join("\n- "),
        chaos.stderr,
        flow.stderr
    );
}

/// Writes an experiment (JSON) to `dir` and returns its path.
fn write(dir: &Path, name: &str, experiment: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(experiment).unwrap()).unwrap();
    path.display().to_string()
}

fn demo(name: &str, func: &str, arguments: Value) -> Value {
    json!({"type": "action", "name": name, "provider": {
        "type": "python", "module": "chaosflow_bridge_demo", "func": func, "arguments": arguments}})
}

/// The last `exception` line of a run item, without chaoslib's class name.
fn failure(item: &Value) -> String {
    let last = item["exception"].as_array().and_then(|l| l.last());
    let text = last.and_then(Value::as_str).unwrap_or_default();
    text.trim_end()
        .trim_start_matches("chaoslib.exceptions.ActivityFailed: ")
        .to_owned()
}

#[test]
fn outputs_configuration_secrets_and_failures_match_chaos() {
    let experiment = fixture("experiment.yaml");
    let env_file = fixture("bridge.env");
    let (chaos, flow) = both(&["run", "--var-file", &env_file, &experiment]);
    assert_same(&chaos, &flow);

    let j = flow.journal();
    assert_eq!((flow.code, &j["status"]), (0, &json!("completed")));
    let output = |name: &str| {
        let items = j["run"].as_array().unwrap();
        let item = items.iter().find(|i| i["activity"]["name"] == name);
        item.unwrap_or_else(|| panic!("no run item {name}"))["output"].clone()
    };
    // The values chaos writes, spelled out so that the comparison cannot pass vacuously.
    assert_eq!(output("read-secrets")["token_length"], 6);
    assert_eq!(
        output("secrets-not-declared"),
        json!({"configuration": true, "secrets": null})
    );
    assert_eq!(
        output("read-env-file"),
        json!("from the .env var file"),
        ".env var files reach the function's environment"
    );
    assert_eq!(
        output("moments"),
        json!({"when": "2024-01-02T03:04:05.006000+00:00", "naive": "2024-01-02T03:04:05",
               "day": "2024-01-02", "price": "1.10", "id": "12345678-1234-5678-1234-567812345678",
               "pair": [1, "two"], "1": "an int key", "2.5": "a float key",
               "false": "a bool key", "null": "a None key"})
    );
    let failed: Vec<String> = j["run"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "failed")
        .map(failure)
        .collect();
    assert_eq!(
        failed,
        [
            "ValueError: boom",
            "chaosflow_bridge_demo.QuotaExceeded: too many pods: 12 > 10",
            "RuntimeError: first line\nsecond line"
        ]
    );

    // Prints: `chaos` lets the function's stdout through to its stdout; chaosflow sends it to
    // stderr, where it cannot corrupt an event stream on stdout (`--events-path -`).
    let printed = "a line on stdout from the extension\n";
    assert_eq!(chaos.stdout, printed);
    assert_eq!(flow.stdout, "");
    assert!(flow.stderr.contains(printed), "{}", flow.stderr);
    assert!(
        flow.stderr
            .contains("a line on stderr from the extension\n")
    );

    // Validation named every bridged activity, once.
    let warnings = flow
        .console_lines()
        .into_iter()
        .filter(|l| is_bridge_warning(l))
        .count();
    // 7 hypothesis probes, 1 probe tolerance, 11 method activities, 1 rollback.
    assert_eq!(warnings, 20, "{}", flow.stderr);

    // The log file has what chaos's has: where the function was loaded from, the extension's
    // DEBUG records, and the traceback of a failure.
    let log = std::fs::read_to_string(flow.dir.path().join("chaostoolkit.log")).unwrap();
    for needle in [
        "Activity 'noisy' loaded from '",
        "chaosflow_bridge_demo.py'",
        "a debug record from the extension",
        "Activity failed\nTraceback (most recent call last):",
        "ValueError: boom",
    ] {
        assert!(
            log.contains(needle),
            "{needle:?} not in the log file:\n{log}"
        );
    }
}

#[test]
fn failing_arguments_and_probes_match_chaos_without_validation() {
    // chaos's validation binds the arguments; at run time the same mistakes are TypeErrors.
    let failures = fixture("failures.yaml");
    let (chaos, flow) = both(&[
        "run",
        "--no-validation",
        "--hypothesis-strategy",
        "after-method-only",
        &failures,
    ]);
    assert_same(&chaos, &flow);
    let j = flow.journal();
    assert_eq!(
        (flow.code, &j["status"], &j["deviated"]),
        (1, &json!("failed"), &json!(true))
    );
    assert_eq!(
        failure(&j["run"][1]),
        "TypeError: needs_argument() missing 1 required positional argument: 'required'"
    );
    assert_eq!(j["rollbacks"], json!([]));
}

#[test]
fn without_python_the_activity_fails_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let in_hypothesis = write(
        dir.path(),
        "hypothesis.json",
        &json!({"title": "t", "description": "d",
            "steady-state-hypothesis": {"title": "h", "probes": [
                {"type": "probe", "name": "count", "tolerance": 3, "provider": {
                    "type": "python", "module": "chaosflow_bridge_demo", "func": "count"}}]},
            "method": [demo("greet", "greet", json!({"who": "x"}))]}),
    );
    let in_method = write(
        dir.path(),
        "method.json",
        &json!({"title": "t", "description": "d", "method": [
            {"type": "action", "name": "drain", "provider": {
                "type": "python", "module": "chaosk8s.node.actions", "func": "drain_nodes"}},
            {"type": "action", "name": "next", "provider": {"type": "process", "path": "/bin/true"}}]}),
    );

    // A hypothesis probe that cannot run fails the run, as any failing probe does.
    let flow = with_demo(Run::chaosflow())
        .env("CHAOSFLOW_PYTHON", "/nonexistent/python3")
        .args(["run", &in_hypothesis])
        .run();
    let j = flow.journal();
    assert_eq!((flow.code, &j["status"]), (1, &json!("failed")));
    assert_eq!(j["run"], json!([]));
    assert_eq!(
        failure(&j["steady_states"]["before"]["probes"][0]),
        "activity 'count' calls chaosflow_bridge_demo.count through Python, but \
         CHAOSFLOW_PYTHON=/nonexistent/python3 is not an executable: point CHAOSFLOW_PYTHON at a \
         python3 that has the extension, or use an image with Python and the extension \
         installed (install the package that provides 'chaosflow_bridge_demo' for that Python, \
         or add its directory to PYTHONPATH)"
    );

    // No python3 on PATH at all: a method action fails, the method goes on.
    let empty = tempfile::tempdir().unwrap();
    let flow = Run::chaosflow()
        .env("CHAOSFLOW_PYTHON", "")
        .env("PATH", &empty.path().display().to_string())
        .args(["run", &in_method])
        .run();
    let j = flow.journal();
    assert_eq!((flow.code, &j["status"]), (0, &json!("completed")));
    assert_eq!(
        failure(&j["run"][0]),
        "activity 'drain' calls chaosk8s.node.actions.drain_nodes through Python, but there is \
         no python3 on PATH: set CHAOSFLOW_PYTHON or use an image with Python and the extension \
         installed (pip install chaostoolkit-kubernetes)"
    );
    assert_eq!(j["run"][1]["status"], "succeeded");
}

#[test]
fn a_missing_module_or_function_fails_the_activity_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let source = write(
        dir.path(),
        "missing.json",
        &json!({"title": "t", "description": "d", "method": [
            {"type": "action", "name": "delay", "provider": {
                "type": "python", "module": "chaosistio.fault.actions", "func": "add_delay_fault"}},
            demo("nofunc", "nope", json!({})),
            demo("greet", "greet", json!({"who": "still here"}))]}),
    );
    let python = venv_python();
    let importable = std::process::Command::new(&python)
        .args(["-c", "import chaosistio"])
        .output()
        .unwrap();
    assert!(
        !importable.status.success(),
        "this test needs a Python without chaostoolkit-istio"
    );

    let flow = with_demo(Run::chaosflow()).args(["run", &source]).run();
    let j = flow.journal();
    assert_eq!((flow.code, &j["status"]), (0, &json!("completed")));
    assert_eq!(
        failure(&j["run"][0]),
        format!(
            "python3 at {python} cannot import 'chaosistio.fault.actions' (ModuleNotFoundError: \
             No module named 'chaosistio'): pip install chaostoolkit-istio"
        )
    );
    assert_eq!(
        failure(&j["run"][1]),
        "The python module 'chaosflow_bridge_demo' does not expose a function called 'nope' in \
         activity 'nofunc'"
    );
    assert_eq!(j["run"][2]["output"], "hello still here");

    // chaos refuses such an experiment while validating, with the same module name; chaosflow
    // validates without starting Python and says what the bridge needs.
    let chaos = with_demo(Run::chaos()).args(["run", &source]).run();
    assert_eq!(chaos.code, 1);
    assert!(chaos.journal.is_none());
    assert!(
        chaos.stderr.contains(
            "could not find Python module 'chaosistio.fault.actions' in activity 'delay'"
        )
    );
    let validate = with_demo(Run::chaosflow())
        .args(["validate", &source])
        .run();
    assert_eq!(validate.code, 0, "{}", validate.stderr);
    assert!(
        validate.stderr.contains(
            "method[0]: activity 'delay' calls chaosistio.fault.actions.add_delay_fault through \
             the Python bridge: it needs python3 (or $CHAOSFLOW_PYTHON) able to import \
             'chaosistio.fault.actions' (pip install chaostoolkit-istio)"
        ),
        "{}",
        validate.stderr
    );
}

#[test]
fn outputs_chaos_cannot_write_become_the_closest_json() {
    let dir = tempfile::tempdir().unwrap();
    let source = write(
        dir.path(),
        "odd.json",
        &json!({"title": "t", "description": "d", "method": [demo("odd", "odd_values", json!({}))]}),
    );
    // chaos crashes writing its journal (bytes are not JSON serializable): exit 1, a truncated
    // journal.
    let run = with_demo(Run::chaos()).args(["run", &source]);
    let chaos_dir = tempfile::tempdir().unwrap();
    let chaos = run.command(chaos_dir.path()).output().unwrap();
    assert_eq!(chaos.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&chaos.stderr).contains("is not JSON serializable"));

    let flow = with_demo(Run::chaosflow()).args(["run", &source]).run();
    let j = flow.journal();
    assert_eq!(flow.code, 0);
    assert_eq!(
        j["run"][0]["output"],
        json!({"bytes": "caf\u{e9}", "set": [1, 2, 3], "nan": null})
    );
    assert!(
        flow.console_lines().contains(
            &"WARNING: Activity 'odd' returned bytes, float nan, set, which chaos cannot write \
              to its journal; chaosflow writes the closest JSON (text, lists, null)"
                .to_owned()
        ),
        "{}",
        flow.stderr
    );
}

/// The activities of a run share one Python, as in `chaos`: a module keeps its state from one
/// activity to the next, a background activity meets a later one, the method's activities run
/// on the main thread and background ones on threads of their own.
#[test]
fn activities_share_one_python_as_in_chaos() {
    let dir = tempfile::tempdir().unwrap();
    let mut waiter = demo("wait-for-gate", "wait_for_gate", json!({"seconds": 10}));
    waiter["background"] = json!(true);
    // Last: `chaos` logs and journals a background activity when its pool thread starts it,
    // which may come after the next activity's line; the end of the method waits for it.
    let mut elsewhere = demo("background-thread", "on_main_thread", json!({}));
    elsewhere["background"] = json!(true);
    let source = write(
        dir.path(),
        "shared.json",
        &json!({"title": "t", "description": "d", "method": [
            demo("count-1", "counter", json!({})),
            demo("count-2", "counter", json!({})),
            waiter,
            demo("open-gate", "open_gate", json!({})),
            demo("count-3", "counter", json!({})),
            demo("main-thread", "on_main_thread", json!({})),
            elsewhere,
        ]}),
    );
    let (chaos, flow) = both(&["run", "--no-validation", &source]);
    assert_same(&chaos, &flow);
    let j = flow.journal();
    let output = |name: &str| {
        let items = j["run"].as_array().unwrap();
        let item = items.iter().find(|i| i["activity"]["name"] == name);
        item.unwrap_or_else(|| panic!("no run item {name}"))["output"].clone()
    };
    assert_eq!(output("count-1"), 1);
    assert_eq!(output("count-3"), 3);
    assert_eq!(
        output("wait-for-gate"),
        true,
        "the gate opened while it waited"
    );
    // The method on the main thread, after a background activity too; background elsewhere.
    assert_eq!(output("main-thread"), true);
    assert_eq!(output("background-thread"), false);
    // Not 10 s: the background activity returned as soon as the gate opened.
    let duration = j["duration"].as_f64().unwrap();
    assert!(duration < 5.0, "{duration} s");
}

#[test]
fn prints_stay_off_the_event_stream() {
    let dir = tempfile::tempdir().unwrap();
    let source = write(
        dir.path(),
        "noisy.json",
        &json!({"title": "t", "description": "d", "method": [demo("noisy", "noisy", json!({}))]}),
    );
    let flow = with_demo(Run::chaosflow())
        .args(["run", "--events-path", "-", &source])
        .run();
    assert_eq!(flow.code, 0, "{}", flow.stderr);
    let events: Vec<Value> = flow
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} on stdout")))
        .collect();
    assert!(events.len() > 3);
    assert!(
        flow.stderr
            .contains("a line on stdout from the extension\n")
    );
}

/// The bridge ends with the run and is reaped by chaosflow: no Python outlives it, not even one
/// a function left a thread running in (`chaos` would wait for that thread before exiting).
#[test]
fn the_bridge_ends_with_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let source = write(
        dir.path(),
        "thread.json",
        &json!({"title": "t", "description": "d", "method": [demo(
            "leave-a-thread", "leave_a_thread", json!({"pid_file": pid_file, "seconds": 60}))]}),
    );
    let started = Instant::now();
    let flow = with_demo(Run::chaosflow()).args(["run", &source]).run();
    assert_eq!(flow.code, 0, "{}", flow.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run waited for the thread: {:?}",
        started.elapsed()
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(
        flow.journal()["run"][0]["output"],
        json!(pid.parse::<u64>().unwrap())
    );
    // Reaped: not even a zombie is left.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "python (pid {pid}) outlived the run"
    );
}

#[test]
fn an_interrupted_run_kills_the_python_function() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let source = write(
        dir.path(),
        "sleep.json",
        &json!({"title": "t", "description": "d", "method": [demo(
            "sleeper", "sleeper", json!({"pid_file": pid_file, "seconds": 60}))],
            "rollbacks": [demo("greet", "greet", json!({"who": "again"}))]}),
    );
    // The interrupted call killed the bridge; the rollback's call starts another.
    let run = with_demo(Run::chaosflow()).args(["run", "--rollback-strategy", "always", &source]);
    let mut child = run
        .command(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let pid = loop {
        if let Ok(pid) = std::fs::read_to_string(&pid_file)
            && !pid.is_empty()
        {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the function never started"
        );
        thread::sleep(Duration::from_millis(50));
    };
    support::signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    // Killed: no such process any more, or a zombie waiting for a reaper that is not ours.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(") ")
                .next()
                .is_some_and(|s| !s.starts_with('Z'))
        })
    };
    let gone = Instant::now();
    while alive() {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "python (pid {pid}) outlived the run"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let journal: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("journal.json")).unwrap())
            .unwrap();
    assert_eq!(journal["status"], "interrupted");
    assert!(
        journal["run"][0].get("status").is_none(),
        "as chaos leaves it"
    );
    assert_eq!(journal["rollbacks"][0]["status"], "succeeded", "{journal}");
    assert_eq!(journal["rollbacks"][0]["output"], "hello again");
}

/// A dynamic configuration entry computed by a Python probe holds the function's return value,
/// and the probe gets every secret scope, as in `chaos` (whose journal then carries the secret
/// values in its copy of the experiment: chaosflow masks them, so only the outputs compare).
#[test]
fn dynamic_configuration_from_a_python_probe_matches_chaos() {
    let (chaos, flow) = both(&["run", &fixture("dynamic-configuration.yaml")]);
    assert_eq!(chaos.code, 0, "{}", chaos.stderr);
    assert_eq!(flow.code, 0, "{}", flow.stderr);
    let output = |o: &Outcome| o.journal()["run"][0]["output"].clone();
    assert_eq!(output(&flow), output(&chaos));
    assert_eq!(
        output(&flow)["value"],
        json!({"configuration": true, "secrets": ["region", "token"]})
    );
}
