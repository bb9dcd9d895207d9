//! The OpenTelemetry Rust SDK exports to the real binary over OTLP/gRPC and OTLP/HTTP
//! (protobuf and JSON); traces read back over Tempo's HTTP API, live and after a flush to blocks.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::Duration;

use integration_tests::{Legato, get_json_query, span_count_v2};
use legato_proto::tempopb::Trace;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message;

enum Transport {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

/// Emits one trace (a server span with 3 children, one failing, one with an event) and
/// returns its trace id.
fn emit_trace(legato: &Legato, transport: Transport, service: &str) -> [u8; 16] {
    let exporter = match transport {
        Transport::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(legato.otlp_grpc_url())
            .build(),
        Transport::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(legato.otlp_http_url())
            .build(),
        Transport::HttpJson => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(legato.otlp_http_url())
            .build(),
    }
    .expect("exporter");
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .with_attribute(KeyValue::new("k8s.namespace.name", "shop"))
                .build(),
        )
        .build();
    let tracer = provider.tracer("integration-test");
    let mut root = tracer
        .span_builder("GET /checkout")
        .with_kind(SpanKind::Server)
        .start(&tracer);
    root.set_attribute(KeyValue::new("http.request.method", "GET"));
    root.set_attribute(KeyValue::new("http.response.status_code", 200i64));
    let trace_id = root.span_context().trace_id().to_bytes();
    let cx = opentelemetry::Context::current_with_span(root);
    for i in 0..3 {
        let mut child = tracer
            .span_builder(format!("child-{i}"))
            .with_kind(SpanKind::Client)
            .start_with_context(&tracer, &cx);
        if i == 1 {
            child.set_status(Status::error("payment declined"));
        }
        if i == 2 {
            child.add_event("cache miss", vec![KeyValue::new("key", "cart:42")]);
        }
        child.end();
    }
    cx.span().end();
    provider.force_flush().expect("flush");
    provider.shutdown().expect("shutdown");
    trace_id
}

async fn fetch_v1_json(client: &reqwest::Client, legato: &Legato, id: &[u8; 16]) -> serde_json::Value {
    let resp = client
        .get(legato.url(&format!("/api/traces/{}", hex::encode(id))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn check_grafana_shape(trace: &serde_json::Value, service: &str) {
    let batches = trace["batches"].as_array().expect("batches");
    let spans: Vec<&serde_json::Value> = batches
        .iter()
        .flat_map(|b| {
            let attrs = b["resource"]["attributes"].as_array().expect("resource attributes");
            assert!(
                attrs
                    .iter()
                    .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == service)
            );
            b["scopeSpans"].as_array().unwrap().iter()
        })
        .flat_map(|ss| {
            assert_eq!(ss["scope"]["name"], "integration-test");
            ss["spans"].as_array().unwrap().iter()
        })
        .collect();
    assert_eq!(spans.len(), 4);
    assert!(
        spans.iter().all(|s| s.get("status").is_some()),
        "every span has a status"
    );
    let failed = spans.iter().find(|s| s["name"] == "child-1").unwrap();
    assert_eq!(failed["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(failed["status"]["message"], "payment declined");
    let root = spans.iter().find(|s| s["name"] == "GET /checkout").unwrap();
    assert_eq!(root["kind"], "SPAN_KIND_SERVER");
    assert!(root.get("parentSpanId").is_none());
    let with_event = spans.iter().find(|s| s["name"] == "child-2").unwrap();
    assert_eq!(with_event["events"][0]["name"], "cache miss");
    assert_eq!(with_event["parentSpanId"], root["spanId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_exports_over_grpc_and_http_are_readable_live_and_from_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let legato = Legato::start_default(dir.path());
    let client = reqwest::Client::new();

    let ids: Vec<([u8; 16], &str)> = vec![
        (emit_trace(&legato, Transport::Grpc, "grpc-svc"), "grpc-svc"),
        (
            emit_trace(&legato, Transport::HttpProtobuf, "http-proto-svc"),
            "http-proto-svc",
        ),
        (
            emit_trace(&legato, Transport::HttpJson, "http-json-svc"),
            "http-json-svc",
        ),
    ];
    for (id, service) in &ids {
        assert_eq!(span_count_v2(&client, &legato, id).await, 4, "{service} live");
        check_grafana_shape(&fetch_v1_json(&client, &legato, id).await, service);
    }

    // Force everything into blocks, then read again from the blocks.
    let flushed = client.post(legato.url("/flush")).send().await.unwrap();
    assert_eq!(flushed.status(), 204);
    let blocks: Vec<_> = walk(&dir.path().join("blocks"));
    assert!(
        blocks.iter().any(|p| p.ends_with("meta.json")),
        "blocks written: {blocks:?}"
    );
    for (id, service) in &ids {
        check_grafana_shape(&fetch_v1_json(&client, &legato, id).await, service);
        // v1 protobuf is a plain tempopb.Trace.
        let resp = client
            .get(legato.url(&format!("/api/traces/{}", hex::encode(id))))
            .header("accept", "application/protobuf")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "application/protobuf");
        let trace = Trace::decode(resp.bytes().await.unwrap()).unwrap();
        assert_eq!(legato_proto::span_count(&trace.resource_spans), 4);
    }
    // Search finds the SDK's traces as Grafana asks for them: by service, status and kind.
    for service in ["grpc-svc", "http-proto-svc", "http-json-svc"] {
        let q = format!(
            "{{ resource.service.name = \"{service}\" && status = error }} >> {{ }} || {{ resource.service.name = \"{service}\" && status = error && kind = client }}"
        );
        let body: serde_json::Value = get_json_query(&client, &legato.url("/api/search"), &[("q", q.as_str())]).await;
        let traces = body["traces"].as_array().unwrap();
        assert_eq!(traces.len(), 1, "{service}: {body}");
        assert_eq!(traces[0]["rootServiceName"], service);
        assert_eq!(traces[0]["rootTraceName"], "GET /checkout");
        let want = hex::encode(ids.iter().find(|(_, s)| *s == service).unwrap().0);
        assert_eq!(traces[0]["traceID"].as_str().unwrap(), want.trim_start_matches('0'));
    }
    let body: serde_json::Value = get_json_query(
        &client,
        &legato.url("/api/search"),
        &[(
            "q",
            r#"{ span.http.response.status_code = 200 && kind = server } | count() = 1"#,
        )],
    )
    .await;
    assert_eq!(body["traces"].as_array().unwrap().len(), 3, "{body}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
