//! The `exec` sink: any program, fed the events as JSON Lines on its standard input.
//!
//! ```yaml
//! sinks:
//!   - type: exec
//!     command: ["python3", "/opt/hooks/record.py", "--verbose"]
//! ```
//!
//! The program starts with the first event and keeps running; its standard error goes to the
//! log, line by line, its standard output is discarded. If it exits, the batch it missed is
//! retried and the program started again, with backoff. When the stream ends its standard
//! input is closed, and it gets a few seconds to finish.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::{Batching, BuildError, Event, Problem, SendError, Sink};

/// How long the program may take to exit once its input is closed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Configuration of an `exec` sink.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// Event names to send; all when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

impl Config {
    /// Checks the configuration without looking for the program.
    pub fn validate(&self) -> Vec<Problem> {
        match self.command.first() {
            None => vec![Problem::new(
                "command",
                "needs at least the program, e.g. [\"/opt/hooks/record\"]",
            )],
            Some(p) if p.is_empty() => {
                vec![Problem::new("command[0]", "the program cannot be empty")]
            }
            Some(_) => Vec::new(),
        }
    }

    /// Prepares the sink; the program starts with the first batch.
    ///
    /// # Errors
    ///
    /// None today; kept for symmetry with the other sinks.
    pub fn build(&self, name: &str) -> Result<ExecSink, BuildError> {
        Ok(ExecSink {
            name: name.to_owned(),
            command: self.command.clone(),
            child: None,
            stdin: None,
            buffer: Vec::new(),
        })
    }
}

/// A running `exec` sink.
pub struct ExecSink {
    name: String,
    command: Vec<String>,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    buffer: Vec<u8>,
}

impl ExecSink {
    fn start(&mut self) -> Result<(), SendError> {
        let mut child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SendError::transient(format!("cannot start {}: {e}", self.command[0])))?;
        if let Some(stderr) = child.stderr.take() {
            let name = self.name.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::warn!(target: "chaosflow::sinks", sink = %name, "{line}");
                }
            });
        }
        self.stdin = child.stdin.take();
        self.child = Some(child);
        Ok(())
    }

    /// Forgets a program that exited or stopped reading, reaping it.
    async fn reset(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

impl Sink for ExecSink {
    fn batching(&self) -> Batching {
        Batching {
            max_events: 256,
            max_wait: Duration::ZERO,
        }
    }

    async fn send(&mut self, events: &[Arc<Event>]) -> Result<(), SendError> {
        let exited = match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        };
        if let Some(status) = exited {
            tracing::warn!(sink = %self.name, %status, "Sink {}: its program exited ({status}); restarting it.", self.name);
            self.reset().await;
        }
        if self.child.is_none() {
            self.start()?;
        }
        self.buffer.clear();
        for event in events {
            serde_json::to_writer(&mut self.buffer, event.as_ref())
                .expect("an event always serializes");
            self.buffer.push(b'\n');
        }
        let stdin = self.stdin.as_mut().expect("a started program has a stdin");
        let written = async {
            stdin.write_all(&self.buffer).await?;
            stdin.flush().await
        };
        if let Err(e) = written.await {
            self.reset().await;
            return Err(SendError::transient(format!(
                "{} stopped reading its input ({e}); it will be restarted",
                self.command[0]
            )));
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SendError> {
        // End of input: the program finishes on its own, or is stopped.
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                Ok(Ok(status)) if !status.success() => {
                    tracing::warn!(sink = %self.name, %status, "Sink {}: its program failed ({status}).", self.name);
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill().await;
                    return Err(SendError::permanent(format!(
                        "{} did not exit within {}s of the end of its input",
                        self.command[0],
                        EXIT_GRACE.as_secs()
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: u64) -> Arc<Event> {
        Arc::new(Event {
            id: format!("r:{seq}"),
            run_id: "r".into(),
            seq,
            ts: "2026-11-25T08:41:23.123456Z".into(),
            name: "activity-completed".into(),
            phase: "method".into(),
            payload: json!({"n": seq}),
            error: None,
        })
    }

    #[tokio::test]
    async fn feeds_a_program_and_restarts_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        // Records its input; exits after its first line the first time it runs.
        let script = format!(
            "if [ -f {dir}/ran ]; then cat >> {out}; else touch {dir}/ran; head -n 1 >> {out}; fi",
            dir = dir.path().display(),
            out = out.display()
        );
        let config = Config {
            command: vec!["sh".into(), "-c".into(), script],
            events: None,
        };
        assert!(config.validate().is_empty());
        let mut sink = config.build("exec#0").unwrap();
        sink.send(&[event(0)]).await.unwrap();
        // Let the first program read its line and exit.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut result = sink.send(&[event(1)]).await;
        if result.is_err() {
            result = sink.send(&[event(1)]).await;
        }
        result.unwrap();
        sink.send(&[event(2)]).await.unwrap();
        sink.close().await.unwrap();
        let seqs: Vec<u64> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| Event::from_json_line(l).unwrap().seq)
            .collect();
        assert_eq!(seqs, [0, 1, 2]);
    }

    #[test]
    fn needs_a_program() {
        let config = Config {
            command: vec![],
            events: None,
        };
        assert_eq!(config.validate()[0].path, "command");
    }
}
