//! Decodes OTLP/JSON trace export requests (the protobuf JSON mapping as OTLP defines it):
//! hex trace and span ids, enums as numbers or names, 64-bit integers as numbers or strings,
//! lowerCamelCase or snake_case keys, base64 `bytesValue`.

use base64::Engine;
use serde_json::{Map, Value};

use crate::collector::ExportTraceServiceRequest;
use crate::common::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value};
use crate::resource::Resource;
use crate::trace::{ResourceSpans, ScopeSpans, Span, Status, span};

/// A decode failure with the JSON path where it happened.
#[derive(Debug, thiserror::Error)]
#[error("invalid OTLP/JSON at {path}: {message}")]
pub struct JsonError {
    pub path: String,
    pub message: String,
}

type Result<T> = std::result::Result<T, JsonError>;

fn err<T>(path: &str, message: impl Into<String>) -> Result<T> {
    Err(JsonError {
        path: path.to_string(),
        message: message.into(),
    })
}

/// Decodes an `ExportTraceServiceRequest` from OTLP/JSON bytes.
pub fn decode_export_request(body: &[u8]) -> Result<ExportTraceServiceRequest> {
    let value: Value = serde_json::from_slice(body).map_err(|e| JsonError {
        path: "$".into(),
        message: e.to_string(),
    })?;
    let obj = as_object(&value, "$")?;
    let resource_spans = list(obj, "$", &["resourceSpans", "resource_spans"], resource_spans)?;
    Ok(ExportTraceServiceRequest { resource_spans })
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    value.as_object().map_or_else(|| err(path, "expected an object"), Ok)
}

fn field<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| obj.get(*n)).filter(|v| !v.is_null())
}

fn list<T>(
    obj: &Map<String, Value>,
    path: &str,
    names: &[&str],
    item: impl Fn(&Value, &str) -> Result<T>,
) -> Result<Vec<T>> {
    let Some(value) = field(obj, names) else {
        return Ok(Vec::new());
    };
    let path = format!("{path}.{}", names[0]);
    let Some(items) = value.as_array() else {
        return err(&path, "expected an array");
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| item(v, &format!("{path}[{i}]")))
        .collect()
}

fn string(obj: &Map<String, Value>, path: &str, names: &[&str]) -> Result<String> {
    match field(obj, names) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => err(&format!("{path}.{}", names[0]), "expected a string"),
    }
}

fn uint(obj: &Map<String, Value>, path: &str, names: &[&str]) -> Result<u64> {
    let here = || format!("{path}.{}", names[0]);
    match field(obj, names) {
        None => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .map_or_else(|| err(&here(), "expected an unsigned integer"), Ok),
        Some(Value::String(s)) => s.parse().map_err(|_| JsonError {
            path: here(),
            message: format!("expected an unsigned integer, got {s:?}"),
        }),
        Some(_) => err(&here(), "expected an unsigned integer"),
    }
}

fn int(value: &Value, path: &str) -> Result<i64> {
    match value {
        Value::Number(n) => n.as_i64().map_or_else(|| err(path, "expected an integer"), Ok),
        Value::String(s) => s.parse().map_err(|_| JsonError {
            path: path.into(),
            message: format!("expected an integer, got {s:?}"),
        }),
        _ => err(path, "expected an integer"),
    }
}

fn hex_id(obj: &Map<String, Value>, path: &str, names: &[&str], len: usize) -> Result<Vec<u8>> {
    let text = string(obj, path, names)?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let here = format!("{path}.{}", names[0]);
    let bytes = hex::decode(&text).map_err(|e| JsonError {
        path: here.clone(),
        message: format!("id is not hex: {e}"),
    })?;
    if bytes.len() != len {
        return err(&here, format!("id must be {} hex digits, got {}", len * 2, text.len()));
    }
    Ok(bytes)
}

fn enum_value(obj: &Map<String, Value>, path: &str, names: &[&str], symbols: &[&str]) -> Result<i32> {
    let here = || format!("{path}.{}", names[0]);
    match field(obj, names) {
        None => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .map_or_else(|| err(&here(), "expected an enum number"), Ok),
        Some(Value::String(s)) => symbols
            .iter()
            .position(|sym| sym == s)
            .map(|p| p as i32)
            .map_or_else(|| err(&here(), format!("unknown enum value {s:?}")), Ok),
        Some(_) => err(&here(), "expected an enum name or number"),
    }
}

