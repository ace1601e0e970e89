//! chaosflow's own command-line behaviour: bad input, secrets, options, and the places where it
//! deliberately differs from `chaos` (checked against the real `chaos` where it matters).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{self, Run};

fn write(dir: &std::path::Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn secrets_never_reach_the_journal_the_events_or_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = json!({
        "title": "Secrets", "description": "d",
        "secrets": {"api": {"token": "inline-t0ken-value", "pw": {"type": "env", "key": "API_PASSWORD"}}},
        "method": [
            {"type": "action", "name": "echo-secrets",
             "provider": {"type": "process", "path": "echo", "arguments": ["${token}", "${pw}"]}},
            {"type": "action", "name": "auth-header",
             "provider": {"type": "http", "url": "http://127.0.0.1:9/x", "timeout": 1,
                          "headers": {"Authorization": "Bearer literal-credential"}}}
        ]
    });
    let source = write(dir.path(), "secrets.json", &experiment);
    let flow = Run::chaosflow()
        .env("API_PASSWORD", "env-passw0rd")
        .args(["--verbose", "run", "--events-path", "events.jsonl", &source])
        .run();
    assert_eq!(flow.code, 0, "{}", flow.stderr);
    let journal = std::fs::read_to_string(flow.dir.path().join("journal.json")).unwrap();
    let events = std::fs::read_to_string(flow.dir.path().join("events.jsonl")).unwrap();
    let log = std::fs::read_to_string(flow.dir.path().join("chaostoolkit.log")).unwrap();
    for (what, text) in [
        ("journal", &journal),
        ("events", &events),
        ("log", &log),
        ("console", &flow.stderr),
    ] {
        for secret in ["inline-t0ken-value", "env-passw0rd", "literal-credential"] {
            assert!(!text.contains(secret), "{what} shows {secret}");
        }
    }
    assert_eq!(flow.journal()["run"][0]["output"]["stdout"], "*** ***\n");
    // chaos writes them in its journal.
    let chaos = Run::chaos()
        .env("API_PASSWORD", "env-passw0rd")
        .args(["run", &source])
        .run();
    let chaos_journal = chaos.journal().to_string();
    assert!(chaos_journal.contains("inline-t0ken-value") && chaos_journal.contains("env-passw0rd"));
}

#[test]
fn utf8_output_is_kept_where_chaos_guesses_a_codepage() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = json!({
        "title": "Unicode", "description": "d",
        "method": [{"type": "action", "name": "print",
                    "provider": {"type": "process", "path": "printf", "arguments": ["caf\u{e9} \u{2713}\\n"]}}]
    });
    let source = write(dir.path(), "unicode.json", &experiment);
    let flow = Run::chaosflow().args(["run", &source]).run();
    assert_eq!(
        flow.journal()["run"][0]["output"]["stdout"],
        "caf\u{e9} \u{2713}\n"
    );
    let chaos = Run::chaos().args(["run", &source]).run();
    assert_ne!(
        chaos.journal()["run"][0]["output"]["stdout"],
        "caf\u{e9} \u{2713}\n"
    );
}

#[test]
fn python_activities_fail_clearly_instead_of_aborting() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = json!({
        "title": "Python", "description": "d",
        "method": [
            {"type": "action", "name": "drain-nodes",
             "provider": {"type": "python", "module": "chaosk8s.node.actions", "func": "drain_nodes",
                          "arguments": {"label_selector": "app=x"}}},
            {"type": "action", "name": "next", "provider": {"type": "process", "path": "true"}}
        ]
    });
    let source = write(dir.path(), "python.json", &experiment);
    let validate = Run::chaosflow().args(["validate", &source]).run();
    assert_eq!(validate.code, 0);
    assert!(
        validate
            .stderr
            .contains("calls chaosk8s.node.actions.drain_nodes through the Python bridge")
    );
    let flow = Run::chaosflow().args(["run", &source]).run();
    assert_eq!(flow.code, 0);
    let j = flow.journal();
    assert_eq!(j["status"], "completed");
    assert_eq!(j["run"][0]["status"], "failed");
    assert!(
        j["run"][0]["exception"][0]
            .as_str()
            .unwrap()
            .contains("pip install chaostoolkit-kubernetes")
    );
    assert_eq!(j["run"][1]["status"], "succeeded", "the method goes on");
    // chaos refuses the experiment when the module is not installed.
    let chaos = Run::chaos().args(["validate", &source]).run();
    assert_eq!(chaos.code, 1);
    assert!(
        chaos
            .stderr
            .contains("could not find Python module 'chaosk8s.node.actions'")
    );
}

