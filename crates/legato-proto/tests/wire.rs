//! The wire-level splitter against the struct path it replaces: same traces, same spans,
//! same rejections; and nothing accepted that a decoder could not read back.
#![allow(clippy::unwrap_used)]

use legato_model::TraceId;
use legato_proto::collector::ExportTraceServiceRequest;
use legato_proto::common::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value};
use legato_proto::push::RejectReason;
use legato_proto::resource::Resource;
use legato_proto::span_wire::{ResourceRef, SpanRef, for_each_span};
use legato_proto::tempopb;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status, span};
use legato_proto::wire::{
    Truncated, request_resource_spans, split_request, split_request_reading, split_resource_spans,
    split_resource_spans_reading, truncate_attributes,
};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn attrs(rng: &mut StdRng) -> Vec<KeyValue> {
    let mut out = vec![
        kv("http.method", any_value::Value::StringValue("GET".into())),
        kv("status", any_value::Value::IntValue(rng.random_range(200..600))),
        kv("ratio", any_value::Value::DoubleValue(rng.random())),
        kv("ok", any_value::Value::BoolValue(rng.random())),
        kv("raw", any_value::Value::BytesValue(vec![rng.random(); 3])),
    ];
    if rng.random_bool(0.3) {
        out.push(kv(
            "nested",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("deep", any_value::Value::StringValue("é✓".into()))],
                    })),
                }],
            }),
        ));
    }
    out
}

/// An export with several resources and scopes, traces interleaved across them, events,
/// links, statuses, and some spans with invalid ids.
fn export(rng: &mut StdRng) -> ExportTraceServiceRequest {
    let traces: Vec<Vec<u8>> = (0..rng.random_range(1..8))
        .map(|_| rng.random::<[u8; 16]>().to_vec())
        .collect();
    let resource_spans = (0..rng.random_range(1..4))
        .map(|r| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", any_value::Value::StringValue(format!("svc-{r}")))],
                dropped_attributes_count: r,
                ..Default::default()
            }),
            schema_url: if r % 2 == 0 {
                "https://schema/1".into()
            } else {
                String::new()
            },
            scope_spans: (0..rng.random_range(1..3))
                .map(|s| ScopeSpans {
                    scope: (s > 0).then(|| InstrumentationScope {
                        name: format!("lib-{s}"),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    schema_url: String::new(),
                    spans: (0..rng.random_range(0..12))
                        .map(|_| {
                            let mut trace_id = traces[rng.random_range(0..traces.len())].clone();
                            let mut span_id = rng.random::<[u8; 8]>().to_vec();
                            match rng.random_range(0..20) {
                                0 => trace_id = vec![0; 16],
                                1 => trace_id.truncate(8),
                                2 => span_id = vec![0; 8],
                                _ => {}
                            }
                            Span {
                                trace_id,
                                span_id,
                                name: format!("op-{}", rng.random_range(0..5)),
                                kind: rng.random_range(0..5),
                                start_time_unix_nano: rng.random(),
                                end_time_unix_nano: rng.random(),
                                attributes: attrs(rng),
                                events: vec![span::Event {
                                    name: "evt".into(),
                                    time_unix_nano: 7,
                                    attributes: attrs(rng),
                                    ..Default::default()
                                }],
                                links: vec![span::Link {
                                    trace_id: vec![9; 16],
                                    span_id: vec![9; 8],
                                    trace_state: "a=b".into(),
                                    ..Default::default()
                                }],
                                status: Some(Status {
                                    message: "boom".into(),
                                    code: 2,
                                }),
                                flags: 1,
                                ..Default::default()
                            }
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// What the struct path produced: per trace id, its spans with their resource and scope,
/// flattened, in order.
type Flat = Vec<(Option<Resource>, String, Option<InstrumentationScope>, String, Span)>;

fn flatten(batches: &[ResourceSpans]) -> Flat {
    let mut out = Vec::new();
    for rs in batches {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                out.push((
                    rs.resource.clone(),
                    rs.schema_url.clone(),
                    ss.scope.clone(),
                    ss.schema_url.clone(),
                    s.clone(),
                ));
            }
        }
    }
    out
}

#[test]
fn splits_like_decoding_and_regrouping() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let req = export(&mut rng);
        let split = split_request(&req.encode_to_vec(), 0).unwrap();
        // The same split from the resource spans one by one (the gRPC receiver's input).
        let parts: Vec<Vec<u8>> = req.resource_spans.iter().map(Message::encode_to_vec).collect();
        let again = split_resource_spans(&parts, 0).unwrap();
        assert_eq!(split.traces, again.traces);

        // Expected: every span, grouped by valid trace id, in order of appearance.
        let mut expected: Vec<(TraceId, Flat)> = Vec::new();
        let (mut bad_trace, mut bad_span) = (0, 0);
        let all = flatten(&req.resource_spans);
        for item in &all {
            let Ok(id) = TraceId::from_otlp(&item.4.trace_id) else {
                bad_trace += 1;
                continue;
            };
            if legato_model::SpanId::from_otlp(&item.4.span_id).is_err() {
                bad_span += 1;
                continue;
            }
            match expected.iter_mut().find(|(t, _)| *t == id) {
                Some((_, spans)) => spans.push(item.clone()),
                None => expected.push((id, vec![item.clone()])),
            }
        }
        assert_eq!(split.spans, all.len() as u64);
        let got: Vec<(TraceId, Flat)> = split
            .traces
            .iter()
            .map(|seg| {
                let trace = tempopb::Trace::decode(seg.data.as_ref()).unwrap();
                let flat = flatten(&trace.resource_spans);
                assert_eq!(seg.spans as usize, flat.len());
                (TraceId::from_otlp(&seg.id).unwrap(), flat)
            })
            .collect();
        assert_eq!(got, expected);
        let rejected = |reason| {
            split
                .rejected
                .iter()
                .find(|r| r.reason == reason)
                .map_or(0, |r| r.spans)
        };
        assert_eq!(rejected(RejectReason::InvalidTraceId), bad_trace);
        assert_eq!(rejected(RejectReason::InvalidSpanId), bad_span);
    }
}

#[test]
fn consecutive_spans_of_a_trace_share_their_resource_and_scope() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut req = export(&mut rng);
    let id = vec![5u8; 16];
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.trace_id = id.clone();
                s.span_id = vec![1; 8];
            }
        }
    }
    let split = split_request(&req.encode_to_vec(), 0).unwrap();
    let trace = tempopb::Trace::decode(split.traces[0].data.as_ref()).unwrap();
    let non_empty = |r: &ResourceSpans| r.scope_spans.iter().any(|ss| !ss.spans.is_empty());
    assert_eq!(
        trace.resource_spans.len(),
        req.resource_spans.iter().filter(|r| non_empty(r)).count()
    );
}

