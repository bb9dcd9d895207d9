//! The ingester's tag summaries, built from encoded traces read in place (`WireTags`), must
//! equal what the query view (`span_view::trace_data` + `TagSummary::add_trace`) gives, for
//! every kind of value.
#![allow(clippy::unwrap_used)]

use legato_proto::common::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status, span};
use legato_traceql::tags::TagSummary;
use prost::Message;

fn kv(key: &str, value: Option<Value>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.map(|v| AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn every_kind(prefix: &str) -> Vec<KeyValue> {
    vec![
        kv(
            &format!("{prefix}.str"),
            Some(Value::StringValue(format!("{prefix}-v"))),
        ),
        kv(&format!("{prefix}.int"), Some(Value::IntValue(42))),
        kv(&format!("{prefix}.dbl"), Some(Value::DoubleValue(1.5))),
        kv(&format!("{prefix}.bool"), Some(Value::BoolValue(true))),
        kv(
            &format!("{prefix}.arr"),
            Some(Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(Value::StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(Value::IntValue(7)),
                    },
                ],
            })),
        ),
        kv(
            &format!("{prefix}.map"),
            Some(Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", Some(Value::StringValue("x".into())))],
            })),
        ),
        kv(&format!("{prefix}.bytes"), Some(Value::BytesValue(vec![1, 2, 255]))),
        kv(&format!("{prefix}.none"), None),
    ]
}

fn span(id: u8, parent: Option<u8>, start: u64, name: &str) -> Span {
    Span {
        trace_id: vec![9; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 10,
        attributes: every_kind("span"),
        status: Some(Status {
            message: if id == 2 { "boom".into() } else { String::new() },
            code: 2,
        }),
        events: vec![span::Event {
            name: format!("ev-{id}"),
            attributes: every_kind("event"),
            ..Default::default()
        }],
        links: vec![span::Link {
            trace_id: vec![8; 16],
            span_id: vec![8; 8],
            attributes: every_kind("link"),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn batches() -> Vec<ResourceSpans> {
    let resource = |svc: &str| Resource {
        attributes: [
            vec![kv("service.name", Some(Value::StringValue(svc.into())))],
            every_kind("res"),
        ]
        .concat(),
        ..Default::default()
    };
    let scope = |name: &str| InstrumentationScope {
        name: name.into(),
        attributes: every_kind("scope"),
        ..Default::default()
    };
    vec![
        ResourceSpans {
            resource: Some(resource("frontend")),
            scope_spans: vec![
                ScopeSpans {
                    scope: Some(scope("http")),
                    spans: vec![span(2, Some(1), 20, "child"), span(1, None, 10, "GET /")],
                    ..Default::default()
                },
                // A scope without spans adds nothing.
                ScopeSpans {
                    scope: Some(scope("idle")),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
        ResourceSpans {
            resource: Some(resource("db")),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![span(3, Some(2), 30, "SELECT"), span(4, None, 40, "later root")],
                ..Default::default()
            }],
            ..Default::default()
        },
    ]
}

#[test]
fn tags_from_encoded_traces_equal_tags_from_the_query_view() {
    let batches = batches();
    // As the ingester holds the trace: two segments.
    let (first, second) = batches.split_at(1);
    let encode = |batches: &[ResourceSpans]| {
        legato_proto::tempopb::Trace {
            resource_spans: batches.to_vec(),
        }
        .encode_to_vec()
    };
    let segments = [encode(first), encode(second)];
    let mut wire = legato_proto::span_wire::WireTrace::default();
    for segment in &segments {
        wire.read(segment).unwrap();
    }
    let mut tags = legato_ingester::WireTags::default();
    tags.add(&wire);
    // A second trace from the same resources adds its spans' values, not the resources again.
    tags.add(&wire);
    let direct = tags.summary;
    let mut via_view = TagSummary::default();
    via_view.add_trace(&legato_proto::span_view::trace_data([9; 16], &batches), None);
    assert_eq!(direct, via_view);
    // And the summary is not trivially empty.
    assert!(direct.scopes["resource"].contains_key("res.arr"));
    assert!(direct.scopes["intrinsic"].contains_key("statusMessage"));
}

/// Past `MAX_VALUES_PER_TAG` distinct values a tag is truncated, whichever way the summary is
/// built: `WireTags` skips values it added before, never a change the summary would make.
#[test]
fn truncation_is_the_same_from_encoded_traces() {
    let spans: Vec<Span> = (0..1500u32)
        .map(|i| Span {
            trace_id: vec![9; 16],
            span_id: (u64::from(i) + 1).to_be_bytes().to_vec(),
            name: format!("op-{}", i % 7),
            start_time_unix_nano: u64::from(i),
            end_time_unix_nano: u64::from(i) + 5,
            // A fresh value per span, a few repeated ones, and a number.
            attributes: vec![
                kv("request.id", Some(Value::StringValue(format!("req-{i}")))),
                kv("route", Some(Value::StringValue(format!("/r/{}", i % 3)))),
                kv("n", Some(Value::IntValue(i64::from(i % 5)))),
            ],
            ..Default::default()
        })
        .collect();
    let batches = vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", Some(Value::StringValue("api".into())))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "http".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }];
    let encoded = legato_proto::tempopb::Trace {
        resource_spans: batches.clone(),
    }
    .encode_to_vec();
    let mut wire = legato_proto::span_wire::WireTrace::default();
    wire.read(&encoded).unwrap();
    let mut tags = legato_ingester::WireTags::default();
    tags.add(&wire);
    tags.add(&wire);
    let mut via_view = TagSummary::default();
    via_view.add_trace(&legato_proto::span_view::trace_data([9; 16], &batches), None);
    assert_eq!(tags.summary, via_view);
    let ids = &tags.summary.scopes["span"]["request.id"];
    assert!(ids.truncated);
    assert_eq!(ids.values.len(), legato_traceql::tags::MAX_VALUES_PER_TAG);
    assert!(!tags.summary.scopes["span"]["route"].truncated);
}
