//! Fault injection for tests: an `ObjectStore` wrapper that fails a fraction of requests with a
//! retryable error, stalls others, and can play a process that dies after its Nth write.
//!
//! Failures come in two kinds, as with a real S3 endpoint: refused (the request never took
//! effect, like a 503 before the write) and lost (it took effect but the caller sees an error,
//! like a 500 or a dropped connection after the write). Readers must treat both the same way;
//! writers must be safe to retry after either. The wrapper sits where the S3 client's retries
//! do not reach, so every injected fault is seen by Legato's own code.
//!
//! Deterministic for a seed, up to the interleaving of concurrent requests.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use parking_lot::Mutex;

/// What to inject. Ratios are per request, in [0, 1].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Requests that fail with a retryable error.
    pub fail_ratio: f64,
    /// Of the failing writes (put, part upload, completion, delete, copy), the share that took
    /// effect before the error was returned.
    pub lost_ratio: f64,
    /// Requests delayed by `stall` before they run.
    pub stall_ratio: f64,
    pub stall: Duration,
    /// After this many writes have taken effect every further request fails (reads too), as if
    /// the process had died: nothing it does afterwards reaches the bucket. `None`: never.
    pub halt_after_writes: Option<u64>,
    pub seed: u64,
}

impl FaultConfig {
    /// `fail_ratio` of requests fail (half of the failing writes after taking effect) and
    /// `stall_ratio` are delayed by `stall`.
    pub fn flaky(fail_ratio: f64, stall_ratio: f64, stall: Duration, seed: u64) -> Self {
        Self {
            fail_ratio,
            lost_ratio: 0.5,
            stall_ratio,
            stall,
            halt_after_writes: None,
            seed,
        }
    }
}

/// What was injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub requests: u64,
    /// Failures returned before the request took effect.
    pub refused: u64,
    /// Failures returned after the request took effect.
    pub lost: u64,
    pub stalled: u64,
    /// Writes that took effect (successful, or lost).
    pub writes: u64,
    /// Requests refused because the store had halted.
    pub halted: u64,
}

/// See the module documentation.
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<Shared>,
}

struct Shared {
    config: Mutex<FaultConfig>,
    rng: Mutex<u64>,
    stats: Mutex<FaultStats>,
    writes: AtomicU64,
}

/// What to do with a request that is not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Pass,
    /// Run it, then report a failure (writes only; reads are refused instead).
    Lose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

impl FaultStore {
    pub fn new(inner: Arc<dyn ObjectStore>, config: FaultConfig) -> Arc<Self> {
        let seed = config.seed;
        Arc::new(Self {
            inner,
            state: Arc::new(Shared {
                config: Mutex::new(config),
                rng: Mutex::new(seed ^ 0x9E37_79B9_7F4A_7C15),
                stats: Mutex::default(),
                writes: AtomicU64::new(0),
            }),
        })
    }

    /// Changes what is injected from now on (e.g. `FaultConfig::default()` to heal the store).
    pub fn set_config(&self, config: FaultConfig) {
        *self.state.config.lock() = config;
    }

    pub fn stats(&self) -> FaultStats {
        *self.state.stats.lock()
    }

    /// The wrapped store, which sees only what got through.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }
}

impl Shared {
    /// splitmix64: good enough spread for picking fates, no dependency.
    fn next_unit(&self) -> f64 {
        let mut s = self.rng.lock();
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn halted(&self, config: &FaultConfig) -> bool {
        config
            .halt_after_writes
            .is_some_and(|n| self.writes.load(Ordering::SeqCst) >= n)
    }

    /// Picks the fate of a request (a refusal is an error) and sleeps first if it stalls.
    async fn decide(&self, kind: Kind, what: &str) -> Result<Fate> {
        let config = self.config.lock().clone();
        self.stats.lock().requests += 1;
        if self.halted(&config) {
            self.stats.lock().halted += 1;
            return Err(injected(what, "the process is gone (halted after its last write)"));
        }
        if config.stall_ratio > 0.0 && self.next_unit() < config.stall_ratio {
            self.stats.lock().stalled += 1;
            tokio::time::sleep(config.stall).await;
        }
        if config.fail_ratio <= 0.0 || self.next_unit() >= config.fail_ratio {
            return Ok(Fate::Pass);
        }
        if kind == Kind::Write && self.next_unit() < config.lost_ratio {
            return Ok(Fate::Lose);
        }
        self.stats.lock().refused += 1;
        Err(injected(what, "503 Service Unavailable (refused)"))
    }

    /// Records a write that took effect; past the halt point the caller sees a failure.
    fn wrote(&self, what: &str) -> Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        self.stats.lock().writes += 1;
        let halt = self.config.lock().halt_after_writes;
        match halt {
            // The write that reaches the halt point lands; its caller never hears back.
            Some(limit) if n >= limit => Err(injected(what, "the process died after this write")),
            _ => Ok(()),
        }
    }

    /// Runs a write according to its fate.
    async fn write<T>(&self, what: &str, run: impl Future<Output = Result<T>>) -> Result<T> {
        let fate = self.decide(Kind::Write, what).await?;
        let out = run.await?;
        self.wrote(what)?;
        if fate == Fate::Lose {
            self.stats.lock().lost += 1;
            return Err(injected(
                what,
                "500 Internal Server Error after the write took effect (lost)",
            ));
        }
        Ok(out)
    }

