//! Spill files: held segments moved off the heap so memory stays within
//! `ingester.max_resident_bytes` whatever the ingest rate.
//!
//! The WAL already makes every held segment durable, so a spill file is only a second copy
//! that can be read back by offset, without decoding the WAL: it is written without fsync and
//! unlinked as soon as it is written, kept open. Its disk space is freed when the last segment
//! read from it is dropped (its block uploaded, or its trace dropped by tail sampling), and a
//! crash leaves no file behind: replay rebuilds everything from the WAL. Reading a spilled
//! segment back (a flush, a query of recent data, a tail-sampling decision) is a positioned
//! read, usually from the page cache, into a buffer that lives only as long as that reader.
//!
//! Writes go through the WAL's file layer ([`WalFs`]), so the same fault injection (disk
//! full, failed writes) covers them. A failed spill changes nothing: the segments stay on the
//! heap, and pushes are refused once `max_resident_bytes` is reached.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::wal::{WalFs, fs::write_all};

/// A spill file holds at most this much, so one long-lived trace pins little disk.
const MAX_FILE_BYTES: u64 = 16 << 20;
/// Writes are gathered into buffers of this size.
const WRITE_BUFFER: usize = 1 << 20;

/// A held segment's encoded bytes: on the heap, or in a spill file.
#[derive(Clone)]
pub(crate) enum Segment {
    Heap(Bytes),
    Spilled(Spilled),
}

#[derive(Clone)]
pub(crate) struct Spilled {
    file: Arc<File>,
    offset: u64,
    len: usize,
}

impl Segment {
    pub fn len(&self) -> usize {
        match self {
            Segment::Heap(b) => b.len(),
            Segment::Spilled(s) => s.len,
        }
    }

    /// Identifies a held segment while it is held: heap address and length, or (once
    /// spilled) its file's address and its offset there.
    pub fn key(&self) -> (usize, u64, usize) {
        match self {
            Segment::Heap(b) => (b.as_ptr() as usize, u64::MAX, b.len()),
            Segment::Spilled(s) => (Arc::as_ptr(&s.file) as usize, s.offset, s.len),
        }
    }

    /// The bytes on the heap, `None` once spilled.
    pub fn heap(&self) -> Option<&Bytes> {
        match self {
            Segment::Heap(b) => Some(b),
            Segment::Spilled(_) => None,
        }
    }
}

/// The bytes of a trace's segments, spilled ones read back (one read per run of segments
/// that lie next to each other in one file, as a trace's spilled segments do).
pub(crate) fn load(segments: &[Segment]) -> std::io::Result<Vec<Bytes>> {
    let mut out = Vec::with_capacity(segments.len());
    let mut i = 0;
    while i < segments.len() {
        let first = match &segments[i] {
            Segment::Heap(b) => {
                out.push(b.clone());
                i += 1;
                continue;
            }
            Segment::Spilled(s) => s,
        };
        let mut end = i + 1;
        let mut len = first.len;
        while let Some(Segment::Spilled(next)) = segments.get(end) {
            if !Arc::ptr_eq(&next.file, &first.file) || next.offset != first.offset + len as u64 {
                break;
            }
            len += next.len;
            end += 1;
        }
        let mut buf = vec![0u8; len];
        first.file.read_exact_at(&mut buf, first.offset)?;
        let run = Bytes::from(buf);
        let mut at = 0;
        for s in &segments[i..end] {
            out.push(run.slice(at..at + s.len()));
            at += s.len();
        }
        i = end;
    }
    Ok(out)
}

pub(crate) struct Spill {
    dir: PathBuf,
    fs: Arc<dyn WalFs>,
    next: AtomicU64,
}

