//! `chaosflow sidecar`: follows the runner's events file and delivers it to the sinks of the
//! settings, at least once, across crashes, restarts and settings changes.
//!
//! In a pod the runner writes its events to a shared volume (`chaosflow run --delivery sidecar
//! --events-path ...`); this process tails that file ([`tail`]) and feeds every event to the
//! same pipeline the runner uses in process ([`crate::pipeline`], durable mode): no sink is
//! implemented twice.
//!
//! - **At least once.** The checkpoint ([`checkpoint`]) names the file and the offset up to
//!   which every sink has handled the events; it is saved after each batch a sink handles, so
//!   a crash repeats at most one batch per sink, and receivers drop repeats by event id.
//! - **Backpressure by reading.** A full sink queue stops the reading; memory stays bounded by
//!   the queues, whatever the file's size.
//! - **End.** Once the end of a run's stream (`stream-ended`) is read with nothing after it and
//!   every sink has handled it, the sidecar exits 0, so a pod can complete. SIGTERM or SIGINT
//!   stop the reading, give the sinks the drain deadline (`pipeline.drain_timeout`), save the
//!   checkpoint and exit.
//! - **Settings rotation.** When the settings file changes (Kubernetes swaps the `..data`
//!   symlink of a Secret volume), the new settings are checked; valid ones replace the running
//!   sinks after these have drained what they hold, so nothing is lost or repeated; invalid
//!   ones are reported and the running sinks stay.
//! - **One deliverer.** While it runs, the sidecar keeps a claim next to the events file
//!   (`<events>.sidecar`, see [`claim_path`]); a runner that finds it delivers nothing in
//!   process, even with sinks in its settings, so no event is delivered twice.
//! - **Watching.** inotify (notify) wakes the reading as soon as the runner writes; a poll
//!   every `--poll-interval` covers volumes where notifications never come (network file
//!   systems) and anything missed.

pub mod checkpoint;
mod health;
pub mod tail;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chaosflow_sinks::Event;

use crate::events::{Publisher, names};
use crate::pipeline::{Pipeline, Progress, Stopper, Summary};
use crate::settings::Settings;
use checkpoint::{Checkpoint, FileId};
use tail::{Change, Line, Tail};

/// What `chaosflow sidecar` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The runner's events file.
    pub events: PathBuf,
    /// The settings file.
    pub settings: PathBuf,
    /// Where the checkpoint lives (`<events>.checkpoint` by default).
    pub checkpoint: PathBuf,
    /// How often to look at the files without a notification.
    pub poll_interval: Duration,
    /// Where to answer health probes, if anywhere.
    pub health: Option<SocketAddr>,
    /// Use file notifications (inotify) besides the poll.
    pub notify: bool,
    /// A Kubernetes native sidecar: stay after the stream ends; on a signal, read the file to
    /// its end first (the runner has ended).
    pub native: bool,
}

/// State shared with the sinks' thread (checkpoint saves), the signal thread and the health
/// endpoint.
pub(crate) struct Shared {
    checkpoint_path: PathBuf,
    events_path: PathBuf,
    /// Mark just past the last line offered to the pipeline.
    read: AtomicU64,
    /// Where the running pipeline started.
    floor: AtomicU64,
    /// Mark just past the last `stream-ended` line read; `u64::MAX` before.
    ended_at: AtomicU64,
    /// Stop reading: a signal came.
    stop: AtomicBool,
    /// The sinks are running (readiness).
    pub(crate) ready: AtomicBool,
    pub(crate) events_read: AtomicU64,
    pub(crate) invalid: AtomicU64,
    saves: Mutex<Saves>,
    stopper: Mutex<Option<Stopper>>,
    drain_timeout: Mutex<Duration>,
}

/// The checkpointing state.
struct Saves {
    /// The last mark saved.
    saved: Option<u64>,
    /// File identities by generation.
    files: HashMap<u64, FileId>,
    /// A save failed and was reported; said again only once it works again.
    failing: bool,
}

