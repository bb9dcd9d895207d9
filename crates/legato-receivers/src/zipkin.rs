//! Zipkin v2 spans (`POST /api/v2/spans`, JSON or `zipkin.proto3` `ListOfSpans`) as OTLP.
//!
//! `localEndpoint.serviceName` becomes the resource's `service.name`; `remoteEndpoint`
//! becomes `peer.service`, `network.peer.address` and `network.peer.port`; tags are string
//! attributes, or typed ones with the Collector's `parse_string_tags` ([`ZipkinOptions`]);
//! annotations are events (an OpenTelemetry exporter's `{"name": {attributes}}` value is
//! unpacked); `kind` is the span kind (INTERNAL when absent).

use std::collections::BTreeMap;

use legato_proto::common::{AnyValue, KeyValue, any_value};
use legato_proto::trace::{Span, span};
use prost::Message;
use serde::Deserialize;

use crate::otlp::{self, RequestBuilder, kv, string_value};
use crate::{ExportTraceServiceRequest, ReceiveError, UNKNOWN_SERVICE};

/// One span in Zipkin's v2 JSON model; unknown fields are ignored, as Zipkin does.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    timestamp: Option<u64>,
    duration: Option<u64>,
    local_endpoint: Option<JsonEndpoint>,
    remote_endpoint: Option<JsonEndpoint>,
    annotations: Option<Vec<JsonAnnotation>>,
    tags: Option<BTreeMap<String, serde_json::Value>>,
    /// Only in v1: its presence says the client speaks the wrong version.
    binary_annotations: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize)]
struct JsonAnnotation {
    timestamp: Option<u64>,
    value: Option<String>,
}

/// The span in one shape for both encodings.
struct ZipkinSpan {
    trace_id: [u8; 16],
    id: [u8; 8],
    parent_id: Option<[u8; 8]>,
    name: String,
    kind: Option<span::SpanKind>,
    timestamp_us: u64,
    duration_us: u64,
    service: Option<String>,
    local: Endpoint,
    remote: Endpoint,
    annotations: Vec<(u64, String)>,
    tags: Vec<(String, String)>,
}

#[derive(Default)]
pub(crate) struct Endpoint {
    pub(crate) service: Option<String>,
    pub(crate) address: Option<String>,
    pub(crate) port: Option<u16>,
}

/// The options of the Collector's zipkin receiver that change the translation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZipkinOptions {
    /// `parse_string_tags`: tag values that read as an integer, a float or a boolean become
    /// attributes of that type ([`typed_tag`]); v2 tags and v1 JSON binary annotations, not
    /// v1 Thrift ones, which carry their own types (as in the Collector).
    pub parse_string_tags: bool,
}

/// A tag value typed as the Collector's zipkin receiver types it under `parse_string_tags`:
/// `-?[0-9]+` is an integer (out of the 64-bit range: the nearest bound, as Go's `ParseInt`
/// gives it), `-?[0-9]+\.[0-9]+` a double, `true` or `false` a boolean; anything else,
/// including `+1`, `1e3`, `.5`, `True` or surrounding spaces, stays a string.
pub fn typed_tag(value: String) -> AnyValue {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (negative, unsigned) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.as_str()),
    };
    let typed = if digits(unsigned) {
        let bound = if negative { i64::MIN } else { i64::MAX };
        Some(any_value::Value::IntValue(value.parse().unwrap_or(bound)))
    } else if unsigned
        .split_once('.')
        .is_some_and(|(whole, fraction)| digits(whole) && digits(fraction))
    {
        value.parse().ok().map(any_value::Value::DoubleValue)
    } else {
        match value.as_str() {
            "true" => Some(any_value::Value::BoolValue(true)),
            "false" => Some(any_value::Value::BoolValue(false)),
            _ => None,
        }
    };
    AnyValue {
        value: Some(typed.unwrap_or(any_value::Value::StringValue(value))),
    }
}

/// A Zipkin v2 JSON array of spans as an OTLP request.
pub fn from_json(body: &[u8], options: ZipkinOptions) -> Result<ExportTraceServiceRequest, ReceiveError> {
    let spans = json_spans(body, "Zipkin v2 JSON span list", json_span)?;
    Ok(translate(spans, options))
}

/// A JSON array of `J` (a Zipkin span in one version's model), each converted by `convert`;
/// errors name the JSON path, or the span by its index.
pub(crate) fn json_spans<J: serde::de::DeserializeOwned, S>(
    body: &[u8],
    what: &str,
    convert: fn(J) -> Result<S, ReceiveError>,
) -> Result<Vec<S>, ReceiveError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let spans: Vec<J> = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let at = e.path().to_string();
        ReceiveError::invalid(format!("not a {what}: at {at}: {}", e.into_inner()))
    })?;
    each_span(spans, convert)
}

/// A span's trace id, id and parent id.
pub(crate) type SpanIds = ([u8; 16], [u8; 8], Option<[u8; 8]>);

