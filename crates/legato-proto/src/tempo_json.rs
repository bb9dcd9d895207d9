//! Renders traces in Tempo's JSON dialect (gogo `jsonpb` defaults): lowerCamelCase names,
//! 64-bit integers as strings, enums as names, `bytes` (ids) as standard base64, default
//! values omitted. v1 trace-by-id uses the key `batches`, v2 uses `resourceSpans`.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::common::{AnyValue, InstrumentationScope, KeyValue, any_value};
use crate::tempopb::{PARTIAL_STATUS_PARTIAL, TraceByIdResponse};
use crate::trace::{ResourceSpans, Span, span};

const SPAN_KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_CODES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/// `tempopb.Trace` as v1 JSON: `{"batches":[...]}`.
pub fn trace_v1(batches: &[ResourceSpans]) -> Value {
    trace_object("batches", batches)
}

/// `tempopb.TraceByIDResponse` as JSON.
pub fn trace_by_id_v2(resp: &TraceByIdResponse) -> Value {
    let mut obj = Map::new();
    let batches = resp.trace.as_ref().map(|t| t.resource_spans.as_slice()).unwrap_or(&[]);
    obj.insert("trace".into(), trace_object("resourceSpans", batches));
    if let Some(m) = &resp.metrics {
        let mut metrics = Map::new();
        put_u64(&mut metrics, "inspectedBytes", m.inspected_bytes);
        put_u64(&mut metrics, "backendReads", m.backend_reads);
        put_u64(&mut metrics, "backendBytes", m.backend_bytes);
        obj.insert("metrics".into(), Value::Object(metrics));
    }
    if resp.status == PARTIAL_STATUS_PARTIAL {
        obj.insert("status".into(), json!("PARTIAL"));
    }
    put_str(&mut obj, "message", &resp.message);
    Value::Object(obj)
}

fn trace_object(key: &str, batches: &[ResourceSpans]) -> Value {
    let mut obj = Map::new();
    if !batches.is_empty() {
        obj.insert(key.into(), Value::Array(batches.iter().map(resource_spans).collect()));
    }
    Value::Object(obj)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn put_str(obj: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        obj.insert(key.into(), Value::String(value.to_string()));
    }
}

fn put_u64(obj: &mut Map<String, Value>, key: &str, value: u64) {
    if value != 0 {
        obj.insert(key.into(), Value::String(value.to_string()));
    }
}

fn put_u32(obj: &mut Map<String, Value>, key: &str, value: u32) {
    if value != 0 {
        obj.insert(key.into(), json!(value));
    }
}

fn put_bytes(obj: &mut Map<String, Value>, key: &str, value: &[u8]) {
    if !value.is_empty() {
        obj.insert(key.into(), Value::String(b64(value)));
    }
}

fn put_attrs(obj: &mut Map<String, Value>, attrs: &[KeyValue]) {
    if !attrs.is_empty() {
        obj.insert("attributes".into(), Value::Array(attrs.iter().map(key_value).collect()));
    }
}

fn resource_spans(rs: &ResourceSpans) -> Value {
    let mut obj = Map::new();
    if let Some(resource) = &rs.resource {
        let mut r = Map::new();
        put_attrs(&mut r, &resource.attributes);
        put_u32(&mut r, "droppedAttributesCount", resource.dropped_attributes_count);
        obj.insert("resource".into(), Value::Object(r));
    }
    let scope_spans: Vec<Value> = rs
        .scope_spans
        .iter()
        .map(|ss| {
            let mut s = Map::new();
            if let Some(scope) = &ss.scope {
                s.insert("scope".into(), scope_json(scope));
            }
            if !ss.spans.is_empty() {
                s.insert("spans".into(), Value::Array(ss.spans.iter().map(span_json).collect()));
            }
            put_str(&mut s, "schemaUrl", &ss.schema_url);
            Value::Object(s)
        })
        .collect();
    if !scope_spans.is_empty() {
        obj.insert("scopeSpans".into(), Value::Array(scope_spans));
    }
    put_str(&mut obj, "schemaUrl", &rs.schema_url);
    Value::Object(obj)
}

