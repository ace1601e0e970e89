//! The conformance suite: the real `chaos` (chaostoolkit 1.19.0 + chaostoolkit-lib 1.44.0 with
//! jsonpath) and `chaosflow` run the same experiments with the same arguments, and their exit
//! codes and journals are compared field by field: status, deviated, steady states, run and
//! rollback items (keys and their order, activity, status, output, tolerance_met, exception),
//! the experiment copy, and for most cases the console lines too.
//!
//! Where `chaos` crashes with a traceback, chaosflow deliberately does better; those cases are
//! in `improvements` below and check both sides of the difference against the oracle.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{self, Outcome, Run};

/// How strictly to compare.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opts {
    /// Compare the console lines (INFO and above, timestamps stripped).
    logs: bool,
    /// During-method evaluations depend on timing: compare the first and the last only.
    during_loose: bool,
}

pub(crate) const STRICT: Opts = Opts {
    logs: true,
    during_loose: false,
};

/// Runs both tools on the same experiment, at the same time, in fresh directories.
fn both(
    file: &str,
    args: &[&str],
    env: &[(&str, &str)],
    settings: Option<&Path>,
) -> (Outcome, Outcome) {
    let cases = support::cases();
    let source = if file.starts_with("http://") || file.starts_with('/') {
        file.to_owned()
    } else {
        cases.join(file).display().to_string()
    };
    let expand = |a: &&str| a.replace("{cases}", &cases.display().to_string());
    let build = |run: Run| {
        let mut run = run
            .args(["run"])
            .args(args.iter().map(expand))
            .args([source.clone()]);
        for (k, v) in env {
            run = run.env(k, v);
        }
        if let Some(s) = settings {
            run = run.settings(s);
        }
        run
    };
    let chaos = build(Run::chaos());
    let ours = build(Run::chaosflow());
    let handle = thread::spawn(move || chaos.run());
    let flow = ours.run();
    (handle.join().expect("the chaos run"), flow)
}

fn assert_same(file: &str, args: &[&str], env: &[(&str, &str)], opts: Opts) -> (Outcome, Outcome) {
    assert_same_with(file, args, env, None, opts)
}

