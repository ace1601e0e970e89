//! The event pipeline and its sinks, against real receivers on 127.0.0.1, and against `chaos`
//! for what Chaos Toolkit's own notifications send.

use std::time::{Duration, Instant};

use chaosflow_sinks::python::json_dumps;
use serde_json::Value;

use crate::support::server::{self, Captured};
use crate::support::{self, Outcome, Run};

fn hello() -> String {
    support::repo()
        .join("experiments/hello-world.yaml")
        .display()
        .to_string()
}

fn settings_file(dir: &std::path::Path, yaml: &str) -> std::path::PathBuf {
    let path = dir.join("settings.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn subdir(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// Blanks what differs between two runs (times, durations).
fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if matches!(k.as_str(), "start" | "end" | "duration" | "ts") {
                    *v = Value::Null;
                } else {
                    normalize(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn bodies(requests: &[Captured]) -> Vec<Value> {
    requests
        .iter()
        .map(|r| {
            let mut v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            normalize(&mut v);
            v
        })
        .collect()
}

#[test]
fn chaos_toolkit_http_notifications_match_chaos() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["run", "validate"] {
        let (a, b) = (
            format!("ctk-chaos-{command}"),
            format!("ctk-flow-{command}"),
        );
        let yaml = |key: &str| {
            format!(
                "notifications:\n  - type: http\n    url: {}/notify\n    headers:\n      X-Test: yes-really\n",
                server::capture_url(key)
            )
        };
        let chaos_settings = settings_file(&subdir(dir.path(), &a), &yaml(&a));
        let flow_settings = settings_file(&subdir(dir.path(), &b), &yaml(&b));
        let chaos = Run::chaos()
            .settings(&chaos_settings)
            .args([command, &hello()])
            .run();
        let flow = Run::chaosflow()
            .settings(&flow_settings)
            .args([command, &hello()])
            .run();
        assert_eq!((chaos.code, flow.code), (0, 0), "{}", flow.stderr);
        let (theirs, ours) = (server::captured(&a), server::captured(&b));
        let names = |r: &[Captured]| -> Vec<String> {
            r.iter()
                .map(|c| {
                    serde_json::from_str::<Value>(&c.body).unwrap()["name"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(
            names(&ours),
            names(&theirs),
            "the same events, in the same order"
        );
        for (t, o) in theirs.iter().zip(&ours) {
            assert_eq!(
                (o.method.as_str(), o.path.as_str()),
                (t.method.as_str(), t.path.as_str())
            );
            assert_eq!(o.header("content-type"), t.header("content-type"));
            assert_eq!(o.header("x-test"), t.header("x-test"));
            // Both bodies are written the way Python's json.dumps writes them...
            for body in [&t.body, &o.body] {
                let parsed: Value = serde_json::from_str(body).unwrap();
                assert_eq!(&json_dumps(&parsed), body, "Python's JSON formatting");
            }
            assert!(o.header("x-chaosflow-event-ids").is_some());
        }
        // ...with the same keys, order and content (times aside).
        assert_eq!(bodies(&ours), bodies(&theirs));
    }
}

#[test]
fn notification_filters_and_pings() {
    let dir = tempfile::tempdir().unwrap();
    for (tool, key) in [("chaos", "ping-chaos"), ("chaosflow", "ping-flow")] {
        let settings = settings_file(
            &subdir(dir.path(), key),
            &format!(
                "notifications:\n  - type: http\n    url: {}\n    forward_event_payload: false\n    events: [run-completed]\n",
                server::capture_url(key)
            ),
        );
        let run = if tool == "chaos" {
            Run::chaos()
        } else {
            Run::chaosflow()
        };
        let outcome = run.settings(&settings).args(["run", &hello()]).run();
        assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    }
    let (theirs, ours) = (
        server::captured("ping-chaos"),
        server::captured("ping-flow"),
    );
    assert_eq!(theirs.len(), 1);
    assert_eq!(ours.len(), 1);
    assert_eq!(
        (ours[0].method.as_str(), ours[0].body.as_str()),
        ("GET", "")
    );
    assert_eq!(
        (theirs[0].method.as_str(), theirs[0].body.as_str()),
        ("GET", "")
    );
}

fn run_with(yaml: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_file(dir.path(), yaml);
    Run::chaosflow()
        .settings(&settings)
        .args(["run", "--events-path", "events.jsonl", &hello()])
        .run()
}

fn stream(outcome: &Outcome) -> Vec<Value> {
    std::fs::read_to_string(outcome.dir.path().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn batched_envelopes_carry_their_ids() {
    let outcome = run_with(&format!(
        "sinks:\n  - type: http\n    url: {}\n    format: events\n    batch: {{max_events: 5, max_wait: 0.2}}\n",
        server::capture_url("batched")
    ));
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let requests = server::captured("batched");
    let mut received = Vec::new();
    for r in &requests {
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        let lines: Vec<Value> = r
            .body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            !lines.is_empty() && lines.len() <= 5,
            "batches of at most 5"
        );
        // One run, consecutive: one range.
        let seq = |e: &Value| e["seq"].as_u64().unwrap();
        let range = format!(
            "{}:{}-{}",
            lines[0]["run_id"].as_str().unwrap(),
            seq(&lines[0]),
            seq(&lines[lines.len() - 1])
        );
        let expected = if lines.len() == 1 {
            lines[0]["id"].as_str().unwrap().to_owned()
        } else {
            range
        };
        assert_eq!(r.header("x-chaosflow-event-ids"), Some(expected.as_str()));
        received.extend(lines);
    }
    assert_eq!(received, stream(&outcome), "every event, in order, once");
    assert!(requests.len() >= 4, "{} requests", requests.len());
    assert!(
        outcome
            .stderr
            .contains("(http): 19 delivered, 0 retried, 0 dropped, 0 failed")
    );
}

#[test]
fn retries_honour_retry_after_and_4xx_is_final() {
    server::script(
        "flaky",
        vec![
            (503, vec![("Retry-After", "1")], "busy"),
            (502, vec![], "bad gateway"),
            (429, vec![("Retry-After", "1")], "slow down"),
        ],
    );
    let started = Instant::now();
    let outcome = run_with(&format!(
        "sinks:\n  - type: http\n    url: {}\n    format: events\n    batch: {{max_events: 100, max_wait: 0}}\n    events: [run-started]\n",
        server::capture_url("flaky")
    ));
    assert_eq!(outcome.code, 0);
    let requests = server::captured("flaky");
    assert_eq!(requests.len(), 4, "three failures then the delivery");
    let ids: Vec<_> = requests
        .iter()
        .map(|r| r.header("x-chaosflow-event-ids").unwrap().to_owned())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "the same event each time"
    );
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After honoured: {waited:?}"
    );
    assert!(requests[3].at - requests[2].at >= Duration::from_millis(950));
    assert!(
        outcome
            .stderr
            .contains("(http): 1 delivered, 3 retried, 0 dropped, 0 failed"),
        "{}",
        outcome.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    server::script("refused", vec![(400, vec![], "no")]);
    let outcome = run_with(&format!(
        "sinks:\n  - type: http\n    url: {}\n    events: [run-started]\n",
        server::capture_url("refused")
    ));
    assert_eq!(outcome.code, 0, "a sink never fails the run");
    assert_eq!(server::captured("refused").len(), 1, "a 400 is not retried");
    assert!(
        outcome
            .stderr
            .contains("(http): 0 delivered, 0 retried, 0 dropped, 1 failed")
    );
    assert!(outcome.stderr.contains("answered 400"));
}

#[test]
fn file_and_exec_sinks_receive_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sink.jsonl");
    let recorded = dir.path().join("recorded.jsonl");
    let script = dir.path().join("record.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho recording >&2\ncat >> {}\n",
            recorded.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let outcome = run_with(&format!(
        "sinks:\n  - type: file\n    path: {}\n  - type: exec\n    command: [{}]\n",
        file.display(),
        script.display()
    ));
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let expected = stream(&outcome);
    for path in [&file, &recorded] {
        let got: Vec<Value> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got, expected, "{}", path.display());
    }
    assert!(
        outcome.stderr.contains("recording"),
        "the program's stderr goes to the log"
    );
}

#[test]
fn dead_and_slow_sinks_do_not_change_the_experiment() {
    let baseline = run_with("sinks: []\n");
    let yaml = format!(
        "sinks:\n  - type: http\n    url: {}\n    timeout: 30\n  - type: http\n    url: {}/slow/2\n    timeout: 30\n\
         pipeline:\n  drain_timeout: 2\n  queue_capacity: 4\n",
        server::blackhole_url(),
        server::base_url()
    );
    let started = Instant::now();
    let outcome = run_with(&yaml);
    let elapsed = started.elapsed();
    assert_eq!(outcome.code, baseline.code);
    let (a, b) = (baseline.journal(), outcome.journal());
    assert_eq!(a["status"], b["status"]);
    let (da, db) = (
        a["duration"].as_f64().unwrap(),
        b["duration"].as_f64().unwrap(),
    );
    assert!(
        db < da + 0.25,
        "the run took {db:.3}s with dead sinks, {da:.3}s without"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "the drain is bounded: {elapsed:?}"
    );
    // The queues were full: drops are counted and reported.
    assert!(outcome.stderr.contains("dropped"), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("undelivered at the deadline"),
        "{}",
        outcome.stderr
    );
}

/// A sink that cannot start (its file cannot be created) is reported at once and in its
/// summary; the experiment runs and ends as it would without it.
#[test]
fn a_sink_that_cannot_start_does_not_stop_the_run() {
    let outcome = run_with(
        "sinks:\n  - type: file\n    path: /dev/null/events.jsonl\n  - type: exec\n    command: [\"true\"]\n",
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(outcome.journal()["status"], "completed");
    let events = stream(&outcome).len();
    assert!(
        outcome.stderr.contains("Sink sinks[0] cannot start"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains(&format!(
            "Sink sinks[0] (file): 0 delivered, 0 retried, 0 dropped, {events} failed"
        )),
        "{}",
        outcome.stderr
    );
}

/// An HTTPS receiver signed by a private CA: reached when `REQUESTS_CA_BUNDLE` names the CA
/// (the runner's TLS policy, shared by every sink), refused without it, reached again with
/// `verify_tls: false`.
#[test]
fn https_sinks_follow_the_runners_tls_policy() {
    let port: u16 = server::base_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = support::TlsProxy::start(port, &["http/1.1"]);
    let sink = |key: &str, verify: bool| {
        format!(
            "  - type: http\n    url: https://127.0.0.1:{}/capture/{key}\n    format: events\n    verify_tls: {verify}\n",
            proxy.port
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "sinks:\n{}{}pipeline:\n  max_attempts: 1\n",
        sink("tls-trusted", true),
        sink("tls-unverified", false)
    );
    let settings = settings_file(dir.path(), &yaml);
    let ca = proxy.ca.display().to_string();
    let trusted = Run::chaosflow()
        .settings(&settings)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .args(["run", &hello()])
        .run();
    assert_eq!(trusted.code, 0, "{}", trusted.stderr);
    assert!(
        !server::captured("tls-trusted").is_empty(),
        "{}",
        trusted.stderr
    );
    let unverified = server::captured("tls-unverified").len();
    assert!(unverified > 0, "verify_tls: false reaches it");

    // Mozilla's roots only: the private CA is refused; the unverified sink still delivers.
    let untrusted = Run::chaosflow()
        .settings(&settings)
        .env("REQUESTS_CA_BUNDLE", "")
        .env("CURL_CA_BUNDLE", "")
        .env("SSL_CERT_FILE", "")
        .args(["run", &hello()])
        .run();
    assert_eq!(untrusted.code, 0, "a sink's failure never fails the run");
    assert!(
        untrusted
            .stderr
            .contains("Sink sinks[0] (http): 0 delivered"),
        "{}",
        untrusted.stderr
    );
    assert!(server::captured("tls-unverified").len() > unverified);
}

// ---------------------------------------------------------------------------------------------
// Slack, against a local server answering Slack's Web API shapes

fn slack_requests(key: &str) -> Vec<(String, Value)> {
    server::captured(key)
        .into_iter()
        .map(|r| {
            (
                r.path.clone(),
                serde_json::from_str(&r.body).unwrap_or(Value::Null),
            )
        })
        .collect()
}

#[test]
fn slack_web_api_tells_a_run_in_a_thread() {
    let deviated = support::cases().join("deviated.yaml");
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_file(
        dir.path(),
        &format!(
            "sinks:\n  - type: slack\n    token: xoxb-test-token\n    channel: \"#chaos\"\n    api_url: {}/api\n",
            server::capture_url("slack-thread")
        ),
    );
    let outcome = Run::chaosflow()
        .settings(&settings)
        .args(["run", deviated.to_str().unwrap()])
        .run();
    assert_eq!(outcome.code, 1, "{}", outcome.stderr);
    let captured = server::captured("slack-thread");
    assert!(
        captured
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer xoxb-test-token")),
        "the bot token authenticates every call"
    );
    let requests = slack_requests("slack-thread");
    let (root_path, root) = &requests[0];
    assert_eq!(root_path, "/api/chat.postMessage");
    assert_eq!(root["channel"], "#chaos");
    assert_eq!(root["attachments"][0]["color"], "#222831");
    assert!(root.get("thread_ts").is_none());
    // Slack answered the root with ts 1700000000.N; every reply goes to that thread.
    let replies: Vec<&Value> = requests[1..]
        .iter()
        .filter(|(p, _)| p == "/api/chat.postMessage")
        .map(|(_, b)| b)
        .collect();
    // One section per event told; events ready together share a message.
    let sections: usize = replies
        .iter()
        .map(|r| r["blocks"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(sections >= 5, "{replies:#?}");
    let thread = replies[0]["thread_ts"].as_str().unwrap().to_owned();
    assert!(
        replies
            .iter()
            .all(|r| r["thread_ts"] == thread.as_str() && r["channel"] == "C0CHAOS")
    );
    let texts: Vec<&str> = replies
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Steady state hypothesis (before) is met"))
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Steady state hypothesis (after) is *not met*"))
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Activity `create-marker` finished with status `succeeded`"))
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Experiment is finished with status `Deviated`"))
    );
    // The root message is updated with the verdict and its colour.
    let (_, update) = requests
        .iter()
        .find(|(p, _)| p == "/api/chat.update")
        .expect("an update");
    assert_eq!(update["ts"], thread.as_str());
    assert_eq!(update["attachments"][0]["color"], "#FF1700");
    assert!(outcome.stderr.contains("(slack): "), "a summary line");
}

#[test]
fn slack_rate_limits_and_api_errors() {
    server::script(
        "slack-limited",
        vec![(
            429,
            vec![("Retry-After", "1"), ("Content-Type", "application/json")],
            r#"{"ok": false, "error": "ratelimited"}"#,
        )],
    );
    let outcome = run_with(&format!(
        "sinks:\n  - type: slack\n    token: xoxb-t\n    channel: C1\n    api_url: {}/api\n    style: notification\n    events: [run-started]\n",
        server::capture_url("slack-limited")
    ));
    assert_eq!(outcome.code, 0);
    let captured = server::captured("slack-limited");
    assert_eq!(captured.len(), 2, "retried once: {}", outcome.stderr);
    assert!(
        captured[1].at - captured[0].at >= Duration::from_millis(950),
        "after Retry-After"
    );
    assert!(
        outcome
            .stderr
            .contains("(slack): 1 delivered, 1 retried, 0 dropped, 0 failed"),
        "{}",
        outcome.stderr
    );

    server::script(
        "slack-refused",
        vec![(
            200,
            vec![("Content-Type", "application/json")],
            r#"{"ok": false, "error": "channel_not_found"}"#,
        )],
    );
    let outcome = run_with(&format!(
        "sinks:\n  - type: slack\n    token: xoxb-t\n    channel: C404\n    api_url: {}/api\n    style: notification\n    events: [run-started]\n",
        server::capture_url("slack-refused")
    ));
    assert_eq!(outcome.code, 0);
    assert_eq!(server::captured("slack-refused").len(), 1, "not retried");
    assert!(
        outcome.stderr.contains("channel_not_found"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome
            .stderr
            .contains("(slack): 0 delivered, 0 retried, 0 dropped, 1 failed")
    );
}

/// A failed thread reply is retried without telling again what Slack already has.
#[test]
fn slack_retries_tell_each_event_once() {
    let root = r#"{"ok": true, "channel": "C0CHAOS", "ts": "1700000000.900000", "message": {"ts": "1700000000.900000", "text": "", "type": "message"}}"#;
    server::script(
        "slack-once",
        vec![
            (200, vec![("Content-Type", "application/json")], root),
            (
                503,
                vec![("Retry-After", "0"), ("Content-Type", "application/json")],
                r#"{"ok": false, "error": "service_unavailable"}"#,
            ),
        ],
    );
    let outcome = run_with(&format!(
        "sinks:\n  - type: slack\n    token: xoxb-t\n    channel: C1\n    api_url: {}/api\n",
        server::capture_url("slack-once")
    ));
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(outcome.stderr.contains("0 failed"), "{}", outcome.stderr);
    let requests = slack_requests("slack-once");
    let roots = requests
        .iter()
        .filter(|(p, b)| p == "/api/chat.postMessage" && b.get("thread_ts").is_none())
        .count();
    assert_eq!(roots, 1, "one root message: {requests:#?}");
    // requests[1] got the 503 and was sent again; what follows it is what Slack kept.
    let (refused_path, refused) = &requests[1];
    assert!(
        requests[2..]
            .iter()
            .any(|(p, b)| p == refused_path && b["text"] == refused["text"]),
        "the refused call is made again"
    );
    let kept: Vec<String> = requests[2..]
        .iter()
        .filter(|(p, _)| p == "/api/chat.postMessage")
        .flat_map(|(_, b)| b["blocks"].as_array().cloned().unwrap_or_default())
        .map(|block| block["text"]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(!kept.is_empty());
    let mut unique = kept.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), kept.len(), "told once each: {kept:#?}");
}

#[test]
fn slack_incoming_webhook() {
    let outcome = run_with(&format!(
        "sinks:\n  - type: slack\n    webhook_url: {}/services/T000/B000/SECRET\n    events: [run-completed]\n",
        server::capture_url("slack-webhook")
    ));
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let requests = slack_requests("slack-webhook");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, "/services/T000/B000/SECRET");
    assert_eq!(requests[0].1["text"], "New Chaos Experiment Event");
    assert_eq!(
        requests[0].1["attachments"][0]["fields"][1]["value"],
        "run-completed"
    );
    assert!(
        !outcome.stderr.contains("SECRET"),
        "webhook URLs stay out of the logs"
    );
}

/// The original demo's settings (an http notification with a bearer header, the chaosslack
/// notifier), only pointed at local receivers: the HTTP notifications are chaos's, the Slack
/// notifier's messages arrive.
#[test]
fn the_original_demo_settings_work_unchanged() {
    let demo = std::fs::read_to_string(support::repo().join("settings/ctk-demo.yaml")).unwrap();
    let local = demo.replace("https://mystuff.com/api", &server::capture_url("demo-http"));
    assert_ne!(local, demo, "the demo's http notification URL was replaced");
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_file(dir.path(), &local);
    let outcome = Run::chaosflow()
        .settings(&settings)
        .env(
            "SLACK_API_URL",
            &format!("{}/api", server::capture_url("demo-slack")),
        )
        .args(["run", &hello()])
        .run();
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let http = server::captured("demo-http");
    assert_eq!(http.len(), 2, "run-started and run-completed");
    assert!(
        http.iter()
            .all(|r| r.header("authorization") == Some("Bearer 1234"))
    );
    let slack = slack_requests("demo-slack");
    assert_eq!(slack.len(), 2);
    assert!(
        slack
            .iter()
            .all(|(p, b)| p == "/api/chat.postMessage" && b["channel"] == "#general")
    );
    assert!(
        server::captured("demo-slack")
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer xop-1235"))
    );
    assert!(!outcome.stderr.contains("xop-1235") && !outcome.stderr.contains("Bearer 1234"));
}