fn scope_json(scope: &InstrumentationScope) -> Value {
    let mut s = Map::new();
    put_str(&mut s, "name", &scope.name);
    put_str(&mut s, "version", &scope.version);
    put_attrs(&mut s, &scope.attributes);
    put_u32(&mut s, "droppedAttributesCount", scope.dropped_attributes_count);
    Value::Object(s)
}

fn span_json(sp: &Span) -> Value {
    let mut obj = Map::new();
    put_bytes(&mut obj, "traceId", &sp.trace_id);
    put_bytes(&mut obj, "spanId", &sp.span_id);
    put_str(&mut obj, "traceState", &sp.trace_state);
    put_bytes(&mut obj, "parentSpanId", &sp.parent_span_id);
    put_u32(&mut obj, "flags", sp.flags);
    put_str(&mut obj, "name", &sp.name);
    if sp.kind != 0 {
        let name = SPAN_KINDS.get(sp.kind as usize).copied();
        obj.insert("kind".into(), name.map_or(json!(sp.kind), |n| json!(n)));
    }
    put_u64(&mut obj, "startTimeUnixNano", sp.start_time_unix_nano);
    put_u64(&mut obj, "endTimeUnixNano", sp.end_time_unix_nano);
    put_attrs(&mut obj, &sp.attributes);
    put_u32(&mut obj, "droppedAttributesCount", sp.dropped_attributes_count);
    if !sp.events.is_empty() {
        obj.insert(
            "events".into(),
            Value::Array(sp.events.iter().map(event_json).collect()),
        );
    }
    put_u32(&mut obj, "droppedEventsCount", sp.dropped_events_count);
    if !sp.links.is_empty() {
        obj.insert("links".into(), Value::Array(sp.links.iter().map(link_json).collect()));
    }
    put_u32(&mut obj, "droppedLinksCount", sp.dropped_links_count);
    let mut status = Map::new();
    if let Some(st) = &sp.status {
        put_str(&mut status, "message", &st.message);
        if st.code != 0 {
            let name = STATUS_CODES.get(st.code as usize).copied();
            status.insert("code".into(), name.map_or(json!(st.code), |n| json!(n)));
        }
    }
    obj.insert("status".into(), Value::Object(status));
    Value::Object(obj)
}

fn event_json(ev: &span::Event) -> Value {
    let mut obj = Map::new();
    put_u64(&mut obj, "timeUnixNano", ev.time_unix_nano);
    put_str(&mut obj, "name", &ev.name);
    put_attrs(&mut obj, &ev.attributes);
    put_u32(&mut obj, "droppedAttributesCount", ev.dropped_attributes_count);
    Value::Object(obj)
}

fn link_json(link: &span::Link) -> Value {
    let mut obj = Map::new();
    put_bytes(&mut obj, "traceId", &link.trace_id);
    put_bytes(&mut obj, "spanId", &link.span_id);
    put_str(&mut obj, "traceState", &link.trace_state);
    put_attrs(&mut obj, &link.attributes);
    put_u32(&mut obj, "droppedAttributesCount", link.dropped_attributes_count);
    Value::Object(obj)
}

fn key_value(kv: &KeyValue) -> Value {
    let mut obj = Map::new();
    obj.insert("key".into(), Value::String(kv.key.clone()));
    if let Some(v) = &kv.value {
        obj.insert("value".into(), any_value_json(v));
    }
    Value::Object(obj)
}

