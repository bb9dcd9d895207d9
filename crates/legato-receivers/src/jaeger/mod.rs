//! Jaeger spans as OTLP: Thrift `Batch` over HTTP (`thrift`), the agent's `emitBatch` over
//! UDP, and the protobuf model of `PostSpans` (`proto`). Each decoder yields the model below; one
//! translation makes OTLP from it.
//!
//! The process's service name and tags become the resource; `span.kind`, `otel.status_code`
//! / `otel.status_description` / `error`, `otel.scope.*` / `otel.library.*` and
//! `w3c.tracestate` tags become span fields and are removed; logs become events named by
//! their `event` field (else `message`); the parent is `parentSpanId`, else the first
//! CHILD_OF (then FOLLOWS_FROM) reference in the same trace; the other references are links
//! with `opentracing.ref_type` = `child_of` | `follows_from`.

pub mod proto;
pub mod thrift;

use legato_proto::common::{AnyValue, KeyValue, any_value};
use legato_proto::trace::{Span as OtlpSpan, span};

use crate::ExportTraceServiceRequest;
use crate::otlp::{self, RequestBuilder, kv, string_value};

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub process: Process,
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    pub service_name: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub key: String,
    pub value: TagValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    Str(String),
    Double(f64),
    Bool(bool),
    Long(i64),
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefType {
    ChildOf,
    FollowsFrom,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanRef {
    pub ref_type: RefType,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub time_unix_nano: u64,
    pub fields: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zeros when the span names no parent in this field.
    pub parent_span_id: [u8; 8],
    pub operation_name: String,
    pub references: Vec<SpanRef>,
    pub start_unix_nano: u64,
    pub duration_nano: u64,
    pub tags: Vec<Tag>,
    pub logs: Vec<Log>,
    /// The span's own process (protobuf batches may carry one per span).
    pub process: Option<Process>,
}

/// 128-bit trace id from Jaeger's high and low halves (a 64-bit id has high = 0).
pub fn trace_id(high: i64, low: i64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&high.to_be_bytes());
    id[8..].copy_from_slice(&low.to_be_bytes());
    id
}

/// Jaeger batches as one OTLP request: one resource per distinct process.
pub fn to_otlp(batches: impl IntoIterator<Item = Batch>) -> ExportTraceServiceRequest {
    let mut builder = RequestBuilder::default();
    for (b, batch) in batches.into_iter().enumerate() {
        for mut jaeger_span in batch.spans {
            let own = jaeger_span.process.take();
            // Protobuf clients may repeat one process in every span: equal processes are one
            // resource.
            let key = match &own {
                Some(process) => format!("p{process:?}"),
                None => format!("b{b}"),
            };
            let process = own.as_ref().unwrap_or(&batch.process);
            let mut otlp_span = translate_span(jaeger_span);
            let scope = otlp::take_scope(&mut otlp_span.attributes);
            builder.push(&key, || resource_attributes(process), scope, otlp_span);
        }
    }
    builder.finish()
}

fn resource_attributes(process: &Process) -> Vec<KeyValue> {
    let service = match process.service_name.as_str() {
        "" => crate::UNKNOWN_SERVICE,
        name => name,
    };
    let mut attributes = vec![kv("service.name", string_value(service))];
    attributes.extend(process.tags.iter().filter(|t| t.key != "service.name").map(attribute));
    attributes
}

fn attribute(tag: &Tag) -> KeyValue {
    let value = match &tag.value {
        TagValue::Str(s) => any_value::Value::StringValue(s.clone()),
        TagValue::Double(d) => any_value::Value::DoubleValue(*d),
        TagValue::Bool(b) => any_value::Value::BoolValue(*b),
        TagValue::Long(l) => any_value::Value::IntValue(*l),
        TagValue::Binary(b) => any_value::Value::BytesValue(b.clone()),
    };
    kv(tag.key.clone(), AnyValue { value: Some(value) })
}

fn translate_span(s: Span) -> OtlpSpan {
    let mut attributes: Vec<KeyValue> = s.tags.iter().map(attribute).collect();
    // The process's service is the resource's; the SDKs repeat it in every span.
    otlp::take(&mut attributes, "service.name");
    let kind = match otlp::take(&mut attributes, "span.kind").and_then(|v| v.value) {
        Some(any_value::Value::StringValue(k)) => otlp::kind_from_name(&k).unwrap_or(span::SpanKind::Unspecified),
        _ => span::SpanKind::Unspecified,
    };
    let status = otlp::take_status(&mut attributes);
    let trace_state = match otlp::take(&mut attributes, "w3c.tracestate").and_then(|v| v.value) {
        Some(any_value::Value::StringValue(state)) => state,
        _ => String::new(),
    };
    let parent = parent_of(&s);
    let links = s
        .references
        .iter()
        .filter(|r| Some(*r) != parent.as_ref().and_then(|p| p.reference))
        .map(|r| span::Link {
            trace_id: r.trace_id.to_vec(),
            span_id: r.span_id.to_vec(),
            attributes: vec![kv(
                "opentracing.ref_type",
                string_value(match r.ref_type {
                    RefType::ChildOf => "child_of",
                    RefType::FollowsFrom => "follows_from",
                }),
            )],
            ..Default::default()
        })
        .collect();
    OtlpSpan {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        trace_state,
        parent_span_id: parent.map(|p| p.id.to_vec()).unwrap_or_default(),
        name: s.operation_name,
        kind: kind as i32,
        start_time_unix_nano: s.start_unix_nano,
        end_time_unix_nano: s.start_unix_nano.saturating_add(s.duration_nano),
        attributes,
        events: s.logs.iter().map(event).collect(),
        links,
        status,
        ..Default::default()
    }
}

struct Parent<'a> {
    id: [u8; 8],
    /// The reference that named it, which is then not also a link.
    reference: Option<&'a SpanRef>,
}

fn parent_of(s: &Span) -> Option<Parent<'_>> {
    let same_trace = |kind| {
        s.references
            .iter()
            .find(|r| r.ref_type == kind && r.trace_id == s.trace_id)
    };
    if s.parent_span_id != [0; 8] {
        let named = s
            .references
            .iter()
            .find(|r| r.ref_type == RefType::ChildOf && r.span_id == s.parent_span_id && r.trace_id == s.trace_id);
        return Some(Parent {
            id: s.parent_span_id,
            reference: named,
        });
    }
    let reference = same_trace(RefType::ChildOf).or_else(|| same_trace(RefType::FollowsFrom))?;
    Some(Parent {
        id: reference.span_id,
        reference: Some(reference),
    })
}

fn event(log: &Log) -> span::Event {
    let mut attributes: Vec<KeyValue> = log.fields.iter().map(attribute).collect();
    let name = ["event", "message"].iter().find_map(|key| {
        let at = attributes.iter().position(|a| {
            a.key == *key
                && matches!(
                    a.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(any_value::Value::StringValue(_))
                )
        })?;
        match attributes.remove(at).value?.value? {
            any_value::Value::StringValue(name) => Some(name),
            _ => None,
        }
    });
    span::Event {
        time_unix_nano: log.time_unix_nano,
        name: name.unwrap_or_default(),
        attributes,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
