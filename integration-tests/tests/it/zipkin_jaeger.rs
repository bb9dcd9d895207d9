//! The Zipkin and Jaeger receivers end to end: payloads recorded from OpenTelemetry Python's
//! Zipkin and Jaeger exporters and from py_zipkin's Zipkin v1 encoders
//! (crates/legato-receivers/fixtures, README there) are sent to
//! the real binary, and each trace is read back over `/api/v2/traces/<id>` with the span
//! names, parents, kinds, status, attributes and events the OpenTelemetry conventions give.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::Write;
use std::time::Duration;

use integration_tests::{Legato, Ports, config_yaml, free_port, free_udp_port};
use legato_proto::common::any_value::Value;
use legato_proto::tempopb::TraceByIdResponse;
use legato_proto::trace::{ResourceSpans, Span, span, status};
use prost::Message;

const ZIPKIN_JSON: &[u8] = include_bytes!("../../../crates/legato-receivers/fixtures/zipkin_v2.json");
const ZIPKIN_JSON_TRACE: &str = "32f1d51d37245e8a1af14242fba42313";
const ZIPKIN_PROTO: &[u8] = include_bytes!("../../../crates/legato-receivers/fixtures/zipkin_v2.pb");
const ZIPKIN_PROTO_TRACE: &str = "4b2704469392ee2246fac706f004b725";
const ZIPKIN_V1_JSON: &[u8] = include_bytes!("../../../crates/legato-receivers/fixtures/zipkin_v1.json");
const ZIPKIN_V1_JSON_TRACE: &str = "00000000000000006b221d5bc9e6496c";
const ZIPKIN_V1_THRIFT: &[u8] = include_bytes!("../../../crates/legato-receivers/fixtures/zipkin_v1.thrift");
const ZIPKIN_V1_THRIFT_TRACE: &str = "4e441824ec2b6a44ffdc9bb9a6453df3";
const JAEGER_THRIFT: &[u8] = include_bytes!("../../../crates/legato-receivers/fixtures/jaeger_batch.thrift");
const JAEGER_THRIFT_TRACE: &str = "2a25dc69a4a91ea5d81af9dc344fda6f";
const JAEGER_COMPACT: &[u8] = include_bytes!("../../../crates/legato-receivers/fixtures/jaeger_emit_batch.compact");
const JAEGER_COMPACT_TRACE: &str = "fcc71bc2aad134bac4edfab161202650";
const JAEGER_BINARY: &[u8] = include_bytes!("../../../crates/legato-receivers/fixtures/jaeger_emit_batch.binary");
const JAEGER_BINARY_TRACE: &str = "0000000000000000d81af9dc344fda6f";
const JAEGER_GRPC: &[u8] = include_bytes!("../../../crates/legato-receivers/fixtures/jaeger_post_spans.pb");
const JAEGER_GRPC_TRACE: &str = "f989373d2553f42ffc8feb3eff302ba3";

struct Receivers {
    zipkin: u16,
    thrift_http: u16,
    thrift_compact: u16,
    thrift_binary: u16,
    grpc: u16,
}

fn start(dir: &std::path::Path) -> (Legato, Receivers) {
    start_with(dir, "")
}

/// `zipkin_options`: more keys of the Zipkin receiver, each line indented by 6 spaces.
fn start_with(dir: &std::path::Path, zipkin_options: &str) -> (Legato, Receivers) {
    let receivers = Receivers {
        zipkin: free_port(),
        thrift_http: free_port(),
        thrift_compact: free_udp_port(),
        thrift_binary: free_udp_port(),
        grpc: free_port(),
    };
    let ports = Ports::free();
    let yaml = config_yaml(ports, dir, None, "").replacen(
        "distributor:\n  receivers:\n",
        &format!(
            "distributor:\n  receivers:\n    zipkin:\n      endpoint: 127.0.0.1:{}\n{zipkin_options}    jaeger:\n      protocols:\n        thrift_http:\n          endpoint: 127.0.0.1:{}\n        thrift_compact:\n          endpoint: 127.0.0.1:{}\n        thrift_binary:\n          endpoint: 127.0.0.1:{}\n        grpc:\n          endpoint: 127.0.0.1:{}\n",
            receivers.zipkin, receivers.thrift_http, receivers.thrift_compact, receivers.thrift_binary, receivers.grpc
        ),
        1,
    );
    (Legato::start(dir, ports, &yaml), receivers)
}

