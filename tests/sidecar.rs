//! `chaosflow sidecar` against a real HTTP receiver on 127.0.0.1 that can go down and come
//! back: the same events as in process, kill -9 at random points, a 30 s outage, settings
//! rotated by a `..data` symlink swap as the kubelet does it, truncation and partial lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{self, Run};

/// An NDJSON receiver (the http sink's `format: events`) that can be stopped and restarted on
/// the same port: stopped, it refuses connections, as a crashed service does.
struct Receiver {
    port: u16,
    events: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<usize>>,
    up: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Receiver {
    fn start() -> Self {
        let mut receiver = Self {
            port: 0,
            events: Arc::default(),
            requests: Arc::default(),
            up: None,
        };
        receiver.up();
        receiver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ingest", self.port)
    }

    fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind the receiver");
        self.port = listener.local_addr().unwrap().port();
        let running = Arc::new(AtomicBool::new(true));
        let (events, requests, flag) =
            (self.events.clone(), self.requests.clone(), running.clone());
        let handle = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if !flag.load(Ordering::Acquire) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (events, requests) = (events.clone(), requests.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &events, &requests);
                });
            }
        });
        self.up = Some((running, handle));
    }

    /// Stops listening: new connections are refused.
    fn down(&mut self) {
        if let Some((running, handle)) = self.up.take() {
            running.store(false, Ordering::Release);
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            handle.join().unwrap();
        }
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    fn seqs(&self) -> Vec<u64> {
        self.events()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    }

    /// Waits until `check` holds for the received events.
    fn wait_for(&self, what: &str, within: Duration, check: impl Fn(&[Value]) -> bool) {
        let until = Instant::now() + within;
        while !check(&self.events()) {
            assert!(
                Instant::now() < until,
                "receiver: {what} not reached in {within:?} ({} events)",
                self.events().len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// One request per connection (`connection: close`), so a stopped receiver is really gone.
fn serve(
    stream: TcpStream,
    events: &Mutex<Vec<Value>>,
    requests: &Mutex<usize>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    {
        let mut events = events.lock().unwrap();
        for l in String::from_utf8_lossy(&body).lines() {
            events.push(serde_json::from_str(l).expect("NDJSON events"));
        }
        *requests.lock().unwrap() += 1;
    }
    let mut stream = stream;
    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
    stream.flush()
}

fn settings(dir: &Path, name: &str, url: &str, max_events: usize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "sinks:\n  - type: http\n    url: {url}\n    format: events\n    batch: {{max_events: {max_events}, max_wait: 0.05}}\npipeline:\n  drain_timeout: 5\n"
        ),
    )
    .unwrap();
    path
}

/// A synthetic event line of run `run`.
fn event_line(run: &str, seq: u64, name: &str) -> String {
    let mut line = json!({
        "id": format!("{run}:{seq}"), "run_id": run, "seq": seq,
        "ts": "2026-11-25T08:41:23.123456Z", "name": name, "phase": "method",
        "payload": {"activity": {"name": format!("step-{seq}")}, "pad": "x".repeat(200)},
        "error": null,
    })
    .to_string();
    line.push('\n');
    line
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// Writes `count` events of one run (the last is `stream-ended`), `per_ms` per millisecond.
fn produce(
    path: PathBuf,
    run: &'static str,
    count: u64,
    per_ms: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for seq in 0..count {
            let name = if seq + 1 == count {
                "stream-ended"
            } else {
                "activity-completed"
            };
            file.write_all(event_line(run, seq, name).as_bytes())
                .unwrap();
            if seq % per_ms.max(1) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
}

/// A running sidecar, killed if the test fails before it exits.
struct Sidecar(Option<Child>);

impl Sidecar {
    fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    fn kill_9(mut self) {
        let mut child = self.0.take().expect("running");
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn sidecar(dir: &Path, settings: &Path, extra: &[&str]) -> Sidecar {
    Sidecar(Some(sidecar_command(dir, settings, extra)))
}

fn sidecar_command(dir: &Path, settings: &Path, extra: &[&str]) -> Child {
    Command::new(support::chaosflow_bin())
        .current_dir(dir)
        .args(["sidecar", "--events", "events.jsonl", "--settings"])
        .arg(settings)
        .args(["--poll-interval", "0.2"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the sidecar")
}

/// Waits for the sidecar to exit (at most `within`); its exit code and log.
fn finish(mut sidecar: Sidecar, within: Duration) -> (i32, String) {
    let mut child = sidecar.0.take().expect("running");
    let log = |child: &mut Child| {
        let mut log = String::new();
        let stderr = child.stderr.as_mut().expect("piped stderr");
        stderr.read_to_string(&mut log).unwrap();
        log
    };
    let until = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), log(&mut child));
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!(
                "the sidecar did not exit within {within:?}:\n{}",
                log(&mut child)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Received events compared without what differs between two runs.
fn shape(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            for key in ["id", "run_id", "ts"] {
                e[key] = Value::Null;
            }
            // Times, durations and paths inside payloads differ between two runs.
            fn scrub(v: &mut Value) {
                match v {
                    Value::Object(map) => {
                        for (k, x) in map.iter_mut() {
                            if matches!(
                                k.as_str(),
                                "start" | "end" | "duration" | "node" | "journal_path" | "platform"
                            ) {
                                *x = Value::Null;
                            } else {
                                scrub(x);
                            }
                        }
                    }
                    Value::Array(items) => items.iter_mut().for_each(scrub),
                    _ => {}
                }
            }
            scrub(&mut e);
            e
        })
        .collect()
}

#[test]
fn the_sidecar_delivers_the_same_events_as_the_runner_in_process() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "settings.yaml", &receiver.url(), 100);
    let hello = support::repo().join("experiments/hello-world.yaml");
    let hello = hello.to_str().unwrap();

    let in_process = Run::chaosflow()
        .settings(&settings)
        .args(["run", "--events-path", "in-process.jsonl", hello])
        .run();
    assert_eq!(in_process.code, 0, "{}", in_process.stderr);
    let direct = receiver.events();
    assert!(direct.len() > 10);
    receiver.events.lock().unwrap().clear();

    let run = Run::chaosflow()
        .settings(&settings)
        .args([
            "run",
            "--delivery",
            "sidecar",
            "--events-path",
            &dir.path().join("events.jsonl").display().to_string(),
            hello,
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        receiver.events().is_empty(),
        "with --delivery sidecar the runner delivers nothing itself"
    );
    // Polling only, as on a volume without file notifications.
    let (code, log) = finish(
        sidecar(dir.path(), &settings, &["--no-notify"]),
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("no file notifications"), "{log}");
    let through_sidecar = receiver.events();
    assert_eq!(
        shape(&through_sidecar),
        shape(&direct),
        "same events, same order"
    );
    let written: Vec<Value> = std::fs::read_to_string(dir.path().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(through_sidecar, written, "the file's events, exactly once");
    assert!(
        log.contains(&format!(
            "(http): {} delivered, 0 retried, 0 dropped, 0 failed",
            written.len()
        )),
        "{log}"
    );
    assert!(log.contains("everything read is delivered"), "{log}");
    // A restarted sidecar knows the stream was delivered and exits at once.
    let (code, log) = finish(sidecar(dir.path(), &settings, &[]), Duration::from_secs(5));
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("nothing to do"), "{log}");
    assert_eq!(receiver.events().len(), written.len());
}

#[test]
fn a_runner_leaves_a_claimed_events_file_to_the_sidecar() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "settings.yaml", &receiver.url(), 100);
    let events = dir.path().join("events.jsonl");
    let child = sidecar(dir.path(), &settings, &[]);
    let claim = dir.path().join("events.jsonl.sidecar");
    let until = Instant::now() + Duration::from_secs(5);
    while !claim.exists() {
        assert!(Instant::now() < until, "the sidecar claims the file");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Without --delivery sidecar, and with sinks in its settings: it still leaves them alone.
    let run = Run::chaosflow()
        .settings(&settings)
        .args([
            "run",
            "--events-path",
            &events.display().to_string(),
            &support::repo()
                .join("experiments/hello-world.yaml")
                .display()
                .to_string(),
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("A sidecar delivers the events of"),
        "{}",
        run.stderr
    );
    let (code, log) = finish(child, Duration::from_secs(20));
    assert_eq!(code, 0, "{log}");
    let written = std::fs::read_to_string(&events).unwrap().lines().count();
    assert_eq!(
        receiver.events().len(),
        written,
        "each event once, from the sidecar"
    );
    assert!(!claim.exists(), "the claim goes with the sidecar");
}

#[test]
fn runner_refuses_sidecar_delivery_without_an_events_file() {
    let out = Run::chaosflow()
        .args([
            "run",
            "--delivery",
            "sidecar",
            &support::repo()
                .join("experiments/hello-world.yaml")
                .display()
                .to_string(),
        ])
        .run();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("--delivery sidecar needs --events-path FILE"),
        "{}",
        out.stderr
    );
}

/// A small pseudo-random generator: the crash points differ from run to run, and the seed in
/// a failure message replays them.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Checks at-least-once with bounded repeats and order: returns the number of repeats.
fn check_delivery(seqs: &[u64], count: u64, max_repeats: usize, seed: u64) -> usize {
    let mut seen = vec![false; count as usize];
    let mut repeats = 0;
    let mut next = 0;
    for &s in seqs {
        if seen[s as usize] {
            repeats += 1;
        } else {
            assert_eq!(s, next, "order per run preserved (seed {seed})");
            seen[s as usize] = true;
            next += 1;
        }
    }
    assert_eq!(next, count, "every event at least once (seed {seed})");
    assert!(
        repeats <= max_repeats,
        "{repeats} repeats > {max_repeats} (seed {seed})"
    );
    repeats
}

#[test]
fn kill_9_at_random_points_loses_nothing() {
    const EVENTS: u64 = 10_000;
    const BATCH: usize = 100;
    const CRASHES: usize = 20;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut random = Lcg(seed);
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "settings.yaml", &receiver.url(), BATCH);
    let producer = produce(dir.path().join("events.jsonl"), "crash-run", EVENTS, 2);
    for _ in 0..CRASHES {
        let child = sidecar(dir.path(), &settings, &[]);
        std::thread::sleep(Duration::from_millis(30 + random.next(250)));
        child.kill_9();
    }
    producer.join().unwrap();
    let (code, log) = finish(sidecar(dir.path(), &settings, &[]), Duration::from_secs(60));
    assert_eq!(code, 0, "{log}");
    let seqs = receiver.seqs();
    // A crash repeats at most the batch in flight (its checkpoint was not saved yet).
    let repeats = check_delivery(&seqs, EVENTS, CRASHES * BATCH, seed);
    eprintln!(
        "{CRASHES} kill -9: {} events received, {repeats} repeats",
        seqs.len()
    );
}

#[test]
fn a_30_second_outage_loses_nothing_and_shows_the_retries() {
    const EVENTS: u64 = 3_000;
    let mut receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "settings.yaml", &receiver.url(), 100);
    let events = dir.path().join("events.jsonl");
    let child = sidecar(dir.path(), &settings, &[]);
    // The first third, delivered; then the receiver goes down for 30 s while the rest is written.
    for seq in 0..EVENTS / 3 {
        append(
            &events,
            &event_line("outage-run", seq, "activity-completed"),
        );
    }
    receiver.wait_for("the first third", Duration::from_secs(20), |e| {
        e.len() as u64 >= EVENTS / 3
    });
    receiver.down();
    let down_at = Instant::now();
    for seq in EVENTS / 3..EVENTS {
        let name = if seq + 1 == EVENTS {
            "stream-ended"
        } else {
            "activity-completed"
        };
        append(&events, &event_line("outage-run", seq, name));
    }
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down_at.elapsed()));
    assert_eq!(
        receiver.events().len() as u64,
        EVENTS / 3,
        "nothing got through while down"
    );
    receiver.up();
    let (code, log) = finish(child, Duration::from_secs(60));
    assert_eq!(code, 0, "{log}");
    check_delivery(&receiver.seqs(), EVENTS, 0, 0);
    let summary = log
        .lines()
        .find(|l| l.contains("Sink sinks[0] (http)"))
        .unwrap_or_else(|| panic!("no summary:\n{log}"));
    assert!(
        summary.contains(&format!("{EVENTS} delivered")),
        "{summary}"
    );
    assert!(
        !summary.contains(" 0 retried"),
        "retries are visible: {summary}"
    );
    assert!(summary.contains("0 dropped, 0 failed"), "{summary}");
}

