//! OTLP → the query model (`legato_model::span::TraceData`) for live data.

use std::collections::HashMap;
use std::sync::Arc;

use legato_model::span::{AttrValue, Attrs, EventData, LinkData, SpanData, SpanOrigin, TraceData};
use prost::Message;

use crate::common::{AnyValue, KeyValue, any_value::Value};
use crate::trace::ResourceSpans;

/// The value of the string attribute `key`, if `attrs` has one.
pub fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

pub fn attr_value(v: &AnyValue) -> Option<AttrValue> {
    Some(match v.value.as_ref()? {
        Value::StringValue(s) => AttrValue::Str(s.clone()),
        Value::BoolValue(b) => AttrValue::Bool(*b),
        Value::IntValue(i) => AttrValue::Int(*i),
        Value::DoubleValue(d) => AttrValue::Float(*d),
        Value::ArrayValue(a) => AttrValue::Array(a.values.iter().filter_map(attr_value).collect()),
        Value::KvlistValue(kv) => AttrValue::Str(format!("{:?}", kv.values.iter().map(|k| &k.key).collect::<Vec<_>>())),
        Value::BytesValue(b) => AttrValue::Str(b.iter().map(|x| format!("{x:02x}")).collect()),
        Value::StringValueStrindex(i) => AttrValue::Int(i64::from(*i)),
    })
}

pub fn attrs(kvs: &[KeyValue]) -> Attrs {
    kvs.iter()
        .filter_map(|kv| Some((kv.key.clone(), attr_value(kv.value.as_ref()?)?)))
        .collect()
}

/// Builds a trace from OTLP batches (spans deduplicated by span id and kind).
pub fn trace_data(trace_id: [u8; 16], batches: &[ResourceSpans]) -> TraceData {
    let mut spans = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut origins: HashMap<Vec<u8>, Arc<SpanOrigin>> = HashMap::new();
    for rs in batches {
        for ss in &rs.scope_spans {
            let key = [
                rs.resource.as_ref().map(|r| r.encode_to_vec()).unwrap_or_default(),
                ss.scope.as_ref().map(|s| s.encode_to_vec()).unwrap_or_default(),
            ]
            .concat();
            let origin = origins
                .entry(key)
                .or_insert_with(|| {
                    let resource = rs.resource.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default();
                    let service_name = resource
                        .iter()
                        .find(|(k, _)| k == "service.name")
                        .and_then(|(_, v)| match v {
                            AttrValue::Str(s) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    let scope = ss.scope.clone().unwrap_or_default();
                    Arc::new(SpanOrigin {
                        service_name,
                        resource,
                        scope_name: scope.name,
                        scope_version: scope.version,
                        scope_attrs: attrs(&scope.attributes),
                    })
                })
                .clone();
            for s in &ss.spans {
                let Ok(span_id) = <[u8; 8]>::try_from(s.span_id.as_slice()) else {
                    continue;
                };
                if !seen.insert((span_id, s.kind)) {
                    continue;
                }
                let status = s.status.clone().unwrap_or_default();
                spans.push(SpanData {
                    span_id,
                    parent_span_id: s.parent_span_id.clone(),
                    parent: None,
                    nested_left: 0,
                    nested_right: 0,
                    name: s.name.clone(),
                    kind: s.kind,
                    status_code: status.code,
                    status_message: status.message,
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano,
                    attrs: attrs(&s.attributes),
                    events: s
                        .events
                        .iter()
                        .map(|e| EventData {
                            name: e.name.clone(),
                            time_unix_nano: e.time_unix_nano,
                            attrs: attrs(&e.attributes),
                        })
                        .collect(),
                    links: s
                        .links
                        .iter()
                        .map(|l| LinkData {
                            trace_id: l.trace_id.clone(),
                            span_id: l.span_id.clone(),
                            attrs: attrs(&l.attributes),
                        })
                        .collect(),
                    origin: origin.clone(),
                });
            }
        }
    }
    spans.sort_by_key(|s| s.start_unix_nano);
    let mut trace = TraceData { trace_id, spans };
    trace.link_tree();
    trace
}