/// The trace's resource spans, waiting for it to appear (UDP has no answer to wait for).
async fn read_trace(client: &reqwest::Client, legato: &Legato, trace_id: &str) -> Vec<ResourceSpans> {
    for _ in 0..50 {
        let resp = client
            .get(legato.url(&format!("/api/v2/traces/{trace_id}")))
            .header("accept", "application/protobuf")
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            let decoded = TraceByIdResponse::decode(resp.bytes().await.unwrap()).unwrap();
            let batches = decoded.trace.map(|t| t.resource_spans).unwrap_or_default();
            if legato_proto::span_count(&batches) == 3 {
                return batches;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("trace {trace_id} was not stored:\n{}", legato.log_text());
}

fn attr<'a>(attributes: &'a [legato_proto::common::KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

/// The recorded trace (see the fixtures' README) as the conventions map it.
fn check_trace(batches: &[ResourceSpans], service: &str, typed_tags: bool) {
    assert_eq!(batches.len(), 1, "one service, one resource");
    let resource = batches[0].resource.as_ref().unwrap();
    assert_eq!(
        attr(&resource.attributes, "service.name"),
        Some(&Value::StringValue(service.into()))
    );
    let scope = batches[0].scope_spans[0].scope.as_ref().unwrap();
    assert_eq!(scope.name, "recorder");
    let spans: Vec<&Span> = batches[0].scope_spans.iter().flat_map(|s| &s.spans).collect();
    let by_name = |n: &str| *spans.iter().find(|s| s.name == n).unwrap();
    let (root, charge, render) = (by_name("GET /checkout"), by_name("charge"), by_name("render"));
    assert!(root.parent_span_id.is_empty(), "the root has no parent");
    assert_eq!(charge.parent_span_id, root.span_id);
    assert_eq!(render.parent_span_id, root.span_id);
    assert_eq!(root.kind, span::SpanKind::Server as i32);
    assert_eq!(charge.kind, span::SpanKind::Client as i32);
    assert_eq!(render.kind, span::SpanKind::Internal as i32);
    let failed = charge.status.as_ref().unwrap();
    assert_eq!(failed.code, status::StatusCode::Error as i32);
    assert_eq!(failed.message, "declined");
    assert!(
        root.status
            .as_ref()
            .is_none_or(|s| s.code != status::StatusCode::Error as i32)
    );
    assert_eq!(
        attr(&charge.attributes, "peer.service"),
        Some(&Value::StringValue("payments".into()))
    );
    let retry = if typed_tags {
        Value::BoolValue(true)
    } else {
        Value::StringValue("true".into())
    };
    assert_eq!(attr(&charge.attributes, "retry"), Some(&retry));
    assert!(attr(&charge.attributes, "error").is_none());
    assert_eq!(charge.events.len(), 1);
    assert_eq!(charge.events[0].name, "card declined");
    assert!(charge.end_time_unix_nano > charge.start_time_unix_nano);
    if service != "jaeger-grpc-shop" {
        // Only Jaeger's protobuf model has nanoseconds.
        assert_eq!(charge.start_time_unix_nano % 1_000, 0, "microseconds, as nanoseconds");
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

async fn post(client: &reqwest::Client, url: &str, content_type: &str, body: Vec<u8>, gzipped: bool) -> (u16, String) {
    let mut request = client.post(url).header("content-type", content_type);
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    let resp = request.body(body).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn zipkin_v2_json_and_protobuf_from_an_otel_exporter_read_back_as_otlp() {
    let dir = tempfile::tempdir().unwrap();
    let (legato, receivers) = start(dir.path());
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/api/v2/spans", receivers.zipkin);

    let (code, body) = post(&client, &url, "application/json", gzip(ZIPKIN_JSON), true).await;
    assert_eq!(code, 202, "{body}");
    let (code, body) = post(&client, &url, "application/x-protobuf", ZIPKIN_PROTO.to_vec(), false).await;
    assert_eq!(code, 202, "{body}");
    check_trace(
        &read_trace(&client, &legato, ZIPKIN_JSON_TRACE).await,
        "zipkin-json-shop",
        false,
    );
    check_trace(
        &read_trace(&client, &legato, ZIPKIN_PROTO_TRACE).await,
        "zipkin-proto-shop",
        false,
    );

    let (code, body) = post(&client, &url, "application/json", b"[{\"traceId\": 7}]".to_vec(), false).await;
    assert_eq!(code, 400);
    assert!(body.contains("Zipkin v2 JSON") && body.contains("traceId"), "{body}");
    let (code, body) = post(
        &client,
        &url,
        "application/json",
        b"[{\"traceId\":\"1\",\"id\":\"zz\"}]".to_vec(),
        false,
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("span 0: id \"zz\""), "{body}");
    let (code, body) = post(&client, &url, "application/x-thrift", b"".to_vec(), false).await;
    assert_eq!(code, 415);
    assert!(body.contains("/api/v1/spans"), "{body}");
    let (code, body) = post(&client, &url, "text/plain", b"[]".to_vec(), false).await;
    assert_eq!(code, 415, "{body}");
}

/// With the Collector's `parse_string_tags`, string tags that read as numbers or booleans
/// come back typed from Zipkin v2 (JSON and protobuf) and v1 JSON; v1 Thrift's binary
/// annotations keep the types they were sent with, as in the Collector.
#[tokio::test]
async fn zipkin_parse_string_tags_types_the_tags() {
    let dir = tempfile::tempdir().unwrap();
    let (legato, receivers) = start_with(dir.path(), "      parse_string_tags: true\n");
    let client = reqwest::Client::new();
    let v2 = format!("http://127.0.0.1:{}/api/v2/spans", receivers.zipkin);
    let v1 = format!("http://127.0.0.1:{}/api/v1/spans", receivers.zipkin);
    let sent = [
        post(&client, &v2, "application/json", ZIPKIN_JSON.to_vec(), false).await,
        post(&client, &v2, "application/x-protobuf", ZIPKIN_PROTO.to_vec(), false).await,
        post(&client, &v1, "application/json", ZIPKIN_V1_JSON.to_vec(), false).await,
        post(&client, &v1, "application/x-thrift", ZIPKIN_V1_THRIFT.to_vec(), false).await,
    ];
    for (code, body) in sent {
        assert_eq!(code, 202, "{body}");
    }
    for (trace, service) in [
        (ZIPKIN_JSON_TRACE, "zipkin-json-shop"),
        (ZIPKIN_PROTO_TRACE, "zipkin-proto-shop"),
    ] {
        let batches = read_trace(&client, &legato, trace).await;
        check_trace(&batches, service, true);
        let spans: Vec<&Span> = batches[0].scope_spans.iter().flat_map(|s| &s.spans).collect();
        let charge = spans.iter().find(|s| s.name == "charge").unwrap();
        assert_eq!(attr(&charge.attributes, "amount"), Some(&Value::DoubleValue(12.5)));
        let root = spans.iter().find(|s| s.name == "GET /checkout").unwrap();
        assert_eq!(attr(&root.attributes, "http.status_code"), Some(&Value::IntValue(200)));
    }
    let retry = |batches: &[ResourceSpans]| {
        let charge = batches
            .iter()
            .flat_map(|b| &b.scope_spans)
            .flat_map(|s| &s.spans)
            .find(|s| s.name == "charge")
            .unwrap();
        attr(&charge.attributes, "retry").cloned()
    };
    let v1_json = read_trace(&client, &legato, ZIPKIN_V1_JSON_TRACE).await;
    check_v1_trace(&v1_json, "zipkin-v1-json-shop");
    assert_eq!(retry(&v1_json), Some(Value::BoolValue(true)));
    let v1_thrift = read_trace(&client, &legato, ZIPKIN_V1_THRIFT_TRACE).await;
    check_v1_trace(&v1_thrift, "zipkin-v1-thrift-shop");
    assert_eq!(retry(&v1_thrift), Some(Value::StringValue("true".into())));
}

/// The recorded py_zipkin trace (see the fixtures' README) as the Collector's v1
/// conventions map it.
fn check_v1_trace(batches: &[ResourceSpans], service: &str) {
    let service_of = |span_name: &str| {
        let batch = batches
            .iter()
            .find(|b| b.scope_spans.iter().flat_map(|s| &s.spans).any(|s| s.name == span_name))
            .unwrap();
        attr(&batch.resource.as_ref().unwrap().attributes, "service.name").cloned()
    };
    assert_eq!(service_of("charge"), Some(Value::StringValue(service.into())));
    // py_zipkin's local span has no endpoint: the unknown service.
    assert_eq!(service_of("render"), Some(Value::StringValue("unknown_service".into())));
    let spans: Vec<&Span> = batches
        .iter()
        .flat_map(|b| &b.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let by_name = |n: &str| *spans.iter().find(|s| s.name == n).unwrap();
    let (root, charge, render) = (by_name("GET /checkout"), by_name("charge"), by_name("render"));
    assert!(root.parent_span_id.is_empty());
    assert_eq!(charge.parent_span_id, root.span_id);
    assert_eq!(render.parent_span_id, root.span_id);
    assert_eq!(root.kind, span::SpanKind::Server as i32);
    assert_eq!(charge.kind, span::SpanKind::Client as i32);
    let failed = charge.status.as_ref().unwrap();
    assert_eq!(
        (failed.code, failed.message.as_str()),
        (status::StatusCode::Error as i32, "declined")
    );
    assert_eq!(
        attr(&charge.attributes, "peer.service"),
        Some(&Value::StringValue("payments".into()))
    );
    assert_eq!(charge.events.len(), 1);
    assert_eq!(charge.events[0].name, "card declined");
    assert!(root.start_time_unix_nano > 0 && root.end_time_unix_nano > root.start_time_unix_nano);
}

#[tokio::test]
async fn zipkin_v1_json_and_thrift_from_py_zipkin_read_back_as_otlp() {
    let dir = tempfile::tempdir().unwrap();
    let (legato, receivers) = start(dir.path());
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/api/v1/spans", receivers.zipkin);

    let (code, body) = post(&client, &url, "application/json", gzip(ZIPKIN_V1_JSON), true).await;
    assert_eq!(code, 202, "{body}");
    let (code, body) = post(&client, &url, "application/x-thrift", ZIPKIN_V1_THRIFT.to_vec(), false).await;
    assert_eq!(code, 202, "{body}");
    check_v1_trace(
        &read_trace(&client, &legato, ZIPKIN_V1_JSON_TRACE).await,
        "zipkin-v1-json-shop",
    );
    check_v1_trace(
        &read_trace(&client, &legato, ZIPKIN_V1_THRIFT_TRACE).await,
        "zipkin-v1-thrift-shop",
    );

    let (code, body) = post(
        &client,
        &url,
        "application/json",
        br#"[{"traceId":"1","id":"zz"}]"#.to_vec(),
        false,
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("span 0: id \"zz\""), "{body}");
    let (code, body) = post(&client, &url, "application/json", ZIPKIN_JSON.to_vec(), false).await;
    assert_eq!(code, 400, "v2 spans on the v1 path");
    assert!(body.contains("/api/v2/spans"), "{body}");
    let (code, body) = post(
        &client,
        &url,
        "application/x-thrift",
        ZIPKIN_V1_THRIFT[..40].to_vec(),
        false,
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("not a Zipkin v1 Thrift span list"), "{body}");
    let (code, body) = post(&client, &url, "application/x-protobuf", b"".to_vec(), false).await;
    assert_eq!(code, 415, "{body}");
}

#[tokio::test]
async fn jaeger_thrift_over_http_and_the_agents_udp_protocols_read_back_as_otlp() {
    let dir = tempfile::tempdir().unwrap();
    let (legato, receivers) = start(dir.path());
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/api/traces", receivers.thrift_http);

    let (code, body) = post(&client, &url, "application/x-thrift", JAEGER_THRIFT.to_vec(), false).await;
    assert_eq!(code, 202, "{body}");
    check_trace(
        &read_trace(&client, &legato, JAEGER_THRIFT_TRACE).await,
        "jaeger-http-shop",
        true,
    );

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(JAEGER_COMPACT, ("127.0.0.1", receivers.thrift_compact))
        .unwrap();
    check_trace(
        &read_trace(&client, &legato, JAEGER_COMPACT_TRACE).await,
        "jaeger-compact-shop",
        true,
    );

    udp.send_to(JAEGER_BINARY, ("127.0.0.1", receivers.thrift_binary))
        .unwrap();
    // The HTTP batch with its trace id cut to 64 bits, under another service.
    check_trace(
        &read_trace(&client, &legato, JAEGER_BINARY_TRACE).await,
        "jaeger-binary-shop",
        true,
    );

    let (code, body) = post(
        &client,
        &url,
        "application/x-thrift",
        JAEGER_THRIFT[..100].to_vec(),
        false,
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("not a Jaeger Thrift Batch"), "{body}");
    let (code, body) = post(&client, &url, "application/json", b"{}".to_vec(), false).await;
    assert_eq!(code, 415);
    assert!(body.contains("application/x-thrift"), "{body}");
}

#[tokio::test]
async fn jaeger_grpc_post_spans_from_an_otel_exporter_reads_back_as_otlp() {
    use legato_receivers::jaeger::proto::api_v2::PostSpansRequest;
    use legato_receivers::jaeger::proto::api_v2::collector_service_client::CollectorServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let (legato, receivers) = start(dir.path());
    let http = reqwest::Client::new();
    let mut client = CollectorServiceClient::connect(format!("http://127.0.0.1:{}", receivers.grpc))
        .await
        .unwrap();
    let request = PostSpansRequest::decode(JAEGER_GRPC).unwrap();
    client.post_spans(request.clone()).await.unwrap();
    check_trace(
        &read_trace(&http, &legato, JAEGER_GRPC_TRACE).await,
        "jaeger-grpc-shop",
        true,
    );

    let mut bad = request;
    bad.batch.as_mut().unwrap().spans[1].span_id = vec![1, 2, 3, 4, 5, 6, 7, 8, 9];
    let refused = client.post_spans(bad).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("span 1: span_id has 9 bytes, expected 1 to 8"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn zipkin_spans_take_the_tenant_from_x_scope_orgid_like_otlp() {
    let dir = tempfile::tempdir().unwrap();
    let zipkin = free_port();
    let ports = Ports::free();
    let yaml = config_yaml(ports, dir.path(), None, "multitenancy_enabled: true\n").replacen(
        "distributor:\n  receivers:\n",
        &format!("distributor:\n  receivers:\n    zipkin:\n      endpoint: 127.0.0.1:{zipkin}\n"),
        1,
    );
    let legato = Legato::start(dir.path(), ports, &yaml);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{zipkin}/api/v2/spans");

    let (code, body) = post(&client, &url, "application/json", ZIPKIN_JSON.to_vec(), false).await;
    assert_eq!(code, 401, "no tenant: {body}");
    let sent = client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-scope-orgid", "team-a")
        .body(ZIPKIN_JSON.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let read = |tenant: &'static str| {
        client
            .get(legato.url(&format!("/api/v2/traces/{ZIPKIN_JSON_TRACE}")))
            .header("accept", "application/protobuf")
            .header("x-scope-orgid", tenant)
            .send()
    };
    let mut spans = 0;
    for _ in 0..50 {
        let body = read("team-a").await.unwrap().bytes().await.unwrap();
        let trace = TraceByIdResponse::decode(body).unwrap().trace.unwrap_or_default();
        spans = legato_proto::span_count(&trace.resource_spans);
        if spans == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(spans, 3, "stored for team-a");
    let other = read("team-b").await.unwrap().bytes().await.unwrap();
    let other = TraceByIdResponse::decode(other).unwrap().trace.unwrap_or_default();
    assert_eq!(legato_proto::span_count(&other.resource_spans), 0, "not for team-b");
}
