//! The event stream, read back with the tests' own types: a change to the schema fails here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::{self, Outcome, Run};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Name {
    RunStarted,
    RunInvalid,
    RunCompleted,
    RunFailed,
    RunDeviated,
    RunInterrupted,
    ValidateStarted,
    ValidateCompleted,
    ValidateFailed,
    HypothesisStarted,
    HypothesisCompleted,
    MethodStarted,
    MethodCompleted,
    ActivityStarted,
    ActivityCompleted,
    RollbacksStarted,
    RollbacksCompleted,
    RollbacksSkipped,
    StreamEnded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Phase {
    Run,
    Validate,
    Before,
    During,
    After,
    Method,
    Rollbacks,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    id: String,
    run_id: String,
    seq: u64,
    ts: String,
    name: Name,
    phase: Phase,
    payload: Value,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ended {
    status: String,
    deviated: bool,
    exit_code: u8,
    events: u64,
    journal_path: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ActivityStarted {
    activity: Value,
    start: String,
    background: bool,
}

/// Parses an events file and checks what every stream guarantees.
fn parse_stream(text: &str) -> Vec<Event> {
    let events: Vec<Event> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(!events.is_empty(), "an empty stream");
    let run_id = &events[0].run_id;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64, "sequence numbers have no gaps");
        assert_eq!(&e.run_id, run_id, "one run id");
        assert_eq!(e.id, format!("{run_id}:{}", e.seq), "stable ids");
        assert!(
            e.ts.len() == 27 && e.ts.ends_with('Z') && e.ts.as_bytes()[10] == b'T',
            "UTC timestamps with microseconds: {}",
            e.ts
        );
    }
    let last = events.last().unwrap();
    assert_eq!(last.name, Name::StreamEnded, "the stream ends explicitly");
    let ended: Ended = serde_json::from_value(last.payload.clone()).unwrap();
    assert_eq!(ended.events, events.len() as u64);
    // Every completed activity points at its start.
    for e in events.iter().filter(|e| e.name == Name::ActivityCompleted) {
        let started = e.payload["started_seq"].as_u64().expect("started_seq") as usize;
        let start = &events[started];
        assert_eq!(start.name, Name::ActivityStarted);
        assert_eq!(start.phase, e.phase);
        let started: ActivityStarted = serde_json::from_value(start.payload.clone()).unwrap();
        assert_eq!(started.activity, e.payload["activity"]);
        assert_eq!(started.start, e.payload["start"].as_str().unwrap());
        let _ = started.background;
    }
    events
}

fn run_with_events(run: Run) -> (Outcome, Vec<Event>) {
    let outcome = run
        .args(["--events-path", "events.jsonl"].map(String::from))
        .run();
    let text =
        std::fs::read_to_string(outcome.dir.path().join("events.jsonl")).expect("events file");
    let events = parse_stream(&text);
    (outcome, events)
}

fn names(events: &[Event]) -> Vec<(Name, Phase)> {
    events.iter().map(|e| (e.name, e.phase)).collect()
}

#[test]
fn a_run_emits_its_whole_story() {
    let hello = support::repo().join("experiments/hello-world.yaml");
    let (outcome, events) =
        run_with_events(Run::chaosflow().args(["run", hello.to_str().unwrap()]));
    assert_eq!(outcome.code, 0);
    use Name::*;
    use Phase::{After, Before, Method, Rollbacks};
    assert_eq!(
        names(&events),
        [
            (RunStarted, Phase::Run),
            (HypothesisStarted, Before),
            (ActivityStarted, Before),
            (ActivityCompleted, Before),
            (HypothesisCompleted, Before),
            (MethodStarted, Method),
            (ActivityStarted, Method),
            (ActivityCompleted, Method),
            (MethodCompleted, Method),
            (HypothesisStarted, After),
            (ActivityStarted, After),
            (ActivityCompleted, After),
            (HypothesisCompleted, After),
            (RollbacksStarted, Rollbacks),
            (ActivityStarted, Rollbacks),
            (ActivityCompleted, Rollbacks),
            (RollbacksCompleted, Rollbacks),
            (RunCompleted, Phase::Run),
            (StreamEnded, Phase::Run),
        ]
    );
    // Payloads: the experiment as loaded, run items, hypothesis states, the journal.
    assert_eq!(events[0].payload["title"], "Look token in file");
    assert_eq!(events[3].payload["status"], "succeeded");
    assert_eq!(events[3].payload["tolerance_met"], true);
    assert_eq!(events[3].payload["output"]["status"], 0);
    assert_eq!(events[4].payload["steady_state_met"], true);
    assert_eq!(events[4].payload["iteration"], Value::Null);
    assert_eq!(events[17].payload["status"], "completed");
    assert_eq!(
        &events[17].payload,
        outcome.journal(),
        "run-completed carries the journal"
    );
    let ended: Ended = serde_json::from_value(events[18].payload.clone()).unwrap();
    assert_eq!(
        (ended.status.as_str(), ended.deviated, ended.exit_code),
        ("completed", false, 0)
    );
    assert_eq!(ended.journal_path.as_deref(), Some("./journal.json"));
}

