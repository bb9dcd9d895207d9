//! The span-metrics processor: per service, span name, kind and status, a call counter, a
//! latency histogram (seconds) and a size counter (encoded span bytes), with Tempo's series
//! and label names so Grafana's RED table and dashboards written for Tempo work unchanged.

use std::sync::Arc;

use legato_proto::span_wire::{ResourceRef, SpanRef};

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
    /// Counts one span: its call, size and latency series. `scratch` holds the label set
    /// between calls so that a span of an existing series allocates nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        registry: &mut Registry,
        scratch: &mut Labels,
        resource: &ResourceRef<'_>,
        span: &SpanRef<'_>,
        exemplar: Option<&str>,
        max_active: usize,
        now_ms: i64,
    ) {
        self.labels(scratch, resource, span);
        registry.add(CALLS, scratch, 1.0, max_active, now_ms);
        registry.add(SIZE, scratch, span.encoded_len as f64, max_active, now_ms);
        registry.observe(
            LATENCY,
            scratch,
            &self.bounds,
            span.seconds(),
            exemplar,
            max_active,
            now_ms,
        );
    }

    /// Fills `labels` (sorted by name, empty values left out), reusing its strings.
    fn labels(&self, labels: &mut Labels, resource: &ResourceRef<'_>, span: &SpanRef<'_>) {
        let intrinsic = self.cfg.intrinsic_dimensions;
        let max = self.max_label_value_length;
        let mut n = 0;
        let mut set = |name: &str, value: &str| {
            if value.is_empty() {
                return;
            }
            let value = truncate_str(value, max);
            match labels.get_mut(n) {
                Some((k, v)) => {
                    if k != name {
                        k.clear();
                        k.push_str(name);
                    }
                    v.clear();
                    v.push_str(value);
                }
                None => labels.push((name.to_string(), value.to_string())),
            }
            n += 1;
        };
        if intrinsic.service {
            set("service", resource.service_name);
        }
        if intrinsic.span_name {
            set("span_name", span.name);
        }
        if intrinsic.span_kind {
            let kind = legato_proto::trace::span::SpanKind::try_from(span.kind)
                .unwrap_or(legato_proto::trace::span::SpanKind::Unspecified);
            set("span_kind", kind.as_str_name());
        }
        if intrinsic.status_code {
            let code = legato_proto::trace::status::StatusCode::try_from(span.status_code)
                .unwrap_or(legato_proto::trace::status::StatusCode::Unset);
            set("status_code", code.as_str_name());
        }
        if intrinsic.status_message {
            set("status_message", span.status_message);
        }
        for (attr, label) in &self.dimensions {
            let value = resource
                .attributes
                .get(attr)
                .or_else(|| span.attributes.get(attr))
                .and_then(|v| v.label());
            set(label, value.as_deref().unwrap_or_default());
        }
        labels.truncate(n);
        labels.sort_unstable();
        labels.dedup_by(|later, earlier| later.0 == earlier.0);
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
    let end = truncate_str(&s, max).len();
    s.truncate(end);
    s
}

/// `s` cut to at most `max` bytes (0 = no limit) at a character boundary.
pub(crate) fn truncate_str(s: &str, max: usize) -> &str {
    if max == 0 || s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
