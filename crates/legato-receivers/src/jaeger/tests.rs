use legato_proto::common::any_value::Value;
use legato_proto::trace::{Span as OtlpSpan, span, status};

use super::thrift::{AgentProtocol, decode_batch, decode_emit_batch};
use super::*;
use crate::otlp::test_util::{attr, spans};

/// Checks the recorded trace; returns its trace id.
fn check_recorded(batch: Batch, batch_service: &str) -> Vec<u8> {
    assert_eq!(batch.process.service_name, batch_service);
    let service = match batch.spans[0].process.as_ref() {
        Some(own) => own.service_name.clone(),
        None => batch_service.to_string(),
    };
    let service = service.as_str();
    let request = to_otlp([batch]);
    assert_eq!(request.resource_spans.len(), 1);
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(resource.attributes[0].key, "service.name");
    assert_eq!(
        resource.attributes[0].value.as_ref().unwrap().value,
        Some(Value::StringValue(service.into()))
    );
    let scope = request.resource_spans[0].scope_spans[0].scope.as_ref().unwrap();
    assert_eq!((scope.name.as_str(), scope.version.as_str()), ("recorder", "1.0"));
    let spans = spans(&request);
    let by_name = |n: &str| *spans.iter().find(|s| s.name == n).unwrap();
    let (root, charge, render) = (by_name("GET /checkout"), by_name("charge"), by_name("render"));
    assert_eq!(root.kind, span::SpanKind::Server as i32);
    assert_eq!(charge.kind, span::SpanKind::Client as i32);
    assert_eq!(render.kind, span::SpanKind::Internal as i32);
    assert!(root.parent_span_id.is_empty());
    assert_eq!(charge.parent_span_id, root.span_id);
    assert_eq!(render.parent_span_id, root.span_id);
    assert_eq!(root.trace_id, charge.trace_id);
    let status = charge.status.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (status::StatusCode::Error as i32, "declined")
    );
    for gone in [
        "error",
        "span.kind",
        "otel.status_code",
        "otel.library.name",
        "service.name",
    ] {
        assert!(attr(charge, gone).is_none(), "{gone} is a span field, not an attribute");
    }
    assert_eq!(attr(charge, "retry"), Some(&Value::BoolValue(true)));
    assert_eq!(attr(charge, "amount"), Some(&Value::DoubleValue(12.5)));
    assert_eq!(attr(root, "http.status_code"), Some(&Value::IntValue(200)));
    assert_eq!(charge.events.len(), 1);
    assert_eq!(charge.events[0].name, "card declined");
    assert_eq!(charge.events[0].attributes[0].key, "attempt");
    // The exporter wrote the link to the root as a FOLLOWS_FROM reference: still a link.
    assert_eq!(render.links.len(), 1);
    assert_eq!(render.links[0].span_id, root.span_id);
    assert_eq!(
        render.links[0].attributes[0].value.as_ref().unwrap().value,
        Some(Value::StringValue("follows_from".into()))
    );
    root.trace_id.clone()
}

#[test]
fn recorded_collector_thrift_batch_maps_by_the_conventions() {
    let batch = decode_batch(include_bytes!("../../fixtures/jaeger_batch.thrift")).unwrap();
    let trace_id = check_recorded(batch, "jaeger-http-shop");
    assert_eq!(
        hex::encode(trace_id),
        "2a25dc69a4a91ea5d81af9dc344fda6f",
        "128 bits from high and low"
    );
}

#[test]
fn recorded_agent_compact_emit_batch_maps_by_the_conventions() {
    let datagram = include_bytes!("../../fixtures/jaeger_emit_batch.compact");
    let batch = decode_emit_batch(datagram, AgentProtocol::Compact).unwrap();
    check_recorded(batch, "jaeger-compact-shop");
}

#[test]
fn recorded_agent_binary_emit_batch_maps_by_the_conventions() {
    let datagram = include_bytes!("../../fixtures/jaeger_emit_batch.binary");
    let batch = decode_emit_batch(datagram, AgentProtocol::Binary).unwrap();
    let trace_id = check_recorded(batch, "jaeger-binary-shop");
    assert_eq!(hex::encode(trace_id), "0000000000000000d81af9dc344fda6f", "a 64-bit id");
}

