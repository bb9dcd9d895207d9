//! Zipkin v1 spans (`POST /api/v1/spans`, JSON or Thrift) as OTLP, by the conventions of the
//! OpenTelemetry Collector's zipkin receiver (its `zipkinv1` translator), which Tempo embeds:
//!
//! - the first core annotation (`cs`, `cr`, `sr`, `ss`, `ms`, `mr`) gives the span kind
//!   (CLIENT, SERVER, PRODUCER, CONSUMER; none: UNSPECIFIED); the first one whose endpoint
//!   names a service gives the resource: `service.name` and the endpoint's `ipv4`, `ipv6`
//!   and `port` as resource attributes. Without one, the service is the last binary
//!   annotation endpoint's, else the `lc` (local component) value, else `unknown_service`;
//! - the earliest and latest annotation are the span's start and end, unless the span has a
//!   `timestamp` (then `timestamp` + `duration`); with neither the span starts and ends at
//!   receipt and carries `otel.zipkin.absentField.startTime: true`;
//! - other annotations are events; binary annotations are string attributes (`lc` becomes
//!   `component`), in JSON typed by `parse_string_tags` as in v2 (`zipkin::typed_tag`);
//! - the status comes from `census.status_code` (0 OK, else ERROR), else `otel.status_code`
//!   (0/1/2 or UNSET/OK/ERROR), else `error` (ERROR), else `http.status_code` (ERROR unless
//!   100-399); its message from `census.status_description`, `otel.status_description` or
//!   `http.status_message`. Those tags are removed except the HTTP ones.
//!
//! Where Legato differs, it accepts more: binary annotation values that are JSON booleans or
//! numbers are taken as their text (the Collector refuses the body), and the address
//! annotations `sa`, `ca` and `ma` (`"value": true` with an endpoint, as Brave and zipkin-js
//! send them) become `peer.service`, `network.peer.address` and `network.peer.port` as a v2
//! `remoteEndpoint` does; an `error` value that is not `true` is the status message when no
//! other tag gives one. The unknown service is `unknown_service`, as for v2.

use legato_proto::common::{AnyValue, KeyValue, any_value};
use legato_proto::trace::{Span, Status, span, status};
use serde::Deserialize;

use crate::otlp::{self, RequestBuilder, kv, string_value};
use crate::zipkin::{Endpoint, ZipkinOptions, endpoint_attributes, json_ids, json_spans, json_text, typed_tag};
use crate::{ExportTraceServiceRequest, ReceiveError, UNKNOWN_SERVICE};

#[path = "zipkin_v1_thrift.rs"]
mod v1_thrift;
pub use v1_thrift::from_thrift;

/// Marks a span that said neither when it started nor when it ended (the Collector's key).
pub const START_TIME_ABSENT: &str = "otel.zipkin.absentField.startTime";

/// One span in Zipkin's v1 JSON model; unknown fields are ignored, as Zipkin does.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    name: Option<String>,
    timestamp: Option<u64>,
    duration: Option<u64>,
    annotations: Option<Vec<JsonAnnotation>>,
    binary_annotations: Option<Vec<JsonBinaryAnnotation>>,
    /// Only in v2: their presence says the client speaks the other version.
    local_endpoint: Option<serde::de::IgnoredAny>,
    tags: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<i64>,
}

#[derive(Deserialize)]
struct JsonAnnotation {
    timestamp: Option<u64>,
    value: Option<String>,
    endpoint: Option<JsonEndpoint>,
}

#[derive(Deserialize)]
struct JsonBinaryAnnotation {
    key: Option<String>,
    value: Option<serde_json::Value>,
    endpoint: Option<JsonEndpoint>,
}

/// A v1 endpoint (the Thrift `Endpoint` reads into the same shape).
#[derive(Default, Clone, PartialEq)]
pub(crate) struct V1Endpoint {
    pub(crate) service: String,
    pub(crate) ipv4: String,
    pub(crate) ipv6: String,
    pub(crate) port: Option<u16>,
}

pub(crate) struct V1Annotation {
    pub(crate) timestamp_us: u64,
    pub(crate) value: String,
    pub(crate) endpoint: Option<V1Endpoint>,
}

pub(crate) struct V1BinaryAnnotation {
    pub(crate) key: String,
    pub(crate) value: AnyValue,
    pub(crate) endpoint: Option<V1Endpoint>,
}

/// A v1 span in one shape for JSON and Thrift.
pub(crate) struct V1Span {
    pub(crate) trace_id: [u8; 16],
    pub(crate) id: [u8; 8],
    pub(crate) parent_id: Option<[u8; 8]>,
    pub(crate) name: String,
    pub(crate) timestamp_us: Option<u64>,
    pub(crate) duration_us: Option<u64>,
    pub(crate) annotations: Vec<V1Annotation>,
    pub(crate) binary_annotations: Vec<V1BinaryAnnotation>,
}

/// A Zipkin v1 JSON array of spans as an OTLP request; spans without any time start at
/// receipt.
pub fn from_json(body: &[u8], options: ZipkinOptions) -> Result<ExportTraceServiceRequest, ReceiveError> {
    from_json_at(body, options, now_unix_nano())
}