impl Shared {
    /// Saves the checkpoint if the sinks got further than the last save; `sync` (at the end)
    /// also writes it to disk, even when it did not move.
    fn save(&self, progress: &Progress, sync: bool) {
        let read = self.read.load(Ordering::Acquire);
        let position = progress.position(self.floor.load(Ordering::Acquire), read);
        let mut saves = self.saves.lock().unwrap_or_else(PoisonError::into_inner);
        if saves
            .saved
            .is_some_and(|s| s > position || (s == position && !sync))
        {
            return;
        }
        let (generation, offset) = tail::split(position);
        let Some(file) = saves.files.get(&generation).copied() else {
            return;
        };
        let checkpoint = Checkpoint {
            version: checkpoint::VERSION,
            path: self.events_path.clone(),
            file,
            offset,
            ended: self.ended_at.load(Ordering::Acquire) == position,
        };
        match checkpoint.save(&self.checkpoint_path, sync) {
            Ok(()) => {
                saves.saved = Some(position);
                if std::mem::take(&mut saves.failing) {
                    tracing::info!(
                        "{}: checkpoint saved again.",
                        self.checkpoint_path.display()
                    );
                }
                // Older generations can no longer be needed.
                saves.files.retain(|&g, _| g >= generation);
            }
            Err(e) if !saves.failing => {
                saves.failing = true;
                tracing::error!(
                    error = %e,
                    "{}: cannot save the checkpoint: {e}; delivery goes on, but a restart would deliver again what was delivered since the last save.",
                    self.checkpoint_path.display()
                );
            }
            Err(_) => {}
        }
    }

    fn set_file(&self, generation: u64, id: FileId) {
        self.saves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .files
            .insert(generation, id);
    }

    fn saved(&self) -> Option<u64> {
        self.saves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saved
    }

    /// The byte offset of the last saved checkpoint.
    pub(crate) fn saved_offset(&self) -> Option<u64> {
        self.saved().map(|m| tail::split(m).1)
    }
}

/// The sinks of one settings version, fed through one publisher.
struct Session {
    publisher: Publisher,
    pipeline: Pipeline,
}

impl Session {
    fn start(settings: &Settings, shared: &Arc<Shared>) -> Result<Self, String> {
        let mut publisher = Publisher::new();
        let mut options = settings.pipeline;
        options.durable = true;
        let saver = shared.clone();
        let pipeline = Pipeline::start_with(
            &settings.sinks,
            &mut publisher,
            options,
            Some(Arc::new(move |progress: &Progress| {
                saver.save(progress, false)
            })),
        )
        .map_err(|e| e.to_string())?;
        *shared
            .stopper
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(pipeline.stopper());
        *shared
            .drain_timeout
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = options.drain_timeout;
        if shared.stop.load(Ordering::Acquire) {
            pipeline.stopper().stop_within(options.drain_timeout);
        }
        shared.ready.store(true, Ordering::Release);
        Ok(Self {
            publisher,
            pipeline,
        })
    }

    /// Closes the queues and waits for the sinks: without limit when the stream ended (only
    /// a signal's deadline cuts it short), within the drain deadline otherwise. Saves the
    /// checkpoint and logs the summaries.
    fn end(self, shared: &Shared, patient: bool) -> Vec<Summary> {
        shared.ready.store(false, Ordering::Release);
        self.publisher.close();
        let progress = self.pipeline.progress();
        let summaries = if patient {
            self.pipeline.finish()
        } else {
            self.pipeline.shutdown()
        };
        shared.save(&progress, true);
        for summary in &summaries {
            if summary.failed + summary.dropped + summary.undelivered > 0 {
                tracing::warn!("{summary}");
            } else {
                tracing::info!("{summary}");
            }
        }
        summaries
    }
}

/// Why a wait ended.
#[derive(Debug, Default)]
struct Dirty {
    /// Something happened in the settings' directory.
    settings: AtomicBool,
}

/// The claim a running sidecar keeps next to the events file it follows.
pub fn claim_path(events: &Path) -> PathBuf {
    let mut path = events.as_os_str().to_owned();
    path.push(".sidecar");
    PathBuf::from(path)
}

/// Removes the claim when the sidecar ends, however it ends (short of a kill: a restarted
/// sidecar claims the file again).
struct Claim(PathBuf);