#[test]
fn malformed_exports_are_refused_with_a_reason() {
    let mut rng = StdRng::seed_from_u64(3);
    let good = export(&mut rng).encode_to_vec();
    let truncated = &good[..good.len() - 3];
    assert!(split_request(truncated, 0).is_err());
    // A string attribute deep inside a span that is not UTF-8.
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![1; 8],
                    attributes: vec![kv("k", any_value::Value::StringValue("XX".into()))],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut bytes = req.encode_to_vec();
    let at = bytes.windows(2).position(|w| w == b"XX").unwrap();
    bytes[at] = 0xff;
    let err = split_request(&bytes, 0).unwrap_err().to_string();
    assert!(err.contains("UTF-8"), "{err}");
    assert!(ExportTraceServiceRequest::decode(bytes.as_slice()).is_err());
    // A span's name sent as a varint.
    let wrong_type = [0x0a, 0x06, 0x12, 0x04, 0x12, 0x02, 0x28, 0x01];
    let err = split_request(&wrong_type, 0).unwrap_err().to_string();
    assert!(err.contains("wrong wire type"), "{err}");
    assert!(ExportTraceServiceRequest::decode(&wrong_type[..]).is_err());
}

/// Random corruption: whatever the splitter accepts decodes, segment by segment.
#[test]
fn whatever_is_accepted_decodes() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut accepted = 0;
    for _ in 0..3000 {
        let mut bytes = export(&mut rng).encode_to_vec();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..bytes.len());
            bytes[at] = rng.random();
        }
        let prost_ok = ExportTraceServiceRequest::decode(bytes.as_slice()).is_ok();
        let verdict = split_request(&bytes, 0).map(|split| split.traces);
        let reading = split_request_reading(&bytes, 0).map(|(split, _)| split.traces);
        assert_eq!(verdict, reading, "reading the spans changed what is accepted");
        if let Ok(split) = split_request(&bytes, 0) {
            accepted += 1;
            for seg in &split.traces {
                if let Err(e) = tempopb::Trace::decode(seg.data.as_ref()) {
                    panic!("segment does not decode: {e}; whole request decodes: {prost_ok}");
                }
            }
            assert!(prost_ok, "the splitter accepted what prost refuses");
        }
    }
    assert!(accepted > 100, "only {accepted} corrupted exports were still valid");
}