const SPAN_KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_CODES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

fn resource_spans(value: &Value, path: &str) -> Result<ResourceSpans> {
    let obj = as_object(value, path)?;
    let resource = match field(obj, &["resource"]) {
        None => None,
        Some(r) => Some(resource(r, &format!("{path}.resource"))?),
    };
    Ok(ResourceSpans {
        resource,
        scope_spans: list(obj, path, &["scopeSpans", "scope_spans"], scope_spans)?,
        schema_url: string(obj, path, &["schemaUrl", "schema_url"])?,
    })
}

fn resource(value: &Value, path: &str) -> Result<Resource> {
    let obj = as_object(value, path)?;
    Ok(Resource {
        attributes: list(obj, path, &["attributes"], key_value)?,
        dropped_attributes_count: uint(obj, path, &["droppedAttributesCount", "dropped_attributes_count"])? as u32,
        ..Default::default()
    })
}

fn scope_spans(value: &Value, path: &str) -> Result<ScopeSpans> {
    let obj = as_object(value, path)?;
    let scope = match field(obj, &["scope"]) {
        None => None,
        Some(s) => {
            let here = format!("{path}.scope");
            let s = as_object(s, &here)?;
            Some(InstrumentationScope {
                name: string(s, &here, &["name"])?,
                version: string(s, &here, &["version"])?,
                attributes: list(s, &here, &["attributes"], key_value)?,
                dropped_attributes_count: uint(s, &here, &["droppedAttributesCount", "dropped_attributes_count"])?
                    as u32,
            })
        }
    };
    Ok(ScopeSpans {
        scope,
        spans: list(obj, path, &["spans"], span)?,
        schema_url: string(obj, path, &["schemaUrl", "schema_url"])?,
    })
}

fn span(value: &Value, path: &str) -> Result<Span> {
    let obj = as_object(value, path)?;
    let status = match field(obj, &["status"]) {
        None => None,
        Some(s) => {
            let here = format!("{path}.status");
            let s = as_object(s, &here)?;
            Some(Status {
                message: string(s, &here, &["message"])?,
                code: enum_value(s, &here, &["code"], STATUS_CODES)?,
            })
        }
    };
    Ok(Span {
        trace_id: hex_id(obj, path, &["traceId", "trace_id"], 16)?,
        span_id: hex_id(obj, path, &["spanId", "span_id"], 8)?,
        trace_state: string(obj, path, &["traceState", "trace_state"])?,
        parent_span_id: hex_id(obj, path, &["parentSpanId", "parent_span_id"], 8)?,
        flags: uint(obj, path, &["flags"])? as u32,
        name: string(obj, path, &["name"])?,
        kind: enum_value(obj, path, &["kind"], SPAN_KINDS)?,
        start_time_unix_nano: uint(obj, path, &["startTimeUnixNano", "start_time_unix_nano"])?,
        end_time_unix_nano: uint(obj, path, &["endTimeUnixNano", "end_time_unix_nano"])?,
        attributes: list(obj, path, &["attributes"], key_value)?,
        dropped_attributes_count: uint(obj, path, &["droppedAttributesCount", "dropped_attributes_count"])? as u32,
        events: list(obj, path, &["events"], event)?,
        dropped_events_count: uint(obj, path, &["droppedEventsCount", "dropped_events_count"])? as u32,
        links: list(obj, path, &["links"], link)?,
        dropped_links_count: uint(obj, path, &["droppedLinksCount", "dropped_links_count"])? as u32,
        status,
    })
}

fn event(value: &Value, path: &str) -> Result<span::Event> {
    let obj = as_object(value, path)?;
    Ok(span::Event {
        time_unix_nano: uint(obj, path, &["timeUnixNano", "time_unix_nano"])?,
        name: string(obj, path, &["name"])?,
        attributes: list(obj, path, &["attributes"], key_value)?,
        dropped_attributes_count: uint(obj, path, &["droppedAttributesCount", "dropped_attributes_count"])? as u32,
    })
}

fn link(value: &Value, path: &str) -> Result<span::Link> {
    let obj = as_object(value, path)?;
    Ok(span::Link {
        trace_id: hex_id(obj, path, &["traceId", "trace_id"], 16)?,
        span_id: hex_id(obj, path, &["spanId", "span_id"], 8)?,
        trace_state: string(obj, path, &["traceState", "trace_state"])?,
        attributes: list(obj, path, &["attributes"], key_value)?,
        dropped_attributes_count: uint(obj, path, &["droppedAttributesCount", "dropped_attributes_count"])? as u32,
        flags: uint(obj, path, &["flags"])? as u32,
    })
}