impl Claim {
    fn take(events: &Path) -> std::io::Result<Self> {
        let path = claim_path(events);
        let text = serde_json::json!({
            "pid": std::process::id(),
            "host": crate::sys::node(),
        });
        std::fs::write(&path, format!("{text}\n"))?;
        Ok(Self(path))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the sidecar; returns the process exit code.
pub fn run(options: &Options) -> u8 {
    let mut settings = match Settings::load_for_use(&options.settings) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let saved = match Checkpoint::load(&options.checkpoint) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    if already_delivered(options, saved.as_ref()) {
        tracing::info!(
            "{}: the run's stream ended and was delivered (checkpoint {}); nothing to do.",
            options.events.display(),
            options.checkpoint.display()
        );
        return 0;
    }
    let _claim = match Claim::take(&options.events) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                "{}: cannot claim the events file for delivery: {e}; the sidecar needs write access to its directory.",
                claim_path(&options.events).display()
            );
            return 1;
        }
    };
    let (wake_tx, wake) = sync_channel::<()>(1);
    let shared = Arc::new(Shared {
        checkpoint_path: options.checkpoint.clone(),
        events_path: options.events.clone(),
        read: AtomicU64::new(0),
        floor: AtomicU64::new(0),
        ended_at: AtomicU64::new(u64::MAX),
        stop: AtomicBool::new(false),
        ready: AtomicBool::new(false),
        events_read: AtomicU64::new(0),
        invalid: AtomicU64::new(0),
        saves: Mutex::new(Saves {
            saved: None,
            files: HashMap::new(),
            failing: false,
        }),
        stopper: Mutex::new(None),
        drain_timeout: Mutex::new(settings.pipeline.drain_timeout),
    });
    if let Err(e) = handle_signals(shared.clone(), wake_tx.clone()) {
        tracing::error!("Cannot handle signals: {e}");
        return 1;
    }
    if let Some(addr) = options.health {
        match health::serve(addr, shared.clone()) {
            Ok(bound) => {
                tracing::info!("Health probes answered at http://{bound}/healthz and /readyz.")
            }
            Err(e) => {
                tracing::error!("Cannot serve health probes at {addr}: {e}");
                return 1;
            }
        }
    }
    let dirty = Arc::new(Dirty::default());
    let _watcher = if options.notify {
        watch(options, &dirty, wake_tx)
    } else {
        tracing::info!(
            "Looking for changes every {:.1}s (no file notifications).",
            options.poll_interval.as_secs_f64()
        );
        poll_settings(&dirty);
        None
    };
    let mut session = match Session::start(&settings, &shared) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("Cannot start the sinks of {}: {e}", settings.path.display());
            return 1;
        }
    };
    let mut settings_text = std::fs::read(&options.settings).ok();
    if settings.sinks.is_empty() {
        tracing::warn!(
            "{} names no sink: the events are read and the checkpoint moves on, but nothing is delivered.",
            settings.path.display()
        );
    }
    tracing::info!(
        "Delivering the events of {} to {} sink(s) of {}...",
        options.events.display(),
        settings.sinks.len(),
        settings.path.display()
    );
    let mut tail: Option<Tail> = None;
    let mut waiting_said = false;
    // Whether the last line read ended a run's stream.
    let mut at_end = false;
    let mut failed = false;
    // A native sidecar's last look at the file, after the signal.
    let mut last_pass = false;
    let mut end_said = false;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            // The kubelet stops a native sidecar once the runner has ended: the file is
            // complete, so read it to its end before draining.
            if !options.native || last_pass || tail.is_none() {
                break;
            }
            last_pass = true;
        }
        if dirty.settings.swap(false, Ordering::AcqRel)
            && let Some(next) = changed_settings(&options.settings, &mut settings_text)
        {
            tracing::info!(
                "{}: the settings changed; the running sinks deliver what they hold, then the new ones take over.",
                options.settings.display()
            );
            settings = next;
            session = match switch(session, &settings, &shared, tail.as_mut(), &options.events) {
                Ok(s) => s,
                Err(code) => return code,
            };
        }
        if tail.is_none() {
            match Tail::open(&options.events, saved.as_ref(), 0) {
                Ok(Some(t)) => {
                    let start = t.position();
                    shared.floor.store(start, Ordering::Release);
                    shared.read.store(start, Ordering::Release);
                    tail = Some(t);
                }
                Ok(None) => {
                    if !waiting_said {
                        tracing::info!("Waiting for {} to appear...", options.events.display());
                        waiting_said = true;
                    }
                    wait(&wake, options.poll_interval);
                    continue;
                }
                Err(e) => {
                    unreadable(&options.events, &e);
                    failed = true;
                    break;
                }
            }
        }
        let Some(t) = tail.as_mut() else { continue };
        shared.set_file(t.generation(), t.id());
        let read = t.read(|line| {
            at_end = offer(line, &options.events, &session.publisher, &shared);
            last_pass || !shared.stop.load(Ordering::Relaxed)
        });
        let at_eof = match read {
            Ok(eof) => eof,
            Err(e) => {
                unreadable(&options.events, &e);
                failed = true;
                break;
            }
        };
        shared.set_file(t.generation(), t.id());
        if !at_eof {
            continue;
        }
        if last_pass {
            break;
        }
        match t.check() {
            Ok(Change::None) => {}
            Ok(Change::More) => continue,
            Ok(Change::Truncated | Change::Replaced { .. }) => {
                at_end = false;
                continue;
            }
            Err(e) => {
                unreadable(&options.events, &e);
                failed = true;
                break;
            }
        }
        if at_end && options.native {
            if !end_said {
                tracing::info!(
                    "The run's stream ended; delivering what remains, then waiting for the pod to stop (native sidecar)."
                );
                end_said = true;
            }
        } else if at_end {
            tracing::info!("The run's stream ended; delivering what remains, then exiting.");
            break;
        } else {
            end_said = false;
        }
        // Lines the sinks filter out move the checkpoint too.
        shared.save(&session.pipeline.progress(), false);
        wait(&wake, options.poll_interval);
    }
    let stopped = shared.stop.load(Ordering::Acquire);
    let summaries = session.end(&shared, !stopped && !failed);
    let read = shared.events_read.load(Ordering::Relaxed);
    let invalid = shared.invalid.load(Ordering::Relaxed);
    let position = shared.read.load(Ordering::Acquire);
    let complete = shared.saved() == Some(position);
    tracing::info!(
        "Sidecar: {read} event(s) read from {}, {invalid} invalid line(s); checkpoint at byte {} ({}).",
        options.events.display(),
        shared.saved_offset().unwrap_or(0),
        if complete {
            "everything read is delivered"
        } else {
            "the rest is delivered at the next start"
        }
    );
    let lost = summaries.iter().any(|s| s.failed + s.dropped > 0);
    if failed || invalid > 0 || lost || !complete {
        1
    } else {
        0
    }
}

