use std::time::Duration;

use legato_model::ByteSize;
use legato_storage::config_durations as dur;
use serde::{Deserialize, Serialize};

/// `ingester`: how live traces become blocks (Tempo's key names where Tempo has them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngesterConfig {
    /// A trace with no new spans for this long moves from the live set to the head block.
    #[serde(with = "dur")]
    pub trace_idle_period: Duration,
    /// How often idle traces are cut and the head block is checked.
    #[serde(with = "dur")]
    pub flush_check_period: Duration,
    /// The head block is cut into a complete block when it is this old ...
    #[serde(with = "dur")]
    pub max_block_duration: Duration,
    /// ... or holds this many bytes (encoded spans).
    pub max_block_bytes: ByteSize,
    /// Legato: encoded span bytes held in memory (live + head + uploading) above which pushes
    /// are refused with a retryable error instead of risking memory exhaustion.
    pub max_buffered_bytes: ByteSize,
    /// Legato: of those, bytes kept in memory. Past half of it, held segments (the head
    /// block's first, then live traces idle longest) move to spill files beside the WAL; past
    /// it, pushes are refused like past `max_buffered_bytes`. 0 keeps everything in memory.
    pub max_resident_bytes: ByteSize,
    /// Blocks encoded and uploaded at once. A head of at least 16 MiB is cut into this many
    /// blocks (contiguous trace-id ranges) so encoding uses as many cores; 0 = one per core.
    pub concurrent_flushes: usize,
    /// Microservices mode: how long an ingester keeps answering queries from the blocks it
    /// flushed, so queriers that have not yet seen them in the bucket miss nothing.
    #[serde(with = "dur")]
    pub complete_block_timeout: Duration,
    /// The ingester's place in the ring (microservices mode).
    pub lifecycler: legato_cluster::LifecyclerConfig,
}

impl IngesterConfig {
    /// Resident bytes above which held segments are spilled; `None` when spilling is off.
    pub fn spill_threshold(&self) -> Option<u64> {
        (self.max_resident_bytes.0 > 0).then_some(self.max_resident_bytes.0 / 2)
    }

    /// `concurrent_flushes` with 0 resolved to the number of cores.
    pub fn flush_parallelism(&self) -> usize {
        match self.concurrent_flushes {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            trace_idle_period: Duration::from_secs(5),
            flush_check_period: Duration::from_secs(1),
            max_block_duration: Duration::from_secs(30 * 60),
            max_block_bytes: ByteSize(100 << 20),
            max_buffered_bytes: ByteSize(1 << 30),
            max_resident_bytes: ByteSize(128 << 20),
            concurrent_flushes: 0,
            complete_block_timeout: Duration::from_secs(15 * 60),
            lifecycler: legato_cluster::LifecyclerConfig::default(),
        }
    }
}

impl IngesterConfig {
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("ingester.trace_idle_period", self.trace_idle_period),
            ("ingester.flush_check_period", self.flush_check_period),
            ("ingester.max_block_duration", self.max_block_duration),
            ("ingester.complete_block_timeout", self.complete_block_timeout),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(format!("{key} must be greater than 0"));
        }
        if self.max_block_bytes.0 == 0 {
            return Err("ingester.max_block_bytes must be greater than 0".into());
        }
        if self.max_buffered_bytes.0 < self.max_block_bytes.0 {
            return Err("ingester.max_buffered_bytes must be at least ingester.max_block_bytes".into());
        }
        self.lifecycler.validate()
    }
}

/// Per-tenant limits the ingester enforces at push time (`overrides.defaults.*`, and
/// `global.max_bytes_per_trace` per tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Live traces per tenant; 0 = unlimited.
    pub max_traces_per_user: usize,
    /// Bytes per trace, cumulative; 0 = unlimited.
    pub max_bytes_per_trace: u64,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_traces_per_user: 0,
            max_bytes_per_trace: 5_000_000,
        }
    }
}

/// Each tenant's limits (defaults and per-tenant overrides resolved).
pub type IngestLimitsLookup = std::sync::Arc<dyn Fn(&legato_model::TenantId) -> IngestLimits + Send + Sync>;

impl IngestLimits {
    /// These limits for every tenant.
    pub fn for_every_tenant(self) -> IngestLimitsLookup {
        std::sync::Arc::new(move |_| self)
    }
}
