//! An `ObjectStore` wrapper that counts the requests reaching the backend, by operation
//! (`legato_storage_object_store_requests{op}`). It sits below every cache (bloom filters,
//! Parquet footers, tag summaries), so a cached read is never counted.
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
use std::ops::Range;
use std::sync::Arc;

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

use crate::metrics::StorageMetrics;

/// The label of `legato_storage_object_store_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

/// Requests by operation.
pub type RequestCounters = Family<OpLabels, Counter>;

/// Wraps `store` so every request it sends to the backend is counted in `metrics`.
pub fn instrument(store: Arc<dyn ObjectStore>, metrics: &StorageMetrics) -> Arc<dyn ObjectStore> {
    Arc::new(InstrumentedStore {
        inner: store,
        requests: metrics.object_store_requests.clone(),
    })
}

/// See the module documentation.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    requests: RequestCounters,
}

fn count(requests: &RequestCounters, op: &str) {
    requests.get_or_create(&OpLabels { op: op.to_string() }).inc();
}

impl InstrumentedStore {
    fn count(&self, op: &str) {
        count(&self.requests, op);
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
        self.count("put");
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.count("put_multipart");
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(InstrumentedUpload {
            inner: upload,
            requests: self.requests.clone(),
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
        self.count(op);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // What object_store's default (the S3 client's) does, with each request counted.
        coalesce_ranges(
            ranges,
            |range| async move {
                self.count("get_range");
                let options = GetOptions {
                    range: Some(GetRange::Bounded(range)),
                    ..Default::default()
                };
                self.inner.get_opts(location, options).await?.bytes().await
            },
            OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let requests = self.requests.clone();
        let counted = locations
            .inspect(move |l| {
                if l.is_ok() {
                    count(&requests, "delete");
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.count("list");
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.count("list");
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.count("list_with_delimiter");
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.count("copy");
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.count("rename");
        self.inner.rename_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct InstrumentedUpload {
    inner: Box<dyn MultipartUpload>,
    requests: RequestCounters,
}

#[async_trait::async_trait]
impl MultipartUpload for InstrumentedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        count(&self.requests, "put_part");
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        count(&self.requests, "complete_multipart");
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        count(&self.requests, "abort_multipart");
        self.inner.abort().await
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
    }
}
