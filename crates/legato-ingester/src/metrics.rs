//! Prometheus metrics of the ingester and WAL.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub tenant: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub tenant: String,
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub tenant: String,
    pub policy: String,
    pub decision: String,
}

/// The `op` values of `legato_ingester_wal_errors`.
pub const WAL_OPS: [&str; 4] = ["write", "fsync", "create", "dir_fsync"];

#[derive(Clone, Debug)]
pub struct IngesterMetrics {
    pub wal_errors: Family<OpLabels, Counter>,
    pub wal_segments_abandoned: Counter,
    pub wal_failed_records: Counter,
    pub wal_fsync_seconds: Histogram,
    pub wal_bytes: Counter,
    pub live_traces: Gauge,
    pub buffered_bytes: Gauge,
    /// `ingester.max_buffered_bytes`, so alerts can compare `buffered_bytes` with it.
    pub buffered_bytes_limit: Gauge,
    pub resident_bytes: Gauge,
    /// `ingester.max_resident_bytes`.
    pub resident_bytes_limit: Gauge,
    pub spilled_bytes: Counter,
    pub spill_failures: Family<OpLabels, Counter>,
    pub flush_failures: Counter,
    pub blocks_cut: Counter,
    pub tag_summary_segments: Counter,
    pub rejected_spans: Family<ReasonLabels, Counter>,
    pub tail_policy_decisions: Family<PolicyLabels, Counter>,
    pub tail_traces: Family<DecisionLabels, Counter>,
    pub tail_spans: Family<DecisionLabels, Counter>,
    pub tail_early: Family<ReasonLabels, Counter>,
    pub tail_late_spans: Family<DecisionLabels, Counter>,
}

impl Default for IngesterMetrics {
    fn default() -> Self {
        Self {
            wal_errors: Family::default(),
            wal_segments_abandoned: Counter::default(),
            wal_failed_records: Counter::default(),
            wal_fsync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            wal_bytes: Counter::default(),
            live_traces: Gauge::default(),
            buffered_bytes: Gauge::default(),
            buffered_bytes_limit: Gauge::default(),
            resident_bytes: Gauge::default(),
            resident_bytes_limit: Gauge::default(),
            spilled_bytes: Counter::default(),
            spill_failures: Family::default(),
            flush_failures: Counter::default(),
            blocks_cut: Counter::default(),
            tag_summary_segments: Counter::default(),
            rejected_spans: Family::default(),
            tail_policy_decisions: Family::default(),
            tail_traces: Family::default(),
            tail_spans: Family::default(),
            tail_early: Family::default(),
            tail_late_spans: Family::default(),
        }
    }
}

impl IngesterMetrics {
    /// Counts a spill file `op` (`write` or `read`) that failed.
    pub fn count_spill_failure(&self, op: &'static str) {
        self.spill_failures.get_or_create(&OpLabels { op: op.into() }).inc();
    }

    pub fn register(&self, registry: &mut Registry) {
        // Every op is exported from the start (at 0), so the first failure is an increase
        // that `increase()` and `rate()` see, not a new series.
        for op in WAL_OPS {
            self.wal_errors.get_or_create(&OpLabels { op: op.into() }).inc_by(0);
        }
        for op in ["write", "read"] {
            self.spill_failures.get_or_create(&OpLabels { op: op.into() }).inc_by(0);
        }
        registry.register(
            "legato_ingester_wal_errors",
            "WAL file operations that failed, by operation (write, fsync, create, dir_fsync)",
            self.wal_errors.clone(),
        );
        registry.register(
            "legato_ingester_wal_segments_abandoned",
            "WAL files that took no more records after a failed write or fsync",
            self.wal_segments_abandoned.clone(),
        );
        registry.register(
            "legato_ingester_wal_failed_records",
            "WAL records whose write or fsync failed (their pushes were refused, retryable)",
            self.wal_failed_records.clone(),
        );
        registry.register(
            "legato_ingester_wal_fsync_seconds",
            "Time to write and fsync one WAL group commit",
            self.wal_fsync_seconds.clone(),
        );
        registry.register(
            "legato_ingester_wal_written_bytes",
            "Bytes appended to the WAL",
            self.wal_bytes.clone(),
        );
        registry.register(
            "legato_ingester_live_traces",
            "Traces held in memory",
            self.live_traces.clone(),
        );
        registry.register(
            "legato_ingester_buffered_bytes",
            "Encoded span bytes held in memory, not yet in a block",
            self.buffered_bytes.clone(),
        );
        registry.register(
            "legato_ingester_buffered_bytes_limit",
            "ingester.max_buffered_bytes: past it exports are refused with 429 / RESOURCE_EXHAUSTED",
            self.buffered_bytes_limit.clone(),
        );
        registry.register(
            "legato_ingester_resident_bytes",
            "Of the buffered bytes, those in memory (the rest are in spill files)",
            self.resident_bytes.clone(),
        );
        registry.register(
            "legato_ingester_resident_bytes_limit",
            "ingester.max_resident_bytes: held data past half of it is spilled to disk; past it exports are refused",
            self.resident_bytes_limit.clone(),
        );
        registry.register(
            "legato_ingester_spilled_bytes",
            "Held span bytes moved from memory to spill files",
            self.spilled_bytes.clone(),
        );
        registry.register(
            "legato_ingester_spill_failures",
            "Spill file writes or reads that failed (op=write: the data stayed in memory; op=read: left out of one answer, or a flush retried)",
            self.spill_failures.clone(),
        );
        registry.register(
            "legato_ingester_flush_failures",
            "Block uploads that failed (retried)",
            self.flush_failures.clone(),
        );
        registry.register(
            "legato_ingester_blocks_cut",
            "Blocks cut from the head",
            self.blocks_cut.clone(),
        );
        registry.register(
            "legato_ingester_tag_summary_segments",
            "Held trace segments summarised for tag autocomplete (only while tags are requested)",
            self.tag_summary_segments.clone(),
        );
        registry.register(
            "legato_ingester_rejected_spans",
            "Spans refused at push time, by reason",
            self.rejected_spans.clone(),
        );
        registry.register(
            "legato_ingester_tail_sampling_policy_decisions",
            "Tail sampling: what each policy said about each trace decided (sampled, not_sampled, inverted_sampled, inverted_not_sampled, dropped)",
            self.tail_policy_decisions.clone(),
        );
        registry.register(
            "legato_ingester_tail_sampling_traces",
            "Tail sampling: traces decided, by final decision (sampled, not_sampled)",
            self.tail_traces.clone(),
        );
        registry.register(
            "legato_ingester_tail_sampling_spans",
            "Tail sampling: spans of the traces decided, by final decision (sampled, not_sampled)",
            self.tail_spans.clone(),
        );
        registry.register(
            "legato_ingester_tail_sampling_early_decisions",
            "Tail sampling: traces decided before decision_wait, by reason (num_traces, memory, shutdown)",
            self.tail_early.clone(),
        );
        registry.register(
            "legato_ingester_tail_sampling_late_spans",
            "Tail sampling: spans that arrived after their trace was decided, by the decision they followed",
            self.tail_late_spans.clone(),
        );
    }
}
