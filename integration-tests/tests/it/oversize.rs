//! Data over Tempo's size limits, end to end: attributes over the distributor's
//! `max_attribute_bytes` are cut (not refused) and counted, from the OpenTelemetry SDK over
//! OTLP/gRPC and from OTLP/HTTP; a stored trace over `max_bytes_per_trace` answers v1 trace
//! by id with 422 and v2 with its beginning, `status: PARTIAL` and Tempo's message; both limits
//! per tenant, from the per-tenant override file.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use integration_tests::{Legato, Ports, config_yaml, get_text, metric_value, otlp_request, post_otlp};
use legato_proto::collector::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use legato_proto::common::any_value::Value;
use legato_proto::common::{AnyValue, KeyValue};
use legato_proto::tempopb::{PARTIAL_STATUS_PARTIAL, Trace, TraceByIdResponse};
use legato_proto::trace::{ResourceSpans, Span};
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message;

async fn read_v2(client: &reqwest::Client, legato: &Legato, trace_id: &[u8]) -> TraceByIdResponse {
    let resp = client
        .get(legato.url(&format!("/api/v2/traces/{}", hex::encode(trace_id))))
        .header("accept", "application/protobuf")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    TraceByIdResponse::decode(resp.bytes().await.unwrap()).unwrap()
}

fn spans(batches: &[ResourceSpans]) -> Vec<&Span> {
    batches
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect()
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// A span with 5000-byte attributes (one of two-byte characters) on its resource, itself and
/// its event, sent by the OpenTelemetry SDK over OTLP/gRPC; returns its trace id.
fn emit_long_attributes(legato: &Legato) -> [u8; 16] {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(legato.otlp_grpc_url())
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("uploader")
                .with_attribute(opentelemetry::KeyValue::new("build.notes", "r".repeat(5000)))
                .build(),
        )
        .build();
    let tracer = provider.tracer("oversize-test");
    let mut span = tracer
        .span_builder("upload")
        .with_attributes([
            opentelemetry::KeyValue::new("payload", "é".repeat(2500)),
            opentelemetry::KeyValue::new("size", 5000i64),
        ])
        .start(&tracer);
    span.add_event("dump", vec![opentelemetry::KeyValue::new("body", "x".repeat(5000))]);
    let trace_id = span.span_context().trace_id().to_bytes();
    opentelemetry::Context::current_with_span(span).span().end();
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
    trace_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_over_max_attribute_bytes_are_cut_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // The default limit: 2048 bytes, as Tempo's.
    let legato = Legato::start_default(dir.path());
    let client = reqwest::Client::new();

    let sdk_trace = emit_long_attributes(&legato);
    let response = read_v2(&client, &legato, &sdk_trace).await;
    let batches = response.trace.unwrap().resource_spans;
    let resource = &batches[0].resource.as_ref().unwrap().attributes;
    assert_eq!(string_attr(resource, "build.notes"), Some("r".repeat(2048).as_str()));
    assert_eq!(string_attr(resource, "service.name"), Some("uploader"));
    let span = spans(&batches)[0];
    assert_eq!(
        string_attr(&span.attributes, "payload"),
        Some("é".repeat(1024).as_str()),
        "2048 bytes, whole characters"
    );
    let size = span.attributes.iter().find(|a| a.key == "size").unwrap();
    assert_eq!(size.value.as_ref().unwrap().value, Some(Value::IntValue(5000)));
    assert_eq!(
        string_attr(&span.events[0].attributes, "body"),
        Some("x".repeat(2048).as_str())
    );

    // OTLP/HTTP: a key over the limit is cut as a value is.
    let (mut request, http_trace) = otlp_request(7, 1);
    request.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "k".repeat(5000),
            value: Some(AnyValue {
                value: Some(Value::StringValue("v".into())),
            }),
            ..Default::default()
        });
    let (status, _) = post_otlp(&client, &legato, &request).await;
    assert_eq!(status, 200);
    let response = read_v2(&client, &legato, &http_trace).await;
    let batches = response.trace.unwrap().resource_spans;
    assert_eq!(
        string_attr(&spans(&batches)[0].attributes, &"k".repeat(2048)),
        Some("v")
    );

    let metrics = get_text(&client, &legato.url("/metrics")).await;
    let truncated = |scope: &str| {
        metric_value(
            &metrics,
            &format!("legato_distributor_attributes_truncated_total{{tenant=\"single-tenant\",scope=\"{scope}\"}}"),
        )
    };
    assert_eq!(
        (truncated("resource"), truncated("span"), truncated("event")),
        (1.0, 2.0, 1.0),
        "{metrics}"
    );
}