#[test]
fn recorded_grpc_post_spans_with_a_process_per_span_maps_to_one_resource() {
    use prost::Message;
    let request =
        proto::api_v2::PostSpansRequest::decode(&include_bytes!("../../fixtures/jaeger_post_spans.pb")[..]).unwrap();
    let batch = proto::from_proto(request.batch.unwrap()).unwrap();
    assert!(
        batch.spans.iter().all(|s| s.process.is_some()),
        "the exporter puts the process in each span"
    );
    check_recorded(batch, "");
}

#[test]
fn truncated_or_foreign_bodies_are_refused_with_what_was_expected() {
    let body = include_bytes!("../../fixtures/jaeger_batch.thrift");
    let e = decode_batch(&body[..body.len() / 2]).unwrap_err();
    assert!(e.to_string().contains("not a Jaeger Thrift Batch"), "{e}");
    let e = decode_emit_batch(body, AgentProtocol::Binary).unwrap_err();
    assert!(e.to_string().contains("emitBatch"), "{e}");
}

fn tag(key: &str, value: TagValue) -> Tag {
    Tag { key: key.into(), value }
}

fn one(span: Span) -> OtlpSpan {
    let request = to_otlp([Batch {
        process: Process {
            service_name: "svc".into(),
            tags: vec![tag("hostname", TagValue::Str("h1".into()))],
        },
        spans: vec![span],
    }]);
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        resource.attributes[1].key, "hostname",
        "process tags are resource attributes"
    );
    request.resource_spans[0].scope_spans[0].spans[0].clone()
}

#[test]
fn ids_64_bit_trace_ids_have_a_zero_high_half() {
    assert_eq!(
        hex::encode(trace_id(0, 0x463a_c35c_9f64_13ad)),
        "0000000000000000463ac35c9f6413ad"
    );
    assert_eq!(hex::encode(trace_id(1, -1)), "0000000000000001ffffffffffffffff");
}

#[test]
fn parent_from_the_first_child_of_reference_when_parent_span_id_is_zero() {
    let tid = trace_id(0, 7);
    let reference = |ref_type, span: u8| SpanRef {
        ref_type,
        trace_id: tid,
        span_id: [0, 0, 0, 0, 0, 0, 0, span],
    };
    let span = one(Span {
        trace_id: tid,
        span_id: [9; 8],
        references: vec![reference(RefType::FollowsFrom, 1), reference(RefType::ChildOf, 2)],
        ..Default::default()
    });
    assert_eq!(span.parent_span_id, [0, 0, 0, 0, 0, 0, 0, 2]);
    assert_eq!(span.links.len(), 1, "the other reference is a link");
    assert_eq!(span.links[0].span_id, [0, 0, 0, 0, 0, 0, 0, 1]);

    let root = one(Span {
        trace_id: tid,
        span_id: [9; 8],
        ..Default::default()
    });
    assert!(root.parent_span_id.is_empty(), "no parent, no reference: a root");
    assert_eq!(root.kind, span::SpanKind::Unspecified as i32, "no span.kind tag");
    assert!(root.status.is_none());
}

#[test]
fn error_tag_kind_tag_and_tracestate_become_span_fields() {
    let span = one(Span {
        span_id: [1; 8],
        start_unix_nano: 5_000,
        duration_nano: 2_000,
        tags: vec![
            tag("error", TagValue::Bool(true)),
            tag("span.kind", TagValue::Str("consumer".into())),
            tag("w3c.tracestate", TagValue::Str("k=v".into())),
            tag("peer.service", TagValue::Str("queue".into())),
            tag("blob", TagValue::Binary(vec![1, 2])),
        ],
        ..Default::default()
    });
    assert_eq!(span.status.as_ref().unwrap().code, status::StatusCode::Error as i32);
    assert_eq!(span.kind, span::SpanKind::Consumer as i32);
    assert_eq!(span.trace_state, "k=v");
    assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (5_000, 7_000));
    assert_eq!(attr(&span, "peer.service"), Some(&Value::StringValue("queue".into())));
    assert_eq!(attr(&span, "blob"), Some(&Value::BytesValue(vec![1, 2])));
    assert!(attr(&span, "error").is_none());

    let not_failed = one(Span {
        span_id: [1; 8],
        tags: vec![tag("error", TagValue::Bool(false))],
        ..Default::default()
    });
    assert!(not_failed.status.is_none(), "error=false is no error");
}