#[test]
fn deviation_failure_and_skipped_rollbacks() {
    let deviated = support::cases().join("deviated.yaml");
    let (_, events) = run_with_events(Run::chaosflow().args(["run", deviated.to_str().unwrap()]));
    let tail: Vec<Name> = events.iter().rev().take(3).map(|e| e.name).collect();
    assert_eq!(
        tail,
        [Name::StreamEnded, Name::RunDeviated, Name::RunCompleted]
    );
    let ended: Ended = serde_json::from_value(events.last().unwrap().payload.clone()).unwrap();
    assert!(ended.deviated);
    assert_eq!(ended.exit_code, 1);

    let failed = support::cases().join("probe-failure.yaml");
    let (_, events) = run_with_events(Run::chaosflow().args(["run", failed.to_str().unwrap()]));
    let completed = events
        .iter()
        .find(|e| e.name == Name::ActivityCompleted)
        .unwrap();
    assert_eq!(completed.payload["status"], "failed");
    assert_eq!(
        completed.error.as_deref(),
        Some("process activity took too long to complete")
    );
    let skipped = events
        .iter()
        .find(|e| e.name == Name::RollbacksSkipped)
        .unwrap();
    assert_eq!(skipped.payload["strategy"], "default");
    assert!(events.iter().any(|e| e.name == Name::RunFailed));
}

#[test]
fn during_iterations_are_numbered() {
    let strategies = support::cases().join("strategies.yaml");
    let (_, events) = run_with_events(Run::chaosflow().args([
        "run",
        "--hypothesis-strategy",
        "during-method-only",
        "--hypothesis-frequency",
        "0.2",
        strategies.to_str().unwrap(),
    ]));
    let iterations: Vec<u64> = events
        .iter()
        .filter(|e| e.name == Name::HypothesisCompleted)
        .map(|e| {
            assert_eq!(e.phase, Phase::During);
            e.payload["iteration"].as_u64().unwrap()
        })
        .collect();
    assert!(iterations.len() >= 3);
    assert!(
        iterations
            .iter()
            .enumerate()
            .all(|(i, n)| *n == i as u64 + 1)
    );
}

#[test]
fn invalid_input_still_ends_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"title": "t", "method": []}"#).unwrap();
    let (outcome, events) = run_with_events(Run::chaosflow().args(["run", bad.to_str().unwrap()]));
    assert_eq!(outcome.code, 1);
    assert_eq!(
        names(&events),
        [
            (Name::RunStarted, Phase::Run),
            (Name::RunInvalid, Phase::Run),
            (Name::StreamEnded, Phase::Run)
        ]
    );
    assert!(
        events[1]
            .error
            .as_deref()
            .unwrap()
            .contains("experiment requires a description")
    );
    let ended: Ended = serde_json::from_value(events[2].payload.clone()).unwrap();
    assert_eq!((ended.status.as_str(), ended.exit_code), ("invalid", 1));

    let (outcome, events) = run_with_events(Run::chaosflow().args(["run", "/nonexistent.yaml"]));
    assert_eq!(outcome.code, 1);
    assert_eq!(
        names(&events),
        [
            (Name::RunInvalid, Phase::Run),
            (Name::StreamEnded, Phase::Run)
        ]
    );
    assert_eq!(events[0].payload, Value::Null);
}

