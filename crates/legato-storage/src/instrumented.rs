//! An `ObjectStore` wrapper that counts the requests reaching the backend, by operation
//! (`legato_storage_object_store_requests{op}`), the ones that failed
//! (`legato_storage_object_store_errors{op}`) and how long they took
//! (`legato_storage_object_store_request_seconds{op}`). It sits below every cache (bloom
//! filters, Parquet footers, tag summaries), so a cached read is never counted, and above the
//! S3 client, so a request the client retried counts once, with its retries in its time.
//!
//! What one count means per operation:
//! - `get`, `head`: one GET / HEAD of an object.
//! - `get_range`: one ranged GET. A `get_ranges` call (what the Parquet reader issues for
//!   the column chunks of a row group) is coalesced here exactly as object_store does for
//!   S3 (ranges less than 1 MiB apart become one request), and each coalesced range counts
//!   once, so the count is the number of ranged GETs S3 receives whatever the backend.
//! - `put`: one PUT. Multipart uploads: `put_multipart` (create), `put_part`,
//!   `complete_multipart`, `abort_multipart`.
//! - `list`, `list_with_delimiter`: one listing call (S3 pages at 1,000 keys: a listing of
//!   more keys takes one request per page but counts once).
//! - `delete`: one object deleted. `copy`, `rename`: one call.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, OBJECT_STORE_COALESCE_DEFAULT,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
    coalesce_ranges,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::StorageMetrics;

/// The label of `legato_storage_object_store_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

/// Every `op` the wrapper counts (see the module documentation).
pub const OPS: [&str; 13] = [
    "get",
    "get_range",
    "head",
    "put",
    "put_multipart",
    "put_part",
    "complete_multipart",
    "abort_multipart",
    "list",
    "list_with_delimiter",
    "delete",
    "copy",
    "rename",
];

/// Requests by operation.
pub type RequestCounters = Family<OpLabels, Counter>;

/// Request durations by operation.
pub type RequestSeconds = Family<OpLabels, Histogram, fn() -> Histogram>;

/// Wraps `store` so every request it sends to the backend is counted in `metrics`.
pub fn instrument(store: Arc<dyn ObjectStore>, metrics: &StorageMetrics) -> Arc<dyn ObjectStore> {
    Arc::new(InstrumentedStore {
        inner: store,
        counters: Counters {
            requests: metrics.object_store_requests.clone(),
            errors: metrics.object_store_errors.clone(),
            seconds: metrics.object_store_seconds.clone(),
        },
    })
}

/// See the module documentation.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    counters: Counters,
}

#[derive(Debug, Clone)]
struct Counters {
    requests: RequestCounters,
    errors: RequestCounters,
    seconds: RequestSeconds,
}

fn label(op: &str) -> OpLabels {
    OpLabels { op: op.to_string() }
}

/// Answers that are part of normal operation, not failures of the store.
fn is_failure(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
    )
}

impl Counters {
    fn count(&self, op: &str) {
        self.requests.get_or_create(&label(op)).inc();
    }

    fn failed<T>(&self, op: &str, result: &Result<T>) {
        if let Err(e) = result
            && is_failure(e)
        {
            self.errors.get_or_create(&label(op)).inc();
        }
    }

    /// Counts one request, runs it, records its time and whether it failed.
    async fn observe<T>(&self, op: &'static str, request: impl Future<Output = Result<T>>) -> Result<T> {
        self.count(op);
        let started = Instant::now();
        let result = request.await;
        self.seconds
            .get_or_create(&label(op))
            .observe(started.elapsed().as_secs_f64());
        self.failed(op, &result);
        result
    }
}

impl InstrumentedStore {
    fn count(&self, op: &str) {
        self.counters.count(op);
    }

