//! Prometheus metrics of the distributor.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub tenant: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct DistributorMetrics {
    pub spans_received: Family<TenantLabels, Counter>,
    pub bytes_received: Family<TenantLabels, Counter>,
    pub spans_rejected: Family<ReasonLabels, Counter>,
    pub push_failures: Family<ReasonLabels, Counter>,
    pub spans_sampled_out: Family<TenantLabels, Counter>,
}

impl DistributorMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "legato_distributor_spans_received",
            "Spans received, by tenant",
            self.spans_received.clone(),
        );
        registry.register(
            "legato_distributor_bytes_received",
            "OTLP payload bytes received, by tenant",
            self.bytes_received.clone(),
        );
        registry.register(
            "legato_distributor_spans_rejected",
            "Spans refused at export time, by tenant and reason",
            self.spans_rejected.clone(),
        );
        registry.register(
            "legato_distributor_push_failures",
            "Exports refused as a whole with a retryable error",
            self.push_failures.clone(),
        );
        registry.register(
            "legato_distributor_spans_sampled_out",
            "Spans acknowledged but not stored because probabilistic sampling dropped their trace",
            self.spans_sampled_out.clone(),
        );
    }
}