#[test]
fn validate_emits_chaos_flow_events() {
    let hello = support::repo().join("experiments/hello-world.yaml");
    let (outcome, events) =
        run_with_events(Run::chaosflow().args(["validate", hello.to_str().unwrap()]));
    assert_eq!(outcome.code, 0);
    assert_eq!(
        names(&events),
        [
            (Name::ValidateStarted, Phase::Validate),
            (Name::ValidateCompleted, Phase::Validate),
            (Name::StreamEnded, Phase::Validate),
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"description": "d", "method": []}"#).unwrap();
    let (outcome, events) =
        run_with_events(Run::chaosflow().args(["validate", bad.to_str().unwrap()]));
    assert_eq!(outcome.code, 1);
    assert_eq!(events[1].name, Name::ValidateFailed);
    assert!(
        events[1]
            .error
            .as_deref()
            .unwrap()
            .contains("experiment requires a title")
    );
}

#[test]
fn events_go_to_stdout_with_a_dash() {
    let hello = support::repo().join("experiments/hello-world.yaml");
    let outcome = Run::chaosflow()
        .args(["run", "--events-path", "-", hello.to_str().unwrap()])
        .run();
    assert_eq!(outcome.code, 0);
    let events = parse_stream(&outcome.stdout);
    assert_eq!(events.len(), 19);
    assert!(
        !outcome.stderr.contains("\"run_id\""),
        "logs stay on stderr"
    );
}

/// Each event is on disk as soon as it is emitted: a reader sees the run progress while it is
/// still going, and an interrupted run still ends its stream.
#[test]
fn events_are_flushed_as_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.jsonl");
    let source = support::cases().join("signals.yaml");
    let run = Run::chaosflow().args([
        "run".to_string(),
        "--events-path".into(),
        events_path.display().to_string(),
        source.display().to_string(),
    ]);
    let child = run
        .command(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let seen = loop {
        let text = std::fs::read_to_string(&events_path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.iter().any(|e| {
            e["name"] == "activity-started" && e["payload"]["activity"]["name"] == "long-running"
        }) {
            break lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the stream never showed the long activity"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        seen.iter().all(|e| e["name"] != "stream-ended"),
        "the run is still going"
    );
    support::signal(&child, "TERM");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let events = parse_stream(&std::fs::read_to_string(&events_path).unwrap());
    let interrupted = events
        .iter()
        .find(|e| e.name == Name::RunInterrupted)
        .unwrap();
    assert_eq!(interrupted.payload, json!({"signal": "SIGTERM"}));
    let abandoned = events
        .iter()
        .find(|e| e.name == Name::ActivityCompleted && e.phase == Phase::Method)
        .unwrap();
    assert_eq!(abandoned.error.as_deref(), Some("interrupted"));
    assert!(abandoned.payload.get("status").is_none());
    assert!(events.iter().any(|e| e.name == Name::RunFailed));
}

/// The runner publishes in process without waiting: a subscriber that never reads loses events
/// (counted) and the run is not slowed down.
#[test]
fn a_stuck_subscriber_never_blocks_the_runner() {
    use chaosflow::events::{Emitter, Publisher};
    use chaosflow::experiment::Experiment;
    use chaosflow::experiment::config::{ProcessEnv, Vars};
    use chaosflow::runner::{self, RunOptions, Strategy};

    let experiment = Experiment::new(json!({
        "title": "t", "description": "d",
        "steady-state-hypothesis": {"title": "h", "probes": [
            {"type": "probe", "name": "p", "tolerance": 0, "provider": {"type": "process", "path": "true"}}
        ]},
        "method": [
            {"type": "action", "name": "bg", "background": true,
             "provider": {"type": "process", "path": "sleep", "arguments": ["0.3"]}},
            {"type": "action", "name": "fg", "provider": {"type": "process", "path": "echo", "arguments": ["x"]}}
        ],
        "rollbacks": [{"type": "action", "name": "r", "provider": {"type": "process", "path": "true"}}]
    }))
    .unwrap();
    let mut publisher = Publisher::new();
    let stuck = publisher.subscribe("stuck", 2, None);
    let mut live = publisher.subscribe("live", 1024, None);
    let emitter = Emitter::new(None, publisher).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    // The whole run is polled on this thread, as `chaosflow run` polls it on its main thread
    // (8 MiB); a test thread's default 2 MiB is too small for an unoptimized build.
    let run_emitter = emitter.clone();
    let run = move || {
        runtime.block_on(async {
            let overlay = BTreeMap::new();
            let scope = runner::configure(&experiment, &Vars::default(), &ProcessEnv, &overlay)
                .await
                .unwrap();
            let options = RunOptions {
                dry: None,
                strategy: Strategy::Default,
                rollback_strategy: "default".into(),
                hypothesis_frequency: 1.0,
                fail_fast: false,
                traceparent: false,
            };
            runner::run(experiment, scope, Arc::new(overlay), options, run_emitter).await
        })
    };
    let journal = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(journal.status.map(|s| s.as_str()), Some("completed"));
    let emitted = emitter.count();
    assert!(emitted > 10);
    assert_eq!(stuck.counts.dropped.load(Ordering::Relaxed), emitted - 2);
    let mut received = 0;
    while live.events.try_recv().is_ok() {
        received += 1;
    }
    assert_eq!(received, emitted, "a subscriber with room gets every event");
}