    /// Counts the failures among the items of a listing or deletion stream.
    fn errors_of<T: 'static>(
        &self,
        op: &'static str,
        stream: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        let counters = self.counters.clone();
        stream.inspect(move |item| counters.failed(op, item)).boxed()
    }
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.counters
            .observe("put", self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let upload = self
            .counters
            .observe("put_multipart", self.inner.put_multipart_opts(location, opts))
            .await?;
        Ok(Box::new(InstrumentedUpload {
            inner: upload,
            counters: self.counters.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head {
            "head"
        } else if options.range.is_some() {
            "get_range"
        } else {
            "get"
        };
        self.counters.observe(op, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // What object_store's default (the S3 client's) does, with each request counted.
        coalesce_ranges(
            ranges,
            |range| async move {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(range)),
                    ..Default::default()
                };
                let fetch = async { self.inner.get_opts(location, options).await?.bytes().await };
                self.counters.observe("get_range", fetch).await
            },
            OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let counters = self.counters.clone();
        let counted = locations
            .inspect(move |l| {
                if l.is_ok() {
                    counters.count("delete");
                }
            })
            .boxed();
        self.errors_of("delete", self.inner.delete_stream(counted))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.count("list");
        self.errors_of("list", self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.count("list");
        self.errors_of("list", self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.counters
            .observe("list_with_delimiter", self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.counters
            .observe("copy", self.inner.copy_opts(from, to, options))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.counters
            .observe("rename", self.inner.rename_opts(from, to, options))
            .await
    }
}

#[derive(Debug)]
struct InstrumentedUpload {
    inner: Box<dyn MultipartUpload>,
    counters: Counters,
}

#[async_trait::async_trait]
impl MultipartUpload for InstrumentedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let counters = self.counters.clone();
        Box::pin(async move { counters.observe("put_part", part).await })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.counters.observe("complete_multipart", self.inner.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        self.counters.observe("abort_multipart", self.inner.abort()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn requests(metrics: &StorageMetrics, op: &str) -> u64 {
        metrics
            .object_store_requests
            .get_or_create(&OpLabels { op: op.into() })
            .get()
    }

    #[tokio::test]
    async fn counts_each_operation_once_and_coalesces_ranges_like_s3() {
        let metrics = StorageMetrics::default();
        let store = instrument(Arc::new(InMemory::new()), &metrics);
        let path = Path::from("t/b/data");
        store.put(&path, PutPayload::from(vec![7u8; 4 << 20])).await.unwrap();
        assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap().len(), 4 << 20);
        assert_eq!(store.head(&path).await.unwrap().size, 4 << 20);
        assert_eq!(store.get_range(&path, 10..20).await.unwrap().len(), 10);
        // Two ranges 90 bytes apart make one request; one 3 MiB further away another.
        let got = store
            .get_ranges(&path, &[0..10, 100..110, (3 << 20)..(3 << 20) + 5])
            .await
            .unwrap();
        assert_eq!(got.iter().map(Bytes::len).collect::<Vec<_>>(), vec![10, 10, 5]);
        let listed: Vec<_> = store.list(Some(&Path::from("t"))).collect().await;
        assert_eq!(listed.len(), 1);
        assert_eq!(store.list_with_delimiter(None).await.unwrap().common_prefixes.len(), 1);
        let mut upload = store.put_multipart(&Path::from("t/b/big")).await.unwrap();
        upload.put_part(PutPayload::from(vec![1u8; 10])).await.unwrap();
        upload.complete().await.unwrap();
        store.delete(&path).await.unwrap();

        for (op, n) in [
            ("put", 1),
            ("get", 1),
            ("head", 1),
            ("get_range", 3),
            ("list", 1),
            ("list_with_delimiter", 1),
            ("put_multipart", 1),
            ("put_part", 1),
            ("complete_multipart", 1),
            ("delete", 1),
        ] {
            assert_eq!(requests(&metrics, op), n, "op {op}");
        }
        // Every op counted is one whose errors are exported from the start.
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let counted: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("legato_storage_object_store_requests_total{op=\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(counted.len(), 10, "{text}");
        for op in counted {
            assert!(OPS.contains(&op), "{op} is not in OPS");
        }
    }

    #[tokio::test]
    async fn failures_are_counted_but_not_found_is_not() {
        let metrics = StorageMetrics::default();
        let store = instrument(Arc::new(InMemory::new()), &metrics);
        let missing = store.get(&Path::from("t/b/meta.compacted.json")).await;
        assert!(matches!(missing, Err(object_store::Error::NotFound { .. })));
        let errors = |op: &str| metrics.object_store_errors.get_or_create(&label(op)).get();
        assert_eq!(errors("get"), 0, "not found is an answer, not a failure");
        // A range past the end of an object is refused: a failure.
        let path = Path::from("t/b/bloom");
        store.put(&path, PutPayload::from(vec![1u8; 10])).await.unwrap();
        assert!(store.get_range(&path, 100..200).await.is_err());
        assert_eq!(errors("get_range"), 1);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("legato_storage_object_store_request_seconds_count{op=\"get\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("legato_storage_object_store_errors_total{op=\"get_range\"} 1"),
            "{text}"
        );
        // Ops that never failed are exported at 0, so alerts see their first failure.
        assert!(
            text.contains("legato_storage_object_store_errors_total{op=\"rename\"} 0"),
            "{text}"
        );
    }
}