#[test]
fn bad_settings_stop_the_run_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.yaml");
    std::fs::write(
        &settings,
        "notifications:\n  - type: http\n    url: [unclosed\n",
    )
    .unwrap();
    let hello = support::repo().join("experiments/hello-world.yaml");
    let flow = Run::chaosflow()
        .settings(&settings)
        .args(["run", hello.to_str().unwrap()])
        .run();
    assert_eq!(flow.code, 1);
    assert!(flow.journal.is_none());
    assert!(
        flow.stderr
            .contains(&format!("settings {}:", settings.display())),
        "{}",
        flow.stderr
    );
    assert!(
        !flow.dir.path().join("hello-world.txt").exists(),
        "nothing ran"
    );
}

#[test]
fn usage_errors_exit_2() {
    let hello = support::repo().join("experiments/hello-world.yaml");
    let hello = hello.to_str().unwrap();
    for args in [
        vec!["run", "--var", "novalue", hello],
        vec!["run", "--var", "n:int=abc", hello],
        vec!["run", "--var-file", "/nonexistent.json", hello],
        vec!["run", "--dry", "sometimes", hello],
        vec!["run", "--rollback-strategy", "maybe", hello],
        vec!["frobnicate"],
    ] {
        let flow = Run::chaosflow().args(args.clone()).run();
        assert_eq!(flow.code, 2, "{args:?}: {}", flow.stderr);
        assert!(flow.journal.is_none());
    }
    let flow = Run::chaosflow()
        .args(["run", "--var", "n:int=abc", hello])
        .run();
    assert!(
        flow.stderr
            .contains("invalid literal for int() with base 10: 'abc'"),
        "{}",
        flow.stderr
    );
}

#[test]
fn global_options_go_before_or_after_the_subcommand() {
    let hello = support::repo().join("experiments/hello-world.yaml");
    let hello = hello.to_str().unwrap();
    let after = Run::chaosflow()
        .args([
            "run",
            hello,
            "--no-version-check",
            "--verbose",
            "--no-log-file",
        ])
        .run();
    assert_eq!(after.code, 0);
    assert!(
        after.stderr.contains("DEBUG] [cli:"),
        "verbose adds [module:line]"
    );
    assert!(!after.dir.path().join("chaostoolkit.log").exists());
    let before = Run::chaosflow()
        .args([
            "--no-version-check",
            "--log-file",
            "custom.log",
            "--log-file-level",
            "info",
            "run",
            hello,
        ])
        .run();
    assert_eq!(before.code, 0);
    let log = std::fs::read_to_string(before.dir.path().join("custom.log")).unwrap();
    assert!(log.contains("INFO] [runner:") && !log.contains("DEBUG]"));
}

#[test]
fn log_file_is_appended_like_chaos() {
    let hello = support::repo().join("experiments/hello-world.yaml");
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let status = Run::chaosflow()
            .args(["run", hello.to_str().unwrap()])
            .command(dir.path())
            .output()
            .unwrap()
            .status;
        assert!(status.success());
    }
    let log = std::fs::read_to_string(dir.path().join("chaostoolkit.log")).unwrap();
    assert_eq!(
        log.matches(&"#".repeat(79)).count(),
        2,
        "one separator per command"
    );
    assert!(log.contains("DEBUG] [cli:") && log.contains("Running command 'run'"));
    assert!(
        log.contains("] [activity:")
            && log.contains("  => succeeded with '{'status': 0, 'stdout': ")
    );
}

