use legato_proto::common::any_value::Value;
use legato_proto::trace::{span, status};

use super::*;
use crate::otlp::test_util::{attr, spans};

fn service(request: &ExportTraceServiceRequest) -> Vec<String> {
    request
        .resource_spans
        .iter()
        .map(|rs| {
            let resource = rs.resource.as_ref().unwrap();
            match &resource.attributes[0].value.as_ref().unwrap().value {
                Some(Value::StringValue(s)) => s.clone(),
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

/// The recorded trace as the conventions map it, in either encoding.
fn check_recorded(request: &ExportTraceServiceRequest, service_name: &str) {
    assert_eq!(service(request), [service_name]);
    let scope = request.resource_spans[0].scope_spans[0].scope.as_ref().unwrap();
    assert_eq!((scope.name.as_str(), scope.version.as_str()), ("recorder", "1.0"));
    let spans = spans(request);
    assert_eq!(spans.len(), 3);
    let by_name = |n: &str| *spans.iter().find(|s| s.name == n).unwrap();
    let (root, charge, render) = (by_name("GET /checkout"), by_name("charge"), by_name("render"));
    assert_eq!(root.kind, span::SpanKind::Server as i32);
    assert!(root.parent_span_id.is_empty());
    assert_eq!(charge.kind, span::SpanKind::Client as i32);
    assert_eq!(render.kind, span::SpanKind::Internal as i32, "no kind is INTERNAL");
    assert_eq!(charge.parent_span_id, root.span_id);
    assert_eq!(render.parent_span_id, root.span_id);
    assert_eq!(charge.trace_id.len(), 16);
    let status = charge.status.as_ref().unwrap();
    assert_eq!(status.code, status::StatusCode::Error as i32);
    assert_eq!(status.message, "declined");
    assert!(attr(charge, "error").is_none() && attr(charge, "otel.status_code").is_none());
    assert!(attr(charge, "otel.scope.name").is_none() && attr(charge, "service.name").is_none());
    assert_eq!(
        attr(charge, "peer.service"),
        Some(&Value::StringValue("payments".into()))
    );
    assert_eq!(attr(root, "http.status_code"), Some(&Value::StringValue("200".into())));
    assert_eq!(charge.events.len(), 1);
    assert_eq!(charge.events[0].name, "card declined");
    assert_eq!(
        charge.events[0].attributes[0].value.as_ref().unwrap().value,
        Some(Value::IntValue(2))
    );
    assert!(charge.events[0].time_unix_nano > charge.start_time_unix_nano);
    assert_eq!(charge.start_time_unix_nano % 1000, 0, "µs → ns");
    assert!(charge.end_time_unix_nano > charge.start_time_unix_nano);
}

#[test]
fn recorded_otel_python_json_export_maps_by_the_conventions() {
    let request = from_json(include_bytes!("../fixtures/zipkin_v2.json"), ZipkinOptions::default()).unwrap();
    check_recorded(&request, "zipkin-json-shop");
}

#[test]
fn recorded_otel_python_protobuf_export_maps_by_the_conventions() {
    let request = from_protobuf(include_bytes!("../fixtures/zipkin_v2.pb"), ZipkinOptions::default()).unwrap();
    check_recorded(&request, "zipkin-proto-shop");
}

#[test]
fn ids_64_bit_trace_ids_are_left_padded_and_bad_ids_name_the_span_and_field() {
    let body = br#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","name":"x","timestamp":1,"duration":2,"kind":"PRODUCER","localEndpoint":{"serviceName":"a"},"remoteEndpoint":{"serviceName":"db","ipv4":"10.0.0.1","port":5432},"tags":{"error":"true"}}]"#;
    let request = from_json(body, ZipkinOptions::default()).unwrap();
    let span = spans(&request)[0];
    assert_eq!(hex::encode(&span.trace_id), "0000000000000000463ac35c9f6413ad");
    assert!(span.parent_span_id.is_empty(), "no parentId: a root");
    assert_eq!(span.kind, span::SpanKind::Producer as i32);
    assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (1000, 3000));
    let status = span.status.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (status::StatusCode::Error as i32, "")
    );
    assert_eq!(attr(span, "peer.service"), Some(&Value::StringValue("db".into())));
    assert_eq!(
        attr(span, "network.peer.address"),
        Some(&Value::StringValue("10.0.0.1".into()))
    );
    assert_eq!(attr(span, "network.peer.port"), Some(&Value::IntValue(5432)));

    let bad = from_json(
        br#"[{"traceId":"1","id":"a"},{"traceId":"xyz","id":"a"}]"#,
        ZipkinOptions::default(),
    )
    .unwrap_err();
    assert!(bad.to_string().contains("span 1: traceId \"xyz\""), "{bad}");
    let v1 = from_json(
        br#"[{"traceId":"1","id":"a","binaryAnnotations":[]}]"#,
        ZipkinOptions::default(),
    )
    .unwrap_err();
    assert!(v1.to_string().contains("Zipkin v1"), "{v1}");
    let not_json = from_json(b"{", ZipkinOptions::default()).unwrap_err();
    assert!(not_json.to_string().contains("Zipkin v2 JSON"), "{not_json}");
}

#[test]
fn spans_without_a_local_service_are_unknown_service_and_services_are_separate_resources() {
    let body = br#"[{"traceId":"1","id":"1"},{"traceId":"1","id":"2","parentId":"1","localEndpoint":{"serviceName":"b"}},{"traceId":"1","id":"3","localEndpoint":{"serviceName":"b"},"tags":{"otel.status_code":"OK"}}]"#;
    let request = from_json(body, ZipkinOptions::default()).unwrap();
    assert_eq!(service(&request), [UNKNOWN_SERVICE, "b"]);
    let ok = spans(&request)[2];
    assert_eq!(ok.status.as_ref().unwrap().code, status::StatusCode::Ok as i32);
    assert_eq!(spans(&request)[1].parent_span_id, [0, 0, 0, 0, 0, 0, 0, 1]);
}

/// The Collector's `DetermineValueType` patterns and Go's parsers, case by case.
#[test]
fn string_tags_are_typed_as_the_collector_types_them() {
    let typed = |text: &str| typed_tag(text.to_string()).value.unwrap();
    for (text, value) in [
        ("42", Value::IntValue(42)),
        ("-7", Value::IntValue(-7)),
        ("007", Value::IntValue(7)),
        ("-0", Value::IntValue(0)),
        ("9223372036854775808", Value::IntValue(i64::MAX)),
        ("-99999999999999999999", Value::IntValue(i64::MIN)),
        ("12.5", Value::DoubleValue(12.5)),
        ("-0.25", Value::DoubleValue(-0.25)),
        ("3.000", Value::DoubleValue(3.0)),
        ("true", Value::BoolValue(true)),
        ("false", Value::BoolValue(false)),
    ] {
        assert_eq!(typed(text), value, "{text:?}");
    }
    for text in [
        "", "+1", "1.", ".5", "1e3", "1.2.3", "0x10", " 1", "1\n", "١٢", "True", "TRUE", "t", "NaN", "inf",
    ] {
        assert_eq!(typed(text), Value::StringValue(text.into()), "{text:?}");
    }
}

/// With `parse_string_tags`, the recorded export's tags come out typed, in both encodings;
/// the status still comes from the tags as sent; without it they stay strings.
#[test]
fn parse_string_tags_types_the_attributes_of_both_encodings() {
    let parsing = ZipkinOptions {
        parse_string_tags: true,
    };
    for request in [
        from_json(include_bytes!("../fixtures/zipkin_v2.json"), parsing).unwrap(),
        from_protobuf(include_bytes!("../fixtures/zipkin_v2.pb"), parsing).unwrap(),
    ] {
        let spans = spans(&request);
        let by_name = |n: &str| *spans.iter().find(|s| s.name == n).unwrap();
        let (root, charge) = (by_name("GET /checkout"), by_name("charge"));
        assert_eq!(attr(charge, "retry"), Some(&Value::BoolValue(true)));
        assert_eq!(attr(charge, "amount"), Some(&Value::DoubleValue(12.5)));
        assert_eq!(attr(root, "http.status_code"), Some(&Value::IntValue(200)));
        assert_eq!(
            attr(charge, "peer.service"),
            Some(&Value::StringValue("payments".into()))
        );
        assert_eq!(
            attr(charge, "telemetry.sdk.version"),
            Some(&Value::StringValue("1.21.0".into()))
        );
        let status = charge.status.as_ref().unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (status::StatusCode::Error as i32, "declined")
        );
    }
    let plain = from_json(include_bytes!("../fixtures/zipkin_v2.json"), ZipkinOptions::default()).unwrap();
    let charge = *spans(&plain).iter().find(|s| s.name == "charge").unwrap();
    assert_eq!(attr(charge, "amount"), Some(&Value::StringValue("12.5".into())));
}