/// Ends `old` (its sinks deliver what they hold, within the drain deadline) and starts the sinks
/// of `settings`, reading again what the old ones did not deliver.
fn switch(
    old: Session,
    settings: &Settings,
    shared: &Arc<Shared>,
    tail: Option<&mut Tail>,
    events: &Path,
) -> Result<Session, u8> {
    old.end(shared, false);
    let position = shared
        .saved()
        .unwrap_or_else(|| shared.floor.load(Ordering::Acquire));
    let start = match tail {
        Some(t) => {
            if position < t.position() {
                let (generation, offset) = tail::split(position);
                if generation == t.generation() {
                    t.rewind(offset).map_err(|e| {
                        tracing::error!("{}: {e}", events.display());
                        1
                    })?;
                } else {
                    tracing::warn!(
                        "{}: the old sinks left events of a replaced file undelivered; they cannot be read again.",
                        events.display()
                    );
                }
            }
            t.position()
        }
        None => 0,
    };
    shared.floor.store(start, Ordering::Release);
    shared.read.store(start, Ordering::Release);
    Session::start(settings, shared).map_err(|e| {
        tracing::error!("Cannot start the sinks of {}: {e}", settings.path.display());
        1
    })
}

fn unreadable(path: &Path, e: &std::io::Error) {
    tracing::error!("{}: cannot read the events file: {e}", path.display());
}

/// Whether the checkpoint says the file's stream ended and everything in it was delivered.
fn already_delivered(options: &Options, saved: Option<&Checkpoint>) -> bool {
    let Some(saved) = saved.filter(|c| c.ended) else {
        return false;
    };
    let Ok(file) = std::fs::File::open(&options.events) else {
        return false;
    };
    let (Ok(id), Ok(meta)) = (FileId::of(&file), file.metadata()) else {
        return false;
    };
    saved.file.names(&id) && meta.len() == saved.offset
}

