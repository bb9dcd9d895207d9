//! Jaeger's Thrift structs (`jaeger.thrift`: Batch, Process, Span, Tag, Log, SpanRef) and
//! the agent's `emitBatch` call (`agent.thrift`), read with Apache Thrift's protocol
//! readers. Unknown fields are skipped, as generated code does; strings and lists are
//! bounded by the body's size, so a forged length cannot allocate more than was sent.

use thrift::protocol::{TBinaryInputProtocol, TCompactInputProtocol, TInputProtocol, TMessageType, TType};

use super::{Batch, Log, Process, RefType, Span, SpanRef, Tag, TagValue, trace_id};
use crate::ReceiveError;

/// A `Batch` in the binary protocol: the body of `POST /api/traces` (`application/x-thrift`).
pub fn decode_batch(body: &[u8]) -> Result<Batch, ReceiveError> {
    let mut input = TBinaryInputProtocol::with_config(body, false, limits(body.len()));
    read_batch(&mut input).map_err(|e| invalid("Jaeger Thrift Batch", e))
}

/// Which protocol an agent's UDP port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentProtocol {
    /// `thrift_compact`, 6831/udp.
    Compact,
    /// `thrift_binary`, 6832/udp.
    Binary,
}

/// One agent datagram: a `emitBatch` call (Jaeger's `Agent` service) with its batch.
pub fn decode_emit_batch(datagram: &[u8], protocol: AgentProtocol) -> Result<Batch, ReceiveError> {
    let config = limits(datagram.len());
    let result = match protocol {
        AgentProtocol::Compact => read_emit_batch(&mut TCompactInputProtocol::with_config(datagram, config)),
        AgentProtocol::Binary => read_emit_batch(&mut TBinaryInputProtocol::with_config(datagram, true, config)),
    };
    result.map_err(|e| invalid("Jaeger agent emitBatch", e))
}

/// Nothing in a body can be longer than the body.
pub(crate) fn limits(size: usize) -> thrift::TConfiguration {
    thrift::TConfiguration::builder()
        .max_string_size(Some(size))
        .max_container_size(Some(size))
        .max_message_size(None)
        .max_frame_size(None)
        .build()
        .unwrap_or_default()
}

pub(crate) fn invalid(what: &str, e: thrift::Error) -> ReceiveError {
    ReceiveError::invalid(format!("not a {what}: {e}"))
}

pub(crate) type ThriftResult<T> = thrift::Result<T>;

pub(crate) fn missing(structure: &str, field: &str) -> thrift::Error {
    thrift::Error::Protocol(thrift::ProtocolError::new(
        thrift::ProtocolErrorKind::InvalidData,
        format!("{structure}.{field} is required"),
    ))
}

