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

/// Where a cut attribute was: `resource`, `scope`, `span`, `event` or `link` (Tempo's label).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    pub tenant: String,
    pub scope: String,
}

#[derive(Clone, Debug, Default)]
pub struct DistributorMetrics {
    pub spans_received: Family<TenantLabels, Counter>,
    pub bytes_received: Family<TenantLabels, Counter>,
    pub spans_rejected: Family<ReasonLabels, Counter>,
    pub push_failures: Family<ReasonLabels, Counter>,
    pub spans_sampled_out: Family<TenantLabels, Counter>,
    pub attributes_truncated: Family<ScopeLabels, Counter>,
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
        registry.register(
            "legato_distributor_attributes_truncated",
            "Attribute keys and string values cut to max_attribute_bytes, by tenant and where the attribute was (resource, scope, span, event, link)",
            self.attributes_truncated.clone(),
        );
    }
}