/// One trace as two exports of `half` spans each (the second a second later), each within
/// `max` bytes and together well over it.
fn trace_in_halves(half: usize, max: usize) -> (ExportTraceServiceRequest, ExportTraceServiceRequest, [u8; 16]) {
    let (first, trace_id) = otlp_request(42, half as u64);
    let mut second = first.clone();
    for span in &mut second.resource_spans[0].scope_spans[0].spans {
        span.span_id[0] = 0xee;
        span.start_time_unix_nano += 1_000_000_000;
        span.end_time_unix_nano += 1_000_000_000;
    }
    let bytes = first.encoded_len();
    assert!(bytes < max && 2 * bytes > max + 200, "halves of {bytes} bytes");
    (first, second, trace_id)
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_over_max_bytes_per_trace_is_422_on_v1_and_partial_on_v2() {
    const MAX: usize = 1500;
    const HALF: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let extra = format!("overrides:\n  defaults:\n    global:\n      max_bytes_per_trace: {MAX}\n");
    let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, &extra));
    let client = reqwest::Client::new();

    // The ingester takes a live trace up to the limit: send it in two halves, each within
    // it, with a flush between, so that the stored trace is over the limit.
    let (first, second, trace_id) = trace_in_halves(HALF, MAX);
    assert_eq!(post_otlp(&client, &legato, &first).await.0, 200);
    assert_eq!(client.post(legato.url("/flush")).send().await.unwrap().status(), 204);
    let (status, body) = post_otlp(&client, &legato, &second).await;
    assert_eq!(status, 200);
    assert!(
        legato_proto::collector::ExportTraceServiceResponse::decode(body.as_slice())
            .unwrap()
            .partial_success
            .is_none_or(|p| p.rejected_spans == 0),
        "the second half is stored"
    );
    let (small, small_id) = otlp_request(43, 2);
    assert_eq!(post_otlp(&client, &legato, &small).await.0, 200);

    // v1: 422 with Tempo's text, in either format; a trace within the limit is answered.
    for accept in ["application/json", "application/protobuf"] {
        let resp = client
            .get(legato.url(&format!("/api/traces/{}", hex::encode(trace_id))))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{accept}");
        assert_eq!(
            resp.text().await.unwrap(),
            format!("trace exceeds max size (max bytes: {MAX})")
        );
    }
    let resp = client
        .get(legato.url(&format!("/api/traces/{}", hex::encode(small_id))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // v2: the trace's earliest spans within the limit, PARTIAL, Tempo's message.
    let response = read_v2(&client, &legato, &trace_id).await;
    assert_eq!(response.status, PARTIAL_STATUS_PARTIAL);
    assert_eq!(
        response.message,
        format!("Trace exceeds maximum size of {MAX} bytes, a partial trace is returned")
    );
    let trace = response.trace.unwrap();
    assert!(trace.encoded_len() <= MAX, "{} bytes", trace.encoded_len());
    let kept = spans(&trace.resource_spans);
    assert!((HALF..2 * HALF).contains(&kept.len()), "{} spans", kept.len());
    assert!(
        kept.iter().filter(|s| s.span_id[0] != 0xee).count() == HALF,
        "the first half, which started earlier, is whole"
    );
    assert!(response.metrics.unwrap().inspected_bytes > MAX as u64);
    let json: serde_json::Value = client
        .get(legato.url(&format!("/api/v2/traces/{}", hex::encode(trace_id))))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["status"], "PARTIAL", "{json}");
    let complete = read_v2(&client, &legato, &small_id).await;
    assert_eq!(complete.status, 0, "within the limit: COMPLETE");
    assert!(complete.message.is_empty());
    let _: Trace = complete.trace.unwrap();
}

/// An OTLP/HTTP export for `tenant`; the status and the decoded response.
async fn export_as(
    client: &reqwest::Client,
    legato: &Legato,
    tenant: &str,
    request: &ExportTraceServiceRequest,
) -> (u16, ExportTraceServiceResponse) {
    let resp = client
        .post(legato.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .header("x-scope-orgid", tenant)
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap(),
    )
}

/// `GET path` for `tenant` in protobuf.
async fn get_as(client: &reqwest::Client, legato: &Legato, tenant: &str, path: &str) -> reqwest::Response {
    client
        .get(legato.url(path))
        .header("x-scope-orgid", tenant)
        .header("accept", "application/protobuf")
        .send()
        .await
        .unwrap()
}