pub(crate) fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_json_at(
    body: &[u8],
    options: ZipkinOptions,
    now_unix_nano: u64,
) -> Result<ExportTraceServiceRequest, ReceiveError> {
    let mut spans = json_spans(body, "Zipkin v1 JSON span list", json_span)?;
    if options.parse_string_tags {
        // Before the translation reads them, as the Collector parses each value first; the
        // address annotations' `true` is read by its endpoint, not its value.
        for b in spans.iter_mut().flat_map(|s| &mut s.binary_annotations) {
            if let Some(any_value::Value::StringValue(text)) = &mut b.value.value {
                b.value = typed_tag(std::mem::take(text));
            }
        }
    }
    Ok(translate(spans, now_unix_nano))
}

fn json_span(s: JsonSpan) -> Result<V1Span, ReceiveError> {
    if s.local_endpoint.is_some() || s.tags.is_some() {
        return Err(ReceiveError::invalid(
            "localEndpoint and tags are Zipkin v2: send v2 spans to /api/v2/spans",
        ));
    }
    let (trace_id, id, parent_id) = json_ids(s.trace_id, s.id, s.parent_id)?;
    let annotations = s
        .annotations
        .unwrap_or_default()
        .into_iter()
        .map(|a| V1Annotation {
            timestamp_us: a.timestamp.unwrap_or(0),
            value: a.value.unwrap_or_default(),
            endpoint: a.endpoint.map(json_endpoint),
        })
        .collect();
    let binary_annotations = s
        .binary_annotations
        .unwrap_or_default()
        .into_iter()
        .map(|b| V1BinaryAnnotation {
            key: b.key.unwrap_or_default(),
            value: string_value(b.value.map(json_text).unwrap_or_default()),
            endpoint: b.endpoint.map(json_endpoint),
        })
        .collect();
    Ok(V1Span {
        trace_id,
        id,
        parent_id,
        name: s.name.unwrap_or_default(),
        timestamp_us: s.timestamp.filter(|t| *t != 0),
        duration_us: s.duration,
        annotations,
        binary_annotations,
    })
}

fn json_endpoint(e: JsonEndpoint) -> V1Endpoint {
    V1Endpoint {
        service: e.service_name.unwrap_or_default(),
        ipv4: e.ipv4.unwrap_or_default(),
        ipv6: e.ipv6.unwrap_or_default(),
        port: e.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0),
    }
}

/// The span kind a core annotation records.
fn core_kind(value: &str) -> Option<span::SpanKind> {
    match value {
        "cs" | "cr" => Some(span::SpanKind::Client),
        "sr" | "ss" => Some(span::SpanKind::Server),
        "ms" => Some(span::SpanKind::Producer),
        "mr" => Some(span::SpanKind::Consumer),
        _ => None,
    }
}

pub(crate) fn translate(spans: Vec<V1Span>, now_unix_nano: u64) -> ExportTraceServiceRequest {
    let mut builder = RequestBuilder::default();
    for s in spans {
        let (span, resource) = translate_span(s, now_unix_nano);
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{:?}",
            resource.service, resource.ipv4, resource.ipv6, resource.port
        );
        builder.push(&key, || resource_attributes(resource), Default::default(), span);
    }
    builder.finish()
}

fn resource_attributes(endpoint: V1Endpoint) -> Vec<KeyValue> {
    let mut attributes = vec![kv("service.name", string_value(endpoint.service))];
    if !endpoint.ipv4.is_empty() {
        attributes.push(kv("ipv4", string_value(endpoint.ipv4)));
    }
    if !endpoint.ipv6.is_empty() {
        attributes.push(kv("ipv6", string_value(endpoint.ipv6)));
    }
    if let Some(port) = endpoint.port {
        attributes.push(kv("port", string_value(port.to_string())));
    }
    attributes
}

/// The OTLP span and the endpoint that is its resource.
fn translate_span(s: V1Span, now_unix_nano: u64) -> (Span, V1Endpoint) {
    let mut kind = None;
    let mut resource: Option<V1Endpoint> = None;
    let mut times: Option<(u64, u64)> = None;
    let mut events = Vec::new();
    for a in s.annotations.into_iter().filter(|a| !a.value.is_empty()) {
        let core = core_kind(&a.value);
        if core.is_some() {
            kind = kind.or(core);
            if resource.is_none() {
                resource = a.endpoint.filter(|e| !e.service.is_empty());
            }
        }
        times = Some(match times {
            None => (a.timestamp_us, a.timestamp_us),
            Some((first, last)) => (first.min(a.timestamp_us), last.max(a.timestamp_us)),
        });
        if core.is_none() {
            events.push(span::Event {
                time_unix_nano: otlp::micros_to_nanos(a.timestamp_us),
                name: a.value,
                ..Default::default()
            });
        }
    }
    let tags = binary_attributes(s.binary_annotations);
    let resource = resource.unwrap_or_else(|| V1Endpoint {
        service: tags.fallback_service.unwrap_or_else(|| UNKNOWN_SERVICE.to_string()),
        ..Default::default()
    });
    let mut attributes = tags.attributes;
    if let Some(start) = s.timestamp_us {
        times = Some((start, start.saturating_add(s.duration_us.unwrap_or(0))));
    }
    let (start, end) = match times.filter(|(start, _)| *start != 0) {
        Some((start, end)) => (otlp::micros_to_nanos(start), otlp::micros_to_nanos(end)),
        None => {
            let value = AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            };
            attributes.push(kv(START_TIME_ABSENT, value));
            (now_unix_nano, now_unix_nano)
        }
    };
    let span = Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.id.to_vec(),
        parent_span_id: s.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
        name: s.name,
        kind: kind.unwrap_or(span::SpanKind::Unspecified) as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        events,
        status: tags.status,
        ..Default::default()
    };
    (span, resource)
}

