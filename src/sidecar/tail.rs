//! Following the runner's events file: whole lines only, across truncation and replacement.
//!
//! [`Tail`] reads what has been appended since its last call and hands out complete lines with
//! the offset just past each; a partial last line is held until its newline arrives. It does not
//! wait: the sidecar decides when to look again (a file-system notification or a poll).
//!
//! - Truncation (the file is shorter than what was read, as `copytruncate` does, or its first
//!   line changed): reading starts again at 0.
//! - Replacement (the path now names another file, as `mv` + create does): the old file is
//!   read to its end first, then the new one from 0.
//!
//! Each file followed gets a generation number, and a line's mark is `generation << 40 |
//! offset`, so marks only grow across files (offsets up to 1 TiB per file).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::checkpoint::{Checkpoint, FileId};

/// Bits of a mark that hold the offset.
const OFFSET_BITS: u32 = 40;

/// Longest line accepted: the `run-completed` event carries the whole journal, which can be
/// large, but not this large.
pub const MAX_LINE: usize = 64 << 20;

/// The mark of `offset` in file generation `generation`.
pub fn mark(generation: u64, offset: u64) -> u64 {
    (generation << OFFSET_BITS) | offset
}

/// The generation and offset of a mark.
pub fn split(mark: u64) -> (u64, u64) {
    (mark >> OFFSET_BITS, mark & ((1 << OFFSET_BITS) - 1))
}

/// What a look at the file found, besides lines.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing unusual.
    None,
    /// More was appended since the last read: read again.
    More,
    /// The file was truncated; reading started again at 0.
    Truncated,
    /// The path names a new file; the old one was read to its end.
    Replaced {
        /// Bytes of an unfinished last line of the old file, which will never be completed.
        lost_partial: usize,
    },
}

/// A followed events file.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    file: File,
    id: FileId,
    generation: u64,
    /// Offset just past the last complete line handed out.
    offset: u64,
    /// Bytes read after `offset`: the start of a line whose newline has not arrived.
    partial: Vec<u8>,
    /// Discarding the rest of a line longer than [`MAX_LINE`].
    skipping: bool,
    chunk: Box<[u8]>,
}

/// A line, or a problem with one.
#[derive(Debug)]
pub enum Line<'a> {
    /// A complete line (newline excluded) and the mark just past it.
    Complete(&'a [u8], u64),
    /// A line longer than [`MAX_LINE`] was skipped; it ended at this mark.
    TooLong(u64),
}

