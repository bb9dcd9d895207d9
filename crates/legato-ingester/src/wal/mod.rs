//! The write-ahead log: numbered segment files of checksummed records, written by one thread
//! that batches concurrent appends into a single fsync (group commit).
//!
//! Record frame: `len: u32 LE | crc32(payload): u32 LE | payload`. A torn or corrupt tail is
//! detected on replay, logged, and cut off; it never stops start-up.
//!
//! Failure rule (as PostgreSQL and etcd settled it): after a failed or short write, or a
//! failed fsync, nothing written to that file since its last good fsync can be trusted, and
//! a later fsync that succeeds proves nothing about it. So a failure *abandons* the file: the
//! records of the failed commit are reported as not durable (their pushes are refused with a
//! retryable error), the file takes no more records, and the next commit first creates a
//! fresh file and fsyncs its directory. Each logical segment `seq` (the unit the ingester
//! deletes by) may therefore span several files, `wal-<seq>.log`, `wal-<seq>.1.log`, ...;
//! replay reads every file on its own, so a bad tail in one never hides another's records.

pub mod fs;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::metrics::{IngesterMetrics, OpLabels};
pub use fs::{FaultFs, Faults, StdFs, WalFile, WalFs};

const SEGMENT_PREFIX: &str = "wal-";
const SEGMENT_SUFFIX: &str = ".log";
/// Appends gathered into one write + fsync at most.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// What a WAL record holds, encoded by the writer thread straight into its group buffer (no
/// copy of the record is made before that).
pub trait Record: Send + 'static {
    fn encode_into(&self, out: &mut Vec<u8>);
}

impl Record for Vec<u8> {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl Record for legato_proto::push::PushRequest {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(prost::Message::encoded_len(self));
        // Encoding into a Vec cannot run out of space.
        let _ = prost::Message::encode(self, out);
    }
}

enum Command {
    Append {
        payload: Box<dyn Record>,
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
    /// Logical segments that hold them (deleted once their data is in blocks).
    pub segments: Vec<u64>,
    pub torn_tails: usize,
}

/// One WAL file: logical segment `seq`, generation `gen` (0 for the first file of a segment,
/// then one more for each file opened after a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FileId {
    seq: u64,
    generation: u32,
}

impl Wal {
    /// Reads every existing segment file, then opens a new segment after them for appends.
    pub fn open(dir: &Path, fs: Arc<dyn WalFs>, metrics: IngesterMetrics) -> std::io::Result<(Self, Replay, u64)> {
        let mut records = Vec::new();
        let (wal, mut replay, seq) = Self::open_streaming(dir, fs, metrics, &mut |r| records.push(r))?;
        replay.records = records;
        Ok((wal, replay, seq))
    }