impl Spill {
    /// Uses `dir` for spill files, removing any left there by an earlier process.
    pub fn open(dir: &Path, fs: Arc<dyn WalFs>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "spill") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            fs,
            next: AtomicU64::new(0),
        })
    }

    /// Writes each trace's segments next to each other in spill files and returns where they
    /// are, in the same shape. Blocking file IO.
    pub fn write<T: AsRef<[Bytes]>>(&self, traces: &[T]) -> std::io::Result<Vec<Vec<Segment>>> {
        let mut out = Vec::with_capacity(traces.len());
        let mut start = 0;
        while start < traces.len() {
            // Whole traces per file, up to MAX_FILE_BYTES (a larger trace gets its own).
            let mut end = start;
            let mut bytes = 0u64;
            while end < traces.len() && (end == start || bytes < MAX_FILE_BYTES) {
                bytes += traces[end].as_ref().iter().map(|s| s.len() as u64).sum::<u64>();
                end += 1;
            }
            out.extend(self.write_file(&traces[start..end])?);
            start = end;
        }
        Ok(out)
    }

    fn write_file<T: AsRef<[Bytes]>>(&self, traces: &[T]) -> std::io::Result<Vec<Vec<Segment>>> {
        let path = self
            .dir
            .join(format!("{:020}.spill", self.next.fetch_add(1, Ordering::Relaxed)));
        let written = self.fill(&path, traces).and_then(|()| File::open(&path));
        let _ = std::fs::remove_file(&path);
        let file = Arc::new(written?);
        let size = file.metadata()?.len();
        let total: u64 = traces.iter().flat_map(AsRef::as_ref).map(|s| s.len() as u64).sum();
        if size != total {
            return Err(std::io::Error::other(format!(
                "spill file {} holds {size} bytes, {total} were written",
                path.display()
            )));
        }
        let mut offset = 0u64;
        Ok(traces
            .iter()
            .map(|segments| {
                segments
                    .as_ref()
                    .iter()
                    .map(|s| {
                        let spilled = Spilled {
                            file: file.clone(),
                            offset,
                            len: s.len(),
                        };
                        offset += s.len() as u64;
                        Segment::Spilled(spilled)
                    })
                    .collect()
            })
            .collect())
    }

    fn fill<T: AsRef<[Bytes]>>(&self, path: &Path, traces: &[T]) -> std::io::Result<()> {
        let mut file = self.fs.create(path)?;
        let mut buf = Vec::with_capacity(WRITE_BUFFER);
        for segment in traces.iter().flat_map(AsRef::as_ref) {
            if buf.len() + segment.len() > WRITE_BUFFER && !buf.is_empty() {
                write_all(file.as_mut(), &buf)?;
                buf.clear();
            }
            if segment.len() >= WRITE_BUFFER {
                write_all(file.as_mut(), segment)?;
            } else {
                buf.extend_from_slice(segment);
            }
        }
        write_all(file.as_mut(), &buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{FaultFs, StdFs};

    fn traces() -> Vec<Vec<Bytes>> {
        (0..50u8)
            .map(|i| {
                (0..3)
                    .map(|j| Bytes::from(vec![i ^ j; 1000 + usize::from(i) * 7 + j as usize]))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn spilled_segments_read_back_the_same_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000000000000000007.spill"), b"left by a crash").unwrap();
        let spill = Spill::open(dir.path(), Arc::new(StdFs)).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "leftovers are removed"
        );
        let original = traces();
        let spilled = spill.write(&original).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "unlinked once written"
        );
        assert!(spilled.iter().flatten().all(|s| s.heap().is_none()));
        let back: Vec<Vec<Bytes>> = spilled.iter().map(|t| load(t).unwrap()).collect();
        assert_eq!(back, original);
        // A trace whose segments are partly on the heap, partly spilled, in any order.
        let mixed = vec![
            spilled[3][1].clone(),
            Segment::Heap(Bytes::from_static(b"heap")),
            spilled[3][2].clone(),
            spilled[0][0].clone(),
        ];
        let expected = vec![
            original[3][1].clone(),
            Bytes::from_static(b"heap"),
            original[3][2].clone(),
            original[0][0].clone(),
        ];
        assert_eq!(load(&mixed).unwrap(), expected);
    }

    #[test]
    fn a_failed_spill_reports_the_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultFs::new());
        let spill = Spill::open(dir.path(), fs.clone()).unwrap();
        fs.set(|f| f.disk_full = true);
        let Err(err) = spill.write(&traces()) else {
            panic!("a spill onto a full disk must fail");
        };
        assert!(err.to_string().contains("No space"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
