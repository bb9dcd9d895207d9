//! Prometheus metrics of the storage layer.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::instrumented::RequestCounters;

#[derive(Debug, Default, Clone)]
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
}

impl StorageMetrics {
    pub fn register(&self, registry: &mut Registry) {
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
    }
}
