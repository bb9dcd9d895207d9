//! Prometheus metrics of the querier.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug)]
pub struct QuerierMetrics {
    pub trace_lookup_seconds: Histogram,
    /// Blocks a search, metrics or tag query skipped because they could not be read.
    pub blocks_skipped: prometheus_client::metrics::counter::Counter,
    /// Blocks a search, metrics or filtered tag query did not read because their tag summary
    /// shows no span can match.
    pub blocks_pruned: prometheus_client::metrics::counter::Counter,
}

impl Default for QuerierMetrics {
    fn default() -> Self {
        Self {
            trace_lookup_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            blocks_skipped: prometheus_client::metrics::counter::Counter::default(),
            blocks_pruned: prometheus_client::metrics::counter::Counter::default(),
        }
    }
}

impl QuerierMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "legato_querier_trace_lookup_seconds",
            "Time to find and combine one trace",
            self.trace_lookup_seconds.clone(),
        );
        registry.register(
            "legato_querier_blocks_skipped",
            "Blocks a search, metrics or tag query skipped because they could not be read (corrupt or unreachable)",
            self.blocks_skipped.clone(),
        );
        registry.register(
            "legato_querier_blocks_pruned",
            "Blocks a search, metrics or filtered tag query did not read because their tag summary (tags.json) shows no span can match",
            self.blocks_pruned.clone(),
        );
    }
}