fn assert_same_with(
    file: &str,
    args: &[&str],
    env: &[(&str, &str)],
    settings: Option<&Path>,
    opts: Opts,
) -> (Outcome, Outcome) {
    let (chaos, flow) = both(file, args, env, settings);
    let mut diffs = Vec::new();
    if chaos.code != flow.code {
        diffs.push(format!(
            "exit code: chaos={} chaosflow={}",
            chaos.code, flow.code
        ));
    }
    match (&chaos.journal, &flow.journal) {
        (Some(a), Some(b)) => diff_journal(a, b, opts, &mut diffs),
        (None, None) => {}
        (a, b) => diffs.push(format!(
            "journal written: chaos={} chaosflow={}",
            a.is_some(),
            b.is_some()
        )),
    }
    if opts.logs {
        let normalize = |lines: Vec<String>| -> Vec<String> {
            lines
                .into_iter()
                .map(|l| cut_connection_error(&l))
                .collect()
        };
        let (a, b) = (
            normalize(chaos.console_lines()),
            normalize(flow.console_lines()),
        );
        if a != b {
            diffs.push(format!(
                "console lines differ:\n  chaos:\n    {}\n  chaosflow:\n    {}",
                a.join("\n    "),
                b.join("\n    ")
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{file} {args:?}: chaosflow differs from chaos:\n- {}\n\nchaos stderr:\n{}\nchaosflow stderr:\n{}",
        diffs.join("\n- "),
        chaos.stderr,
        flow.stderr
    );
    (chaos, flow)
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

pub(crate) fn diff_journal(a: &Value, b: &Value, opts: Opts, diffs: &mut Vec<String>) {
    if keys(a) != keys(b) {
        diffs.push(format!(
            "journal keys: chaos={:?} chaosflow={:?}",
            keys(a),
            keys(b)
        ));
    }
    for k in [
        "chaoslib-version",
        "platform",
        "node",
        "status",
        "deviated",
        "experiment",
    ] {
        if a[k] != b[k] {
            diffs.push(format!("{k}: chaos={} chaosflow={}", a[k], b[k]));
        }
    }
    for k in ["start", "end"] {
        let ok = |v: &Value| {
            v.as_str()
                .is_some_and(|s| s.ends_with("+00:00") && s.len() >= 25)
        };
        if !ok(&a[k]) || !ok(&b[k]) {
            diffs.push(format!("{k} timestamps: chaos={} chaosflow={}", a[k], b[k]));
        }
    }
    if !a["duration"].is_f64() || !b["duration"].is_f64() {
        diffs.push(format!(
            "duration: chaos={} chaosflow={}",
            a["duration"], b["duration"]
        ));
    }
    let (sa, sb) = (&a["steady_states"], &b["steady_states"]);
    if keys(sa) != keys(sb) {
        diffs.push(format!(
            "steady_states keys: {:?} vs {:?}",
            keys(sa),
            keys(sb)
        ));
    }
    for phase in ["before", "after"] {
        diff_state(
            &format!("steady_states.{phase}"),
            &sa[phase],
            &sb[phase],
            diffs,
        );
    }
    let (da, db) = (
        sa["during"].as_array().cloned().unwrap_or_default(),
        sb["during"].as_array().cloned().unwrap_or_default(),
    );
    if opts.during_loose {
        if da.is_empty() != db.is_empty() {
            diffs.push(format!(
                "during evaluations: chaos={} chaosflow={}",
                da.len(),
                db.len()
            ));
        } else if let (Some(fa), Some(fb), Some(la), Some(lb)) =
            (da.first(), db.first(), da.last(), db.last())
        {
            diff_state("steady_states.during[first]", fa, fb, diffs);
            diff_state("steady_states.during[last]", la, lb, diffs);
        }
    } else if da.len() != db.len() {
        diffs.push(format!(
            "during evaluations: chaos={} chaosflow={}",
            da.len(),
            db.len()
        ));
    } else {
        for (i, (x, y)) in da.iter().zip(&db).enumerate() {
            diff_state(&format!("steady_states.during[{i}]"), x, y, diffs);
        }
    }
    for list in ["run", "rollbacks"] {
        diff_items(list, &a[list], &b[list], diffs);
    }
}

fn diff_state(path: &str, a: &Value, b: &Value, diffs: &mut Vec<String>) {
    if a.is_null() || b.is_null() {
        if a.is_null() != b.is_null() {
            diffs.push(format!("{path}: chaos={a} chaosflow={b}"));
        }
        return;
    }
    if keys(a) != keys(b) {
        diffs.push(format!("{path} keys: {:?} vs {:?}", keys(a), keys(b)));
    }
    if a["steady_state_met"] != b["steady_state_met"] {
        diffs.push(format!(
            "{path}.steady_state_met: chaos={} chaosflow={}",
            a["steady_state_met"], b["steady_state_met"]
        ));
    }
    diff_items(&format!("{path}.probes"), &a["probes"], &b["probes"], diffs);
}

fn diff_items(path: &str, a: &Value, b: &Value, diffs: &mut Vec<String>) {
    let (Some(a), Some(b)) = (a.as_array(), b.as_array()) else {
        diffs.push(format!("{path}: chaos={a} chaosflow={b}"));
        return;
    };
    if a.len() != b.len() {
        let names = |l: &[Value]| -> Vec<String> {
            l.iter()
                .map(|i| i["activity"]["name"].to_string())
                .collect()
        };
        diffs.push(format!(
            "{path}: chaos ran {:?}, chaosflow ran {:?}",
            names(a),
            names(b)
        ));
        return;
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let p = format!("{path}[{i}] ({})", x["activity"]["name"]);
        if keys(x) != keys(y) {
            diffs.push(format!(
                "{p} keys: chaos={:?} chaosflow={:?}",
                keys(x),
                keys(y)
            ));
        }
        for k in ["activity", "output", "status", "tolerance_met"] {
            if x.get(k) != y.get(k) {
                diffs.push(format!("{p}.{k}: chaos={} chaosflow={}", x[k], y[k]));
            }
        }
        let (ea, eb) = (exception_tail(x), exception_tail(y));
        if ea != eb {
            diffs.push(format!("{p}.exception: chaos={ea:?} chaosflow={eb:?}"));
        }
        if !x["duration"].is_number() || !y["duration"].is_number() {
            diffs.push(format!(
                "{p}.duration: chaos={} chaosflow={}",
                x["duration"], y["duration"]
            ));
        }
    }
}

/// The last exception line, which names the error.
fn exception_tail(item: &Value) -> Option<String> {
    let last = item["exception"].as_array()?.last()?.as_str()?;
    Some(cut_connection_error(last))
}

/// Connection errors are compared up to the URL: the text after it comes from urllib3.
fn cut_connection_error(text: &str) -> String {
    let marker = "failed to connect to ";
    match text.find(marker) {
        Some(i) => {
            let rest = &text[i + marker.len()..];
            let url_end = rest.find(": ").unwrap_or(rest.len());
            format!("{}{marker}{}", &text[..i], &rest[..url_end])
        }
        None => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Runs compared field by field

#[test]
fn hello_world() {
    let hello = support::repo().join("experiments/hello-world.yaml");
    let (_, flow) = assert_same(hello.to_str().unwrap(), &[], &[], STRICT);
    assert_eq!(flow.code, 0);
    assert_eq!(flow.journal()["status"], "completed");
    let file = std::fs::read_to_string(flow.dir.path().join("hello-world.txt")).unwrap();
    assert_eq!(file, "burp\n", "the rollback restores the token file");
}

#[test]
fn tolerances_that_hold() {
    let (_, flow) = assert_same("tolerances-met.yaml", &[], &[], STRICT);
    let before = &flow.journal()["steady_states"]["before"];
    assert_eq!(before["steady_state_met"], true);
    assert_eq!(before["probes"].as_array().unwrap().len(), 15);
}

#[test]
fn bool_tolerance_never_matches_a_process_output() {
    let (_, flow) = assert_same("before-unmet-bool.yaml", &[], &[], STRICT);
    let j = flow.journal();
    assert_eq!((flow.code, &j["status"]), (0, &json!("completed")));
    assert_eq!(j["run"], json!([]));
    assert_eq!(j["rollbacks"].as_array().unwrap().len(), 1);
}

#[test]
fn string_tolerance_never_matches_a_process_output() {
    assert_same("before-unmet-string.yaml", &[], &[], STRICT);
}

#[test]
fn two_element_list_is_membership() {
    assert_same("two-element-list-is-membership.yaml", &[], &[], STRICT);
}

#[test]
fn first_unmet_probe_stops_the_hypothesis() {
    let (_, flow) = assert_same("first-unmet-stops.yaml", &[], &[], STRICT);
    assert_eq!(
        flow.journal()["steady_states"]["before"]["probes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn failing_probe_fails_the_run() {
    let (_, flow) = assert_same("probe-failure.yaml", &[], &[], STRICT);
    assert_eq!(
        (flow.code, &flow.journal()["status"]),
        (1, &json!("failed"))
    );
}

#[test]
fn deviation() {
    let (_, flow) = assert_same("deviated.yaml", &[], &[], STRICT);
    let j = flow.journal();
    assert_eq!(
        (flow.code, &j["status"], &j["deviated"]),
        (1, &json!("completed"), &json!(true))
    );
}

#[test]
fn deviated_and_failed() {
    let (_, flow) = assert_same("deviated-and-failed.yaml", &[], &[], STRICT);
    let j = flow.journal();
    assert_eq!(
        (&j["status"], &j["deviated"]),
        (&json!("failed"), &json!(true))
    );
}

#[test]
fn process_provider() {
    let (_, flow) = assert_same("process-provider.yaml", &[], &[], STRICT);
    let run = &flow.journal()["run"];
    assert_eq!(run[0]["output"]["stdout"], "WORLD 7\n");
    assert_eq!(run[6]["status"], "failed");
    assert_eq!(run[7]["output"]["status"], -9);
}

#[test]
fn http_provider() {
    let (_, flow) = assert_same("http-provider.yaml", &[], &[], STRICT);
    let run = &flow.journal()["run"];
    assert_eq!(
        run[5]["output"]["body"]["body"],
        r#"{"a": 1, "b": [true, null, 2.5], "c": "\u00e9"}"#
    );
    assert_eq!(run[14]["output"]["headers"]["X-lower-UPPER"], "v");
}

#[test]
fn invalid_json_body_aborts_the_method() {
    let (_, flow) = assert_same(
        "http-invalid-json-aborts.yaml",
        &[],
        &[],
        Opts {
            logs: false,
            ..STRICT
        },
    );
    let j = flow.journal();
    assert_eq!(j["status"], "aborted");
    assert!(j["run"][0].get("status").is_none());
    assert_eq!(j["rollbacks"].as_array().unwrap().len(), 1);
}

const CONFIG_ENV: &[(&str, &str)] = &[
    ("CONF_STRING", "from the env"),
    ("CONF_INT", "42"),
    ("CONF_FLOAT", "2.5"),
    ("CONF_BOOL", "No"),
    ("CONF_JSON", r#"{"a": [1, null]}"#),
    ("SECRET_PW", "pw"),
];

#[test]
fn configuration_and_secrets() {
    let (_, flow) = assert_same("configuration.yaml", &[], CONFIG_ENV, STRICT);
    assert_eq!(
        flow.journal()["experiment"]["title"],
        "Configuration shop check"
    );
}

#[test]
fn variables_and_var_files() {
    assert_same(
        "vars.yaml",
        &[
            "--var-file",
            "{cases}/vars.json",
            "--var-file",
            "{cases}/vars-file.yaml",
            "--var-file",
            "{cases}/vars.env",
            "--var",
            "who=cli",
            "--var",
            "n:int=5",
            "--var",
            "other=ignored",
        ],
        &[],
        STRICT,
    );
}

#[test]
fn dynamic_configuration() {
    assert_same("dynamic-configuration.yaml", &[], &[], STRICT);
}

#[test]
fn references() {
    assert_same("refs.yaml", &[], &[], STRICT);
}

#[test]
fn pauses() {
    let (_, flow) = assert_same("pauses.yaml", &[], &[], STRICT);
    let j = flow.journal();
    assert!(
        j["run"][0]["duration"].as_f64().unwrap() < 0.2,
        "pauses are not in durations"
    );
    assert!(
        j["duration"].as_f64().unwrap() >= 1.4,
        "pauses are in the run's duration"
    );
}

#[test]
fn background_activities() {
    let (_, flow) = assert_same(
        "background.yaml",
        &[],
        &[],
        Opts {
            logs: false,
            ..STRICT
        },
    );
    let names: Vec<_> = flow.journal()["run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["activity"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["slow-in-background", "foreground", "second-background"]
    );
}

#[test]
fn dry_modes() {
    for mode in ["probes", "actions", "activities", "pause"] {
        assert_same("dry.yaml", &["--dry", mode], &[], STRICT);
    }
}

#[test]
fn rollback_strategies() {
    for strategy in ["default", "always", "never", "deviated"] {
        assert_same(
            "rollback-strategies.yaml",
            &["--rollback-strategy", strategy],
            &[],
            STRICT,
        );
    }
    let (_, flow) = assert_same(
        "deviated.yaml",
        &["--rollback-strategy", "deviated"],
        &[],
        STRICT,
    );
    assert_eq!(flow.journal()["rollbacks"].as_array().unwrap().len(), 1);
}

#[test]
fn hypothesis_strategies() {
    for strategy in ["before-method-only", "after-method-only"] {
        assert_same(
            "strategies.yaml",
            &["--hypothesis-strategy", strategy],
            &[],
            STRICT,
        );
    }
    let loose = Opts {
        logs: false,
        during_loose: true,
    };
    for strategy in ["during-method-only", "continuously"] {
        let (_, flow) = assert_same(
            "strategies.yaml",
            &[
                "--hypothesis-strategy",
                strategy,
                "--hypothesis-frequency",
                "0.2",
            ],
            &[],
            loose,
        );
        let j = flow.journal();
        let during = j["steady_states"]["during"].as_array().unwrap();
        assert!(during.len() >= 3, "several evaluations during the method");
        assert_eq!(during.last().unwrap()["steady_state_met"], false);
        if strategy == "during-method-only" {
            // Deviations during the method never set `deviated`.
            assert_eq!((flow.code, &j["deviated"]), (0, &json!(false)));
        }
    }
}

#[test]
fn fail_fast() {
    let (_, flow) = assert_same(
        "fail-fast.yaml",
        &["--hypothesis-strategy", "during-method-only", "--fail-fast"],
        &[],
        Opts {
            logs: false,
            during_loose: true,
        },
    );
    let j = flow.journal();
    assert_eq!(j["status"], "failed");
    assert_eq!(
        j["run"].as_array().unwrap().len(),
        1,
        "the method stops after its current activity"
    );
}

#[test]
fn continuously_with_fail_fast_can_end_completed_and_deviated() {
    let (_, flow) = assert_same(
        "strategies.yaml",
        &[
            "--hypothesis-strategy",
            "continuously",
            "--hypothesis-frequency",
            "0.2",
            "--fail-fast",
        ],
        &[],
        Opts {
            logs: false,
            during_loose: true,
        },
    );
    let j = flow.journal();
    assert_eq!(
        (&j["status"], &j["deviated"]),
        (&json!("completed"), &json!(true))
    );
}

#[test]
fn runtime_blocks() {
    let (_, flow) = assert_same("runtime-block.yaml", &[], &[], STRICT);
    assert_eq!(flow.journal()["rollbacks"].as_array().unwrap().len(), 1);
    let settings = support::cases().join("settings-runtime.yaml");
    // Settings apply when the experiment has no runtime block...
    assert_same_with("strategies.yaml", &[], &[], Some(&settings), STRICT);
    // ...and an experiment block replaces both of them.
    assert_same_with("runtime-block.yaml", &[], &[], Some(&settings), STRICT);
    // The command line wins over both.
    assert_same_with(
        "runtime-block.yaml",
        &["--rollback-strategy", "never"],
        &[],
        Some(&settings),
        STRICT,
    );
}

#[test]
fn without_hypothesis_and_with_an_empty_method() {
    assert_same("no-hypothesis.yaml", &[], &[], STRICT);
    assert_same("empty-method.yaml", &[], &[], STRICT);
}

#[test]
fn ignored_keys_controls_and_extensions() {
    // chaos warns about the missing control module in its own words: compare journals only.
    assert_same(
        "extras.yaml",
        &[],
        &[],
        Opts {
            logs: false,
            ..STRICT
        },
    );
}

#[test]
fn typed_title_and_method_failures() {
    let (_, flow) = assert_same("typed-title.yaml", &[], &[], STRICT);
    assert_eq!(flow.journal()["experiment"]["title"], 42);
    let (_, flow) = assert_same("method-failure.yaml", &[], &[], STRICT);
    assert_eq!(
        (flow.code, &flow.journal()["status"]),
        (0, &json!("completed"))
    );
}

#[test]
fn yaml_and_json_documents() {
    assert_same(
        "yaml-features.yaml",
        &[],
        &[],
        Opts {
            logs: false,
            ..STRICT
        },
    );
    assert_same("json-experiment.json", &[], &[], STRICT);
}

#[test]
fn experiments_from_urls() {
    let base = support::server::base_url();
    for file in ["remote.json", "remote.yaml", "remote.txt"] {
        assert_same(&format!("{base}/served/{file}"), &[], &[], STRICT);
    }
    // A bearer token from the environment, then from settings' auths.
    let private = format!("{base}/private/remote.json");
    let (_, flow) = assert_same(
        &private,
        &[],
        &[("CHAOSTOOLKIT_LOADER_AUTH_BEARER_TOKEN", "s3cret-t0ken")],
        STRICT,
    );
    assert_eq!(flow.code, 0);
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.yaml");
    let netloc = base.trim_start_matches("http://");
    std::fs::write(
        &settings,
        format!("auths:\n  {netloc}:\n    type: bearer\n    value: s3cret-t0ken\n"),
    )
    .unwrap();
    let (_, flow) = assert_same_with(&private, &[], &[], Some(&settings), STRICT);
    assert_eq!(flow.code, 0);
    // Unauthorised and missing documents fail the same way.
    let (_, flow) = assert_same(
        &private,
        &[],
        &[],
        Opts {
            logs: false,
            ..STRICT
        },
    );
    assert_eq!(flow.code, 1);
    assert_same(
        &format!("{base}/served/missing.json"),
        &[],
        &[],
        Opts {
            logs: false,
            ..STRICT
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Signals

/// Starts a run of `signals.yaml`, waits for the long activity, sends `signal`.
fn interrupted(program: Run, signal: &str, args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let source = support::cases().join("signals.yaml");
    let run = program
        .args(["run"])
        .args(args.iter().copied())
        .args([source.display().to_string()]);
    let child = run
        .command(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.path().join("started").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the long activity never started"
        );
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(200));
    support::signal(&child, signal);
    let wait_started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(
        wait_started.elapsed() < Duration::from_secs(10),
        "stopped promptly"
    );
    support::outcome(output, dir)
}

#[test]
fn signals_interrupt_like_chaos() {
    for (signal, args) in [
        ("TERM", &[][..]),
        ("TERM", &["--rollback-strategy", "always"][..]),
        ("INT", &[][..]),
        ("USR1", &["--rollback-strategy", "always"][..]),
        ("USR2", &["--rollback-strategy", "always"][..]),
    ] {
        let handle = {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                interrupted(Run::chaos(), signal, &args)
            })
        };
        let flow = interrupted(Run::chaosflow(), signal, args);
        let chaos = handle.join().unwrap();
        let mut diffs = Vec::new();
        if chaos.code != flow.code {
            diffs.push(format!("exit: {} vs {}", chaos.code, flow.code));
        }
        diff_journal(chaos.journal(), flow.journal(), STRICT, &mut diffs);
        assert!(
            diffs.is_empty(),
            "SIG{signal} {args:?}:\n- {}\n{}",
            diffs.join("\n- "),
            flow.stderr
        );
        let j = flow.journal();
        assert_eq!(j["status"], "interrupted");
        assert!(
            j["run"][0].get("status").is_none(),
            "the interrupted item has no status"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Validation: every rule, same exit code and message

fn valid_experiment() -> Value {
    json!({
        "title": "t",
        "description": "d",
        "configuration": {"c": 1},
        "secrets": {"s": {"k": "v"}},
        "steady-state-hypothesis": {
            "title": "h",
            "probes": [{"type": "probe", "name": "p", "tolerance": 0,
                        "provider": {"type": "process", "path": "true"}}]
        },
        "method": [{"type": "action", "name": "a", "provider": {"type": "process", "path": "true"}}],
        "rollbacks": [{"type": "action", "name": "r", "provider": {"type": "http", "url": "http://127.0.0.1:9"}}],
        "controls": [{"name": "c", "provider": {"type": "python", "module": "os"}}]
    })
}

#[test]
fn validation_rules() {
    type Mutation = fn(&mut Value);
    let rules: &[(&str, Mutation)] = &[
        ("an empty experiment is not an experiment", |e| {
            *e = json!({})
        }),
        ("experiment requires a title", |e| e["title"] = json!("")),
        ("experiment requires a description", |e| {
            e.as_object_mut().unwrap().remove("description");
        }),
        ("experiment tags must be a non-empty string", |e| {
            e["tags"] = json!(["ok", ""])
        }),
        ("All extensions require a non-empty name", |e| {
            e["extensions"] = json!([{"x": 1}])
        }),
        (
            "Configuration makes reference to an environment key that does not exist: CONFORMANCE_UNSET",
            |e| e["configuration"]["c"] = json!({"type": "env", "key": "CONFORMANCE_UNSET"}),
        ),
        (
            "Secrets make reference to an environment key that does not exist: CONFORMANCE_UNSET",
            |e| e["secrets"]["s"]["k"] = json!({"type": "env", "key": "CONFORMANCE_UNSET"}),
        ),
        ("hypothesis requires a title", |e| {
            e["steady-state-hypothesis"]["title"] = json!(null)
        }),
        ("hypothesis probe must have a tolerance entry", |e| {
            e["steady-state-hypothesis"]["probes"][0]
                .as_object_mut()
                .unwrap()
                .remove("tolerance");
        }),
        (
            "hypothesis probe tolerance must either be an integer",
            |e| e["steady-state-hypothesis"]["probes"][0]["tolerance"] = json!(1.5),
        ),
        (
            "hypothesis probe tolerance type 'nope' is unsupported",
            |e| e["steady-state-hypothesis"]["probes"][0]["tolerance"] = json!({"type": "nope"}),
        ),
        (
            "hypothesis regex probe tolerance must have a `pattern` key",
            |e| e["steady-state-hypothesis"]["probes"][0]["tolerance"] = json!({"type": "regex"}),
        ),
        ("hypothesis probe tolerance pattern ( seems invalid", |e| {
            e["steady-state-hypothesis"]["probes"][0]["tolerance"] =
                json!({"type": "regex", "pattern": "("})
        }),
        (
            "hypothesis jsonpath probe tolerance must have a `path` key",
            |e| {
                e["steady-state-hypothesis"]["probes"][0]["tolerance"] = json!({"type": "jsonpath"})
            },
        ),
        (
            "hypothesis probe tolerance JSON path $.a-b is invalid",
            |e| {
                e["steady-state-hypothesis"]["probes"][0]["tolerance"] =
                    json!({"type": "jsonpath", "path": "$.a-b"})
            },
        ),
        (
            "hypothesis probe tolerance JSON path cannot be empty",
            |e| {
                e["steady-state-hypothesis"]["probes"][0]["tolerance"] =
                    json!({"type": "jsonpath", "path": " "})
            },
        ),
        (
            "hypothesis range probe tolerance must have a `range` key",
            |e| e["steady-state-hypothesis"]["probes"][0]["tolerance"] = json!({"type": "range"}),
        ),
        ("hypothesis range must be a sequence", |e| {
            e["steady-state-hypothesis"]["probes"][0]["tolerance"] =
                json!({"type": "range", "range": 1})
        }),
        (
            "hypothesis range sequence must be made of two values",
            |e| {
                e["steady-state-hypothesis"]["probes"][0]["tolerance"] =
                    json!({"type": "range", "range": [1, 2, 3]})
            },
        ),
        ("hypothesis range lower boundary must be a number", |e| {
            e["steady-state-hypothesis"]["probes"][0]["tolerance"] =
                json!({"type": "range", "range": ["a", 2]})
        }),
        ("hypothesis range upper boundary must be a number", |e| {
            e["steady-state-hypothesis"]["probes"][0]["tolerance"] =
                json!({"type": "range", "range": [1, "b"]})
        }),
        ("an experiment requires a method", |e| {
            e.as_object_mut().unwrap().remove("method");
        }),
        ("empty activity is no activity", |e| {
            e["method"] = json!([{}])
        }),
        ("reference to activity must be non-empty strings", |e| {
            e["method"] = json!([{"ref": ""}])
        }),
        (
            "referenced activity 'missing' could not be found in the experiment",
            |e| e["method"] = json!([{"ref": "missing"}]),
        ),
        ("an activity must have a type", |e| {
            e["method"][0].as_object_mut().unwrap().remove("type");
        }),
        ("'thing' is not a supported activity type", |e| {
            e["method"][0]["type"] = json!("thing")
        }),
        ("an activity must have a name", |e| {
            e["method"][0]["name"] = json!("")
        }),
        ("an activity requires a provider", |e| {
            e["rollbacks"][0]
                .as_object_mut()
                .unwrap()
                .remove("provider");
        }),
        ("a provider must have a type", |e| {
            e["method"][0]["provider"] = json!({"path": "true"})
        }),
        ("unknown provider type 'bogus'", |e| {
            e["method"][0]["provider"]["type"] = json!("bogus")
        }),
        ("activity timeout must be a number", |e| {
            e["method"][0]["timeout"] = json!("soon")
        }),
        (
            "activity before pause must be a number or a pattern to a variable from the configuration or secrets",
            |e| e["method"][0]["pauses"] = json!({"before": "5s"}),
        ),
        (
            "activity after pause must be a number or a pattern to a variable from the configuration or secrets",
            |e| e["method"][0]["pauses"] = json!({"after": "${x"}),
        ),
        ("activity background must be a boolean", |e| {
            e["method"][0]["background"] = json!("yes")
        }),
        ("a process activity must have a path", |e| {
            e["method"][0]["provider"] = json!({"type": "process"})
        }),
        (
            "path 'no-such-binary-xyz' cannot be found, in activity 'a'",
            |e| e["method"][0]["provider"]["path"] = json!("no-such-binary-xyz"),
        ),
        ("a HTTP activity must have a URL", |e| {
            e["rollbacks"][0]["provider"] = json!({"type": "http"})
        }),
        ("a HTTP activities expect headers as a mapping", |e| {
            e["rollbacks"][0]["provider"]["headers"] = json!(["a"])
        }),
        ("a Python activity must have a module path", |e| {
            e["method"][0]["provider"] = json!({"type": "python", "func": "f"})
        }),
        ("a Python activity must have a function name", |e| {
            e["method"][0]["provider"] = json!({"type": "python", "module": "os"})
        }),
        ("A control must have a `name` property", |e| {
            e["controls"] = json!([{"provider": {}}])
        }),
        ("Control 'c' must have a `provider` property", |e| {
            e["controls"] = json!([{"name": "c"}])
        }),
        (
            "Control 'c' scope property must be 'before' or 'after' only",
            |e| e["controls"][0]["scope"] = json!("during"),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let jobs: Vec<_> = rules
        .iter()
        .enumerate()
        .map(|(i, (message, mutate))| {
            let mut experiment = valid_experiment();
            mutate(&mut experiment);
            let path = dir.path().join(format!("rule-{i}.json"));
            std::fs::write(&path, experiment.to_string()).unwrap();
            (message.to_string(), path)
        })
        .collect();
    for chunk in jobs.chunks(4) {
        let handles: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(message, path)| {
                thread::spawn(move || {
                    let source = path.display().to_string();
                    let chaos = Run::chaos().args(["validate", source.as_str()]).run();
                    let flow = Run::chaosflow().args(["validate", source.as_str()]).run();
                    let flow_run = Run::chaosflow().args(["run", source.as_str()]).run();
                    (message, chaos, flow, flow_run)
                })
            })
            .collect();
        for handle in handles {
            let (message, chaos, flow, flow_run) = handle.join().unwrap();
            let problems = [
                (chaos.code != 1, "chaos did not exit 1"),
                (!chaos.stderr.contains(&message), "chaos does not say it"),
                (flow.code != 1, "chaosflow validate did not exit 1"),
                (
                    !flow.stderr.contains(&message),
                    "chaosflow validate does not say it",
                ),
                (flow_run.code != 1, "chaosflow run did not exit 1"),
                (flow_run.journal.is_some(), "chaosflow run wrote a journal"),
            ];
            for (failed, what) in problems {
                if failed {
                    failures.push(format!(
                        "{message}: {what}\n  chaos: {}\n  chaosflow: {}",
                        chaos.stderr.trim(),
                        flow.stderr.trim()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // And the base experiment is valid for both.
    let path = dir.path().join("valid.json");
    std::fs::write(&path, valid_experiment().to_string()).unwrap();
    let source = path.display().to_string();
    assert_eq!(
        Run::chaos().args(["validate", source.as_str()]).run().code,
        0
    );
    assert_eq!(
        Run::chaosflow()
            .args(["validate", source.as_str()])
            .run()
            .code,
        0
    );
}

// ---------------------------------------------------------------------------------------------
// Deliberate improvements: chaos crashes (traceback, no journal), chaosflow reports the error and
// writes an honest journal.

#[test]
fn improvements_where_chaos_crashes() {
    let base = support::server::base_url();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "regex tolerance without a target",
            json!({"type": "probe", "name": "p", "tolerance": {"type": "regex", "pattern": "x"},
                   "provider": {"type": "process", "path": "echo", "arguments": ["x"]}}),
            "a regex tolerance searches text",
        ),
        (
            "range tolerance over a whole output",
            json!({"type": "probe", "name": "p", "tolerance": {"type": "range", "range": [0, 1]},
                   "provider": {"type": "process", "path": "true"}}),
            "a range tolerance needs a number",
        ),
        (
            "probe tolerance without arguments",
            json!({"type": "probe", "name": "p",
                   "tolerance": {"type": "probe", "name": "checker", "provider": {"type": "process", "path": "true"}},
                   "provider": {"type": "process", "path": "true"}}),
            "needs `provider.arguments`",
        ),
        (
            "unresolvable ref in the hypothesis",
            json!({"ref": "nowhere", "tolerance": 0}),
            "could not find referenced activity 'nowhere'",
        ),
        (
            "invalid JSON served to a hypothesis probe",
            json!({"type": "probe", "name": "p", "tolerance": 200,
                   "provider": {"type": "http", "url": format!("{base}/invalid-json")}}),
            "is not JSON",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, probe, message)) in cases.into_iter().enumerate() {
        let experiment = json!({
            "title": what, "description": "crash case",
            "steady-state-hypothesis": {"title": "h", "probes": [probe]},
            "method": [{"type": "action", "name": "a", "provider": {"type": "process", "path": "true"}}],
            "rollbacks": [{"type": "action", "name": "r", "provider": {"type": "process", "path": "true"}}]
        });
        let path = dir.path().join(format!("crash-{i}.json"));
        std::fs::write(&path, experiment.to_string()).unwrap();
        let source = path.display().to_string();
        let chaos = Run::chaos().args(["run", source.as_str()]).run();
        assert_eq!(chaos.code, 1, "{what}: chaos exits 1");
        assert!(chaos.journal.is_none(), "{what}: chaos writes no journal");
        assert!(
            chaos.stderr.contains("Traceback"),
            "{what}: chaos crashes:\n{}",
            chaos.stderr
        );

        let flow = Run::chaosflow().args(["run", source.as_str()]).run();
        assert_eq!(flow.code, 1, "{what}: chaosflow exits 1");
        assert!(
            flow.stderr.contains(message),
            "{what}: chaosflow says why:\n{}",
            flow.stderr
        );
        assert!(!flow.stderr.contains("Traceback"));
        let j = flow.journal();
        assert_eq!(j["status"], "aborted", "{what}");
        assert_eq!(
            j["steady_states"]["before"]["steady_state_met"], false,
            "{what}"
        );
        assert_eq!(j["run"], json!([]), "{what}: the method does not run");
        // Aborted runs play rollbacks under the default strategy, as chaos does for the method.
        assert_eq!(j["rollbacks"].as_array().unwrap().len(), 1, "{what}");
    }
}

#[test]
fn malformed_documents() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("broken.json");
    std::fs::write(&json_path, "{\n  \"title\": \"x\",\n  \"method\": [\n}\n").unwrap();
    let yaml_path = dir.path().join("broken.yaml");
    std::fs::write(
        &yaml_path,
        "title: x\nmethod:\n  - type: action\n   name: bad indent\n",
    )
    .unwrap();
    for path in [&json_path, &yaml_path] {
        let source = path.display().to_string();
        let chaos = Run::chaos().args(["run", source.as_str()]).run();
        let flow = Run::chaosflow().args(["run", source.as_str()]).run();
        assert_eq!((chaos.code, flow.code), (1, 1), "{source}");
        assert!(
            chaos.journal.is_none() && flow.journal.is_none(),
            "{source}"
        );
        assert!(
            flow.stderr.contains(&format!("{source}:")) && flow.stderr.contains("invalid"),
            "chaosflow names the file and the position:\n{}",
            flow.stderr
        );
    }
    let flow = Run::chaosflow()
        .args(["run", json_path.to_str().unwrap()])
        .run();
    assert!(
        flow.stderr.contains("broken.json:4:1: invalid JSON"),
        "{}",
        flow.stderr
    );
    // Missing files and unsupported extensions.
    let txt = dir.path().join("experiment.txt");
    std::fs::write(&txt, "{}").unwrap();
    for source in [
        "/nonexistent/experiment.json".to_owned(),
        txt.display().to_string(),
    ] {
        let chaos = Run::chaos().args(["run", source.as_str()]).run();
        let flow = Run::chaosflow().args(["run", source.as_str()]).run();
        assert_eq!((chaos.code, flow.code), (1, 1), "{source}");
    }
}

// ---------------------------------------------------------------------------------------------
// Proxies and TLS

#[test]
fn http_proxy_from_the_environment() {
    let base = support::server::base_url();
    let dir = tempfile::tempdir().unwrap();
    let experiment = json!({
        "title": "Proxied", "description": "d",
        "method": [
            {"type": "probe", "name": "through-the-proxy",
             "provider": {"type": "http", "url": "http://origin.invalid/echo?x=1"}},
        ]
    });
    let path = dir.path().join("proxy.json");
    std::fs::write(&path, experiment.to_string()).unwrap();
    let source = path.display().to_string();
    let (_, flow) = assert_same(&source, &[], &[("HTTP_PROXY", &base)], STRICT);
    assert_eq!(flow.journal()["run"][0]["output"]["body"]["proxied"], true);
    // NO_PROXY sends it straight to the (unresolvable) origin, in both.
    let (_, flow) = assert_same(
        &source,
        &[],
        &[("HTTP_PROXY", &base), ("NO_PROXY", "origin.invalid")],
        Opts {
            logs: false,
            ..STRICT
        },
    );
    assert_eq!(flow.journal()["run"][0]["status"], "failed");
}

/// A local HTTPS server with a self-signed certificate for 127.0.0.1.
struct TlsServer {
    child: std::process::Child,
    url: String,
    cert: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_server() -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed_cert(dir.path());
    let script = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"secure": true}'
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&cert)
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    TlsServer {
        child,
        url: format!("https://127.0.0.1:{}/", port.trim()),
        cert,
        _dir: dir,
    }
}

#[test]
fn https_with_and_without_verification() {
    let server = tls_server();
    let dir = tempfile::tempdir().unwrap();
    let experiment = json!({
        "title": "TLS", "description": "d",
        "method": [
            {"type": "probe", "name": "unverified", "provider": {"type": "http", "url": server.url, "verify_tls": false}},
            {"type": "probe", "name": "verified", "provider": {"type": "http", "url": server.url}}
        ]
    });
    let path = dir.path().join("tls.json");
    std::fs::write(&path, experiment.to_string()).unwrap();
    let source = path.display().to_string();
    // Self-signed: only the unverified call succeeds...
    let (_, flow) = assert_same(
        &source,
        &[],
        &[],
        Opts {
            logs: false,
            ..STRICT
        },
    );
    let run = &flow.journal()["run"];
    assert_eq!(
        (&run[0]["status"], &run[1]["status"]),
        (&json!("succeeded"), &json!("failed"))
    );
    assert_eq!(run[0]["output"]["body"], json!({"secure": true}));
    // ...until the certificate is trusted through REQUESTS_CA_BUNDLE.
    let bundle = server.cert.display().to_string();
    let (_, flow) = assert_same(&source, &[], &[("REQUESTS_CA_BUNDLE", &bundle)], STRICT);
    assert_eq!(flow.journal()["run"][1]["status"], "succeeded");
}