/// The kubelet's way of updating a Secret volume: files in a timestamped directory, `..data`
/// pointing at it, and each key a symlink through `..data`; an update writes a new directory
/// and renames a new `..data` symlink over the old one.
struct SecretVolume {
    dir: PathBuf,
    version: usize,
}

impl SecretVolume {
    fn new(dir: PathBuf, settings: &str) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = Self { dir, version: 0 };
        volume.update(settings);
        std::os::unix::fs::symlink("..data/settings.yaml", volume.dir.join("settings.yaml"))
            .unwrap();
        volume
    }

    fn update(&mut self, settings: &str) {
        self.version += 1;
        let data = format!(
            "..2026_11_25_12_00_{:02}.{}",
            self.version,
            1000 + self.version
        );
        std::fs::create_dir(self.dir.join(&data)).unwrap();
        std::fs::write(self.dir.join(&data).join("settings.yaml"), settings).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn path(&self) -> PathBuf {
        self.dir.join("settings.yaml")
    }
}

fn http_settings(url: &str) -> String {
    format!(
        "sinks:\n  - type: http\n    url: {url}\n    format: events\n    batch: {{max_events: 50, max_wait: 0.05}}\n"
    )
}

#[test]
fn settings_rotated_by_a_symlink_swap_apply_without_loss_or_repeats() {
    let first = Receiver::start();
    let second = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let mut volume = SecretVolume::new(dir.path().join("secret"), &http_settings(&first.url()));
    let events = dir.path().join("events.jsonl");
    let child = sidecar(dir.path(), &volume.path(), &[]);
    for seq in 0..500 {
        append(
            &events,
            &event_line("rotation-run", seq, "activity-completed"),
        );
    }
    first.wait_for("the first 500", Duration::from_secs(20), |e| e.len() >= 500);
    volume.update(&http_settings(&second.url()));
    // The new settings are picked up (a notification, or at worst the 10 s look).
    std::thread::sleep(Duration::from_secs(2));
    // An invalid version is refused; the running sinks stay.
    volume.update("sinks:\n  - type: http\n    url: not a url\n");
    std::thread::sleep(Duration::from_secs(2));
    for seq in 500..1000 {
        let name = if seq == 999 {
            "stream-ended"
        } else {
            "activity-completed"
        };
        append(&events, &event_line("rotation-run", seq, name));
    }
    let (code, log) = finish(child, Duration::from_secs(30));
    assert_eq!(code, 0, "{log}");
    let (a, b) = (first.seqs(), second.seqs());
    assert_eq!(
        a,
        (0..500).collect::<Vec<_>>(),
        "the old sinks got what came before the change"
    );
    assert_eq!(
        b,
        (500..1000).collect::<Vec<_>>(),
        "the new sinks got the rest, once"
    );
    assert!(log.contains("the settings changed"), "{log}");
    assert!(
        log.contains("sinks[0].url"),
        "the invalid version is reported: {log}"
    );
    assert!(log.contains("The new settings are not applied"), "{log}");
}