/// Both size limits per tenant, from the per-tenant override file in Tempo's format: tenant
/// `small` has `global.max_bytes_per_trace: 1500` and `ingestion.max_attribute_bytes: 32`,
/// tenant `roomy` the defaults (5000000 bytes; `distributor.max_attribute_bytes`, 2048). The
/// same trace, stored in two halves, is 422 on v1 and PARTIAL on v2 for `small` and whole for
/// `roomy`; an export over 1500 bytes is refused for `small` only; a 100-byte attribute is cut
/// for `small` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_are_per_tenant_overrides() {
    const MAX: usize = 1500;
    const HALF: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let overrides = dir.path().join("overrides.yaml");
    std::fs::write(
        &overrides,
        format!("overrides:\n  small:\n    global:\n      max_bytes_per_trace: {MAX}\n    ingestion:\n      max_attribute_bytes: 32\n"),
    )
    .unwrap();
    let ports = Ports::free();
    let extra = format!(
        "multitenancy_enabled: true\noverrides:\n  per_tenant_override_config: {}\n",
        overrides.display()
    );
    let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, &extra));
    let client = reqwest::Client::new();

    // One trace in two halves, each within small's limit, flushed between (as above).
    let (first, second, trace_id) = trace_in_halves(HALF, MAX);
    // A trace with a 100-byte attribute, and one export over small's limit.
    let (mut noted, noted_id) = otlp_request(43, 2);
    noted.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "note".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("n".repeat(100))),
            }),
            ..Default::default()
        });
    let (whole, whole_id) = otlp_request(44, 2 * HALF as u64);
    assert!(whole.encoded_len() > MAX);

    for tenant in ["small", "roomy"] {
        assert_eq!(export_as(&client, &legato, tenant, &first).await.0, 200);
        assert_eq!(client.post(legato.url("/flush")).send().await.unwrap().status(), 204);
        let (status, response) = export_as(&client, &legato, tenant, &second).await;
        assert_eq!(status, 200);
        assert!(
            response.partial_success.is_none_or(|p| p.rejected_spans == 0),
            "{tenant}"
        );
        assert_eq!(export_as(&client, &legato, tenant, &noted).await.0, 200);
        let (status, response) = export_as(&client, &legato, tenant, &whole).await;
        assert_eq!(status, 200);
        let rejected = response.partial_success.map_or(0, |p| p.rejected_spans);
        let expected = if tenant == "small" { 2 * HALF as i64 } else { 0 };
        assert_eq!(rejected, expected, "{tenant}: an export over {MAX} bytes");
    }

    // small: 422 on v1, the earliest spans within 1500 bytes on v2.
    let v1 = format!("/api/traces/{}", hex::encode(trace_id));
    let v2 = format!("/api/v2/traces/{}", hex::encode(trace_id));
    let resp = get_as(&client, &legato, "small", &v1).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        resp.text().await.unwrap(),
        format!("trace exceeds max size (max bytes: {MAX})")
    );
    let partial =
        TraceByIdResponse::decode(get_as(&client, &legato, "small", &v2).await.bytes().await.unwrap()).unwrap();
    assert_eq!(partial.status, PARTIAL_STATUS_PARTIAL);
    assert_eq!(
        partial.message,
        format!("Trace exceeds maximum size of {MAX} bytes, a partial trace is returned")
    );
    let kept = partial.trace.unwrap();
    assert!(kept.encoded_len() <= MAX);
    assert!((HALF..2 * HALF).contains(&spans(&kept.resource_spans).len()));

    // roomy: the whole trace on both.
    let resp = get_as(&client, &legato, "roomy", &v1).await;
    assert_eq!(resp.status(), 200);
    let trace = Trace::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(spans(&trace.resource_spans).len(), 2 * HALF);
    let complete =
        TraceByIdResponse::decode(get_as(&client, &legato, "roomy", &v2).await.bytes().await.unwrap()).unwrap();
    assert_eq!((complete.status, complete.message.as_str()), (0, ""));
    assert_eq!(spans(&complete.trace.unwrap().resource_spans).len(), 2 * HALF);

    // The over-limit export: stored for roomy only. The attribute: cut for small only.
    let whole_v1 = format!("/api/traces/{}", hex::encode(whole_id));
    assert_eq!(get_as(&client, &legato, "small", &whole_v1).await.status(), 404);
    assert_eq!(get_as(&client, &legato, "roomy", &whole_v1).await.status(), 200);
    for (tenant, len) in [("small", 32), ("roomy", 100)] {
        let path = format!("/api/traces/{}", hex::encode(noted_id));
        let trace = Trace::decode(get_as(&client, &legato, tenant, &path).await.bytes().await.unwrap()).unwrap();
        let note = spans(&trace.resource_spans)
            .iter()
            .find_map(|s| string_attr(&s.attributes, "note"))
            .map(str::len);
        assert_eq!(note, Some(len), "{tenant}");
    }
}