/// What an observer reads of a span, owned, for comparing the two ways of reading.
type Seen = (
    Vec<u8>,
    String,
    Vec<u8>,
    Vec<u8>,
    String,
    i32,
    u64,
    u64,
    i32,
    String,
    usize,
    Vec<String>,
);

fn seen(trace_id: &[u8], resource: &ResourceRef<'_>, s: &SpanRef<'_>) -> Seen {
    let attr = |key: &str| format!("{key}={:?}", s.attributes.get(key));
    (
        trace_id.to_vec(),
        resource.service_name.to_string(),
        s.span_id.to_vec(),
        s.parent_span_id.to_vec(),
        s.name.to_string(),
        s.kind,
        s.start_unix_nano,
        s.end_unix_nano,
        s.status_code,
        s.status_message.to_string(),
        s.encoded_len,
        ["http.method", "status", "ratio", "ok", "raw", "nested", "missing"]
            .into_iter()
            .map(attr)
            .chain([format!("{:?}", resource.attributes.get("service.name"))])
            .collect(),
    )
}

/// The spans the distributor's walk keeps for the metrics generator are exactly what the
/// generator would read from the segments (issue 11: one walk instead of two).
#[test]
fn spans_read_in_the_split_equal_the_spans_read_from_the_segments() {
    let mut rng = StdRng::seed_from_u64(17);
    for _ in 0..300 {
        let req = export(&mut rng);
        let body = req.encode_to_vec();
        let (split, read) = split_request_reading(&body, 0).unwrap();
        assert_eq!(split.traces, split_request(&body, 0).unwrap().traces);
        let mut from_segments = Vec::new();
        for seg in &split.traces {
            for_each_span(&seg.data, |resource, s| from_segments.push(seen(&seg.id, resource, s))).unwrap();
        }
        let mut from_walk = Vec::new();
        read.for_each(|trace_id, resource, s| from_walk.push(seen(trace_id, resource, s)));
        assert_eq!(read.len(), from_walk.len());
        from_segments.sort();
        from_walk.sort();
        assert_eq!(from_walk, from_segments);

        let parts: Vec<Vec<u8>> = req.resource_spans.iter().map(Message::encode_to_vec).collect();
        let (again, read_again) = split_resource_spans_reading(&parts, 0).unwrap();
        assert_eq!(again.traces, split.traces);
        let mut from_parts = Vec::new();
        read_again.for_each(|trace_id, resource, s| from_parts.push(seen(trace_id, resource, s)));
        from_parts.sort();
        assert_eq!(from_parts, from_walk);
    }
}

/// Tempo's `max_attribute_bytes` as a reference on the structs: every attribute key and
/// string value of resources, scopes, spans, events and links longer than `max` cut to the
/// longest prefix of whole characters within `max`; values nested in arrays and maps kept.
fn truncated_by_hand(mut req: ExportTraceServiceRequest, max: usize) -> ExportTraceServiceRequest {
    fn cut(s: &mut String, max: usize) {
        if s.len() > max {
            let mut n = max;
            while !s.is_char_boundary(n) {
                n -= 1;
            }
            s.truncate(n);
        }
    }
    let cut_all = |attrs: &mut Vec<KeyValue>| {
        for kv in attrs {
            cut(&mut kv.key, max);
            if let Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) = &mut kv.value
            {
                cut(s, max);
            }
        }
    };
    for rs in &mut req.resource_spans {
        rs.resource.iter_mut().for_each(|r| cut_all(&mut r.attributes));
        for ss in &mut rs.scope_spans {
            ss.scope.iter_mut().for_each(|s| cut_all(&mut s.attributes));
            for span in &mut ss.spans {
                cut_all(&mut span.attributes);
                span.events.iter_mut().for_each(|e| cut_all(&mut e.attributes));
                span.links.iter_mut().for_each(|l| cut_all(&mut l.attributes));
            }
        }
    }
    req
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

