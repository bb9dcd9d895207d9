//! The span-metrics processor: per service, span name, kind and status, a call counter, a
//! latency histogram (seconds) and a size counter (encoded span bytes), with Tempo's series
//! and label names so Grafana's RED table and dashboards written for Tempo work unchanged.

use std::sync::Arc;

use legato_proto::common::KeyValue;

use crate::attrs::{any_attr, string_attr};
use legato_proto::trace::{ResourceSpans, Span};
use prost::Message;

use crate::config::SpanMetricsConfig;
use crate::registry::{Labels, Registry};

pub const CALLS: &str = "traces_spanmetrics_calls_total";
pub const LATENCY: &str = "traces_spanmetrics_latency";
pub const SIZE: &str = "traces_spanmetrics_size_total";

const INTRINSICS: [&str; 5] = ["service", "span_name", "span_kind", "status_code", "status_message"];

/// The processor's settings, resolved once.
pub struct SpanMetrics {
    cfg: SpanMetricsConfig,
    bounds: Arc<[f64]>,
    /// Configured dimensions and their label names.
    dimensions: Vec<(String, String)>,
    max_label_value_length: usize,
}

impl SpanMetrics {
    pub fn new(cfg: SpanMetricsConfig, max_label_name_length: usize, max_label_value_length: usize) -> Self {
        // A dimension named like an intrinsic label gets a `__` prefix, as in Tempo.
        let dimensions = cfg
            .dimensions
            .iter()
            .map(|d| {
                let name = label_name(d, max_label_name_length);
                let name = if INTRINSICS.contains(&name.as_str()) {
                    format!("__{name}")
                } else {
                    name
                };
                (d.clone(), name)
            })
            .collect();
        Self {
            bounds: Arc::from(cfg.histogram_buckets.clone()),
            cfg,
            dimensions,
            max_label_value_length,
        }
    }

    /// Counts every span of `batches` into `registry`.
    pub fn observe(
        &self,
        registry: &mut Registry,
        batches: &[ResourceSpans],
        trace_id: &str,
        max_active: usize,
        now_ms: i64,
    ) {
        for rs in batches {
            let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            let service = string_attr(resource, "service.name").unwrap_or_default();
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                let labels = self.labels(&service, span, resource);
                let seconds = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e9;
                registry.add(CALLS, &labels, 1.0, max_active, now_ms);
                registry.add(SIZE, &labels, span.encoded_len() as f64, max_active, now_ms);
                registry.observe(
                    LATENCY,
                    &labels,
                    &self.bounds,
                    seconds,
                    exemplar_id(trace_id),
                    max_active,
                    now_ms,
                );
            }
        }
    }

    fn labels(&self, service: &str, span: &Span, resource: &[KeyValue]) -> Labels {
        let intrinsic = self.cfg.intrinsic_dimensions;
        let mut labels: Labels = Vec::with_capacity(5 + self.dimensions.len());
        let truncate = |v: String| truncate(v, self.max_label_value_length);
        if intrinsic.service {
            labels.push(("service".into(), truncate(service.to_string())));
        }
        if intrinsic.span_name {
            labels.push(("span_name".into(), truncate(span.name.clone())));
        }
        if intrinsic.span_kind {
            let kind = legato_proto::trace::span::SpanKind::try_from(span.kind)
                .unwrap_or(legato_proto::trace::span::SpanKind::Unspecified);
            labels.push(("span_kind".into(), kind.as_str_name().to_string()));
        }
        let status = span.status.as_ref();
        if intrinsic.status_code {
            let code = status
                .and_then(|s| legato_proto::trace::status::StatusCode::try_from(s.code).ok())
                .unwrap_or(legato_proto::trace::status::StatusCode::Unset);
            labels.push(("status_code".into(), code.as_str_name().to_string()));
        }
        if intrinsic.status_message {
            labels.push((
                "status_message".into(),
                truncate(status.map(|s| s.message.clone()).unwrap_or_default()),
            ));
        }
        // Resource attributes first, then the span's, as in Tempo.
        for (attr, label) in &self.dimensions {
            let value = any_attr(resource, attr)
                .or_else(|| any_attr(&span.attributes, attr))
                .unwrap_or_default();
            labels.push((label.clone(), truncate(value)));
        }
        // Empty values are no label at all (Tempo drops them).
        labels.retain(|(_, v)| !v.is_empty());
        labels.sort();
        labels.dedup_by(|later, earlier| later.0 == earlier.0);
        labels
    }
}

/// An attribute name as a Prometheus label name, as Tempo sanitises it: each character
/// outside `[a-zA-Z0-9_]` becomes one `_` (a leading digit is left as it is).
pub fn label_name(attr: &str, max_len: usize) -> String {
    let out: String = attr
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    truncate(out, max_len)
}

fn truncate(mut s: String, max: usize) -> String {
    if max > 0 && s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The exemplar's `traceID`: lowercase hex without leading zeros; none for an all-zero id.
fn exemplar_id(hex: &str) -> Option<String> {
    let trimmed = hex.trim_start_matches('0');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(label_name("http.request.method", 100), "http_request_method");
        assert_eq!(label_name("1st-try", 100), "1st_try");
        assert_eq!(label_name("abcdef", 3), "abc");
    }
}
