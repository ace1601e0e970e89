//! The sidecar's checkpoint: which events file, and how far into it every sink has handled
//! the events.
//!
//! A small versioned JSON document, written to `<path>.tmp`, then renamed over `<path>`: a
//! crash of the process at any moment leaves the old checkpoint or the new one, never half of
//! one. Only the last save before a clean exit is synced to disk: in a pod the events file and
//! the checkpoint live on the same volume and share its fate, and a sync after every batch
//! would cost more than the delivery itself.
//! The file is named by its identity (device, inode) and a fingerprint of its first line, so a
//! new file that reuses the inode of a deleted one is not mistaken for it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The checkpoint format written here; a greater one is refused rather than guessed at.
pub const VERSION: u32 = 1;

/// Bytes of the first line that make a file's fingerprint.
const FINGERPRINT_BYTES: usize = 4096;

/// Which file: stable while it is appended to, renamed or moved within its filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// FNV-1a of the first line (up to 4 KiB), once that line is complete; `None` before.
    pub fingerprint: Option<u64>,
}

impl FileId {
    /// The identity of an open file; its first line is read with positioned reads, so the
    /// file's cursor does not move.
    pub fn of(file: &File) -> std::io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint: fingerprint(file)?,
        })
    }

    /// Whether `self` (saved) names the file `now`: same device and inode, and the same first
    /// line when the saved one had one.
    pub fn names(&self, now: &FileId) -> bool {
        self.dev == now.dev
            && self.ino == now.ino
            && (self.fingerprint.is_none() || self.fingerprint == now.fingerprint)
    }
}

/// FNV-1a of the file's first line, when it is complete.
fn fingerprint(file: &File) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; FINGERPRINT_BYTES];
    let mut len = 0;
    while len < head.len() {
        match file.read_at(&mut head[len..], len as u64)? {
            0 => break,
            n => len += n,
        }
    }
    let head = &head[..len];
    let line = match head.iter().position(|&b| b == b'\n') {
        Some(end) => &head[..=end],
        // A first line longer than the window is still a stable prefix.
        None if len == FINGERPRINT_BYTES => head,
        None => return Ok(None),
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in line {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(Some(hash))
}

/// What the sidecar saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// [`VERSION`].
    pub version: u32,
    /// The events file followed, for whoever reads the checkpoint.
    pub path: PathBuf,
    /// Its identity.
    pub file: FileId,
    /// Every event before this byte offset has been handled by every sink.
    pub offset: u64,
    /// The last handled event was the end of a run's stream (`stream-ended`) and nothing
    /// follows it yet: a restarted sidecar has nothing left to deliver.
    pub ended: bool,
}

/// A checkpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// It could not be read.
    #[error("{path}: cannot read the checkpoint: {source}")]
    Read {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a checkpoint this version understands.
    #[error(
        "{path}: not a valid chaosflow checkpoint ({reason}); remove it to start over from the \
         beginning of the events file (receivers may then see events again, with the same ids)"
    )]
    Invalid {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Checkpoint {
    /// Reads the checkpoint at `path`; `None` when there is none yet.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read, or is not a checkpoint of a known version.
    pub fn load(path: &Path) -> Result<Option<Self>, CheckpointError> {
        let mut text = String::new();
        match File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let invalid = |reason: String| CheckpointError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => {
                return Err(invalid(format!(
                    "version {v}, this chaosflow reads {VERSION}"
                )));
            }
            None => return Err(invalid("no version".into())),
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| invalid(e.to_string()))
    }

    /// Saves the checkpoint at `path` atomically (temporary file, rename), synced to disk
    /// first when `sync` is set.
    ///
    /// # Errors
    ///
    /// The directory is not writable or the disk is full.
    pub fn save(&self, path: &Path, sync: bool) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let mut file = File::create(&tmp)?;
        file.write_all(&text)?;
        if sync {
            // Without it a power loss could leave the renamed file empty.
            file.sync_data()?;
        }
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            path: dir.join("events.jsonl"),
            file: FileId {
                dev: 1,
                ino: 2,
                fingerprint: Some(3),
            },
            offset: 42,
            ended: false,
        }
    }

    #[test]
    fn saves_atomically_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.checkpoint");
        assert!(Checkpoint::load(&path).unwrap().is_none());
        let checkpoint = sample(dir.path());
        checkpoint.save(&path, true).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(checkpoint));
        assert!(!dir.path().join("events.checkpoint.tmp").exists());
    }

    #[test]
    fn refuses_what_it_cannot_trust_and_says_how_to_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.checkpoint");
        for text in [
            "{\"version\":1,\"path\":",
            "{\"version\":2,\"offset\":3}",
            "{\"offset\":3}",
        ] {
            std::fs::write(&path, text).unwrap();
            let error = Checkpoint::load(&path).unwrap_err().to_string();
            assert!(error.starts_with(&path.display().to_string()), "{error}");
            assert!(error.contains("remove it to start over"), "{error}");
        }
        assert!(
            Checkpoint::load(&path)
                .unwrap_err()
                .to_string()
                .contains("no version")
        );
    }

    #[test]
    fn a_file_is_known_by_inode_and_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"partial").unwrap();
        let partial = FileId::of(&File::open(&path).unwrap()).unwrap();
        assert_eq!(partial.fingerprint, None);
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n").unwrap();
        let full = FileId::of(&File::open(&path).unwrap()).unwrap();
        assert!(full.fingerprint.is_some());
        assert!(
            partial.names(&full),
            "a saved id without a first line matches"
        );
        assert!(full.names(&full));
        std::fs::write(&path, "{\"c\":3}\n").unwrap();
        let rewritten = FileId::of(&File::open(&path).unwrap()).unwrap();
        assert!(!full.names(&rewritten), "same inode, another first line");
    }
}