    /// [`Wal::open`] handing each record to `on_record` as it is read, in order, instead of
    /// gathering them: replay memory is one record, whatever the WAL holds. The returned
    /// `Replay` has no records.
    pub fn open_streaming(
        dir: &Path,
        fs: Arc<dyn WalFs>,
        metrics: IngesterMetrics,
        on_record: &mut dyn FnMut(Vec<u8>),
    ) -> std::io::Result<(Self, Replay, u64)> {
        std::fs::create_dir_all(dir)?;
        let files = list_files(dir)?;
        let mut torn_tails = 0;
        for id in &files {
            let path = file_path(dir, *id);
            let (good_len, torn) = read_file(&path, on_record)?;
            if torn {
                torn_tails += 1;
                tracing::warn!(path = %path.display(), good_len, "WAL segment has a torn or corrupt tail; dropping it");
                OpenOptions::new().write(true).open(&path)?.set_len(good_len)?;
            }
        }
        let mut segments: Vec<u64> = files.iter().map(|f| f.seq).collect();
        segments.dedup();
        let seq = segments.last().map_or(1, |s| s + 1);
        let mut writer = Writer {
            fs,
            dir: dir.to_path_buf(),
            seq,
            next_generation: 0,
            current: None,
            metrics,
        };
        writer
            .open_fresh()
            .map_err(|e| std::io::Error::other(format!("creating the first WAL segment: {e}")))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("legato-wal".into())
            .spawn(move || writer.run(rx))?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                tx,
            },
            Replay {
                records: Vec::new(),
                segments,
                torn_tails,
            },
            seq,
        ))
    }

    /// Queues a record. Must be called in the same order as the in-memory append it mirrors.
    pub fn append(&self, payload: impl Record) -> Pending {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Command::Append {
            payload: Box::new(payload),
            done,
        });
        Pending(rx)
    }

    /// Queues a switch to segment `seq`; later appends land there. Resolves once the records
    /// queued before it are settled (each reports its own outcome); a new file that cannot be
    /// created now is created by the next commit, which fails if it still cannot.
    pub fn rotate(&self, seq: u64) -> Pending {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Command::Rotate { seq, done });
        Pending(rx)
    }

    /// Deletes the files of segments numbered up to and including `seq`.
    pub fn delete_upto(&self, seq: u64) -> std::io::Result<usize> {
        let mut deleted = 0;
        for id in list_files(&self.dir)?.into_iter().filter(|f| f.seq <= seq) {
            std::fs::remove_file(file_path(&self.dir, id))?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

fn file_path(dir: &Path, id: FileId) -> PathBuf {
    match id.generation {
        0 => dir.join(format!("{SEGMENT_PREFIX}{:020}{SEGMENT_SUFFIX}", id.seq)),
        g => dir.join(format!("{SEGMENT_PREFIX}{:020}.{g}{SEGMENT_SUFFIX}", id.seq)),
    }
}

fn parse_file_name(name: &str) -> Option<FileId> {
    let stem = name.strip_prefix(SEGMENT_PREFIX)?.strip_suffix(SEGMENT_SUFFIX)?;
    let (seq, generation) = match stem.split_once('.') {
        Some((seq, g)) => (seq, g.parse().ok()?),
        None => (stem, 0),
    };
    Some(FileId {
        seq: seq.parse().ok()?,
        generation,
    })
}

fn list_files(dir: &Path) -> std::io::Result<Vec<FileId>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(id) = name.to_str().and_then(parse_file_name) {
            out.push(id);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Hands the good records of a file to `on_record`, one at a time; returns the byte length
/// they cover and whether a bad tail followed.
fn read_file(path: &Path, on_record: &mut dyn FnMut(Vec<u8>)) -> std::io::Result<(u64, bool)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut pos = 0u64;
    while pos < size {
        let mut header = [0u8; 8];
        if size - pos < 8 {
            return Ok((pos, true));
        }
        reader.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        // A length past the end is a torn or corrupt header: never allocate for it.
        if size - pos - 8 < len {
            return Ok((pos, true));
        }
        let mut payload = vec![0u8; len as usize];
        reader.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            return Ok((pos, true));
        }
        on_record(payload);
        pos += 8 + len;
    }
    Ok((pos, false))
}

/// The oldest logical segment in the WAL directory, if there is any.
pub fn oldest_segment(dir: &Path) -> std::io::Result<Option<u64>> {
    if !dir.exists() {
        return Ok(None);
    }
    Ok(list_files(dir)?.first().map(|f| f.seq))
}

/// Appends `len | crc | payload` to `out`, the payload encoded in place.
fn frame(payload: &dyn Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    payload.encode_into(out);
    let len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The file records currently go to.
struct OpenFile {
    file: Box<dyn WalFile>,
    path: PathBuf,
    /// Whether any commit to it succeeded (then it holds acknowledged records).
    holds_acknowledged: bool,
}

/// The writer thread's state.
struct Writer {
    fs: Arc<dyn WalFs>,
    dir: PathBuf,
    seq: u64,
    next_generation: u32,
    /// `None` after a failure or a rotation whose file could not be created yet.
    current: Option<OpenFile>,
    metrics: IngesterMetrics,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut waiting: Vec<oneshot::Sender<Result<(), String>>> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append { payload, done } => {
                        frame(payload.as_ref(), &mut buf);
                        waiting.push(done);
                    }
                    Command::Rotate { seq, done } => {
                        let result = self.commit(&mut buf, waiting.len());
                        reply(&mut waiting, &result);
                        self.switch_to(seq);
                        let _ = done.send(Ok(()));
                    }
                }
                if buf.len() < MAX_GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            let result = self.commit(&mut buf, waiting.len());
            reply(&mut waiting, &result);
        }
    }

    /// Writes and fsyncs the gathered records (`records` of them) into the current file,
    /// creating a fresh one first if there is none.
    fn commit(&mut self, buf: &mut Vec<u8>, records: usize) -> Result<(), String> {
        if buf.is_empty() {
            return Ok(());
        }
        let result = self.write_and_sync(buf);
        if result.is_err() {
            self.metrics.wal_failed_records.inc_by(records as u64);
        }
        buf.clear();
        result
    }

    fn write_and_sync(&mut self, buf: &[u8]) -> Result<(), String> {
        if self.current.is_none() {
            self.open_fresh()?;
        }
        let Some(open) = self.current.as_mut() else {
            return Err("no WAL segment open".into());
        };
        let started = Instant::now();
        if let Err(e) = fs::write_all(open.file.as_mut(), buf) {
            return Err(self.abandon("write", &e));
        }
        if let Err(e) = open.file.sync_data() {
            return Err(self.abandon("fsync", &e));
        }
        open.holds_acknowledged = true;
        self.metrics.wal_fsync_seconds.observe(started.elapsed().as_secs_f64());
        self.metrics.wal_bytes.inc_by(buf.len() as u64);
        Ok(())
    }

    /// Creates the next file of the current segment and makes its directory entry durable.
    fn open_fresh(&mut self) -> Result<(), String> {
        let id = FileId {
            seq: self.seq,
            generation: self.next_generation,
        };
        self.next_generation += 1;
        let path = file_path(&self.dir, id);
        let file = match self.fs.create(&path) {
            Ok(file) => file,
            Err(e) => {
                self.count_error("create");
                return Err(format!("creating WAL segment {}: {e}", path.display()));
            }
        };
        if let Err(e) = self.fs.sync_dir(&self.dir) {
            self.count_error("dir_fsync");
            let _ = std::fs::remove_file(&path);
            return Err(format!("fsync of WAL directory {}: {e}", self.dir.display()));
        }
        self.current = Some(OpenFile {
            file,
            path,
            holds_acknowledged: false,
        });
        Ok(())
    }

    /// Stops writing to the current file after `op` failed on it; returns the error to report.
    fn abandon(&mut self, op: &'static str, error: &std::io::Error) -> String {
        self.count_error(op);
        self.metrics.wal_segments_abandoned.inc();
        let Some(open) = self.current.take() else {
            return format!("WAL {op} failed: {error}");
        };
        let path = open.path.display().to_string();
        tracing::error!(path, op, error = %error, holds_acknowledged = open.holds_acknowledged,
            "WAL {op} failed: the segment takes no more records; the next commit starts a fresh one");
        drop(open.file);
        if !open.holds_acknowledged {
            // Nothing in it was ever acknowledged: remove it, so a long disk-full does not
            // leave one abandoned file per attempt.
            let _ = std::fs::remove_file(&open.path).and_then(|()| self.fs.sync_dir(&self.dir));
        }
        format!("WAL {op} of {path} failed: {error}")
    }

    /// Moves to logical segment `seq`; its first file is created now if possible.
    fn switch_to(&mut self, seq: u64) {
        self.seq = seq;
        self.next_generation = 0;
        self.current = None;
        if let Err(e) = self.open_fresh() {
            tracing::error!(seq, error = %e, "could not create the next WAL segment; the next commit retries");
        }
    }

    fn count_error(&self, op: &'static str) {
        self.metrics.wal_errors.get_or_create(&OpLabels { op: op.into() }).inc();
    }
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
            let (wal, replay, seq) = Wal::open(dir.path(), Arc::new(StdFs), IngesterMetrics::default()).unwrap();
            assert!(replay.records.is_empty());
            assert_eq!(seq, 1);
            let a = wal.append(b"one".to_vec());
            let b = wal.append(b"two".to_vec());
            a.wait().await.unwrap();
            b.wait().await.unwrap();
        }
        // Tear the tail: half a frame header.
        let path = file_path(dir.path(), FileId { seq: 1, generation: 0 });
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, &[9, 0, 0]).unwrap();
        drop(f);
        let (wal, replay, seq) = Wal::open(dir.path(), Arc::new(StdFs), IngesterMetrics::default()).unwrap();
        assert_eq!(replay.records, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(replay.torn_tails, 1);
        assert_eq!(seq, 2);
        wal.append(b"three".to_vec()).wait().await.unwrap();
        assert_eq!(wal.delete_upto(1).unwrap(), 1);
        drop(wal);
        let (_, replay, _) = Wal::open(dir.path(), Arc::new(StdFs), IngesterMetrics::default()).unwrap();
        assert_eq!(replay.records, vec![b"three".to_vec()]);
    }

    #[tokio::test]
    async fn corrupt_record_is_detected_by_checksum() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _, _) = Wal::open(dir.path(), Arc::new(StdFs), IngesterMetrics::default()).unwrap();
            wal.append(b"good".to_vec()).wait().await.unwrap();
            wal.append(b"flipped".to_vec()).wait().await.unwrap();
        }
        let path = file_path(dir.path(), FileId { seq: 1, generation: 0 });
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (_, replay, _) = Wal::open(dir.path(), Arc::new(StdFs), IngesterMetrics::default()).unwrap();
        assert_eq!(replay.records, vec![b"good".to_vec()]);
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// The acknowledged records, in the order replay returns them, must be all there; records
    /// that failed may or may not be (at least once).
    fn assert_acked_replayed(dir: &Path, acked: &[Vec<u8>]) {
        let (_, replay, _) = Wal::open(dir, Arc::new(StdFs), IngesterMetrics::default()).unwrap();
        let found: Vec<&Vec<u8>> = replay.records.iter().filter(|r| acked.contains(r)).collect();
        let want: Vec<&Vec<u8>> = acked.iter().collect();
        assert_eq!(found, want, "files: {:?}", files(dir));
    }

    /// Issue 10: after a failed write, short write or fsync the file takes no more records,
    /// so records acknowledged after the failure are not hidden behind its bad tail.
    #[tokio::test]
    async fn a_failed_write_or_fsync_abandons_the_file_and_later_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultFs::new();
        let metrics = IngesterMetrics::default();
        let (wal, _, _) = Wal::open(dir.path(), Arc::new(faults.clone()), metrics.clone()).unwrap();
        let mut acked = Vec::new();
        let mut append = async |payload: &str, ok: bool| {
            let result = wal.append(payload.as_bytes().to_vec()).wait().await;
            assert_eq!(result.is_ok(), ok, "{payload}: {result:?}");
            if ok {
                acked.push(payload.as_bytes().to_vec());
            }
        };
        append("a", true).await;
        faults.set(|f| f.short_writes = 1);
        append("b-short-write", false).await;
        append("c", true).await;
        faults.set(|f| f.fail_syncs = 1);
        append("d-fsync-fails", false).await;
        append("e", true).await;
        faults.set(|f| f.fail_writes = 1);
        append("f-write-fails", false).await;
        append("g", true).await;
        faults.set(|f| f.disk_full = true);
        append("h-disk-full", false).await;
        append("i-disk-full", false).await;
        faults.set(|f| {
            f.disk_full = false;
            f.fail_creates = 1;
        });
        append("j-no-new-file", false).await;
        append("k", true).await;
        drop(wal);
        assert_eq!(faults.injected(), 6);
        let errors = |op: &str| metrics.wal_errors.get_or_create(&OpLabels { op: op.into() }).get();
        assert_eq!((errors("write"), errors("fsync"), errors("create")), (4, 1, 1));
        assert_eq!(metrics.wal_failed_records.get(), 6);
        // Files that never held an acknowledged record were removed.
        let names = files(dir.path());
        assert!(names.len() <= 5, "{names:?}");
        assert_acked_replayed(dir.path(), &acked);
    }

    /// A rotation whose first file cannot be created still switches segments: the next commit
    /// creates the file, and deleting the old segment removes all of its files.
    #[tokio::test]
    async fn rotation_survives_a_failed_create_and_delete_takes_every_generation() {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultFs::new();
        let (wal, _, seq) = Wal::open(dir.path(), Arc::new(faults.clone()), IngesterMetrics::default()).unwrap();
        wal.append(b"one".to_vec()).wait().await.unwrap();
        faults.set(|f| f.fail_syncs = 1);
        assert!(wal.append(b"lost".to_vec()).wait().await.is_err());
        wal.append(b"two".to_vec()).wait().await.unwrap();
        faults.set(|f| f.fail_creates = 1);
        wal.rotate(seq + 1).wait().await.unwrap();
        wal.append(b"three".to_vec()).wait().await.unwrap();
        assert_eq!(
            files(dir.path()),
            vec![
                "wal-00000000000000000001.1.log",
                "wal-00000000000000000001.log",
                "wal-00000000000000000002.1.log"
            ]
        );
        assert_eq!(wal.delete_upto(seq).unwrap(), 2);
        drop(wal);
        assert_acked_replayed(dir.path(), &[b"three".to_vec()]);
    }
}
