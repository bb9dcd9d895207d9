//! Prometheus metrics of the compactor.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Counters of what compaction, retention and cleanup did.
#[derive(Debug, Clone)]
pub struct CompactorMetrics {
    pub cycles: Counter,
    pub cycle_errors: Counter,
    pub jobs: Counter,
    pub job_errors: Counter,
    pub job_seconds: Histogram,
    pub blocks_compacted: Counter,
    pub blocks_written: Counter,
    pub spans_written: Counter,
    pub spans_deduped: Counter,
    pub blocks_expired: Counter,
    pub blocks_filtered: Counter,
    pub blocks_deleted: Counter,
    pub orphans_deleted: Counter,
    pub markers_repaired: Counter,
    pub tenant_indexes_written: Counter,
}

impl Default for CompactorMetrics {
    fn default() -> Self {
        Self {
            cycles: Counter::default(),
            cycle_errors: Counter::default(),
            jobs: Counter::default(),
            job_errors: Counter::default(),
            job_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 16)),
            blocks_compacted: Counter::default(),
            blocks_written: Counter::default(),
            spans_written: Counter::default(),
            spans_deduped: Counter::default(),
            blocks_expired: Counter::default(),
            blocks_filtered: Counter::default(),
            blocks_deleted: Counter::default(),
            orphans_deleted: Counter::default(),
            markers_repaired: Counter::default(),
            tenant_indexes_written: Counter::default(),
        }
    }
}

impl CompactorMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            ("legato_compactor_cycles", "Compaction cycles run", &self.cycles),
            (
                "legato_compactor_cycle_errors",
                "Tenants whose compaction cycle failed",
                &self.cycle_errors,
            ),
            ("legato_compactor_jobs", "Compaction jobs completed", &self.jobs),
            (
                "legato_compactor_job_errors",
                "Compaction jobs that failed",
                &self.job_errors,
            ),
            (
                "legato_compactor_blocks_compacted",
                "Input blocks replaced by compaction",
                &self.blocks_compacted,
            ),
            (
                "legato_compactor_blocks_written",
                "Output blocks written by compaction",
                &self.blocks_written,
            ),
            (
                "legato_compactor_spans_written",
                "Spans written to output blocks",
                &self.spans_written,
            ),
            (
                "legato_compactor_spans_deduped",
                "Duplicate spans (same span id and kind) dropped while merging",
                &self.spans_deduped,
            ),
            (
                "legato_compactor_blocks_expired",
                "Blocks marked compacted by retention",
                &self.blocks_expired,
            ),
            (
                "legato_compactor_blocks_filtered",
                "Blocks past block_retention rewritten with only the traces their retention policies keep",
                &self.blocks_filtered,
            ),
            (
                "legato_compactor_blocks_deleted",
                "Compacted blocks deleted after compacted_block_retention",
                &self.blocks_deleted,
            ),
            (
                "legato_compactor_orphans_deleted",
                "Block directories without meta.json deleted after the grace period",
                &self.orphans_deleted,
            ),
            (
                "legato_compactor_markers_repaired",
                "Compacted markers written for inputs of an interrupted compaction",
                &self.markers_repaired,
            ),
            (
                "legato_compactor_tenant_indexes_written",
                "Tenant indexes written",
                &self.tenant_indexes_written,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "legato_compactor_job_seconds",
            "Time to run one compaction job",
            self.job_seconds.clone(),
        );
    }
}
