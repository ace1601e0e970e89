//! The `file` sink: events as JSON Lines in a file, rotated and pruned by tracing-appender.
//!
//! ```yaml
//! sinks:
//!   - type: file
//!     path: /var/log/chaosflow/events.jsonl
//!     rotation: daily        # never (default), hourly or daily
//!     retention: 7           # rotated files to keep (default: all)
//! ```
//!
//! Without rotation the events go to `path` itself. With rotation they go to dated files beside
//! it (`events.2026-11-25.jsonl`) and `path` is a symbolic link to the current one. The file is
//! flushed after every batch and synced to disk when a stream ends and when the sink closes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing_appender::rolling::{RollingFileAppender, Rotation as AppenderRotation};

use crate::{Batching, BuildError, Event, Problem, SendError, Sink};

/// When to start a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    /// One file, forever.
    #[default]
    Never,
    /// A new file every hour.
    Hourly,
    /// A new file every day.
    Daily,
}

/// Configuration of a `file` sink.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to write (the current file when rotating).
    pub path: PathBuf,
    /// When to start a new file.
    #[serde(default)]
    pub rotation: Rotation,
    /// How many rotated files to keep; all when absent.
    #[serde(default)]
    pub retention: Option<usize>,
    /// Event names to write; all when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

impl Config {
    /// Checks the configuration without touching the file system.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.path.file_name().is_none() {
            problems.push(Problem::new(
                "path",
                "must name a file, such as /var/log/chaosflow/events.jsonl",
            ));
        }
        if self.retention == Some(0) {
            problems.push(Problem::new(
                "retention",
                "must keep at least 1 file (leave it out to keep all)",
            ));
        }
        if self.retention.is_some() && self.rotation == Rotation::Never {
            problems.push(Problem::new(
                "retention",
                "only applies with rotation hourly or daily",
            ));
        }
        problems
    }

    /// Opens (creates) the file.
    ///
    /// # Errors
    ///
    /// The directory or the file cannot be created.
    pub fn build(&self) -> Result<FileSink, BuildError> {
        let directory = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        let file_name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| BuildError(format!("{}: not a file path", self.path.display())))?;
        let (stem, extension) = match file_name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), Some(ext.to_owned())),
            _ => (file_name.clone(), None),
        };
        let mut builder = RollingFileAppender::builder().filename_prefix(stem);
        if let Some(ext) = extension {
            builder = builder.filename_suffix(ext);
        }
        builder = match self.rotation {
            Rotation::Never => builder.rotation(AppenderRotation::NEVER),
            Rotation::Hourly => builder
                .rotation(AppenderRotation::HOURLY)
                .latest_symlink(&file_name),
            Rotation::Daily => builder
                .rotation(AppenderRotation::DAILY)
                .latest_symlink(&file_name),
        };
        if let Some(keep) = self.retention {
            builder = builder.max_log_files(keep);
        }
        let writer = builder
            .build(&directory)
            .map_err(|e| BuildError(format!("{}: {e}", self.path.display())))?;
        Ok(FileSink {
            writer,
            current: self.path.clone(),
            buffer: Vec::new(),
        })
    }
}

/// A running `file` sink.
pub struct FileSink {
    writer: RollingFileAppender,
    /// The path that always names the current file (the file, or the link to it).
    current: PathBuf,
    buffer: Vec<u8>,
}

impl FileSink {
    fn sync(&mut self) -> Result<(), SendError> {
        self.writer.flush().map_err(|e| {
            SendError::transient(format!("cannot flush {}: {e}", self.current.display()))
        })?;
        // The appender keeps its file to itself; any descriptor of the file syncs its data.
        let file = std::fs::File::open(&self.current).map_err(|e| {
            SendError::transient(format!("cannot sync {}: {e}", self.current.display()))
        })?;
        match file.sync_data() {
            Ok(()) => Ok(()),
            // A pipe or terminal (`/dev/stdout` in a container) has nothing to sync.
            Err(_) if file.metadata().is_ok_and(|m| !m.is_file()) => Ok(()),
            Err(e) => Err(SendError::transient(format!(
                "cannot sync {}: {e}",
                self.current.display()
            ))),
        }
    }
}

impl Sink for FileSink {
    fn batching(&self) -> Batching {
        Batching {
            max_events: 512,
            max_wait: Duration::ZERO,
        }
    }

    async fn send(&mut self, events: &[Arc<Event>]) -> Result<(), SendError> {
        self.buffer.clear();
        for event in events {
            serde_json::to_writer(&mut self.buffer, event.as_ref())
                .expect("an event always serializes");
            self.buffer.push(b'\n');
        }
        self.writer
            .write_all(&self.buffer)
            .and_then(|()| self.writer.flush())
            .map_err(|e| {
                SendError::transient(format!("cannot write {}: {e}", self.current.display()))
            })?;
        if events.iter().any(|e| e.name == "stream-ended") {
            self.sync()?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SendError> {
        self.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: u64, name: &str) -> Arc<Event> {
        Arc::new(Event {
            id: format!("r:{seq}"),
            run_id: "r".into(),
            seq,
            ts: "2026-11-25T08:41:23.123456Z".into(),
            name: name.into(),
            phase: "run".into(),
            payload: json!({"n": seq}),
            error: None,
        })
    }

    #[tokio::test]
    async fn writes_json_lines_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/events.jsonl");
        let config = Config {
            path: path.clone(),
            rotation: Rotation::Never,
            retention: None,
            events: None,
        };
        assert!(config.validate().is_empty());
        let mut sink = config.build().unwrap();
        sink.send(&[event(0, "run-started"), event(1, "stream-ended")])
            .await
            .unwrap();
        sink.close().await.unwrap();
        let mut sink = config.build().unwrap();
        sink.send(&[event(2, "run-started")]).await.unwrap();
        let lines: Vec<Event> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| Event::from_json_line(l).unwrap())
            .collect();
        assert_eq!(lines.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[tokio::test]
    async fn rotation_keeps_a_link_to_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let config = Config {
            path: path.clone(),
            rotation: Rotation::Daily,
            retention: Some(3),
            events: None,
        };
        let mut sink = config.build().unwrap();
        sink.send(&[event(0, "run-started")]).await.unwrap();
        sink.close().await.unwrap();
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let target = std::fs::read_link(&path).unwrap();
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("events.")
                && name.ends_with(".jsonl")
                && name.len() > "events..jsonl".len()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn validation() {
        let config = Config {
            path: "/".into(),
            rotation: Rotation::Never,
            retention: Some(2),
            events: None,
        };
        let paths: Vec<_> = config.validate().into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["path", "retention"]);
    }
}
