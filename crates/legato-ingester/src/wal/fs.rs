//! The file layer under the WAL writer: the few operations it needs, behind a trait so that
//! tests can make any of them fail (write errors, short writes, fsync errors, ENOSPC) exactly
//! where a real disk would.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

/// One open WAL segment, written at its end.
pub trait WalFile: Send {
    /// Writes some of `buf` at the end of the file; may write less than all of it.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Makes everything written so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// Creates segments and makes directory entries durable.
pub trait WalFs: Send + Sync + 'static {
    /// Creates a new, empty segment; fails if `path` exists.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Makes the directory's entries (a created or removed segment) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile(File);

impl WalFile for StdFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl WalFs for StdFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new().create_new(true).append(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Writes `buf` whole, retrying short writes; the first error ends it (whatever was written
/// before it stays in the file, which is why the writer abandons the segment).
pub(crate) fn write_all(file: &mut dyn WalFile, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write(buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0 bytes")),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What the fault layer does to the next operations. Set by tests, shared with the layer.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Every write fails with ENOSPC after writing half of what it was given (a disk full).
    pub disk_full: bool,
    /// The next this many writes fail with EIO, writing nothing.
    pub fail_writes: u32,
    /// The next this many writes write half their bytes and return that (short writes);
    /// the retry of the rest then fails with ENOSPC.
    pub short_writes: u32,
    /// The next this many fsyncs fail with EIO (after the data reached the file, as when
    /// writeback of cached pages fails).
    pub fail_syncs: u32,
    /// The next this many segment creations fail with ENOSPC.
    pub fail_creates: u32,
    /// The next this many directory fsyncs fail with EIO.
    pub fail_dir_syncs: u32,
}

/// A [`WalFs`] over the real file system that fails operations as [`Faults`] says, for fault
/// tests: what a failing disk does to a file (partial data, then an error) happens for real.
#[derive(Clone, Default)]
pub struct FaultFs {
    faults: Arc<Mutex<Faults>>,
    /// Operations failed so far.
    injected: Arc<Mutex<u64>>,
}

impl FaultFs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes what fails from now on.
    pub fn set(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults.lock());
    }

    /// Operations failed so far (writes, fsyncs and creations).
    pub fn injected(&self) -> u64 {
        *self.injected.lock()
    }

    /// Takes one from the counter `pick` chooses; true (and counted) when one was left.
    fn take(&self, pick: impl FnOnce(&mut Faults) -> &mut u32) -> bool {
        let mut faults = self.faults.lock();
        let left = pick(&mut faults);
        if *left == 0 {
            return false;
        }
        *left -= 1;
        drop(faults);
        *self.injected.lock() += 1;
        true
    }

    fn disk_full(&self) -> bool {
        let full = self.faults.lock().disk_full;
        if full {
            *self.injected.lock() += 1;
        }
        full
    }
}

struct FaultFile {
    file: File,
    fs: FaultFs,
    /// A short write happened: the next write fails.
    after_short: bool,
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

impl WalFile for FaultFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let half = buf.len().div_ceil(2);
        if std::mem::take(&mut self.after_short) {
            *self.fs.injected.lock() += 1;
            return Err(enospc());
        }
        if self.fs.take(|f| &mut f.fail_writes) {
            return Err(eio());
        }
        let short = buf.len() > 1 && {
            let mut f = self.fs.faults.lock();
            let left = f.short_writes > 0;
            f.short_writes = f.short_writes.saturating_sub(1);
            left
        };
        if short {
            self.after_short = true;
            return self.file.write(&buf[..half]);
        }
        if self.fs.disk_full() {
            self.file.write_all(&buf[..half.saturating_sub(1)])?;
            return Err(enospc());
        }
        self.file.write(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if self.fs.take(|f| &mut f.fail_syncs) {
            return Err(eio());
        }
        self.file.sync_data()
    }
}

impl WalFs for FaultFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        if self.take(|f| &mut f.fail_creates) {
            return Err(enospc());
        }
        let file = OpenOptions::new().create_new(true).append(true).open(path)?;
        Ok(Box::new(FaultFile {
            file,
            fs: self.clone(),
            after_short: false,
        }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.take(|f| &mut f.fail_dir_syncs) {
            return Err(eio());
        }
        StdFs.sync_dir(dir)
    }
}