#[test]
fn json_console_lines() {
    let hello = support::repo().join("experiments/hello-world.yaml");
    let flow = Run::chaosflow()
        .args(["--log-format", "json", "run", hello.to_str().unwrap()])
        .run();
    assert_eq!(flow.code, 0);
    let lines: Vec<Value> = flow
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "context_id",
            "process",
            "asctime",
            "levelname",
            "module",
            "lineno",
            "message",
            "timestamp"
        ]
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "Experiment ended with status: completed")
    );
}

#[test]
fn change_dir_and_journal_path() {
    let hello = support::repo().join("experiments/hello-world.yaml");
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("work");
    std::fs::create_dir(&sub).unwrap();
    let flow = Run::chaosflow()
        .args([
            "--change-dir",
            sub.to_str().unwrap(),
            "run",
            "--journal-path",
            "j.json",
            hello.to_str().unwrap(),
        ])
        .run();
    assert_eq!(flow.code, 0, "{}", flow.stderr);
    assert!(sub.join("j.json").exists() && sub.join("hello-world.txt").exists());
    // An unwritable journal path fails the command, after the run.
    let flow = Run::chaosflow()
        .args([
            "run",
            "--journal-path",
            "/nonexistent/dir/journal.json",
            hello.to_str().unwrap(),
        ])
        .run();
    assert_eq!(flow.code, 1);
    assert!(
        flow.stderr
            .contains("Cannot write the journal to /nonexistent/dir/journal.json")
    );
}

#[test]
fn long_pauses_show_progress() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = json!({
        "title": "Slow", "description": "d",
        "method": [{"type": "action", "name": "wait", "pauses": {"after": 10.5},
                    "provider": {"type": "process", "path": "true"}}]
    });
    let source = write(dir.path(), "slow.json", &experiment);
    let started = Instant::now();
    let flow = Run::chaosflow().args(["run", &source]).run();
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert_eq!(flow.code, 0);
    let lines = flow.console_lines();
    assert!(lines.contains(&"INFO: Pausing after activity for 10.5s...".to_string()));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("INFO:   ... still pausing, ")),
        "{lines:?}"
    );
}

#[test]
fn every_shipped_experiment_and_settings_file_is_valid() {
    // What the settings examples take from the environment: none of it may leak.
    let env = [
        ("COLLECTOR_TOKEN", "collector-s3cret"),
        ("SLACK_BOT_TOKEN", "xoxb-s3cret"),
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/s3cret",
        ),
        ("OTLP_API_KEY", "otlp-s3cret"),
        ("HOOK_TOKEN", "hook-s3cret"),
    ];
    // Examples whose sinks are all local also run an experiment (dry).
    let local = ["runtime.yaml", "file.yaml", "exec.yaml"];
    let hello = support::repo().join("experiments/hello-world.yaml");
    let mut settings_files = 0;
    for dir in ["experiments", "settings"] {
        for entry in std::fs::read_dir(support::repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(ext, "json" | "yaml" | "yml") {
                continue;
            }
            if dir == "experiments" {
                // The inputs the experiments document and take from the environment.
                let flow = Run::chaosflow()
                    .env("APPLICATION_ENTRYPOINT_URL", "http://127.0.0.1:1/")
                    .env("EC2_INSTANCE_ID", "i-0123456789abcdef0")
                    .args(["validate", path.to_str().unwrap()])
                    .run();
                assert_eq!(flow.code, 0, "{}: {}", path.display(), flow.stderr);
                // Every function the examples call runs natively: nothing to warn about.
                assert!(
                    !flow.stderr.contains("WARNING"),
                    "{}: {}",
                    path.display(),
                    flow.stderr
                );
                continue;
            }
            settings_files += 1;
            let with_env = |mut run: Run| {
                for (k, v) in env {
                    run = run.env(k, v);
                }
                run
            };
            let check = with_env(Run::chaosflow())
                .args(["settings", "check", path.to_str().unwrap()])
                .run();
            assert_eq!(check.code, 0, "{}: {}", path.display(), check.stderr);
            assert!(check.stdout.contains(": valid, "), "{}", check.stdout);
            let show = with_env(Run::chaosflow())
                .settings(&path)
                .args(["settings", "show"])
                .run();
            assert_eq!(show.code, 0, "{}: {}", path.display(), show.stderr);
            for (_, secret) in env {
                assert!(
                    !show.stdout.contains(secret),
                    "{}: settings show prints {secret}",
                    path.display()
                );
            }
            let name = path.file_name().unwrap().to_str().unwrap();
            if local.contains(&name) {
                let run = with_env(Run::chaosflow())
                    .settings(&path)
                    .args(["run", "--dry", "activities", hello.to_str().unwrap()])
                    .run();
                assert_eq!(run.code, 0, "{}: {}", path.display(), run.stderr);
            }
        }
    }
    assert!(
        settings_files >= 9,
        "one example per sink, all sinks, the demo's"
    );
}