#[test]
fn partial_lines_truncation_and_replacement() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "settings.yaml", &receiver.url(), 10);
    let events = dir.path().join("events.jsonl");
    // Started before the file exists: it waits for it, and says it is alive and ready.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = sidecar(dir.path(), &settings, &["--health-addr", &addr]);
    let probe = |path: &str| -> Option<String> {
        let mut stream = TcpStream::connect(&addr).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    };
    let until = Instant::now() + Duration::from_secs(5);
    let ready = loop {
        match probe("/readyz") {
            Some(a) if a.starts_with("HTTP/1.0 200") => break a,
            _ if Instant::now() > until => panic!("never ready"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(ready.contains("\"ready\":true"), "{ready}");
    assert!(probe("/healthz").unwrap().starts_with("HTTP/1.0 200 OK"));
    assert!(probe("/nope").unwrap().starts_with("HTTP/1.0 404"));
    let line = event_line("tail-run", 0, "activity-completed");
    let (head, rest) = line.split_at(40);
    append(&events, head);
    std::thread::sleep(Duration::from_millis(800));
    assert!(receiver.events().is_empty(), "a partial line is held");
    append(&events, rest);
    receiver.wait_for("the completed line", Duration::from_secs(10), |e| {
        e.len() == 1
    });
    // copytruncate: the file starts again from 0.
    std::fs::File::create(&events).unwrap();
    append(&events, &event_line("tail-run", 1, "activity-completed"));
    receiver.wait_for("the line after truncation", Duration::from_secs(10), |e| {
        e.len() == 2
    });
    // Replacement: the old file is moved away, a new one takes its name.
    std::fs::rename(&events, dir.path().join("events.jsonl.1")).unwrap();
    append(&events, &event_line("tail-run", 2, "stream-ended"));
    let (code, log) = finish(child, Duration::from_secs(20));
    assert_eq!(code, 0, "{log}");
    assert_eq!(receiver.seqs(), vec![0, 1, 2]);
    assert!(log.contains("Waiting for events.jsonl to appear"), "{log}");
    assert!(log.contains("truncated"), "{log}");
    assert!(log.contains("a new file replaced the old one"), "{log}");
}

#[test]
fn sigterm_drains_within_the_deadline_and_the_next_start_resumes() {
    let mut receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "settings.yaml", &receiver.url(), 10);
    let events = dir.path().join("events.jsonl");
    for seq in 0..20 {
        append(&events, &event_line("term-run", seq, "activity-completed"));
    }
    let child = sidecar(dir.path(), &settings, &[]);
    receiver.wait_for("20 events", Duration::from_secs(10), |e| e.len() == 20);
    receiver.down();
    for seq in 20..40 {
        let name = if seq == 39 {
            "stream-ended"
        } else {
            "activity-completed"
        };
        append(&events, &event_line("term-run", seq, name));
    }
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, log) = finish(child, Duration::from_secs(15));
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "drain deadline is 5 s"
    );
    assert_eq!(code, 1, "not everything was delivered: {log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(
        log.contains("the rest is delivered at the next start"),
        "{log}"
    );
    let checkpoint: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("events.jsonl.checkpoint")).unwrap(),
    )
    .unwrap();
    assert_eq!(checkpoint["version"], 1);
    assert_eq!(checkpoint["ended"], false);
    receiver.up();
    let (code, log) = finish(sidecar(dir.path(), &settings, &[]), Duration::from_secs(20));
    assert_eq!(code, 0, "{log}");
    check_delivery(&receiver.seqs(), 40, 0, 0);
}

