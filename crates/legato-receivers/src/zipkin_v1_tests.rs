use legato_proto::common::any_value::Value;
use legato_proto::trace::{span, status};

use super::*;
use crate::otlp::test_util::{attr, spans};
use crate::zipkin::ZipkinOptions;

const NOW: u64 = 1_800_000_000_000_000_000;

fn resource(request: &ExportTraceServiceRequest, index: usize) -> Vec<(String, String)> {
    let resource = request.resource_spans[index].resource.as_ref().unwrap();
    resource
        .attributes
        .iter()
        .map(|a| match &a.value.as_ref().unwrap().value {
            Some(Value::StringValue(s)) => (a.key.clone(), s.clone()),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A trace recorded from py_zipkin (see the fixtures' README) as the conventions map it,
/// in either encoding.
fn check_recorded(request: &ExportTraceServiceRequest, service: &str, trace_id: &str) {
    // py_zipkin gives its local span no endpoint at all: the Collector's unknown service.
    assert_eq!(request.resource_spans.len(), 2);
    assert_eq!(
        resource(request, 0),
        pairs(&[("service.name", service), ("ipv4", "172.17.0.13"), ("port", "8081")])
    );
    assert_eq!(resource(request, 1), pairs(&[("service.name", UNKNOWN_SERVICE)]));
    let spans = spans(request);
    let by_name = |n: &str| *spans.iter().find(|s| s.name == n).unwrap();
    let (root, charge, render) = (by_name("GET /checkout"), by_name("charge"), by_name("render"));
    assert_eq!(hex::encode(&root.trace_id), trace_id);
    assert!(root.parent_span_id.is_empty());
    assert_eq!(
        (charge.parent_span_id.clone(), render.parent_span_id.clone()),
        (root.span_id.clone(), root.span_id.clone())
    );
    assert_eq!(root.kind, span::SpanKind::Server as i32);
    assert_eq!(charge.kind, span::SpanKind::Client as i32);
    assert_eq!(render.kind, span::SpanKind::Unspecified as i32);
    // The root has no timestamp (py_zipkin leaves it to the caller): sr and ss give it.
    assert!(root.start_time_unix_nano < charge.start_time_unix_nano);
    assert!(root.end_time_unix_nano > render.end_time_unix_nano);
    assert_eq!(root.start_time_unix_nano % 1000, 0, "µs → ns");
    assert_eq!(attr(root, "http.path"), Some(&Value::StringValue("/checkout".into())));
    assert_eq!(attr(charge, "retry"), Some(&Value::StringValue("true".into())));
    assert_eq!(
        attr(charge, "peer.service"),
        Some(&Value::StringValue("payments".into()))
    );
    assert_eq!(
        attr(charge, "network.peer.address"),
        Some(&Value::StringValue("10.0.0.7".into()))
    );
    assert_eq!(attr(charge, "network.peer.port"), Some(&Value::IntValue(8443)));
    assert!(attr(charge, "sa").is_none() && attr(charge, "error").is_none());
    let failed = charge.status.as_ref().unwrap();
    assert_eq!(
        (failed.code, failed.message.as_str()),
        (status::StatusCode::Error as i32, "declined")
    );
    assert_eq!(charge.events.len(), 1);
    assert_eq!(charge.events[0].name, "card declined");
    assert!(charge.events[0].time_unix_nano > charge.start_time_unix_nano);
    assert!(render.end_time_unix_nano > render.start_time_unix_nano);
}

#[test]
fn recorded_py_zipkin_v1_json_maps_by_the_collectors_conventions() {
    let request = from_json_at(
        include_bytes!("../fixtures/zipkin_v1.json"),
        ZipkinOptions::default(),
        NOW,
    )
    .unwrap();
    check_recorded(&request, "zipkin-v1-json-shop", "00000000000000006b221d5bc9e6496c");
}

#[test]
fn recorded_py_zipkin_v1_thrift_maps_by_the_collectors_conventions() {
    let request = v1_thrift::from_thrift_at(include_bytes!("../fixtures/zipkin_v1.thrift"), NOW).unwrap();
    check_recorded(&request, "zipkin-v1-thrift-shop", "4e441824ec2b6a44ffdc9bb9a6453df3");
}

#[test]
fn truncated_or_foreign_thrift_is_refused_naming_the_format() {
    let body = include_bytes!("../fixtures/zipkin_v1.thrift");
    let truncated = v1_thrift::from_thrift_at(&body[..body.len() / 2], NOW).unwrap_err();
    assert!(
        truncated.to_string().contains("not a Zipkin v1 Thrift span list"),
        "{truncated}"
    );
    let json = v1_thrift::from_thrift_at(b"[{\"traceId\":\"1\"}]", NOW).unwrap_err();
    assert!(json.to_string().contains("Zipkin v1 Thrift"), "{json}");
}

#[test]
fn typed_thrift_binary_annotations_are_typed_attributes() {
    use v1_thrift::typed_value;
    assert_eq!(typed_value(0, &[1]).value, Some(Value::BoolValue(true)));
    assert_eq!(typed_value(2, &(-2i16).to_be_bytes()).value, Some(Value::IntValue(-2)));
    assert_eq!(
        typed_value(3, &70_000i32.to_be_bytes()).value,
        Some(Value::IntValue(70_000))
    );
    assert_eq!(
        typed_value(4, &(1i64 << 40).to_be_bytes()).value,
        Some(Value::IntValue(1 << 40))
    );
    assert_eq!(
        typed_value(5, &1.5f64.to_be_bytes()).value,
        Some(Value::DoubleValue(1.5))
    );
    assert_eq!(typed_value(1, b"hi").value, Some(Value::StringValue("aGk=".into())));
    assert_eq!(typed_value(6, b"text").value, Some(Value::StringValue("text".into())));
    assert!(matches!(typed_value(4, &[1, 2]).value, Some(Value::StringValue(s)) if s.contains("not enough bytes")));
}

#[test]
fn a_brave_style_v1_trace_maps_by_the_collectors_conventions() {
    let request = from_json_at(
        include_bytes!("../fixtures/zipkin_v1_brave.json"),
        ZipkinOptions::default(),
        NOW,
    )
    .unwrap();
    // Core annotations' endpoints are resources; the local span's service comes from its
    // `lc` annotation's endpoint, with no address: another resource, as in the Collector.
    assert_eq!(request.resource_spans.len(), 3);
    assert_eq!(
        resource(&request, 0),
        pairs(&[("service.name", "frontend"), ("ipv4", "172.17.0.13"), ("port", "8081")])
    );
    assert_eq!(
        resource(&request, 1),
        pairs(&[("service.name", "payments"), ("ipv4", "10.0.0.7"), ("port", "8443")])
    );
    assert_eq!(resource(&request, 2), pairs(&[("service.name", "frontend")]));

    let spans = spans(&request);
    assert_eq!(spans.len(), 4);
    let (root, client, server, render) = (spans[0], spans[1], spans[2], spans[3]);
    assert_eq!(hex::encode(&root.trace_id), "4e441824ec2b6a44ffdc9bb9a6453df3");
    assert!(root.parent_span_id.is_empty());
    assert_eq!(root.kind, span::SpanKind::Server as i32);
    assert_eq!(root.start_time_unix_nano, 1_700_000_000_100_000_000);
    assert_eq!(root.end_time_unix_nano, 1_700_000_000_350_000_000);
    assert_eq!(attr(root, "http.method"), Some(&Value::StringValue("GET".into())));
    assert_eq!(
        attr(root, "network.peer.address"),
        Some(&Value::StringValue("192.168.99.1".into()))
    );
    assert_eq!(attr(root, "network.peer.port"), Some(&Value::IntValue(52644)));
    assert!(attr(root, "ca").is_none() && attr(root, "peer.service").is_none());
    assert!(root.status.is_none());

    assert_eq!(client.kind, span::SpanKind::Client as i32);
    assert_eq!(client.parent_span_id, root.span_id);
    assert_eq!(
        (client.start_time_unix_nano, client.end_time_unix_nano),
        (1_700_000_000_120_000_000, 1_700_000_000_300_000_000)
    );
    assert_eq!(client.events.len(), 1, "cs and cr are not events");
    assert_eq!(client.events[0].name, "retrying");
    assert_eq!(client.events[0].time_unix_nano, 1_700_000_000_200_000_000);
    assert_eq!(
        attr(client, "peer.service"),
        Some(&Value::StringValue("payments".into()))
    );
    assert_eq!(attr(client, "network.peer.port"), Some(&Value::IntValue(8443)));
    assert_eq!(
        attr(client, "http.status_code"),
        Some(&Value::StringValue("503".into())),
        "HTTP tags stay"
    );
    assert!(attr(client, "error").is_none() && attr(client, "sa").is_none());
    let failed = client.status.as_ref().unwrap();
    assert_eq!(
        (failed.code, failed.message.as_str()),
        (status::StatusCode::Error as i32, "charge declined")
    );

    // The server side of the shared span has no timestamp: its annotations give the times.
    assert_eq!(server.span_id, client.span_id);
    assert_eq!(server.kind, span::SpanKind::Server as i32);
    assert_eq!(
        (server.start_time_unix_nano, server.end_time_unix_nano),
        (1_700_000_000_140_000_000, 1_700_000_000_290_000_000)
    );
    let http_error = server.status.as_ref().unwrap();
    assert_eq!(http_error.code, status::StatusCode::Error as i32, "503 is an error");

    assert_eq!(render.kind, span::SpanKind::Unspecified as i32, "no core annotation");
    assert_eq!(attr(render, "component"), Some(&Value::StringValue("template".into())));
    assert!(attr(render, "lc").is_none());
    assert_eq!(render.end_time_unix_nano - render.start_time_unix_nano, 40_000_000);
}

#[test]
fn service_falls_back_to_the_local_component_then_unknown_and_missing_times_are_marked() {
    let body = br#"[
        {"traceId":"1","id":"1","name":"a","binaryAnnotations":[{"key":"lc","value":"cache"}]},
        {"traceId":"1","id":"2","name":"b"}
    ]"#;
    let request = from_json_at(body, ZipkinOptions::default(), NOW).unwrap();
    assert_eq!(resource(&request, 0), pairs(&[("service.name", "cache")]));
    assert_eq!(resource(&request, 1), pairs(&[("service.name", UNKNOWN_SERVICE)]));
    let b = spans(&request)[1];
    assert_eq!((b.start_time_unix_nano, b.end_time_unix_nano), (NOW, NOW));
    assert_eq!(attr(b, START_TIME_ABSENT), Some(&Value::BoolValue(true)));
    assert_eq!(hex::encode(&b.trace_id), "00000000000000000000000000000001");
}

#[test]
fn status_tags_are_trusted_in_the_collectors_order() {
    let status_of = |tags: &str| {
        let body = format!(r#"[{{"traceId":"1","id":"1","timestamp":1,"binaryAnnotations":[{tags}]}}]"#);
        let request = from_json_at(body.as_bytes(), ZipkinOptions::default(), NOW).unwrap();
        let span = spans(&request)[0].clone();
        let kept: Vec<String> = span.attributes.iter().map(|a| a.key.clone()).collect();
        let status = span.status.map(|s| (s.code, s.message));
        (status, kept)
    };
    let error = status::StatusCode::Error as i32;
    let ok = status::StatusCode::Ok as i32;
    assert_eq!(
        status_of(r#"{"key":"census.status_code","value":"0"},{"key":"error","value":"x"}"#),
        (Some((ok, String::new())), vec![])
    );
    assert_eq!(
        status_of(r#"{"key":"otel.status_code","value":"2"},{"key":"otel.status_description","value":"Forbidden"}"#),
        (Some((error, "Forbidden".into())), vec![])
    );
    assert_eq!(
        status_of(r#"{"key":"otel.status_code","value":"ERROR"}"#),
        (Some((error, String::new())), vec![])
    );
    assert_eq!(
        status_of(r#"{"key":"error","value":"true"},{"key":"http.status_code","value":"200"}"#),
        (Some((error, String::new())), vec!["http.status_code".to_string()])
    );
    assert_eq!(
        status_of(r#"{"key":"http.status_code","value":404},{"key":"http.status_message","value":"NotFound"}"#),
        (
            Some((error, "NotFound".into())),
            vec!["http.status_code".to_string(), "http.status_message".to_string()]
        )
    );
    assert_eq!(status_of(r#"{"key":"k","value":1.5}"#), (None, vec!["k".to_string()]));
}

#[test]
fn bad_bodies_name_the_span_and_field_and_v2_spans_are_sent_on() {
    let message = |body: &[u8]| {
        from_json_at(body, ZipkinOptions::default(), NOW)
            .unwrap_err()
            .to_string()
    };
    let bad_id = message(br#"[{"traceId":"1","id":"1"},{"traceId":"1","id":"xyz"}]"#);
    assert!(bad_id.contains("span 1: id \"xyz\""), "{bad_id}");
    let missing = message(br#"[{"id":"1"}]"#);
    assert!(missing.contains("span 0: traceId is missing"), "{missing}");
    let shape = message(br#"[{"traceId":"1","id":"1","annotations":{"value":"cs"}}]"#);
    assert!(
        shape.contains("Zipkin v1 JSON") && shape.contains("[0].annotations"),
        "{shape}"
    );
    let v2 = message(br#"[{"traceId":"1","id":"1","localEndpoint":{"serviceName":"a"}}]"#);
    assert!(v2.contains("/api/v2/spans"), "{v2}");
}

/// With `parse_string_tags`, v1 JSON binary annotations are typed as v2 tags are, before the
/// status and service are read from them.
#[test]
fn parse_string_tags_types_v1_json_binary_annotations() {
    let body = br#"[{"traceId":"1","id":"1","timestamp":1,"binaryAnnotations":[
        {"key":"http.status_code","value":"503"},
        {"key":"retry","value":"true"},
        {"key":"ratio","value":"0.5"},
        {"key":"lc","value":"cache"},
        {"key":"version","value":"1.2.3"}
    ]}]"#;
    let parsing = ZipkinOptions {
        parse_string_tags: true,
    };
    let request = from_json_at(body, parsing, NOW).unwrap();
    let span = spans(&request)[0];
    assert_eq!(attr(span, "http.status_code"), Some(&Value::IntValue(503)));
    assert_eq!(attr(span, "retry"), Some(&Value::BoolValue(true)));
    assert_eq!(attr(span, "ratio"), Some(&Value::DoubleValue(0.5)));
    assert_eq!(attr(span, "component"), Some(&Value::StringValue("cache".into())));
    assert_eq!(attr(span, "version"), Some(&Value::StringValue("1.2.3".into())));
    assert_eq!(span.status.as_ref().unwrap().code, status::StatusCode::Error as i32);
    assert_eq!(resource(&request, 0), pairs(&[("service.name", "cache")]));

    let plain = from_json_at(body, ZipkinOptions::default(), NOW).unwrap();
    let span = spans(&plain)[0];
    assert_eq!(attr(span, "http.status_code"), Some(&Value::StringValue("503".into())));
    assert_eq!(attr(span, "retry"), Some(&Value::StringValue("true".into())));
}