/// What the binary annotations say besides the span's resource.
struct BinaryAttributes {
    attributes: Vec<KeyValue>,
    status: Option<Status>,
    /// The service when no core annotation names one.
    fallback_service: Option<String>,
}

/// Address annotations: their endpoint is the span's remote side.
const ADDRESS_KEYS: [&str; 3] = ["sa", "ca", "ma"];

fn binary_attributes(annotations: Vec<V1BinaryAnnotation>) -> BinaryAttributes {
    let mut attributes = Vec::new();
    let mut status = StatusTags::default();
    let mut endpoint_service = None;
    let mut local_component = None;
    let mut remote = None;
    for b in annotations {
        if let Some(service) = b.endpoint.as_ref().map(|e| &e.service).filter(|s| !s.is_empty()) {
            endpoint_service = Some(service.clone());
        }
        if ADDRESS_KEYS.contains(&b.key.as_str())
            && let Some(endpoint) = b.endpoint
        {
            remote = Some(endpoint);
            continue;
        }
        let key = if b.key == "lc" {
            local_component = text(&b.value);
            "component".to_string()
        } else {
            b.key
        };
        if status.take(&key, &b.value) {
            continue;
        }
        attributes.push(kv(key, b.value));
    }
    if let Some(remote) = remote {
        let address = [remote.ipv4, remote.ipv6].into_iter().find(|a| !a.is_empty());
        let endpoint = Endpoint {
            service: Some(remote.service).filter(|s| !s.is_empty()),
            address,
            port: remote.port,
        };
        endpoint_attributes(
            &mut attributes,
            endpoint,
            "network.peer.address",
            "network.peer.port",
            Some("peer.service"),
        );
    }
    BinaryAttributes {
        attributes,
        status: status.status(),
        fallback_service: endpoint_service.or(local_component).filter(|s| !s.is_empty()),
    }
}

fn text(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn integer(value: &AnyValue) -> Option<i64> {
    match value.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The status tags seen so far, by source (the Collector's order of trust).
#[derive(Default)]
struct StatusTags {
    census: Option<status::StatusCode>,
    census_message: Option<String>,
    otel: Option<status::StatusCode>,
    otel_message: Option<String>,
    error: Option<String>,
    http: Option<status::StatusCode>,
    http_message: Option<String>,
}

impl StatusTags {
    /// Notes a tag; true when it is consumed (not kept as an attribute).
    fn take(&mut self, key: &str, value: &AnyValue) -> bool {
        match key {
            "census.status_code" => {
                self.census = integer(value).map(|c| match c {
                    0 => status::StatusCode::Ok,
                    _ => status::StatusCode::Error,
                });
            }
            "census.status_description" | "opencensus.status_description" => self.census_message = text(value),
            "otel.status_code" => {
                let code = integer(value).and_then(|c| i32::try_from(c).ok());
                self.otel = match code {
                    Some(c) => status::StatusCode::try_from(c).ok(),
                    None => text(value).and_then(|t| {
                        status::StatusCode::from_str_name(&format!("STATUS_CODE_{}", t.to_ascii_uppercase()))
                    }),
                };
            }
            "otel.status_description" => self.otel_message = text(value),
            "error" => self.error = text(value),
            "http.status_code" => {
                self.http = integer(value).map(|c| match c {
                    100..=399 => status::StatusCode::Unset,
                    _ => status::StatusCode::Error,
                });
                return false;
            }
            "http.status_message" => {
                self.http_message = text(value);
                return false;
            }
            _ => return false,
        }
        true
    }

    fn status(self) -> Option<Status> {
        let (code, message) = if let Some(code) = self.census {
            (code, self.census_message)
        } else if let Some(code) = self.otel {
            (code, self.otel_message)
        } else if let Some(error) = self.error {
            let described = (!error.eq_ignore_ascii_case("true")).then_some(error);
            let message = self.census_message.or(self.otel_message).or(described);
            (status::StatusCode::Error, message)
        } else {
            (self.http?, self.http_message)
        };
        Some(Status {
            code: code as i32,
            message: message.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
#[path = "zipkin_v1_tests.rs"]
mod tests;