impl Tail {
    /// Opens `path` if it exists, resuming after `checkpoint` when that names this file and
    /// the file is still as long; else from the start (the reason is logged).
    ///
    /// # Errors
    ///
    /// The file exists but cannot be opened or read.
    pub fn open(
        path: &Path,
        checkpoint: Option<&Checkpoint>,
        generation: u64,
    ) -> std::io::Result<Option<Self>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let id = FileId::of(&file)?;
        let len = file.metadata()?.len();
        let offset = match checkpoint {
            Some(c) if c.file.names(&id) && c.offset <= len => c.offset,
            Some(c) if c.file.names(&id) => {
                tracing::warn!(
                    "{}: the file is shorter than the checkpoint ({len} < {} bytes): it was truncated; reading it from the start.",
                    path.display(),
                    c.offset
                );
                0
            }
            Some(_) => {
                tracing::info!(
                    "{}: not the file of the checkpoint (another inode or first line): reading it from the start.",
                    path.display()
                );
                0
            }
            None => 0,
        };
        file.seek(SeekFrom::Start(offset))?;
        Ok(Some(Self {
            path: path.to_owned(),
            file,
            id,
            generation,
            offset,
            partial: Vec::new(),
            skipping: false,
            chunk: vec![0; 64 << 10].into_boxed_slice(),
        }))
    }

    /// The identity of the file followed (its fingerprint once its first line is complete).
    pub fn id(&mut self) -> FileId {
        if self.id.fingerprint.is_none()
            && let Ok(id) = FileId::of(&self.file)
        {
            self.id = id;
        }
        self.id
    }

    /// The file's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The mark just past the last complete line handed out.
    pub fn position(&self) -> u64 {
        mark(self.generation, self.offset)
    }

    /// Goes back to `offset` of the current file (to read again what a stopped pipeline did
    /// not deliver).
    ///
    /// # Errors
    ///
    /// The seek fails.
    pub fn rewind(&mut self, offset: u64) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.offset = offset;
        self.partial.clear();
        self.skipping = false;
        Ok(())
    }

    /// Reads what is there and calls `each` with every complete line, stopping early when it
    /// returns false. Returns whether the end of the file was reached.
    ///
    /// # Errors
    ///
    /// Reading fails.
    pub fn read(&mut self, mut each: impl FnMut(Line<'_>) -> bool) -> std::io::Result<bool> {
        loop {
            let n = match self.file.read(&mut self.chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut rest = &self.chunk[..n];
            while let Some(end) = memchr::memchr(b'\n', rest) {
                let (head, tail) = rest.split_at(end + 1);
                rest = tail;
                let skipped = std::mem::replace(&mut self.skipping, false);
                let line_len = self.partial.len() + head.len();
                self.offset += line_len as u64;
                let at = mark(self.generation, self.offset);
                let go_on = if skipped || line_len - 1 > MAX_LINE {
                    self.partial.clear();
                    each(Line::TooLong(at))
                } else if self.partial.is_empty() {
                    each(Line::Complete(&head[..head.len() - 1], at))
                } else {
                    self.partial.extend_from_slice(&head[..head.len() - 1]);
                    let go_on = each(Line::Complete(&self.partial, at));
                    self.partial.clear();
                    go_on
                };
                if !go_on {
                    // Read again from here next time.
                    let back = rest.len() as u64;
                    if back > 0 {
                        self.file.seek(SeekFrom::Current(-(back as i64)))?;
                    }
                    return Ok(false);
                }
            }
            if self.skipping {
                self.offset += rest.len() as u64;
            } else {
                self.partial.extend_from_slice(rest);
                if self.partial.len() > MAX_LINE {
                    // Counted into the offset now; the line's end reports it.
                    self.offset += self.partial.len() as u64;
                    self.partial = Vec::new();
                    self.skipping = true;
                }
            }
        }
    }

    /// At the end of the file: notices truncation and replacement, and follows them.
    ///
    /// # Errors
    ///
    /// The file or its replacement cannot be read.
    pub fn check(&mut self) -> std::io::Result<Change> {
        let read_to = self.offset + self.partial.len() as u64;
        let len = self.file.metadata()?.len();
        // Truncated and written again to the same length or more: only the first line tells.
        let rewritten = self.id.fingerprint.is_some()
            && FileId::of(&self.file)?.fingerprint != self.id.fingerprint;
        if len < read_to || rewritten {
            tracing::warn!(
                "{}: the file was truncated ({len} bytes now, {read_to} read) or rewritten; reading it again from the start.",
                self.path.display()
            );
            self.generation += 1;
            self.rewind(0)?;
            self.id = FileId::of(&self.file)?;
            return Ok(Change::Truncated);
        }
        if len > read_to {
            // More to read first: the caller reads, then looks again.
            return Ok(Change::More);
        }
        let replaced = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.ino() != self.id.ino || meta.dev() != self.id.dev,
            // Gone (moved away, not yet recreated): keep reading the old one.
            Err(_) => false,
        };
        if !replaced {
            return Ok(Change::None);
        }
        let Some(next) = Self::open(&self.path, None, self.generation + 1)? else {
            return Ok(Change::None);
        };
        let lost_partial = self.partial.len();
        if lost_partial > 0 {
            tracing::warn!(
                "{}: replaced while its last line was unfinished; {lost_partial} byte(s) of it are dropped.",
                self.path.display()
            );
        }
        tracing::info!(
            "{}: a new file replaced the old one; following it from the start.",
            self.path.display()
        );
        *self = next;
        Ok(Change::Replaced { lost_partial })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(tail: &mut Tail) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        tail.read(|line| {
            match line {
                Line::Complete(l, at) => out.push((String::from_utf8_lossy(l).into_owned(), at)),
                Line::TooLong(at) => out.push(("<too long>".into(), at)),
            }
            true
        })
        .unwrap();
        out
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn holds_a_partial_line_until_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        assert!(
            Tail::open(&path, None, 0).unwrap().is_none(),
            "not there yet"
        );
        append(&path, "one\ntw");
        let mut tail = Tail::open(&path, None, 0).unwrap().unwrap();
        assert_eq!(lines(&mut tail), vec![("one".into(), 4)]);
        assert_eq!(tail.position(), 4);
        append(&path, "o\nthree");
        assert_eq!(lines(&mut tail), vec![("two".into(), 8)]);
        assert_eq!(lines(&mut tail), vec![]);
        append(&path, "\n");
        assert_eq!(lines(&mut tail), vec![("three".into(), 14)]);
        assert_eq!(tail.check().unwrap(), Change::None);
    }

    #[test]
    fn stops_where_asked_and_resumes_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        append(&path, "a\nb\nc\n");
        let mut tail = Tail::open(&path, None, 0).unwrap().unwrap();
        let mut first = Vec::new();
        tail.read(|line| {
            if let Line::Complete(l, _) = line {
                first.push(l.to_vec());
            }
            false
        })
        .unwrap();
        assert_eq!(first, vec![b"a".to_vec()]);
        assert_eq!(lines(&mut tail), vec![("b".into(), 4), ("c".into(), 6)]);
    }

    #[test]
    fn resumes_from_a_checkpoint_of_the_same_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        append(&path, "a\nb\n");
        let id = FileId::of(&File::open(&path).unwrap()).unwrap();
        let checkpoint = Checkpoint {
            version: 1,
            path: path.clone(),
            file: id,
            offset: 2,
            ended: false,
        };
        let mut tail = Tail::open(&path, Some(&checkpoint), 0).unwrap().unwrap();
        assert_eq!(lines(&mut tail), vec![("b".into(), 4)]);
        // Another file at the same path: from the start.
        std::fs::remove_file(&path).unwrap();
        append(&path, "x\ny\n");
        let other = FileId {
            fingerprint: Some(1),
            ..id
        };
        let checkpoint = Checkpoint {
            file: other,
            ..checkpoint
        };
        let mut tail = Tail::open(&path, Some(&checkpoint), 0).unwrap().unwrap();
        assert_eq!(lines(&mut tail)[0].0, "x");
    }

    #[test]
    fn follows_truncation_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        append(&path, "first\nsecond\n");
        let mut tail = Tail::open(&path, None, 0).unwrap().unwrap();
        assert_eq!(lines(&mut tail).len(), 2);
        // copytruncate
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        append(&path, "x\n");
        assert_eq!(tail.check().unwrap(), Change::Truncated);
        assert_eq!(lines(&mut tail), vec![("x".into(), mark(1, 2))]);
        // mv + create: the old file's rest is read, then the new file from 0.
        let old = dir.path().join("e.jsonl.1");
        std::fs::rename(&path, &old).unwrap();
        append(&old, "late\npart");
        append(&path, "new\n");
        assert_eq!(
            tail.check().unwrap(),
            Change::More,
            "not at the end of the old file yet"
        );
        assert_eq!(lines(&mut tail), vec![("late".into(), mark(1, 7))]);
        assert_eq!(tail.check().unwrap(), Change::Replaced { lost_partial: 4 });
        assert_eq!(lines(&mut tail), vec![("new".into(), mark(2, 4))]);
        assert!(split(tail.position()) == (2, 4));
    }

    #[test]
    fn skips_a_line_too_long_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let long = "x".repeat(MAX_LINE + 10);
        append(&path, &format!("a\n{long}\nb\n"));
        let mut tail = Tail::open(&path, None, 0).unwrap().unwrap();
        let got = lines(&mut tail);
        assert_eq!(got.len(), 3);
        assert!(
            got[1].0 == "<too long>",
            "{} bytes handed out",
            got[1].0.len()
        );
        assert_eq!(got[1].1, (2 + MAX_LINE + 11) as u64);
        assert_eq!(got[2], ("b".into(), (2 + MAX_LINE + 13) as u64));
    }
}
