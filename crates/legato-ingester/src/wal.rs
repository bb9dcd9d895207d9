//! The write-ahead log: numbered segment files of checksummed records, written by one thread
//! that batches concurrent appends into a single fsync (group commit).
//!
//! Record frame: `len: u32 LE | crc32(payload): u32 LE | payload`. A torn or corrupt tail is
//! detected on replay, logged, and cut off; it never stops start-up.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::metrics::IngesterMetrics;

const SEGMENT_PREFIX: &str = "wal-";
const SEGMENT_SUFFIX: &str = ".log";
/// Appends gathered into one write + fsync at most.
const MAX_GROUP_BYTES: usize = 16 << 20;

enum Command {
    Append {
        payload: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
    Rotate {
        seq: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// Handle to the WAL writer thread. Cloning is cheap; the thread stops when all handles drop.
#[derive(Clone)]
pub struct Wal {
    dir: PathBuf,
    tx: mpsc::Sender<Command>,
}

/// A pending append or rotation; await it to know it is durable.
pub struct Pending(oneshot::Receiver<Result<(), String>>);

impl Pending {
    pub async fn wait(self) -> Result<(), String> {
        self.0.await.unwrap_or_else(|_| Err("WAL writer stopped".into()))
    }
}

/// Records found in the WAL directory at start-up.
pub struct Replay {
    pub records: Vec<Vec<u8>>,
    /// Segments that hold them (deleted once their data is in blocks).
    pub segments: Vec<u64>,
    pub torn_tails: usize,
}

impl Wal {
    /// Reads every existing segment, then opens a new segment after them for appends.
    pub fn open(dir: &Path, metrics: IngesterMetrics) -> std::io::Result<(Self, Replay, u64)> {
        fs::create_dir_all(dir)?;
        let segments = list_segments(dir)?;
        let mut records = Vec::new();
        let mut torn_tails = 0;
        for &seq in &segments {
            let path = segment_path(dir, seq);
            let (mut recs, good_len, torn) = read_segment(&path)?;
            if torn {
                torn_tails += 1;
                tracing::warn!(path = %path.display(), good_len, "WAL segment has a torn or corrupt tail; dropping it");
                OpenOptions::new().write(true).open(&path)?.set_len(good_len)?;
            }
            records.append(&mut recs);
        }
        let seq = segments.last().map_or(1, |s| s + 1);
        let file = open_segment(dir, seq)?;
        let (tx, rx) = mpsc::channel();
        let thread_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("legato-wal".into())
            .spawn(move || writer_loop(thread_dir, file, rx, metrics))?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                tx,
            },
            Replay {
                records,
                segments,
                torn_tails,
            },
            seq,
        ))
    }

    /// Queues a record. Must be called in the same order as the in-memory append it mirrors.
    pub fn append(&self, payload: Vec<u8>) -> Pending {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Command::Append { payload, done });
        Pending(rx)
    }

    /// Queues a switch to segment `seq`; later appends land there.
    pub fn rotate(&self, seq: u64) -> Pending {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Command::Rotate { seq, done });
        Pending(rx)
    }

    /// Deletes segments numbered up to and including `seq`.
    pub fn delete_upto(&self, seq: u64) -> std::io::Result<usize> {
        let mut deleted = 0;
        for s in list_segments(&self.dir)?.into_iter().filter(|s| *s <= seq) {
            fs::remove_file(segment_path(&self.dir, s))?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{seq:020}{SEGMENT_SUFFIX}"))
}

fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            && let Ok(seq) = seq.parse()
        {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn open_segment(dir: &Path, seq: u64) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, seq))?;
    // Make the new file's directory entry durable too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// Returns the good records, the byte length they cover, and whether a bad tail followed.
fn read_segment(path: &Path) -> std::io::Result<(Vec<Vec<u8>>, u64, bool)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(header) = data.get(pos..pos + 8) else {
            return Ok((records, pos as u64, true));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = data.get(pos + 8..pos + 8 + len) else {
            return Ok((records, pos as u64, true));
        };
        if crc32fast::hash(payload) != crc {
            return Ok((records, pos as u64, true));
        }
        records.push(payload.to_vec());
        pos += 8 + len;
    }
    Ok((records, pos as u64, false))
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn writer_loop(dir: PathBuf, mut file: File, rx: mpsc::Receiver<Command>, metrics: IngesterMetrics) {
    let mut buf = Vec::with_capacity(1 << 20);
    let mut waiting: Vec<oneshot::Sender<Result<(), String>>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Append { payload, done } => {
                    frame(&payload, &mut buf);
                    waiting.push(done);
                }
                Command::Rotate { seq, done } => {
                    let result = commit(&mut file, &mut buf, &metrics).and_then(|_| open_segment(&dir, seq));
                    let result = match result {
                        Ok(new_file) => {
                            file = new_file;
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    reply(&mut waiting, &result);
                    let _ = done.send(result);
                }
            }
            if buf.len() < MAX_GROUP_BYTES {
                next = rx.try_recv().ok();
            }
        }
        let result = commit(&mut file, &mut buf, &metrics).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "WAL write failed");
        }
        reply(&mut waiting, &result);
    }
}

fn commit(file: &mut File, buf: &mut Vec<u8>, metrics: &IngesterMetrics) -> std::io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let result = file.write_all(buf).and_then(|_| file.sync_data());
    metrics.wal_fsync_seconds.observe(started.elapsed().as_secs_f64());
    metrics.wal_bytes.inc_by(buf.len() as u64);
    buf.clear();
    result
}

fn reply(waiting: &mut Vec<oneshot::Sender<Result<(), String>>>, result: &Result<(), String>) {
    for done in waiting.drain(..) {
        let _ = done.send(result.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_survive_reopen_and_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, replay, seq) = Wal::open(dir.path(), IngesterMetrics::default()).unwrap();
            assert!(replay.records.is_empty());
            assert_eq!(seq, 1);
            let a = wal.append(b"one".to_vec());
            let b = wal.append(b"two".to_vec());
            a.wait().await.unwrap();
            b.wait().await.unwrap();
        }
        // Tear the tail: half a frame header.
        let path = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0]).unwrap();
        drop(f);
        let (wal, replay, seq) = Wal::open(dir.path(), IngesterMetrics::default()).unwrap();
        assert_eq!(replay.records, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(replay.torn_tails, 1);
        assert_eq!(seq, 2);
        wal.append(b"three".to_vec()).wait().await.unwrap();
        assert_eq!(wal.delete_upto(1).unwrap(), 1);
        drop(wal);
        let (_, replay, _) = Wal::open(dir.path(), IngesterMetrics::default()).unwrap();
        assert_eq!(replay.records, vec![b"three".to_vec()]);
    }

    #[tokio::test]
    async fn corrupt_record_is_detected_by_checksum() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _, _) = Wal::open(dir.path(), IngesterMetrics::default()).unwrap();
            wal.append(b"good".to_vec()).wait().await.unwrap();
            wal.append(b"flipped".to_vec()).wait().await.unwrap();
        }
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let (_, replay, _) = Wal::open(dir.path(), IngesterMetrics::default()).unwrap();
        assert_eq!(replay.records, vec![b"good".to_vec()]);
    }
}