/// A JSON span's `traceId`, `id` and `parentId` (both versions spell them alike).
pub(crate) fn json_ids(
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
) -> Result<SpanIds, ReceiveError> {
    let trace_id = trace_id.ok_or_else(|| ReceiveError::invalid("traceId is missing"))?;
    let id = id.ok_or_else(|| ReceiveError::invalid("id is missing"))?;
    let parent_id = parent_id.as_deref().map(|p| otlp::hex_id(p, "parentId")).transpose()?;
    Ok((otlp::hex_id(&trace_id, "traceId")?, otlp::hex_id(&id, "id")?, parent_id))
}

/// A JSON tag value as text: a string as it is, anything else as its JSON.
pub(crate) fn json_text(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Every span converted, or the first error naming its span by index.
fn each_span<T, S>(spans: Vec<T>, convert: fn(T) -> Result<S, ReceiveError>) -> Result<Vec<S>, ReceiveError> {
    spans
        .into_iter()
        .enumerate()
        .map(|(i, s)| convert(s).map_err(|e| ReceiveError::invalid(format!("span {i}: {e}"))))
        .collect()
}

fn json_span(s: JsonSpan) -> Result<ZipkinSpan, ReceiveError> {
    if s.binary_annotations.is_some() {
        return Err(ReceiveError::invalid(
            "binaryAnnotations is Zipkin v1: send v1 spans to /api/v1/spans",
        ));
    }
    let (trace_id, id, parent_id) = json_ids(s.trace_id, s.id, s.parent_id)?;
    let kind =
        match s.kind.as_deref() {
            None => None,
            Some(k) => Some(otlp::kind_from_name(k).ok_or_else(|| {
                ReceiveError::invalid(format!("kind {k:?} is not CLIENT, SERVER, PRODUCER or CONSUMER"))
            })?),
        };
    let local = s.local_endpoint.unwrap_or_default();
    let remote = s.remote_endpoint.unwrap_or_default();
    let mut annotations = Vec::new();
    for a in s.annotations.unwrap_or_default() {
        annotations.push((a.timestamp.unwrap_or(0), a.value.unwrap_or_default()));
    }
    let tags = s
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, json_text(v)))
        .collect();
    Ok(ZipkinSpan {
        trace_id,
        id,
        parent_id,
        name: s.name.unwrap_or_default(),
        kind,
        timestamp_us: s.timestamp.unwrap_or(0),
        duration_us: s.duration.unwrap_or(0),
        service: local.service_name.clone(),
        local: Endpoint {
            service: local.service_name,
            address: local.ipv4.or(local.ipv6),
            port: local.port,
        },
        remote: Endpoint {
            service: remote.service_name,
            address: remote.ipv4.or(remote.ipv6),
            port: remote.port,
        },
        annotations,
        tags,
    })
}

