//! Prometheus metrics of the API layer.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
    pub status: u16,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

#[derive(Clone, Debug)]
pub struct ApiMetrics {
    pub request_seconds: Family<EndpointLabels, Histogram>,
    /// Requests refused for missing or wrong credentials.
    pub auth_failures: prometheus_client::metrics::counter::Counter,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            request_seconds: Family::new_with_constructor(histogram),
            auth_failures: prometheus_client::metrics::counter::Counter::default(),
        }
    }
}

impl ApiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "legato_api_auth_failures",
            "Requests refused for missing, invalid or wrong-tenant credentials",
            self.auth_failures.clone(),
        );
        registry.register(
            "legato_api_request_seconds",
            "Request latency by endpoint and status",
            self.request_seconds.clone(),
        );
    }

    pub fn observe(&self, endpoint: &str, status: u16, started: std::time::Instant) {
        let labels = EndpointLabels {
            endpoint: endpoint.to_string(),
            status,
        };
        self.request_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}