#[test]
fn bad_input_is_named_with_its_place_and_fix() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "settings.yaml", &receiver.url(), 10);
    // A corrupt checkpoint: refused, nothing read.
    std::fs::write(
        dir.path().join("events.jsonl.checkpoint"),
        "{\"version\": 1, \"offs",
    )
    .unwrap();
    append(
        &dir.path().join("events.jsonl"),
        &event_line("bad-run", 0, "activity-completed"),
    );
    let (code, log) = finish(sidecar(dir.path(), &settings, &[]), Duration::from_secs(10));
    assert_eq!(code, 1);
    assert!(
        log.contains("events.jsonl.checkpoint: not a valid chaosflow checkpoint"),
        "{log}"
    );
    assert!(log.contains("remove it to start over"), "{log}");
    assert!(receiver.events().is_empty());
    std::fs::remove_file(dir.path().join("events.jsonl.checkpoint")).unwrap();
    // A line that is not an event: named, skipped, the rest delivered, exit 1.
    append(&dir.path().join("events.jsonl"), "this is not json\n");
    append(
        &dir.path().join("events.jsonl"),
        &event_line("bad-run", 1, "stream-ended"),
    );
    let (code, log) = finish(sidecar(dir.path(), &settings, &[]), Duration::from_secs(10));
    assert_eq!(code, 1, "{log}");
    let first_len = event_line("bad-run", 0, "activity-completed").len();
    assert!(
        log.contains(&format!(
            "events.jsonl, line ending at byte {}: not a chaosflow event",
            first_len + 17
        )),
        "{log}"
    );
    assert_eq!(receiver.seqs(), vec![0, 1]);
    // Invalid settings: refused before anything is read.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "sinks:\n  - type: http\n    url: nope\n    token: x\n",
    )
    .unwrap();
    let (code, log) = finish(sidecar(dir.path(), &bad, &[]), Duration::from_secs(10));
    assert_eq!(code, 1);
    assert!(log.contains("sinks[0]"), "{log}");
}

