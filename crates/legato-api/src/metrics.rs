//! Prometheus metrics of the API layer.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub revision: String,
    pub target: String,
}

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
    /// One series at 1 naming this process's version and target (role).
    pub build_info: Family<BuildLabels, prometheus_client::metrics::gauge::Gauge>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            request_seconds: Family::new_with_constructor(histogram),
            auth_failures: prometheus_client::metrics::counter::Counter::default(),
            build_info: Family::default(),
        }
    }
}

impl ApiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "legato_build_info",
            "Always 1: the version, revision and target (role) of this process",
            self.build_info.clone(),
        );
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

    /// Sets `legato_build_info` for a process running `target`.
    pub fn set_build_info(&self, target: &str) {
        let labels = BuildLabels {
            version: env!("CARGO_PKG_VERSION").into(),
            revision: option_env!("LEGATO_GIT_REVISION").unwrap_or("unknown").into(),
            target: target.into(),
        };
        self.build_info.get_or_create(&labels).set(1);
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
