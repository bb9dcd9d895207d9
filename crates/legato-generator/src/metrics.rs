//! Prometheus metrics of the metrics generator itself.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// The `result` values of `legato_generator_remote_write_requests`.
pub const REMOTE_WRITE_RESULTS: [&str; 4] = ["ok", "retry", "dropped_rejected", "dropped_queue_full"];
/// The `result` values of `legato_generator_history_writes`.
pub const HISTORY_RESULTS: [&str; 3] = ["ok", "error", "dropped"];
/// The `result` values of `legato_generator_forwarded_spans`.
pub const FORWARD_RESULTS: [&str; 3] = ["ok", "dropped_queue_full", "dropped_unavailable"];

#[derive(Clone, Debug, Default)]
pub struct GeneratorMetrics {
    pub spans_observed: Family<TenantLabels, Counter>,
    /// Spans span metrics did not count because of `filter_policies`.
    pub span_metrics_filtered: Family<TenantLabels, Counter>,
    pub active_series: Family<TenantLabels, Gauge>,
    pub series_refused: Family<TenantLabels, Counter>,
    pub remote_write_requests: Family<ResultLabels, Counter>,
    pub queue_length: Gauge,
    pub service_graph_dropped: Family<TenantLabels, Counter>,
    pub service_graph_expired: Family<TenantLabels, Counter>,
    /// History (`/prometheus`) writes: ok, error (kept for retry), dropped (after a long outage).
    pub history_writes: Family<ResultLabels, Counter>,
    /// Microservices mode, on distributors: spans sent to the generator owning their trace,
    /// by result (ok, dropped_queue_full, dropped_unavailable).
    pub forwarded_spans: Family<ResultLabels, Counter>,
}

impl GeneratorMetrics {
    pub fn register(&self, registry: &mut Registry) {
        // Process-wide results are exported from the start (at 0), so an alert's
        // `increase()` sees the first failure instead of a new series.
        for (family, results) in [
            (&self.remote_write_requests, &REMOTE_WRITE_RESULTS[..]),
            (&self.history_writes, &HISTORY_RESULTS[..]),
            (&self.forwarded_spans, &FORWARD_RESULTS[..]),
        ] {
            for result in results {
                family
                    .get_or_create(&ResultLabels {
                        result: (*result).into(),
                    })
                    .inc_by(0);
            }
        }
        registry.register(
            "legato_generator_forwarded_spans",
            "Distributors in microservices mode: spans sent to the metrics generator owning their trace id, by result (ok, dropped_queue_full, dropped_unavailable); never blocks ingest",
            self.forwarded_spans.clone(),
        );
        registry.register(
            "legato_generator_spans_observed",
            "Spans counted by the metrics generator (before sampling)",
            self.spans_observed.clone(),
        );
        registry.register(
            "legato_generator_span_metrics_filtered_spans",
            "Spans span metrics left out because of metrics_generator.processor.span_metrics.filter_policies",
            self.span_metrics_filtered.clone(),
        );
        registry.register(
            "legato_generator_active_series",
            "Series the generator holds per tenant",
            self.active_series.clone(),
        );
        registry.register(
            "legato_generator_series_refused",
            "Series updates refused because the tenant was at metrics_generator.registry.max_active_series",
            self.series_refused.clone(),
        );
        registry.register(
            "legato_generator_remote_write_requests",
            "Remote-write requests by result: ok, retry (failed, kept), dropped_rejected (4xx), dropped_queue_full",
            self.remote_write_requests.clone(),
        );
        registry.register(
            "legato_generator_service_graph_dropped_spans",
            "Client or server spans not held for pairing because metrics_generator.processor.service_graphs.max_items were waiting",
            self.service_graph_dropped.clone(),
        );
        registry.register(
            "legato_generator_service_graph_expired_edges",
            "Half edges that found no other half within wait and named no peer (no edge emitted)",
            self.service_graph_expired.clone(),
        );
        registry.register(
            "legato_generator_history_writes",
            "Minutes of series history written to the bucket by result: ok, error (kept and retried), dropped (unwritten too long)",
            self.history_writes.clone(),
        );
        registry.register(
            "legato_generator_remote_write_queue_length",
            "Remote-write requests waiting to be sent",
            self.queue_length.clone(),
        );
    }
}