/// Parses a line and hands the event to the sinks (waiting for room); returns whether it
/// ended a run's stream.
fn offer(line: Line<'_>, path: &Path, publisher: &Publisher, shared: &Shared) -> bool {
    let (event, at) = match line {
        Line::Complete(bytes, at) => match serde_json::from_slice::<Event>(bytes) {
            Ok(event) => (event, at),
            Err(e) => {
                shared.invalid.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "{}, line ending at byte {}: not a chaosflow event ({e}); skipped. Only `chaosflow run --events-path` should write this file.",
                    path.display(),
                    tail::split(at).1
                );
                shared.read.store(at, Ordering::Release);
                return false;
            }
        },
        Line::TooLong(at) => {
            shared.invalid.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "{}, line ending at byte {}: longer than {} MiB; skipped.",
                path.display(),
                tail::split(at).1,
                tail::MAX_LINE >> 20
            );
            shared.read.store(at, Ordering::Release);
            return false;
        }
    };
    let ended = event.name == names::STREAM_ENDED;
    publisher.publish_blocking(Arc::new(event), at);
    shared.events_read.fetch_add(1, Ordering::Relaxed);
    if ended {
        shared.ended_at.store(at, Ordering::Release);
    }
    // After the queues took it: a checkpoint up to `at` now accounts for this event.
    shared.read.store(at, Ordering::Release);
    ended
}

/// The new settings, when the file's content changed and is valid; `None` otherwise (an
/// invalid change is reported once and the running sinks stay).
fn changed_settings(path: &Path, last: &mut Option<Vec<u8>>) -> Option<Settings> {
    let text = std::fs::read(path).ok()?;
    if last.as_deref() == Some(&text[..]) {
        return None;
    }
    *last = Some(text);
    match Settings::load_for_use(path) {
        Ok(settings) => Some(settings),
        Err(e) => {
            tracing::error!(
                "{e}\nThe new settings are not applied; the running sinks stay until a valid version arrives."
            );
            None
        }
    }
}

/// Waits for a notification, at most `poll`.
fn wait(wake: &Receiver<()>, poll: Duration) {
    let _ = wake.recv_timeout(poll);
}

fn nudge(wake: &SyncSender<()>) {
    match wake.try_send(()) {
        Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
    }
}

/// Watches the events file's and the settings file's directories (a Secret volume changes by
/// swapping a symlink in the directory, not by writing the file). `None` when inotify is not
/// available: the poll alone then finds changes.
fn watch(
    options: &Options,
    dirty: &Arc<Dirty>,
    wake: SyncSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let settings_dir = parent(&options.settings);
    let flags = dirty.clone();
    let in_settings = settings_dir.clone();
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && event.paths.iter().any(|p| p.starts_with(&in_settings))
            {
                flags.settings.store(true, Ordering::Release);
            }
            nudge(&wake);
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::info!(
                    "File notifications are unavailable ({e}); looking for changes every {:.1}s.",
                    options.poll_interval.as_secs_f64()
                );
                return None;
            }
        };
    let mut dirs = vec![parent(&options.events)];
    if !dirs.contains(&settings_dir) {
        dirs.push(settings_dir);
    }
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            tracing::info!(
                "Cannot watch {} ({e}); looking for changes there every {:.1}s.",
                dir.display(),
                options.poll_interval.as_secs_f64()
            );
        }
    }
    poll_settings(dirty);
    Some(watcher)
}

/// Looks at the settings every 10 s: a change missed by the watcher, or no watcher at all.
fn poll_settings(dirty: &Arc<Dirty>) {
    let flags = dirty.clone();
    let _ = std::thread::Builder::new()
        .name("chaosflow-settings-poll".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(10));
                flags.settings.store(true, Ordering::Release);
            }
        });
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Handles SIGTERM and SIGINT on a thread of their own: stop reading, give the sinks the drain
/// deadline, wake the reader. The handlers are installed before this returns.
fn handle_signals(shared: Arc<Shared>, wake: SyncSender<()>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (mut term, mut int) = {
        let _in_runtime = runtime.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    std::thread::Builder::new()
        .name("chaosflow-signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    let within = *shared
                        .drain_timeout
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    tracing::info!(
                        "{name} received; the sinks get {:.0}s to deliver what they hold.",
                        within.as_secs_f64()
                    );
                    shared.stop.store(true, Ordering::Release);
                    if let Some(stopper) = &*shared
                        .stopper
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                    {
                        stopper.stop_within(within);
                    }
                    nudge(&wake);
                }
            });
        })?;
    Ok(())
}
