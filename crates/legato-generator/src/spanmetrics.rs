//! The span-metrics processor: per service, span name, kind and status, a call counter, a
//! latency histogram (seconds) and a size counter (encoded span bytes), with Tempo's series
//! and label names so Grafana's RED table and dashboards written for Tempo work unchanged.

use std::sync::Arc;

use legato_proto::span_wire::{ResourceRef, SpanRef};

use crate::config::{FilterPolicy, FilterValue, MatchType, PolicyMatch, SpanMetricsConfig};
use crate::registry::{Labels, Registry};

pub const CALLS: &str = "traces_spanmetrics_calls_total";
pub const LATENCY: &str = "traces_spanmetrics_latency";
pub const SIZE: &str = "traces_spanmetrics_size_total";

const INTRINSICS: [&str; 5] = ["service", "span_name", "span_kind", "status_code", "status_message"];

/// The processor's settings, resolved once.
pub struct SpanMetrics {
    cfg: SpanMetricsConfig,
    filter: Filter,
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
        // Validated with the configuration; a bad policy cannot reach here.
        let filter = Filter::new(&cfg.filter_policies).unwrap_or_default();
        Self {
            filter,
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
        exemplar: Option<[u8; 16]>,
        max_active: usize,
        now_ms: i64,
    ) -> bool {
        if !self.filter.keep(resource, span) {
            return false;
        }
        self.labels(scratch, resource, span);
        registry.observe_span(
            scratch,
            span.encoded_len as f64,
            &self.bounds,
            span.seconds(),
            exemplar,
            max_active,
            now_ms,
        );
        true
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

/// `filter_policies`, compiled: which spans span metrics count (Tempo's rules: any `exclude`
/// match drops; else any `include_any` match keeps; else every `include` must match; with
/// only `include_any` policies, a span none matches is dropped).
#[derive(Default)]
pub struct Filter {
    include: Vec<Vec<(Target, Matcher)>>,
    include_any: Vec<Vec<(Target, Matcher)>>,
    exclude: Vec<Vec<(Target, Matcher)>>,
}

enum Target {
    Kind,
    Name,
    Status,
    Span(String),
    Resource(String),
}

enum Matcher {
    Strict(FilterValue),
    Regex(regex::Regex),
}

impl Filter {
    pub fn new(policies: &[FilterPolicy]) -> Result<Self, String> {
        let mut f = Filter::default();
        for (i, p) in policies.iter().enumerate() {
            if p.include.is_none() && p.include_any.is_none() && p.exclude.is_none() {
                return Err(format!("[{i}] has none of include, include_any, exclude"));
            }
            for (m, into) in [
                (&p.include, &mut f.include),
                (&p.include_any, &mut f.include_any),
                (&p.exclude, &mut f.exclude),
            ] {
                if let Some(m) = m {
                    into.push(compile(m).map_err(|e| format!("[{i}]: {e}"))?);
                }
            }
        }
        Ok(f)
    }

    pub fn keep(&self, resource: &ResourceRef<'_>, span: &SpanRef<'_>) -> bool {
        let matches = |policy: &Vec<(Target, Matcher)>| policy.iter().all(|(t, m)| matches(t, m, resource, span));
        if self.exclude.iter().any(matches) {
            return false;
        }
        if self.include_any.iter().any(matches) {
            return true;
        }
        if !self.include.is_empty() {
            return self.include.iter().all(matches);
        }
        self.include_any.is_empty()
    }
}

fn compile(m: &PolicyMatch) -> Result<Vec<(Target, Matcher)>, String> {
    m.attributes
        .iter()
        .map(|a| {
            let target = match a.key.as_str() {
                "kind" => Target::Kind,
                "name" => Target::Name,
                "status" => Target::Status,
                k => match (k.strip_prefix("span."), k.strip_prefix("resource.")) {
                    (Some(n), _) => Target::Span(n.to_string()),
                    (_, Some(n)) => Target::Resource(n.to_string()),
                    _ => {
                        return Err(format!(
                            "key {k:?} is not span.<attribute>, resource.<attribute>, kind, name or status"
                        ));
                    }
                },
            };
            let matcher = match (m.match_type, &a.value) {
                (MatchType::Strict, v) => Matcher::Strict(v.clone()),
                (MatchType::Regex, FilterValue::Str(re)) => {
                    Matcher::Regex(regex::Regex::new(re).map_err(|e| format!("invalid regex {re:?}: {e}"))?)
                }
                (MatchType::Regex, v) => return Err(format!("a regex match needs a string value, got {v:?}")),
            };
            Ok((target, matcher))
        })
        .collect()
}

fn matches(target: &Target, matcher: &Matcher, resource: &ResourceRef<'_>, span: &SpanRef<'_>) -> bool {
    use legato_proto::span_wire::AnyRef;
    let value = match target {
        Target::Kind => AnyRef::Str(
            legato_proto::trace::span::SpanKind::try_from(span.kind)
                .unwrap_or(legato_proto::trace::span::SpanKind::Unspecified)
                .as_str_name(),
        ),
        Target::Status => AnyRef::Str(
            legato_proto::trace::status::StatusCode::try_from(span.status_code)
                .unwrap_or(legato_proto::trace::status::StatusCode::Unset)
                .as_str_name(),
        ),
        Target::Name => AnyRef::Str(span.name),
        Target::Span(k) => match span.attributes.get(k) {
            Some(v) => v,
            None => return false,
        },
        Target::Resource(k) => match resource.attributes.get(k) {
            Some(v) => v,
            None => return false,
        },
    };
    match (matcher, value) {
        (Matcher::Regex(re), AnyRef::Str(s)) => re.is_match(s),
        (Matcher::Regex(_), _) => false,
        (Matcher::Strict(FilterValue::Str(want)), AnyRef::Str(s)) => want == s,
        (Matcher::Strict(FilterValue::Int(want)), AnyRef::Int(i)) => *want == i,
        (Matcher::Strict(FilterValue::Float(want)), AnyRef::Double(d)) => *want == d,
        (Matcher::Strict(FilterValue::Bool(want)), AnyRef::Bool(b)) => *want == b,
        _ => false,
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

#[cfg(test)]
mod filter_tests {
    use super::*;
    use crate::config::MatchAttribute;
    use legato_proto::common::{AnyValue, KeyValue, any_value};
    use legato_proto::resource::Resource;
    use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    /// Names of the spans `policies` keep, of: a failing server span `GET /cart` (code 503),
    /// a client span `SELECT` and a server span `GET /health`, all in `cart`.
    fn kept(policies: Vec<FilterPolicy>) -> Vec<String> {
        let span = |name: &str, kind: i32, code: i64, error: bool| Span {
            span_id: vec![1; 8],
            name: name.into(),
            kind,
            attributes: vec![kv("http.response.status_code", any_value::Value::IntValue(code))],
            status: error.then(|| Status {
                code: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let trace = legato_proto::tempopb::Trace {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", any_value::Value::StringValue("cart".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span("GET /cart", 2, 503, true),
                        span("SELECT", 3, 0, false),
                        span("GET /health", 2, 200, false),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = trace.encode_to_vec();
        let filter = Filter::new(&policies).unwrap();
        let mut out = Vec::new();
        legato_proto::span_wire::for_each_span(&bytes, |r, s| {
            if filter.keep(r, s) {
                out.push(s.name.to_string());
            }
        })
        .unwrap();
        out
    }

    fn m(match_type: MatchType, attrs: &[(&str, FilterValue)]) -> Option<PolicyMatch> {
        Some(PolicyMatch {
            match_type,
            attributes: attrs
                .iter()
                .map(|(k, v)| MatchAttribute {
                    key: k.to_string(),
                    value: v.clone(),
                })
                .collect(),
        })
    }

    #[test]
    fn filter_policies_follow_tempo() {
        let s = |v: &str| FilterValue::Str(v.into());
        assert_eq!(kept(Vec::new()).len(), 3, "no policies: all");
        let servers = FilterPolicy {
            include: m(MatchType::Strict, &[("kind", s("SPAN_KIND_SERVER"))]),
            ..Default::default()
        };
        assert_eq!(kept(vec![servers.clone()]), ["GET /cart", "GET /health"]);
        let no_health = FilterPolicy {
            exclude: m(MatchType::Regex, &[("name", s(".*/health"))]),
            ..Default::default()
        };
        assert_eq!(kept(vec![servers, no_health]), ["GET /cart"]);
        // Typed strict match on a span attribute, and the status intrinsic; all must match.
        let failing_503 = FilterPolicy {
            include_any: m(
                MatchType::Strict,
                &[
                    ("span.http.response.status_code", FilterValue::Int(503)),
                    ("status", s("STATUS_CODE_ERROR")),
                ],
            ),
            ..Default::default()
        };
        assert_eq!(kept(vec![failing_503]), ["GET /cart"]);
        let wrong_type = FilterPolicy {
            include: m(MatchType::Strict, &[("span.http.response.status_code", s("503"))]),
            ..Default::default()
        };
        assert!(kept(vec![wrong_type]).is_empty(), "strict compares types");
        let resource = FilterPolicy {
            include: m(MatchType::Strict, &[("resource.service.name", s("cart"))]),
            ..Default::default()
        };
        assert_eq!(kept(vec![resource]).len(), 3);
        let bad = FilterPolicy {
            include: m(MatchType::Strict, &[("http.method", s("GET"))]),
            ..Default::default()
        };
        let err = Filter::new(&[bad]).err().unwrap();
        assert!(err.contains("http.method"), "{err}");
    }
}
