//! Prometheus metrics of the querier.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug)]
pub struct QuerierMetrics {
    pub trace_lookup_seconds: Histogram,
}

impl Default for QuerierMetrics {
    fn default() -> Self {
        Self {
            trace_lookup_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
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
    }
}