    async fn read<T>(&self, what: &str, run: impl Future<Output = Result<T>>) -> Result<T> {
        self.decide(Kind::Read, what).await?;
        run.await
    }
}

fn injected(what: &str, why: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "fault",
        source: format!("injected fault on {what}: {why}").into(),
    }
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultStore")
            .field("inner", &self.inner)
            .field("config", &*self.state.config.lock())
            .finish()
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fault({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let what = format!("put {location}");
        let run = self.inner.put_opts(location, payload, opts);
        self.state.write(&what, run).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let what = format!("create multipart upload {location}");
        let upload = self
            .state
            .read(&what, self.inner.put_multipart_opts(location, opts))
            .await?;
        Ok(Box::new(FaultUpload {
            inner: upload,
            location: location.clone(),
            state: self.state.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let what = format!("get {location}");
        self.state.read(&what, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let what = format!("get ranges of {location}");
        self.state.read(&what, self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let inner = self.inner.clone();
        let state = self.state.clone();
        locations
            .then(move |location| {
                let inner = inner.clone();
                let state = state.clone();
                async move {
                    let location = location?;
                    let what = format!("delete {location}");
                    let run = async {
                        let mut one = inner.delete_stream(futures::stream::iter([Ok(location.clone())]).boxed());
                        one.next().await.unwrap_or(Ok(location))
                    };
                    state.write(&what, run).await
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let what = format!("list {}", prefix.map(Path::as_ref).unwrap_or("/"));
        let inner = self.inner.list(prefix);
        let state = self.state.clone();
        // A listing fails (or stalls) before its first page.
        let started = async move { state.read(&what, async { Ok(()) }).await.map(|()| inner) };
        futures::stream::once(started).try_flatten().boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let what = format!("list {} with delimiter", prefix.map(Path::as_ref).unwrap_or("/"));
        self.state.read(&what, self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let what = format!("copy {from} to {to}");
        self.state.write(&what, self.inner.copy_opts(from, to, options)).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let what = format!("rename {from} to {to}");
        self.state.write(&what, self.inner.rename_opts(from, to, options)).await
    }
}

struct FaultUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    state: Arc<Shared>,
}

impl fmt::Debug for FaultUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultUpload({})", self.location)
    }
}

#[async_trait::async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let state = self.state.clone();
        let what = format!("upload part of {}", self.location);
        Box::pin(async move { state.write(&what, part).await })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let what = format!("complete multipart upload {}", self.location);
        let run = self.inner.complete();
        self.state.write(&what, run).await
    }

    async fn abort(&mut self) -> Result<()> {
        let what = format!("abort multipart upload {}", self.location);
        let run = self.inner.abort();
        self.state.write(&what, run).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn fails_about_the_configured_share_and_lost_writes_land() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = FaultStore::new(inner.clone(), FaultConfig::flaky(0.3, 0.0, Duration::ZERO, 7));
        let mut failed = 0;
        for i in 0..1000 {
            let path = Path::from(format!("t/{i}"));
            if store.put(&path, PutPayload::from_static(b"x")).await.is_err() {
                failed += 1;
            }
        }
        let stats = store.stats();
        assert!((250..350).contains(&failed), "{failed} of 1000 failed: {stats:?}");
        assert_eq!(stats.refused + stats.lost, failed);
        assert!(stats.lost > 100 && stats.refused > 100, "{stats:?}");
        let landed = inner.list(None).count().await as u64;
        assert_eq!(
            landed,
            1000 - stats.refused,
            "lost writes took effect, refused ones did not"
        );

        store.set_config(FaultConfig::default());
        for i in 0..100 {
            let path = Path::from(format!("t/{i}"));
            store.put(&path, PutPayload::from_static(b"y")).await.unwrap();
        }
    }

    #[tokio::test]
    async fn halts_after_the_nth_write() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = FaultStore::new(
            inner.clone(),
            FaultConfig {
                halt_after_writes: Some(2),
                ..FaultConfig::default()
            },
        );
        store
            .put(&Path::from("a"), PutPayload::from_static(b"1"))
            .await
            .unwrap();
        let err = store
            .put(&Path::from("b"), PutPayload::from_static(b"2"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("died after this write"), "{err}");
        assert!(
            store.get(&Path::from("a")).await.is_err(),
            "a dead process reads nothing"
        );
        assert!(
            store
                .put(&Path::from("c"), PutPayload::from_static(b"3"))
                .await
                .is_err()
        );
        let landed: Vec<_> = inner
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        assert_eq!(
            landed.len(),
            2,
            "the second write landed, the third never did: {landed:?}"
        );
    }

    #[tokio::test]
    async fn stalls_delay_requests_and_listings_fail_before_their_first_page() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        inner
            .put(&Path::from("t/x"), PutPayload::from_static(b"1"))
            .await
            .unwrap();
        let store = FaultStore::new(inner, FaultConfig::flaky(0.0, 1.0, Duration::from_millis(50), 1));
        let started = std::time::Instant::now();
        store.head(&Path::from("t/x")).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
        store.set_config(FaultConfig::flaky(1.0, 0.0, Duration::ZERO, 1));
        let listed: Vec<_> = store.list(Some(&Path::from("t"))).collect().await;
        assert_eq!(listed.len(), 1);
        let err = listed[0].as_ref().unwrap_err().to_string();
        assert!(err.contains("injected fault on list t"), "{err}");
    }
}
