//! Zipkin v1 Thrift (`zipkinCore.thrift`): the body of `POST /api/v1/spans` with
//! `application/x-thrift` is a `list<Span>` in the binary protocol. Read by hand like
//! Jaeger's structs, with the same bounds; typed binary annotations become typed attributes
//! as in the Collector (BOOL, I16/I32/I64, DOUBLE; BYTES as base64; STRING as text).

use base64::Engine;
use legato_proto::common::{AnyValue, any_value};
use thrift::protocol::{TBinaryInputProtocol, TInputProtocol, TType};

use super::{V1Annotation, V1BinaryAnnotation, V1Endpoint, V1Span};
use crate::jaeger::thrift::{ThriftResult, invalid, limits, missing, read_list, read_struct};
use crate::{ExportTraceServiceRequest, ReceiveError};

/// A Zipkin v1 Thrift `list<Span>` as an OTLP request.
pub fn from_thrift(body: &[u8]) -> Result<ExportTraceServiceRequest, ReceiveError> {
    from_thrift_at(body, super::now_unix_nano())
}

pub(crate) fn from_thrift_at(body: &[u8], now_unix_nano: u64) -> Result<ExportTraceServiceRequest, ReceiveError> {
    let mut input = TBinaryInputProtocol::with_config(body, true, limits(body.len()));
    let spans = read_list(&mut input, read_span).map_err(|e| invalid("Zipkin v1 Thrift span list", e))?;
    Ok(super::translate(spans, now_unix_nano))
}

fn read_span(input: &mut dyn TInputProtocol) -> ThriftResult<V1Span> {
    let (mut low, mut high, mut id, mut parent) = (None, 0i64, None, None);
    let mut span = V1Span {
        trace_id: [0; 16],
        id: [0; 8],
        parent_id: None,
        name: String::new(),
        timestamp_us: None,
        duration_us: None,
        annotations: Vec::new(),
        binary_annotations: Vec::new(),
    };
    read_struct(input, |input, field, field_type| {
        match (field, field_type) {
            (1, TType::I64) => low = Some(input.read_i64()?),
            (3, TType::String) => span.name = input.read_string()?,
            (4, TType::I64) => id = Some(input.read_i64()?),
            (5, TType::I64) => parent = Some(input.read_i64()?),
            (6, TType::List) => span.annotations = read_list(input, read_annotation)?,
            (8, TType::List) => span.binary_annotations = read_list(input, read_binary_annotation)?,
            (10, TType::I64) => span.timestamp_us = u64::try_from(input.read_i64()?).ok().filter(|t| *t != 0),
            (11, TType::I64) => span.duration_us = u64::try_from(input.read_i64()?).ok(),
            (12, TType::I64) => high = input.read_i64()?,
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    let low = low.ok_or_else(|| missing("Span", "trace_id"))?;
    span.trace_id[..8].copy_from_slice(&high.to_be_bytes());
    span.trace_id[8..].copy_from_slice(&low.to_be_bytes());
    span.id = id.ok_or_else(|| missing("Span", "id"))?.to_be_bytes();
    span.parent_id = parent.filter(|p| *p != 0).map(i64::to_be_bytes);
    Ok(span)
}

fn read_endpoint(input: &mut dyn TInputProtocol) -> ThriftResult<V1Endpoint> {
    let mut endpoint = V1Endpoint::default();
    read_struct(input, |input, field, field_type| {
        match (field, field_type) {
            (1, TType::I32) => {
                let ip = input.read_i32()?;
                if ip != 0 {
                    endpoint.ipv4 = std::net::Ipv4Addr::from(ip.to_be_bytes()).to_string();
                }
            }
            // An i16 on the wire: ports above 32767 arrive negative.
            (2, TType::I16) => endpoint.port = Some(input.read_i16()? as u16).filter(|p| *p != 0),
            (3, TType::String) => endpoint.service = input.read_string()?,
            (4, TType::String) => {
                let bytes = input.read_bytes()?;
                if let Ok(octets) = <[u8; 16]>::try_from(bytes.as_slice()) {
                    endpoint.ipv6 = std::net::Ipv6Addr::from(octets).to_string();
                }
            }
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    Ok(endpoint)
}

fn read_annotation(input: &mut dyn TInputProtocol) -> ThriftResult<V1Annotation> {
    let mut annotation = V1Annotation {
        timestamp_us: 0,
        value: String::new(),
        endpoint: None,
    };
    read_struct(input, |input, field, field_type| {
        match (field, field_type) {
            (1, TType::I64) => annotation.timestamp_us = u64::try_from(input.read_i64()?).unwrap_or(0),
            (2, TType::String) => annotation.value = input.read_string()?,
            (3, TType::Struct) => annotation.endpoint = Some(read_endpoint(input)?),
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    Ok(annotation)
}

fn read_binary_annotation(input: &mut dyn TInputProtocol) -> ThriftResult<V1BinaryAnnotation> {
    let (mut key, mut bytes, mut kind, mut endpoint) = (String::new(), Vec::new(), 6, None);
    read_struct(input, |input, field, field_type| {
        match (field, field_type) {
            (1, TType::String) => key = input.read_string()?,
            (2, TType::String) => bytes = input.read_bytes()?,
            (3, TType::I32) => kind = input.read_i32()?,
            (4, TType::Struct) => endpoint = Some(read_endpoint(input)?),
            _ => input.skip(field_type)?,
        }
        Ok(())
    })?;
    Ok(V1BinaryAnnotation {
        value: typed_value(kind, &bytes),
        key,
        endpoint,
    })
}

/// A binary annotation's value by its `AnnotationType`; numbers are big-endian. A value too
/// short for its type, or an unknown type, is kept as a string saying so (the Collector's
/// way: the span is not lost for one bad tag).
pub(super) fn typed_value(kind: i32, bytes: &[u8]) -> AnyValue {
    fn be<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
        bytes.get(..N)?.try_into().ok()
    }
    let value = match kind {
        0 => Some(any_value::Value::BoolValue(bytes == [1])),
        1 => Some(any_value::Value::StringValue(
            base64::engine::general_purpose::STANDARD.encode(bytes),
        )),
        2 => be::<2>(bytes).map(|b| any_value::Value::IntValue(i64::from(i16::from_be_bytes(b)))),
        3 => be::<4>(bytes).map(|b| any_value::Value::IntValue(i64::from(i32::from_be_bytes(b)))),
        4 => be::<8>(bytes).map(|b| any_value::Value::IntValue(i64::from_be_bytes(b))),
        5 => be::<8>(bytes).map(|b| any_value::Value::DoubleValue(f64::from_be_bytes(b))),
        6 => Some(any_value::Value::StringValue(
            String::from_utf8_lossy(bytes).into_owned(),
        )),
        other => Some(any_value::Value::StringValue(format!(
            "<unknown zipkin v1 binary annotation type ({other})>"
        ))),
    };
    let value = value
        .unwrap_or_else(|| any_value::Value::StringValue("<not enough bytes representing the number>".to_string()));
    AnyValue { value: Some(value) }
}