#[test]
fn python_controls_in_settings_are_named_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.yaml");
    std::fs::write(
        &settings,
        "controls:\n  tracing:\n    provider: {type: python, module: chaostracing.control}\n",
    )
    .unwrap();
    let hello = support::repo().join("experiments/hello-world.yaml");
    let flow = Run::chaosflow()
        .settings(&settings)
        .args(["run", hello.to_str().unwrap()])
        .run();
    assert_eq!(flow.code, 0, "{}", flow.stderr);
    let lines = flow.console_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WARNING:") && l.contains("chaostracing.control"))
    );
}

/// `deploy/base/crd.yaml` is what `chaosflow crd` prints from the Rust types: regenerate it
/// with `cargo run -- crd > deploy/base/crd.yaml` when the types change.
#[test]
fn the_deployed_crd_is_the_one_the_types_generate() {
    let out = std::process::Command::new(support::chaosflow_bin())
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let deployed = std::fs::read_to_string(support::repo().join("deploy/base/crd.yaml")).unwrap();
    assert!(
        printed == deployed,
        "deploy/base/crd.yaml drifted from the types: run `cargo run -- crd > deploy/base/crd.yaml`"
    );
    assert!(printed.contains("name: chaosexperiments.chaostoolkit.org"));
    // Kubernetes' own schema for CustomResourceDefinitions accepts it, strictly.
    support::assert_kubernetes_valid(&support::repo().join("deploy/base/crd.yaml"), None);
}

/// In a pod the runner leaves its outcome in the termination message, where the operator reads
/// it from the pod's status.
#[test]
fn the_termination_log_tells_the_outcome() {
    let hello = support::repo().join("experiments/hello-world.yaml");
    let out = Run::chaosflow()
        .args([
            "run",
            "--termination-log",
            "termination-log",
            hello.to_str().unwrap(),
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(out.dir.path().join("termination-log")).unwrap();
    assert!(text.len() < 4096);
    let outcome: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(outcome["status"], "completed");
    assert_eq!(outcome["deviated"], false);
    assert_eq!(outcome["exitCode"], 0);
    assert_eq!(
        outcome["activities"], 2,
        "the method's action and the rollback"
    );
    assert_eq!(outcome["failed"], 0);
    assert_eq!(outcome["hypothesisBefore"], true);
    assert_eq!(outcome["hypothesisAfter"], true);
    assert_eq!(outcome["journalPath"], "./journal.json");
    assert_eq!(outcome["start"], out.journal()["start"]);

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, r#"{"title": "no method"}"#).unwrap();
    let out = Run::chaosflow()
        .args([
            "run",
            "--termination-log",
            "termination-log",
            broken.to_str().unwrap(),
        ])
        .run();
    assert_eq!(out.code, 1);
    let outcome: Value = serde_json::from_str(
        &std::fs::read_to_string(out.dir.path().join("termination-log")).unwrap(),
    )
    .unwrap();
    assert_eq!(outcome["status"], "invalid");
    assert_eq!(outcome["exitCode"], 1);
    assert!(
        outcome["error"].as_str().unwrap().contains("broken.json"),
        "{outcome}"
    );
}
