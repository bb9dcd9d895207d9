//! Jaeger's protobuf model (`proto/jaeger`, `jaeger.api_v2`) as the shared model: what
//! `CollectorService/PostSpans` carries.

use super::{Batch, Log, Process, RefType, Span, SpanRef, Tag, TagValue};
use crate::ReceiveError;

/// Generated from `proto/jaeger/collector.proto` and `model.proto`.
pub mod api_v2 {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
    include!(concat!(env!("OUT_DIR"), "/jaeger.api_v2.rs"));
}

/// A `PostSpans` batch; the spans' ids are checked (16-byte trace, 8-byte span ids).
pub fn from_proto(batch: api_v2::Batch) -> Result<Batch, ReceiveError> {
    let spans = batch
        .spans
        .into_iter()
        .enumerate()
        .map(|(i, s)| span(s).map_err(|e| ReceiveError::invalid(format!("span {i}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Batch {
        process: batch.process.map(process).unwrap_or_default(),
        spans,
    })
}

fn span(s: api_v2::Span) -> Result<Span, ReceiveError> {
    let references = s
        .references
        .into_iter()
        .map(|r| {
            Ok(SpanRef {
                ref_type: if r.ref_type == api_v2::SpanRefType::FollowsFrom as i32 {
                    RefType::FollowsFrom
                } else {
                    RefType::ChildOf
                },
                trace_id: crate::otlp::bytes_id(&r.trace_id, "references.trace_id")?,
                span_id: crate::otlp::bytes_id(&r.span_id, "references.span_id")?,
            })
        })
        .collect::<Result<Vec<_>, ReceiveError>>()?;
    Ok(Span {
        trace_id: crate::otlp::bytes_id(&s.trace_id, "trace_id")?,
        span_id: crate::otlp::bytes_id(&s.span_id, "span_id")?,
        parent_span_id: [0; 8],
        operation_name: s.operation_name,
        references,
        start_unix_nano: s.start_time.map(|t| nanos(t.seconds, t.nanos)).unwrap_or(0),
        duration_nano: s.duration.map(|d| nanos(d.seconds, d.nanos)).unwrap_or(0),
        tags: s.tags.into_iter().map(tag).collect(),
        logs: s
            .logs
            .into_iter()
            .map(|l| Log {
                time_unix_nano: l.timestamp.map(|t| nanos(t.seconds, t.nanos)).unwrap_or(0),
                fields: l.fields.into_iter().map(tag).collect(),
            })
            .collect(),
        process: s.process.map(process),
    })
}

fn process(p: api_v2::Process) -> Process {
    Process {
        service_name: p.service_name,
        tags: p.tags.into_iter().map(tag).collect(),
    }
}

fn tag(kv: api_v2::KeyValue) -> Tag {
    use api_v2::ValueType;
    let value = match ValueType::try_from(kv.v_type).unwrap_or(ValueType::String) {
        ValueType::String => TagValue::Str(kv.v_str),
        ValueType::Bool => TagValue::Bool(kv.v_bool),
        ValueType::Int64 => TagValue::Long(kv.v_int64),
        ValueType::Float64 => TagValue::Double(kv.v_float64),
        ValueType::Binary => TagValue::Binary(kv.v_binary),
    };
    Tag { key: kv.key, value }
}

/// A protobuf Timestamp or Duration as nanoseconds; before the epoch or negative → 0.
fn nanos(seconds: i64, nanos: i32) -> u64 {
    let whole = u64::try_from(seconds).unwrap_or(0).saturating_mul(1_000_000_000);
    whole.saturating_add(u64::try_from(nanos).unwrap_or(0))
}