fn key_value(value: &Value, path: &str) -> Result<KeyValue> {
    let obj = as_object(value, path)?;
    let value = match field(obj, &["value"]) {
        None => None,
        Some(v) => Some(any_value(v, &format!("{path}.value"))?),
    };
    Ok(KeyValue {
        key: string(obj, path, &["key"])?,
        value,
        ..Default::default()
    })
}

fn any_value(value: &Value, path: &str) -> Result<AnyValue> {
    use any_value::Value as V;
    let obj = as_object(value, path)?;
    let Some((key, inner)) = obj.iter().find(|(_, v)| !v.is_null()) else {
        return Ok(AnyValue { value: None });
    };
    let here = format!("{path}.{key}");
    let decoded =
        match key.as_str() {
            "stringValue" | "string_value" => match inner {
                Value::String(s) => V::StringValue(s.clone()),
                _ => return err(&here, "expected a string"),
            },
            "boolValue" | "bool_value" => match inner {
                Value::Bool(b) => V::BoolValue(*b),
                _ => return err(&here, "expected a boolean"),
            },
            "intValue" | "int_value" => V::IntValue(int(inner, &here)?),
            "doubleValue" | "double_value" => match inner {
                Value::Number(n) => V::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) => match s.as_str() {
                    "NaN" => V::DoubleValue(f64::NAN),
                    "Infinity" => V::DoubleValue(f64::INFINITY),
                    "-Infinity" => V::DoubleValue(f64::NEG_INFINITY),
                    other => V::DoubleValue(other.parse().map_err(|_| JsonError {
                        path: here.clone(),
                        message: "expected a number".into(),
                    })?),
                },
                _ => return err(&here, "expected a number"),
            },
            "bytesValue" | "bytes_value" => match inner {
                Value::String(s) => V::BytesValue(base64::engine::general_purpose::STANDARD.decode(s).map_err(
                    |e| JsonError {
                        path: here.clone(),
                        message: format!("invalid base64: {e}"),
                    },
                )?),
                _ => return err(&here, "expected a base64 string"),
            },
            "arrayValue" | "array_value" => {
                let arr = as_object(inner, &here)?;
                V::ArrayValue(ArrayValue {
                    values: list(arr, &here, &["values"], any_value)?,
                })
            }
            "kvlistValue" | "kvlist_value" => {
                let kv = as_object(inner, &here)?;
                V::KvlistValue(KeyValueList {
                    values: list(kv, &here, &["values"], key_value)?,
                })
            }
            other => return err(path, format!("unknown AnyValue field {other:?}")),
        };
    Ok(AnyValue { value: Some(decoded) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hex_ids_enum_names_and_string_ints() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
          "scopeSpans":[{"scope":{"name":"lib"},"spans":[{"traceId":"5b8efff798038103d269b633813fc700","spanId":"eee19b7ec3c1b100",
          "name":"op","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1689969302000000000","endTimeUnixNano":1689969302000001000,
          "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"b","value":{"bytesValue":"AAE="}}],
          "status":{"code":2,"message":"boom"}}]}]}]}"#;
        let req = decode_export_request(body).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc700");
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_689_969_302_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_689_969_302_000_001_000);
        assert_eq!(
            span.attributes[0].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(42))
        );
        assert_eq!(
            span.attributes[1].value.as_ref().unwrap().value,
            Some(any_value::Value::BytesValue(vec![0, 1]))
        );
        assert_eq!(span.status.as_ref().unwrap().code, 2);
    }

    #[test]
    fn snake_case_keys_are_accepted() {
        let body = br#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"0000000000000000000000000000000a","span_id":"000000000000000b","kind":1}]}]}]}"#;
        let req = decode_export_request(body).unwrap();
        assert_eq!(req.resource_spans[0].scope_spans[0].spans[0].kind, 1);
    }

    #[test]
    fn errors_name_the_path() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#;
        let e = decode_export_request(body).unwrap_err();
        assert_eq!(e.path, "$.resourceSpans[0].scopeSpans[0].spans[0].traceId");
        assert!(decode_export_request(b"{nope").is_err());
    }
}
