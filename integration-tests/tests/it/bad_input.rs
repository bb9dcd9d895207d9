//! Malformed, oversized and invalid input gets a clear answer and never harms stored data.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::Write;

use integration_tests::{Legato, Ports, config_yaml, otlp_request, post_otlp, post_otlp_bytes, span_count_v2};
use legato_proto::collector::ExportTraceServiceResponse;
use legato_proto::collector::trace_service_client::TraceServiceClient;
use prost::Message;

fn start(dir: &std::path::Path, extra: &str) -> Legato {
    let ports = Ports::free();
    let yaml = config_yaml(ports, dir, None, extra).replace(
        "        http:\n",
        "          max_recv_msg_size_mib: 1\n        http:\n          max_request_body_size: 64KiB\n",
    );
    Legato::start(dir, ports, &yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_rejects_bad_bodies_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let legato = start(dir.path(), "");
    let client = reqwest::Client::new();
    let (good, good_id) = otlp_request(1, 3);
    assert_eq!(post_otlp(&client, &legato, &good).await.0, 200);

    let post = |ct: &'static str, body: Vec<u8>| {
        client
            .post(legato.otlp_http_url())
            .header("content-type", ct)
            .body(body)
            .send()
    };
    // Undecodable protobuf and JSON → 400 with a message.
    let resp = post("application/x-protobuf", vec![0xff, 0xff, 0xff]).await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = post(
        "application/json",
        b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"traceId\": \"xyz\"}]}]}]}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 3);
    assert!(body["message"].as_str().unwrap().contains("traceId"), "{body}");
    // Wrong media type → 415.
    let resp = post("text/plain", b"hello".to_vec()).await.unwrap();
    assert_eq!(resp.status(), 415);
    // Over the body limit → 413, compressed or not.
    let (big, _) = otlp_request(2, 2000);
    let resp = post("application/x-protobuf", big.encode_to_vec()).await.unwrap();
    assert_eq!(resp.status(), 413);
    let resp = post_gzip(&client, &legato, &big).await;
    assert_eq!(resp.status(), 413, "decompressed size counts");

    // A gzip body under the limit is accepted.
    let (small, small_id) = otlp_request(3, 2);
    let resp = post_gzip(&client, &legato, &small).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(span_count_v2(&client, &legato, &small_id).await, 2);
    // Nothing stored before was harmed.
    assert_eq!(span_count_v2(&client, &legato, &good_id).await, 3);
}

/// Issue 10: tag names no attribute can have answer 400 naming the problem; `/flush` changes
/// state and answers GET with 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tag_names_and_get_flush_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let legato = start(dir.path(), "");
    let client = reqwest::Client::new();
    for (tag, why) in [
        ("%01x", "control character"),
        ("a%2Fb", "path separator"),
        ("a%5Cb", "path separator"),
        ("%20", "is empty"),
        (&"x".repeat(2000), "longer than 1024"),
    ] {
        for path in [
            format!("/api/search/tag/{tag}/values"),
            format!("/api/v2/search/tag/{tag}/values"),
        ] {
            let resp = client.get(legato.url(&path)).send().await.unwrap();
            assert_eq!(resp.status(), 400, "{path}");
            let body = resp.text().await.unwrap();
            assert!(body.contains(why), "{path}: {body}");
        }
    }
    let resp = client
        .get(legato.url("/api/search/tag/service.name/values"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let resp = client.get(legato.url("/flush")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(client.post(legato.url("/flush")).send().await.unwrap().status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ids_are_reported_in_partial_success_and_the_rest_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let legato = start(dir.path(), "");
    let client = reqwest::Client::new();
    let (mut req, id) = otlp_request(5, 4);
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans[1].span_id = vec![0; 8];
    spans[2].trace_id = vec![1, 2, 3];
    let (status, body) = post_otlp(&client, &legato, &req).await;
    assert_eq!(status, 200);
    let resp = ExportTraceServiceResponse::decode(body.as_slice()).unwrap();
    let partial = resp.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("invalid_span_id"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("invalid_trace_id"),
        "{}",
        partial.error_message
    );
    assert_eq!(span_count_v2(&client, &legato, &id).await, 2);
    let metrics = client
        .get(legato.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("legato_distributor_spans_rejected_total{tenant=\"single-tenant\",reason=\"invalid_span_id\"} 1"),
        "{metrics}"
    );
}

/// An export whose second span carries an attribute value that is not UTF-8, deep inside;
/// returned with its one resource spans encoded.
fn export_with_bad_utf8() -> (legato_proto::collector::ExportTraceServiceRequest, Vec<u8>) {
    let (mut req, _) = otlp_request(21, 2);
    req.resource_spans[0].scope_spans[0].spans[1]
        .attributes
        .push(legato_proto::common::KeyValue {
            key: "bad".into(),
            value: Some(legato_proto::common::AnyValue {
                value: Some(legato_proto::common::any_value::Value::StringValue("XQXQ".into())),
            }),
            ..Default::default()
        });
    let mut bytes = req.resource_spans[0].encode_to_vec();
    let at = bytes.windows(4).position(|w| w == b"XQXQ").unwrap();
    bytes[at] = 0xff;
    (req, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_exports_are_refused_whole_naming_the_problem() {
    use legato_proto::otlp_raw::RawExportTraceServiceRequest;
    use legato_proto::otlp_raw::trace_service_client::TraceServiceClient as RawClient;
    let dir = tempfile::tempdir().unwrap();
    let legato = start(dir.path(), "");
    let client = reqwest::Client::new();
    let (req, resource_spans) = export_with_bad_utf8();
    let id = req.resource_spans[0].scope_spans[0].spans[0].trace_id.clone();
    let export = RawExportTraceServiceRequest {
        resource_spans: vec![resource_spans.into()],
    };

    let (status, body) = post_otlp_bytes(&client, &legato, export.encode_to_vec()).await;
    assert_eq!(status, 400);
    let message = String::from_utf8_lossy(&body);
    assert!(message.contains("not valid UTF-8"), "{message}");

    let mut raw = RawClient::connect(legato.otlp_grpc_url()).await.unwrap();
    let err = raw.export(export).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("not valid UTF-8"), "{err}");
    // Nothing of it was stored, not even the span that was fine.
    assert_eq!(span_count_v2(&client, &legato, &id).await, 0);

    // Issue 10: a gRPC message that is not an export at all (field 1 with the wrong wire
    // type) is the client's fault: INVALID_ARGUMENT with a message, not INTERNAL.
    let err = export_undecodable(&legato).await;
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("undecodable OTLP export"), "{err}");
}

/// Not an `ExportTraceServiceRequest`: field 1 (resource_spans) as a varint.
#[derive(Clone, PartialEq, prost::Message)]
struct NotAnExport {
    #[prost(uint64, tag = "1")]
    resource_spans: u64,
}

async fn export_undecodable(legato: &Legato) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(legato.otlp_grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = legato_proto::codec::ClientErrorCodec::<NotAnExport, ExportTraceServiceResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary(tonic::Request::new(NotAnExport { resource_spans: 7 }), path, codec)
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_oversized_message_is_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let legato = start(dir.path(), "");
    let mut client = TraceServiceClient::connect(legato.otlp_grpc_url()).await.unwrap();
    let (big, _) = otlp_request(9, 20_000);
    let err = client.export(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let (small, id) = otlp_request(10, 3);
    client.export(small).await.unwrap();
    assert_eq!(span_count_v2(&reqwest::Client::new(), &legato, &id).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_at_export_time() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "overrides:\n  defaults:\n    ingestion:\n      rate_limit_bytes: 5000\n      burst_size_bytes: 5000\n    global:\n      max_bytes_per_trace: 1500\n";
    let legato = start(dir.path(), extra);
    let client = reqwest::Client::new();
    // A trace over max_bytes_per_trace is refused in partial_success, not silently dropped.
    let (req, id) = otlp_request(20, 25);
    let (status, body) = post_otlp(&client, &legato, &req).await;
    assert_eq!(status, 200);
    let partial = ExportTraceServiceResponse::decode(body.as_slice())
        .unwrap()
        .partial_success
        .expect("partial");
    assert_eq!(partial.rejected_spans, 25);
    assert!(
        partial.error_message.contains("trace_too_large"),
        "{}",
        partial.error_message
    );
    assert_eq!(span_count_v2(&client, &legato, &id).await, 0);
    // The rate limit answers 429 with Retry-After.
    let mut saw_429 = false;
    for seed in 0..30 {
        let (req, _) = otlp_request(100 + seed, 5);
        let resp = client
            .post(legato.otlp_http_url())
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
            saw_429 = true;
            break;
        }
        assert_eq!(resp.status(), 200);
    }
    assert!(saw_429, "rate limit never triggered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multitenancy_requires_org_id_and_separates_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let legato = start(dir.path(), "multitenancy_enabled: true\n");
    let client = reqwest::Client::new();
    let (req, id) = otlp_request(30, 2);
    let body = req.encode_to_vec();
    let resp = client
        .post(legato.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client
        .post(legato.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .header("x-scope-orgid", "team-a")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let get = |tenant: &'static str| {
        client
            .get(legato.url(&format!("/api/traces/{}", hex::encode(id))))
            .header("x-scope-orgid", tenant)
            .send()
    };
    assert_eq!(get("team-a").await.unwrap().status(), 200);
    assert_eq!(get("team-b").await.unwrap().status(), 404);
    let resp = client
        .get(legato.url(&format!("/api/traces/{}", hex::encode(id))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_id_rules_follow_tempo() {
    let dir = tempfile::tempdir().unwrap();
    let legato = start(dir.path(), "");
    let client = reqwest::Client::new();
    let (mut req, _) = otlp_request(40, 2);
    // A short trace id: 0x...abc, padded.
    let mut short = [0u8; 16];
    short[14] = 0x0a;
    short[15] = 0xbc;
    for s in &mut req.resource_spans[0].scope_spans[0].spans {
        s.trace_id = short.to_vec();
    }
    assert_eq!(post_otlp(&client, &legato, &req).await.0, 200);
    let get = |path: String| client.get(legato.url(&path)).send();
    assert_eq!(
        get("/api/traces/ABC".into()).await.unwrap().status(),
        200,
        "short upper-case ids are padded"
    );
    let resp = get("/api/traces/abcxyz".into()).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("invalid character 'x' at position 3")
    );
    assert_eq!(
        get(format!("/api/traces/{}", "a".repeat(33))).await.unwrap().status(),
        400
    );
    assert_eq!(get("/api/traces/123456".into()).await.unwrap().status(), 404);
    let resp = get("/api/v2/traces/123456".into()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["trace"], serde_json::json!({}));
    // Empty v2 protobuf still carries field 1.
    let resp = client
        .get(legato.url("/api/v2/traces/123456"))
        .header("accept", "application/protobuf")
        .send()
        .await
        .unwrap();
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x0a, 0x00]);
    assert_eq!(
        get("/api/traces/abc?start=20&end=10".into()).await.unwrap().status(),
        400
    );
    assert_eq!(get("/api/traces/abc?start=soon".into()).await.unwrap().status(), 400);
}

/// POSTs an OTLP protobuf request gzip-compressed.
async fn post_gzip(
    client: &reqwest::Client,
    legato: &Legato,
    request: &legato_proto::collector::ExportTraceServiceRequest,
) -> reqwest::Response {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&request.encode_to_vec()).unwrap();
    client
        .post(legato.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap()
}

/// Issue 13: under back-pressure (the ingester holds `max_buffered_bytes`) exports are refused
/// before their body is read or walked: a garbage body gets the same 429 as a valid one (not
/// 400), so a retry storm costs a header check per export; gRPC gets RESOURCE_EXHAUSTED even
/// for an undecodable message. Nothing already accepted is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_backpressure_exports_are_refused_before_their_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    // Live traces stay live (idle period 1h), so the 64 KiB buffer fills and stays full.
    let yaml = config_yaml(ports, dir.path(), None, "").replace(
        "trace_idle_period: 1s",
        "trace_idle_period: 1h\n  max_block_bytes: 64KiB\n  max_buffered_bytes: 64KiB",
    );
    let legato = Legato::start(dir.path(), ports, &yaml);
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    let mut refused = false;
    for seed in 0..200 {
        let (req, id) = otlp_request(seed, 20);
        match post_otlp(&client, &legato, &req).await.0 {
            200 => acked.push(id),
            429 => {
                refused = true;
                break;
            }
            other => panic!("export {seed}: {other}"),
        }
    }
    assert!(
        refused && !acked.is_empty(),
        "the buffer never filled ({} acked)",
        acked.len()
    );
    let (status, body) = post_otlp_bytes(&client, &legato, b"\xff\xff\xff not protobuf".to_vec()).await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert_eq!(export_undecodable(&legato).await.code(), tonic::Code::ResourceExhausted);
    for id in &acked {
        assert_eq!(span_count_v2(&client, &legato, id).await, 20);
    }
}