/// In a pod the sidecar is a native sidecar (`--native-sidecar`): it stays after the stream
/// ends, since the kubelet restarts a sidecar that exits, and on the SIGTERM that comes once
/// the runner has ended it reads the file to its end before draining, lines it had not looked
/// at yet included (here: no notifications, a 30 s poll).
#[test]
fn a_native_sidecar_stays_then_reads_to_the_end_on_sigterm() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "settings.yaml", &receiver.url(), 10);
    let events = dir.path().join("events.jsonl");
    for seq in 0..11 {
        let name = if seq == 10 {
            "stream-ended"
        } else {
            "activity-completed"
        };
        append(&events, &event_line("native-run", seq, name));
    }
    let child = Sidecar(Some(
        Command::new(support::chaosflow_bin())
            .current_dir(dir.path())
            .args(["sidecar", "--events", "events.jsonl", "--settings"])
            .arg(&settings)
            .args(["--native-sidecar", "--no-notify", "--poll-interval", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    receiver.wait_for("the run's 11 events", Duration::from_secs(10), |e| {
        e.len() == 11
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut child = child;
    assert!(
        child.0.as_mut().unwrap().try_wait().unwrap().is_none(),
        "a native sidecar stays after the stream ends"
    );
    for seq in 11..16 {
        append(
            &events,
            &event_line("native-run", seq, "activity-completed"),
        );
    }
    support::signal(child.0.as_ref().unwrap(), "TERM");
    let (code, log) = finish(child, Duration::from_secs(15));
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("waiting for the pod to stop"), "{log}");
    check_delivery(&receiver.seqs(), 16, 0, 0);
}
