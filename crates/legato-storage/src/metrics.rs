//! Prometheus metrics of the storage layer.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::instrumented::{OPS, OpLabels, RequestCounters, RequestSeconds};

#[derive(Debug, Clone)]
pub struct StorageMetrics {
    pub blocks_flushed: Counter,
    pub bytes_flushed: Counter,
    pub block_reads: Counter,
    pub bloom_skips: Counter,
    /// Blocks a trace lookup had to open because their bloom filter may contain the trace.
    pub candidate_blocks: Counter,
    /// Requests sent to the object store, by `op`; counted by the store that
    /// [`crate::instrument`] returns.
    pub object_store_requests: RequestCounters,
    /// Requests that failed after the S3 client's own retries, by `op` (not-found answers
    /// are not failures).
    pub object_store_errors: RequestCounters,
    /// Time per request, by `op`, retries and backoff included (for `get`, until the response
    /// headers; the body streams afterwards).
    pub object_store_seconds: RequestSeconds,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        Self {
            blocks_flushed: Counter::default(),
            bytes_flushed: Counter::default(),
            block_reads: Counter::default(),
            bloom_skips: Counter::default(),
            candidate_blocks: Counter::default(),
            object_store_requests: RequestCounters::default(),
            object_store_errors: RequestCounters::default(),
            // 5 ms to about 80 s: a stalled request shows up at the request timeout.
            object_store_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 15))),
        }
    }
}

impl StorageMetrics {
    pub fn register(&self, registry: &mut Registry) {
        // Errors of every op are exported from the start (at 0), so an alert's `increase()`
        // sees the first failure instead of a new series.
        for op in OPS {
            self.object_store_errors
                .get_or_create(&OpLabels { op: op.into() })
                .inc_by(0);
        }
        registry.register(
            "legato_storage_blocks_flushed",
            "Blocks written to object storage",
            self.blocks_flushed.clone(),
        );
        registry.register(
            "legato_storage_flushed_bytes",
            "Bytes written to object storage in blocks",
            self.bytes_flushed.clone(),
        );
        registry.register(
            "legato_storage_block_reads",
            "Row groups read from blocks for trace lookups",
            self.block_reads.clone(),
        );
        registry.register(
            "legato_storage_bloom_skips",
            "Blocks skipped because their bloom filter excluded the trace",
            self.bloom_skips.clone(),
        );
        registry.register(
            "legato_storage_candidate_blocks",
            "Blocks opened for trace lookups because their bloom filter may contain the trace",
            self.candidate_blocks.clone(),
        );
        registry.register(
            "legato_storage_object_store_requests",
            "Requests sent to the object store (cache hits are not requests), by operation",
            self.object_store_requests.clone(),
        );
        registry.register(
            "legato_storage_object_store_errors",
            "Object store requests that failed after the client's retries (not found is not an error), by operation",
            self.object_store_errors.clone(),
        );
        registry.register(
            "legato_storage_object_store_request_seconds",
            "Time per object store request including retries, by operation",
            self.object_store_seconds.clone(),
        );
    }
}