fn any_value_json(v: &AnyValue) -> Value {
    use any_value::Value as V;
    let mut obj = Map::new();
    match &v.value {
        None => {}
        Some(V::StringValue(s)) => {
            obj.insert("stringValue".into(), json!(s));
        }
        Some(V::BoolValue(b)) => {
            obj.insert("boolValue".into(), json!(b));
        }
        Some(V::IntValue(i)) => {
            obj.insert("intValue".into(), json!(i.to_string()));
        }
        Some(V::DoubleValue(d)) => {
            let value = if d.is_finite() {
                json!(d)
            } else if d.is_nan() {
                json!("NaN")
            } else if *d > 0.0 {
                json!("Infinity")
            } else {
                json!("-Infinity")
            };
            obj.insert("doubleValue".into(), value);
        }
        Some(V::ArrayValue(a)) => {
            let values: Vec<Value> = a.values.iter().map(any_value_json).collect();
            obj.insert("arrayValue".into(), json!({ "values": values }));
        }
        Some(V::KvlistValue(kv)) => {
            let values: Vec<Value> = kv.values.iter().map(key_value).collect();
            obj.insert("kvlistValue".into(), json!({ "values": values }));
        }
        Some(V::BytesValue(b)) => {
            obj.insert("bytesValue".into(), json!(b64(b)));
        }
        Some(V::StringValueStrindex(i)) => {
            obj.insert("stringValueStrindex".into(), json!(i));
        }
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{ScopeSpans, Status};

    #[test]
    fn matches_tempo_dialect() {
        let span = Span {
            trace_id: hex::decode("5b8efff798038103d269b633813fc700").unwrap(),
            span_id: hex::decode("eee19b7ec3c1b100").unwrap(),
            name: "I am a span!".into(),
            kind: 2,
            start_time_unix_nano: 1_689_969_302_000_000_000,
            end_time_unix_nano: 1_689_970_000_000_000_000,
            status: Some(Status::default()),
            ..Default::default()
        };
        let rs = ResourceSpans {
            resource: Some(Default::default()),
            scope_spans: vec![ScopeSpans {
                scope: Some(Default::default()),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        };
        let v = trace_v1(&[rs]);
        let s = &v["batches"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "W47/95gDgQPSabYzgT/HAA==");
        assert_eq!(s["spanId"], "7uGbfsPBsQA=");
        assert_eq!(s["kind"], "SPAN_KIND_SERVER");
        assert_eq!(s["startTimeUnixNano"], "1689969302000000000");
        assert_eq!(s["status"], json!({}));
        assert!(s.get("parentSpanId").is_none());
    }
}

/// Search and tag responses in Tempo's JSON dialect (jsonpb defaults: zero values omitted,
/// 64-bit integers as strings). Only fields Tempo's messages have: Grafana 12.3+ rejects others.
pub mod search {
    use serde_json::{Map, Value, json};

    use super::{key_value, put_str, put_u64};
    use crate::tempopb::search::{
        MetadataMetrics, SearchMetrics, SearchResponse, SearchTagValuesResponse, SearchTagValuesV2Response,
        SearchTagsResponse, SearchTagsV2Response, SpanSet,
    };

    fn put_u32(obj: &mut Map<String, Value>, key: &str, value: u32) {
        if value != 0 {
            obj.insert(key.into(), json!(value));
        }
    }

    fn span_set(set: &SpanSet) -> Value {
        let mut obj = Map::new();
        let spans: Vec<Value> = set
            .spans
            .iter()
            .map(|s| {
                let mut o = Map::new();
                put_str(&mut o, "spanID", &s.span_id);
                put_str(&mut o, "name", &s.name);
                put_u64(&mut o, "startTimeUnixNano", s.start_time_unix_nano);
                put_u64(&mut o, "durationNanos", s.duration_nanos);
                if !s.attributes.is_empty() {
                    o.insert(
                        "attributes".into(),
                        Value::Array(s.attributes.iter().map(key_value).collect()),
                    );
                }
                Value::Object(o)
            })
            .collect();
        if !spans.is_empty() {
            obj.insert("spans".into(), Value::Array(spans));
        }
        put_u32(&mut obj, "matched", set.matched);
        if !set.attributes.is_empty() {
            obj.insert(
                "attributes".into(),
                Value::Array(set.attributes.iter().map(key_value).collect()),
            );
        }
        Value::Object(obj)
    }

    fn search_metrics(m: &SearchMetrics) -> Value {
        let mut obj = Map::new();
        put_u32(&mut obj, "inspectedTraces", m.inspected_traces);
        put_u64(&mut obj, "inspectedBytes", m.inspected_bytes);
        put_u32(&mut obj, "totalBlocks", m.total_blocks);
        put_u32(&mut obj, "completedJobs", m.completed_jobs);
        put_u32(&mut obj, "totalJobs", m.total_jobs);
        put_u64(&mut obj, "totalBlockBytes", m.total_block_bytes);
        put_u64(&mut obj, "inspectedSpans", m.inspected_spans);
        Value::Object(obj)
    }

    pub fn metadata_metrics(m: &MetadataMetrics) -> Value {
        let mut obj = Map::new();
        put_u64(&mut obj, "inspectedBytes", m.inspected_bytes);
        put_u32(&mut obj, "totalJobs", m.total_jobs);
        put_u32(&mut obj, "completedJobs", m.completed_jobs);
        put_u32(&mut obj, "totalBlocks", m.total_blocks);
        Value::Object(obj)
    }

    pub fn search_response(resp: &SearchResponse) -> Value {
        let mut obj = Map::new();
        let traces: Vec<Value> = resp
            .traces
            .iter()
            .map(|t| {
                let mut o = Map::new();
                put_str(&mut o, "traceID", &t.trace_id);
                put_str(&mut o, "rootServiceName", &t.root_service_name);
                put_str(&mut o, "rootTraceName", &t.root_trace_name);
                put_u64(&mut o, "startTimeUnixNano", t.start_time_unix_nano);
                put_u32(&mut o, "durationMs", t.duration_ms);
                if let Some(set) = &t.span_set {
                    o.insert("spanSet".into(), span_set(set));
                }
                if !t.span_sets.is_empty() {
                    o.insert(
                        "spanSets".into(),
                        Value::Array(t.span_sets.iter().map(span_set).collect()),
                    );
                }
                if !t.service_stats.is_empty() {
                    let stats: Map<String, Value> = t
                        .service_stats
                        .iter()
                        .map(|(svc, s)| {
                            let mut so = Map::new();
                            put_u32(&mut so, "spanCount", s.span_count);
                            put_u32(&mut so, "errorCount", s.error_count);
                            (svc.clone(), Value::Object(so))
                        })
                        .collect();
                    o.insert("serviceStats".into(), Value::Object(stats));
                }
                Value::Object(o)
            })
            .collect();
        if !traces.is_empty() {
            obj.insert("traces".into(), Value::Array(traces));
        }
        obj.insert(
            "metrics".into(),
            resp.metrics.as_ref().map(search_metrics).unwrap_or(json!({})),
        );
        Value::Object(obj)
    }

    fn with_metrics(mut obj: Map<String, Value>, m: &Option<MetadataMetrics>) -> Value {
        obj.insert("metrics".into(), m.as_ref().map(metadata_metrics).unwrap_or(json!({})));
        Value::Object(obj)
    }

    pub fn tags_v1(resp: &SearchTagsResponse) -> Value {
        let mut obj = Map::new();
        obj.insert("tagNames".into(), json!(resp.tag_names));
        with_metrics(obj, &resp.metrics)
    }

    pub fn tags_v2(resp: &SearchTagsV2Response) -> Value {
        let mut obj = Map::new();
        let scopes: Vec<Value> = resp
            .scopes
            .iter()
            .map(|s| {
                let mut o = Map::new();
                put_str(&mut o, "name", &s.name);
                if !s.tags.is_empty() {
                    o.insert("tags".into(), json!(s.tags));
                }
                Value::Object(o)
            })
            .collect();
        obj.insert("scopes".into(), Value::Array(scopes));
        with_metrics(obj, &resp.metrics)
    }

    pub fn tag_values_v1(resp: &SearchTagValuesResponse) -> Value {
        let mut obj = Map::new();
        obj.insert("tagValues".into(), json!(resp.tag_values));
        with_metrics(obj, &resp.metrics)
    }

    pub fn tag_values_v2(resp: &SearchTagValuesV2Response) -> Value {
        let mut obj = Map::new();
        let values: Vec<Value> = resp
            .tag_values
            .iter()
            .map(|v| json!({"type": v.r#type, "value": v.value}))
            .collect();
        obj.insert("tagValues".into(), Value::Array(values));
        with_metrics(obj, &resp.metrics)
    }
}