fn read_emit_batch(input: &mut dyn TInputProtocol) -> ThriftResult<Batch> {
    let message = input.read_message_begin()?;
    if message.name != "emitBatch" || !matches!(message.message_type, TMessageType::OneWay | TMessageType::Call) {
        return Err(thrift::Error::Protocol(thrift::ProtocolError::new(
            thrift::ProtocolErrorKind::NotImplemented,
            format!("{:?} is not emitBatch (emitZipkinBatch is not supported)", message.name),
        )));
    }
    let mut batch = None;
    read_struct(input, |input, id, field_type| {
        match (id, field_type) {
            (1, TType::Struct) => batch = Some(read_batch(input)?),
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    input.read_message_end()?;
    batch.ok_or_else(|| missing("emitBatch_args", "batch"))
}

/// Walks a struct's fields, handing each (id, type) to `field`, which reads or skips it.
pub(crate) fn read_struct(
    input: &mut dyn TInputProtocol,
    mut field: impl FnMut(&mut dyn TInputProtocol, i16, TType) -> ThriftResult<()>,
) -> ThriftResult<()> {
    input.read_struct_begin()?;
    loop {
        let header = input.read_field_begin()?;
        if header.field_type == TType::Stop {
            break;
        }
        field(input, header.id.unwrap_or(0), header.field_type)?;
        input.read_field_end()?;
    }
    input.read_struct_end()
}

pub(crate) fn read_list<T>(
    input: &mut dyn TInputProtocol,
    mut element: impl FnMut(&mut dyn TInputProtocol) -> ThriftResult<T>,
) -> ThriftResult<Vec<T>> {
    let header = input.read_list_begin()?;
    let mut out = Vec::new();
    for _ in 0..header.size {
        out.push(element(input)?);
    }
    input.read_list_end()?;
    Ok(out)
}

fn read_batch(input: &mut dyn TInputProtocol) -> ThriftResult<Batch> {
    let (mut process, mut spans) = (None, None);
    read_struct(input, |input, id, field_type| {
        match (id, field_type) {
            (1, TType::Struct) => process = Some(read_process(input)?),
            (2, TType::List) => spans = Some(read_list(input, read_span)?),
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    Ok(Batch {
        process: process.ok_or_else(|| missing("Batch", "process"))?,
        spans: spans.ok_or_else(|| missing("Batch", "spans"))?,
    })
}

fn read_process(input: &mut dyn TInputProtocol) -> ThriftResult<Process> {
    let mut process = Process::default();
    read_struct(input, |input, id, field_type| {
        match (id, field_type) {
            (1, TType::String) => process.service_name = input.read_string()?,
            (2, TType::List) => process.tags = read_list(input, read_tag)?,
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    Ok(process)
}

fn read_tag(input: &mut dyn TInputProtocol) -> ThriftResult<Tag> {
    let (mut key, mut v_type) = (None, None);
    let (mut v_str, mut v_double, mut v_bool, mut v_long, mut v_binary) = (None, None, None, None, None);
    read_struct(input, |input, id, field_type| {
        match (id, field_type) {
            (1, TType::String) => key = Some(input.read_string()?),
            (2, TType::I32) => v_type = Some(input.read_i32()?),
            (3, TType::String) => v_str = Some(input.read_string()?),
            (4, TType::Double) => v_double = Some(input.read_double()?),
            (5, TType::Bool) => v_bool = Some(input.read_bool()?),
            (6, TType::I64) => v_long = Some(input.read_i64()?),
            (7, TType::String) => v_binary = Some(input.read_bytes()?),
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    // TagType: STRING, DOUBLE, BOOL, LONG, BINARY; an absent value is that type's zero.
    let value = match v_type.ok_or_else(|| missing("Tag", "vType"))? {
        0 => TagValue::Str(v_str.unwrap_or_default()),
        1 => TagValue::Double(v_double.unwrap_or_default()),
        2 => TagValue::Bool(v_bool.unwrap_or_default()),
        3 => TagValue::Long(v_long.unwrap_or_default()),
        4 => TagValue::Binary(v_binary.unwrap_or_default()),
        other => {
            return Err(thrift::Error::Protocol(thrift::ProtocolError::new(
                thrift::ProtocolErrorKind::InvalidData,
                format!("Tag.vType {other} is not a TagType"),
            )));
        }
    };
    Ok(Tag {
        key: key.ok_or_else(|| missing("Tag", "key"))?,
        value,
    })
}

fn read_log(input: &mut dyn TInputProtocol) -> ThriftResult<Log> {
    let (mut timestamp, mut fields) = (None, Vec::new());
    read_struct(input, |input, id, field_type| {
        match (id, field_type) {
            (1, TType::I64) => timestamp = Some(input.read_i64()?),
            (2, TType::List) => fields = read_list(input, read_tag)?,
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    Ok(Log {
        time_unix_nano: micros(timestamp.ok_or_else(|| missing("Log", "timestamp"))?),
        fields,
    })
}

fn read_span_ref(input: &mut dyn TInputProtocol) -> ThriftResult<SpanRef> {
    let (mut ref_type, mut low, mut high, mut span_id) = (0, 0, 0, 0);
    read_struct(input, |input, id, field_type| {
        match (id, field_type) {
            (1, TType::I32) => ref_type = input.read_i32()?,
            (2, TType::I64) => low = input.read_i64()?,
            (3, TType::I64) => high = input.read_i64()?,
            (4, TType::I64) => span_id = input.read_i64()?,
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    Ok(SpanRef {
        ref_type: if ref_type == 1 {
            RefType::FollowsFrom
        } else {
            RefType::ChildOf
        },
        trace_id: trace_id(high, low),
        span_id: span_id.to_be_bytes(),
    })
}

fn read_span(input: &mut dyn TInputProtocol) -> ThriftResult<Span> {
    let mut span = Span::default();
    let (mut low, mut high, mut span_id) = (None, 0, None);
    read_struct(input, |input, id, field_type| {
        match (id, field_type) {
            (1, TType::I64) => low = Some(input.read_i64()?),
            (2, TType::I64) => high = input.read_i64()?,
            (3, TType::I64) => span_id = Some(input.read_i64()?),
            (4, TType::I64) => span.parent_span_id = input.read_i64()?.to_be_bytes(),
            (5, TType::String) => span.operation_name = input.read_string()?,
            (6, TType::List) => span.references = read_list(input, read_span_ref)?,
            (8, TType::I64) => span.start_unix_nano = micros(input.read_i64()?),
            (9, TType::I64) => span.duration_nano = micros(input.read_i64()?),
            (10, TType::List) => span.tags = read_list(input, read_tag)?,
            (11, TType::List) => span.logs = read_list(input, read_log)?,
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    span.trace_id = trace_id(high, low.ok_or_else(|| missing("Span", "traceIdLow"))?);
    span.span_id = span_id.ok_or_else(|| missing("Span", "spanId"))?.to_be_bytes();
    Ok(span)
}

/// Jaeger Thrift times are microseconds; a negative one is taken as 0.
fn micros(us: i64) -> u64 {
    crate::otlp::micros_to_nanos(u64::try_from(us).unwrap_or(0))
}