/// One span with attributes in each of the five places, a key or a value (or both) over a
/// 10-byte limit in each, a multibyte character across the limit, a value exactly at it and
/// a long string nested in an array (not an attribute of its own).
fn long_attributes() -> ExportTraceServiceRequest {
    let long = "abcdefghijklmnopqrstuvwxyz";
    let nested = kv(
        "list",
        any_value::Value::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(any_value::Value::StringValue(long.into())),
            }],
        }),
    );
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", "shop"), string_kv("host", long)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    attributes: vec![string_kv(long, "v")],
                    ..Default::default()
                }),
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "a span name longer than the limit is not an attribute".into(),
                    // "123456789é": the é's second byte is the 11th.
                    attributes: vec![
                        string_kv("db.query", "123456789é and more"),
                        string_kv("exact", "0123456789"),
                        kv("count", any_value::Value::IntValue(7)),
                        nested,
                    ],
                    events: vec![span::Event {
                        name: "e".into(),
                        attributes: vec![string_kv(long, long)],
                        ..Default::default()
                    }],
                    links: vec![span::Link {
                        trace_id: vec![3; 16],
                        span_id: vec![4; 8],
                        attributes: vec![string_kv("✓✓✓✓", long)],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn attributes_over_max_attribute_bytes_are_cut_in_every_place_on_character_boundaries() {
    let req = long_attributes();
    let body = req.encode_to_vec();
    assert!(split_request(&body, 10).unwrap().attributes_over_limit);
    assert!(split_request_reading(&body, 10).unwrap().0.attributes_over_limit);
    let parts: Vec<Vec<u8>> = req.resource_spans.iter().map(Message::encode_to_vec).collect();
    assert!(split_resource_spans(&parts, 10).unwrap().attributes_over_limit);
    assert!(
        split_resource_spans_reading(&parts, 10)
            .unwrap()
            .0
            .attributes_over_limit
    );
    // 0 is no limit; a limit no string exceeds notes nothing.
    assert!(!split_request(&body, 0).unwrap().attributes_over_limit);
    assert!(!split_request(&body, 60).unwrap().attributes_over_limit);

    let (cut, counts) = truncate_attributes(&request_resource_spans(&body).unwrap(), 10).unwrap();
    let rewritten = ExportTraceServiceRequest {
        resource_spans: cut.iter().map(|b| ResourceSpans::decode(b.as_ref()).unwrap()).collect(),
    };
    let expected = truncated_by_hand(req.clone(), 10);
    assert_eq!(rewritten, expected);
    let span = &rewritten.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.attributes[0], string_kv("db.query", "123456789"), "é is not split");
    assert_eq!(
        span.attributes[1],
        string_kv("exact", "0123456789"),
        "at the limit: kept"
    );
    assert_eq!(span.links[0].attributes[0].key, "✓✓✓", "9 of 12 bytes");
    assert_eq!(
        span.attributes[3],
        req.resource_spans[0].scope_spans[0].spans[0].attributes[3]
    );
    assert_eq!(
        counts,
        Truncated {
            // `host`'s value and the key `service.name` (12 bytes): keys are cut too.
            resource: 2,
            scope: 1,
            span: 1,
            event: 2,
            link: 2,
        }
    );
    assert_eq!(counts.total(), 8);
    // Walked again, it is within the limit and splits like the hand-cut export.
    let again = split_resource_spans(&cut, 10).unwrap();
    assert!(!again.attributes_over_limit);
    assert_eq!(
        again.traces,
        split_request(&expected.encode_to_vec(), 0).unwrap().traces
    );
}

/// The limit only notes: on random exports (nested values, events, links, bad ids) the split
/// is the same with or without it, and cutting to any limit gives exactly the hand-cut export.
#[test]
fn the_limit_changes_no_split_and_cuts_match_the_reference_on_random_exports() {
    let mut rng = StdRng::seed_from_u64(23);
    for _ in 0..300 {
        let req = export(&mut rng);
        let body = req.encode_to_vec();
        let plain = split_request(&body, 0).unwrap();
        let max = rng.random_range(1..16);
        let limited = split_request(&body, max).unwrap();
        assert_eq!(limited.traces, plain.traces);
        assert_eq!(limited.rejected, plain.rejected);
        let expected = truncated_by_hand(req.clone(), max);
        assert_eq!(limited.attributes_over_limit, expected != req);
        let (cut, counts) = truncate_attributes(&request_resource_spans(&body).unwrap(), max).unwrap();
        let rewritten: Vec<ResourceSpans> = cut.iter().map(|b| ResourceSpans::decode(b.as_ref()).unwrap()).collect();
        assert_eq!(rewritten, expected.resource_spans);
        assert_eq!(counts.total() > 0, expected != req);
        if expected == req {
            let unchanged: Vec<&[u8]> = cut.iter().map(|b| b.as_ref()).collect();
            assert_eq!(unchanged, request_resource_spans(&body).unwrap(), "byte for byte");
        }
    }
}