/// `zipkin.proto3`'s messages (openzipkin/zipkin-api, Apache-2.0), declared here: four
/// small messages do not call for generated code.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListOfSpans {
        #[prost(message, repeated, tag = "1")]
        pub spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub parent_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub id: Vec<u8>,
        /// 0 unspecified, 1 CLIENT, 2 SERVER, 3 PRODUCER, 4 CONSUMER.
        #[prost(int32, tag = "4")]
        pub kind: i32,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(fixed64, tag = "6")]
        pub timestamp: u64,
        #[prost(uint64, tag = "7")]
        pub duration: u64,
        #[prost(message, optional, tag = "8")]
        pub local_endpoint: Option<Endpoint>,
        #[prost(message, optional, tag = "9")]
        pub remote_endpoint: Option<Endpoint>,
        #[prost(message, repeated, tag = "10")]
        pub annotations: Vec<Annotation>,
        #[prost(btree_map = "string, string", tag = "11")]
        pub tags: std::collections::BTreeMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Endpoint {
        #[prost(string, tag = "1")]
        pub service_name: String,
        #[prost(bytes = "vec", tag = "2")]
        pub ipv4: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub ipv6: Vec<u8>,
        #[prost(int32, tag = "4")]
        pub port: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Annotation {
        #[prost(fixed64, tag = "1")]
        pub timestamp: u64,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

/// A Zipkin v2 protobuf `ListOfSpans` as an OTLP request.
pub fn from_protobuf(body: &[u8], options: ZipkinOptions) -> Result<ExportTraceServiceRequest, ReceiveError> {
    let list = proto::ListOfSpans::decode(body)
        .map_err(|e| ReceiveError::invalid(format!("not a Zipkin v2 protobuf ListOfSpans: {e}")))?;
    let spans = each_span(list.spans, proto_span)?;
    Ok(translate(spans, options))
}

fn proto_span(s: proto::Span) -> Result<ZipkinSpan, ReceiveError> {
    let kind = match s.kind {
        1 => Some(span::SpanKind::Client),
        2 => Some(span::SpanKind::Server),
        3 => Some(span::SpanKind::Producer),
        4 => Some(span::SpanKind::Consumer),
        _ => None,
    };
    let endpoint = |e: Option<proto::Endpoint>| {
        let e = e.unwrap_or_default();
        let address = ip_text(&e.ipv4).or_else(|| ip_text(&e.ipv6));
        Endpoint {
            service: (!e.service_name.is_empty()).then_some(e.service_name),
            address,
            port: u16::try_from(e.port).ok().filter(|p| *p != 0),
        }
    };
    let local = endpoint(s.local_endpoint);
    Ok(ZipkinSpan {
        trace_id: otlp::bytes_id(&s.trace_id, "trace_id")?,
        id: otlp::bytes_id(&s.id, "id")?,
        parent_id: (!s.parent_id.is_empty())
            .then(|| otlp::bytes_id(&s.parent_id, "parent_id"))
            .transpose()?,
        name: s.name,
        kind,
        timestamp_us: s.timestamp,
        duration_us: s.duration,
        service: local.service.clone(),
        local,
        remote: endpoint(s.remote_endpoint),
        annotations: s.annotations.into_iter().map(|a| (a.timestamp, a.value)).collect(),
        tags: s.tags.into_iter().collect(),
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

fn translate(spans: Vec<ZipkinSpan>, options: ZipkinOptions) -> ExportTraceServiceRequest {
    let mut builder = RequestBuilder::default();
    for s in spans {
        let service = s.service.clone().unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
        let mut attributes: Vec<KeyValue> = s.tags.into_iter().map(|(k, v)| kv(k, string_value(v))).collect();
        // Zipkin's local service is the resource's; a tag repeating it says nothing more.
        otlp::take(&mut attributes, "service.name");
        let scope = otlp::take_scope(&mut attributes);
        let status = otlp::take_status(&mut attributes);
        // The tags left are the span's attributes (the Collector types them after taking
        // the status from the tags as sent).
        if options.parse_string_tags {
            for kv in &mut attributes {
                if let Some(AnyValue {
                    value: Some(any_value::Value::StringValue(text)),
                }) = &mut kv.value
                {
                    kv.value = Some(typed_tag(std::mem::take(text)));
                }
            }
        }
        endpoint_attributes(
            &mut attributes,
            s.local,
            "network.local.address",
            "network.local.port",
            None,
        );
        endpoint_attributes(
            &mut attributes,
            s.remote,
            "network.peer.address",
            "network.peer.port",
            Some("peer.service"),
        );
        let start = otlp::micros_to_nanos(s.timestamp_us);
        let events = s
            .annotations
            .into_iter()
            .map(|(timestamp, value)| annotation_event(otlp::micros_to_nanos(timestamp), value))
            .collect();
        let span = Span {
            trace_id: s.trace_id.to_vec(),
            span_id: s.id.to_vec(),
            parent_span_id: s.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
            name: s.name,
            kind: s.kind.unwrap_or(span::SpanKind::Internal) as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start.saturating_add(otlp::micros_to_nanos(s.duration_us)),
            attributes,
            events,
            status,
            ..Default::default()
        };
        builder.push(
            &service,
            || vec![kv("service.name", string_value(service.clone()))],
            scope,
            span,
        );
    }
    builder.finish()
}

/// An endpoint's address and port as attributes, and for the remote one its service as
/// `peer.service` unless a tag already says it.
pub(crate) fn endpoint_attributes(
    attributes: &mut Vec<KeyValue>,
    endpoint: Endpoint,
    address_key: &str,
    port_key: &str,
    service_key: Option<&str>,
) {
    if let (Some(key), Some(service)) = (service_key, endpoint.service)
        && !attributes.iter().any(|a| a.key == key)
    {
        attributes.push(kv(key, string_value(service)));
    }
    if let Some(address) = endpoint.address {
        attributes.push(kv(address_key, string_value(address)));
    }
    if let Some(port) = endpoint.port {
        let value = AnyValue {
            value: Some(any_value::Value::IntValue(i64::from(port))),
        };
        attributes.push(kv(port_key, value));
    }
}

/// An annotation as an event. OpenTelemetry's Zipkin exporters write an event as
/// `{"<name>": {<attributes>}}`: that shape is unpacked, any other value is the name.
fn annotation_event(time_unix_nano: u64, value: String) -> span::Event {
    let unpacked = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&value)
        .ok()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.into_iter().next())
        .and_then(|(name, attributes)| match attributes {
            serde_json::Value::Object(attributes) => Some((name, attributes)),
            _ => None,
        });
    let Some((name, attributes)) = unpacked else {
        return span::Event {
            time_unix_nano,
            name: value,
            ..Default::default()
        };
    };
    span::Event {
        time_unix_nano,
        name,
        attributes: attributes.into_iter().map(|(k, v)| kv(k, json_value(v))).collect(),
        ..Default::default()
    }
}

fn json_value(v: serde_json::Value) -> AnyValue {
    let value = match v {
        serde_json::Value::Bool(b) => any_value::Value::BoolValue(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => any_value::Value::StringValue(s),
        other => any_value::Value::StringValue(other.to_string()),
    };
    AnyValue { value: Some(value) }
}

#[cfg(test)]
#[path = "zipkin_tests.rs"]
mod tests;
