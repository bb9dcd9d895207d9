//! Authentication by configuration (issue 10): bearer tokens and basic auth from a credentials
//! file, each bound to a tenant, on the query API, OTLP/HTTP and OTLP/gRPC (the OpenTelemetry
//! SDK sending an `authorization` header); probes and scrapers stay open.
#![allow(clippy::unwrap_used)]

use integration_tests::{Legato, Ports, config_yaml, otlp_request};
use opentelemetry::trace::{Tracer, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_guard_the_api_and_receivers_and_pick_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials.yaml");
    std::fs::write(
        &creds,
        "credentials:\n  - {tenant: team-a, bearer_token: token-a}\n  - {tenant: team-b, username: bob, password: pw-b}\n",
    )
    .unwrap();
    let ports = Ports::free();
    let extra = format!(
        "multitenancy_enabled: true\nauth:\n  credentials_file: {}\n",
        creds.display()
    );
    let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, &extra));
    let client = reqwest::Client::new();

    // OTLP/HTTP: refused without credentials, stored for the token's tenant with them.
    let (req, id_a) = otlp_request(1, 3);
    let post = |auth: Option<&'static str>| {
        let mut r = client
            .post(legato.otlp_http_url())
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let resp = post(None).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(post(Some("Bearer wrong")).await.unwrap().status(), 401);
    assert_eq!(post(Some("Bearer token-a")).await.unwrap().status(), 200);

    // OTLP/gRPC from the OpenTelemetry SDK with basic auth: stored for team-b.
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("authorization", "Basic Ym9iOnB3LWI=".parse().unwrap()); // bob:pw-b
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(legato.otlp_grpc_url())
        .with_metadata(metadata)
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("auth-test");
    let span = tracer.start("GET /for-b");
    let id_b = hex::encode(opentelemetry::trace::Span::span_context(&span).trace_id().to_bytes());
    drop(span);
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();

    // Queries: each credential sees its own tenant only.
    let get = |path: String, auth: Option<(&'static str, &'static str)>, org: Option<&'static str>| {
        let mut r = client.get(legato.url(&path));
        if let Some((k, v)) = auth {
            r = r.header(k, v);
        }
        if let Some(o) = org {
            r = r.header("x-scope-orgid", o);
        }
        r.send()
    };
    let trace_a = format!("/api/traces/{}", hex::encode(id_a));
    let trace_b = format!("/api/traces/{id_b}");
    let bearer_a = Some(("authorization", "Bearer token-a"));
    let basic_b = Some(("authorization", "Basic Ym9iOnB3LWI="));
    assert_eq!(get(trace_a.clone(), None, None).await.unwrap().status(), 401);
    assert_eq!(get(trace_a.clone(), bearer_a, None).await.unwrap().status(), 200);
    assert_eq!(
        get(trace_a.clone(), basic_b, None).await.unwrap().status(),
        404,
        "team-b cannot see team-a"
    );
    assert_eq!(get(trace_b.clone(), basic_b, None).await.unwrap().status(), 200);
    let resp = get(trace_b, bearer_a, Some("team-b")).await.unwrap();
    assert_eq!(resp.status(), 403, "a token cannot act as another tenant");
    assert!(resp.text().await.unwrap().contains("team-a"));

    // Probes and scrapers need no credentials; refusals are counted.
    assert_eq!(get("/ready".into(), None, None).await.unwrap().status(), 200);
    let metrics = get("/metrics".into(), None, None).await.unwrap().text().await.unwrap();
    let failures: f64 = metrics
        .lines()
        .find(|l| l.starts_with("legato_api_auth_failures_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(failures >= 4.0, "{failures}");
    // The effective config names the file, never a secret.
    let config = get("/status/config".into(), bearer_a, None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        config.contains("credentials.yaml") && !config.contains("token-a"),
        "{config}"
    );
}
