//! TLS on every listener (issue 10): Tempo's `server.http_tls_config` / `grpc_tls_config` and
//! the OTLP receivers' `tls` blocks, exercised with real TLS clients: the OpenTelemetry SDK's
//! gRPC exporter with a client certificate (mutual TLS), curl with a CA file, and plain or
//! unverified clients refused.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{Legato, Ports, config_yaml};
use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A CA, a server certificate for localhost / 127.0.0.1 and a client certificate, as PEM
/// files under `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: String,
    client_key: String,
}

fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "legato test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["client.legato.test".into()]);
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", &ca_cert.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server-key.pem", &server_key),
        client_cert,
        client_key,
    }
}

fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl").args(["-s", "-S"]).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_serves_tls_to_real_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let ports = Ports::free();
    let files = format!(
        "cert_file: {}\n{{i}}key_file: {}\n",
        pki.server_cert.display(),
        pki.server_key.display()
    );
    let block = |indent: &str| format!("{indent}{}", files.replace("{i}", indent));
    let yaml = config_yaml(ports, dir.path(), None, "")
        .replace(
            "  log_level: info\n",
            &format!(
                "  log_level: info\n  http_tls_config:\n{}  grpc_tls_config:\n{}",
                block("    "),
                block("    ")
            ),
        )
        .replace(
            &format!("          endpoint: 127.0.0.1:{}\n", ports.otlp_grpc),
            &format!(
                "          endpoint: 127.0.0.1:{}\n          tls:\n{}            client_ca_file: {}\n",
                ports.otlp_grpc,
                block("            "),
                pki.ca.display()
            ),
        )
        .replace(
            &format!("          endpoint: 127.0.0.1:{}\n", ports.otlp_http),
            &format!(
                "          endpoint: 127.0.0.1:{}\n          tls:\n{}",
                ports.otlp_http,
                block("            ")
            ),
        );
    let legato = Legato::start_with_ca(dir.path(), ports, &yaml, Some(pki.ca.clone()));
    let ca = pki.ca.to_str().unwrap();

    // The OpenTelemetry SDK over gRPC with mutual TLS.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .identity(tonic::transport::Identity::from_pem(&pki.client_cert, &pki.client_key))
        .domain_name("localhost");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("https://localhost:{}", ports.otlp_grpc))
        .with_tls_config(tls)
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("tls-test");
    let span = tracer.start("GET /secure");
    let trace_id = hex::encode(span.span_context().trace_id().to_bytes());
    drop(span);
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();

    // curl with the CA file reads it back over HTTPS.
    let url = legato.url(&format!("/api/traces/{trace_id}"));
    let (code, body) = curl(&["--cacert", ca, &url]);
    assert_eq!(code, 0, "curl exit {code}");
    assert!(body.contains("GET /secure"), "{body}");

    // Without the CA the certificate is not trusted; plain HTTP gets no answer.
    let (code, _) = curl(&[&url]);
    assert_eq!(code, 60, "curl must refuse an untrusted certificate");
    let (code, _) = curl(&[&format!("http://127.0.0.1:{}/ready", ports.http)]);
    assert_ne!(code, 0, "plain HTTP must not be served on a TLS port");

    // OTLP/HTTP over TLS with curl.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc701","spanId":"eee19b7ec3c1b101","name":"over-https","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}"#;
    let otlp_url = format!("https://localhost:{}/v1/traces", ports.otlp_http);
    let (code, _) = curl(&[
        "--cacert",
        ca,
        "-f",
        "-H",
        "content-type: application/json",
        "-d",
        json,
        &otlp_url,
    ]);
    assert_eq!(code, 0, "OTLP/HTTP over TLS");

    // The gRPC receiver requires a client certificate.
    let no_client_cert = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", ports.otlp_grpc))
        .unwrap()
        .tls_config(no_client_cert)
        .unwrap()
        .connect()
        .await;
    let refused = match channel {
        Err(_) => true,
        Ok(channel) => legato_proto::collector::trace_service_client::TraceServiceClient::new(channel)
            .export(legato_proto::collector::ExportTraceServiceRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a gRPC client without a certificate must be refused");

    // The gRPC port (Grafana's streaming querier) serves TLS too.
    let grpc_url = format!("https://localhost:{}/", ports.grpc);
    let (code, _) = curl(&["--cacert", ca, "--http2-prior-knowledge", "-o", "/dev/null", &grpc_url]);
    assert_eq!(code, 0, "TLS handshake on the gRPC port");
}

/// Microservices mode with mutual TLS between roles: every gRPC port requires a client
/// certificate, and every role dials the others with `ingester_client.grpc_client_config`.
/// A trace pushed through the distributor (to the ingester over mTLS) is read back through
/// the query frontend (from the ingester over mTLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_talk_to_each_other_over_mutual_tls() {
    use integration_tests::{ClusterSite, S3Server, free_udp_port, one_replica, otlp_request_at, span_count_v2};
    use prost::Message;
    let s3 = S3Server::start("traces").await;
    let root = tempfile::tempdir().unwrap();
    let pki = pki(root.path());
    let client_cert = root.path().join("client.pem");
    let client_key = root.path().join("client-key.pem");
    std::fs::write(&client_cert, &pki.client_cert).unwrap();
    std::fs::write(&client_key, &pki.client_key).unwrap();
    let tls = format!(
        "ingester_client:\n  grpc_client_config:\n    tls_enabled: true\n    tls_ca_path: {ca}\n    tls_cert_path: {cert}\n    tls_key_path: {key}\n    tls_server_name: localhost\n",
        ca = pki.ca.display(),
        cert = client_cert.display(),
        key = client_key.display(),
    );
    let server_tls = format!(
        "  grpc_tls_config:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    );
    let seed_port = free_udp_port();
    let site = ClusterSite {
        root: root.path(),
        s3_port: s3.port,
        seed_port,
    };
    let start = |target: &str, name: &str, gossip: u16| {
        site.start(target, name, gossip, &tls, |yaml| {
            one_replica(yaml).replace("  log_level: info\n", &format!("  log_level: info\n{server_tls}"))
        })
    };
    let (_ingester, _) = start("ingester", "ingester-0", seed_port);
    let (frontend, _) = start("query-frontend", "frontend", free_udp_port());
    let (distributor, _) = start("distributor", "distributor", free_udp_port());
    let client = reqwest::Client::new();
    let (req, id) = otlp_request_at(
        5,
        3,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = client
            .post(distributor.otlp_http_url())
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "push over mTLS never succeeded: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(span_count_v2(&client, &frontend, &id).await, 3, "read back over mTLS");
    let log = distributor.log_text();
    assert!(!log.contains("tls_enabled"), "no config complaint:\n{log}");
}

/// Issue 14: the Zipkin and Jaeger receivers take the Collector's `tls` block. A Zipkin v2
/// JSON export and a Jaeger Thrift batch go over HTTPS (curl with the CA), a Jaeger gRPC
/// `PostSpans` over mutual TLS; each trace is read back by id. Plain HTTP to a TLS port
/// gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_and_jaeger_receivers_serve_tls() {
    use integration_tests::{free_port, span_count_v2};
    use legato_receivers::jaeger::proto::api_v2::PostSpansRequest;
    use legato_receivers::jaeger::proto::api_v2::collector_service_client::CollectorServiceClient;
    use prost::Message;

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/legato-receivers/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (zipkin, thrift_http, grpc) = (free_port(), free_port(), free_port());
    let tls = |indent: &str| {
        format!(
            "{indent}tls:\n{indent}  cert_file: {}\n{indent}  key_file: {}\n",
            pki.server_cert.display(),
            pki.server_key.display()
        )
    };
    let receivers = format!(
        "distributor:\n  receivers:\n    zipkin:\n      endpoint: 127.0.0.1:{zipkin}\n{}    jaeger:\n      protocols:\n        thrift_http:\n          endpoint: 127.0.0.1:{thrift_http}\n{}        grpc:\n          endpoint: 127.0.0.1:{grpc}\n{}            client_ca_file: {}\n",
        tls("      "),
        tls("          "),
        tls("          "),
        pki.ca.display()
    );
    let ports = Ports::free();
    let yaml = config_yaml(ports, dir.path(), None, "").replacen("distributor:\n  receivers:\n", &receivers, 1);
    let legato = Legato::start(dir.path(), ports, &yaml);
    let ca = pki.ca.to_str().unwrap();
    let post = |url: String, content_type: &str, file: &str| {
        let body = format!("@{}", fixtures.join(file).display());
        let header = format!("content-type: {content_type}");
        let args = ["--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}", "-H", &header];
        curl(&[&args[..], &["--data-binary", &body, &url]].concat())
    };

    let zipkin_url = format!("https://localhost:{zipkin}/api/v2/spans");
    assert_eq!(
        post(zipkin_url, "application/json", "zipkin_v2.json"),
        (0, "202".into())
    );
    let jaeger_url = format!("https://localhost:{thrift_http}/api/traces");
    assert_eq!(
        post(jaeger_url, "application/x-thrift", "jaeger_batch.thrift"),
        (0, "202".into())
    );

    let client_tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .identity(tonic::transport::Identity::from_pem(&pki.client_cert, &pki.client_key))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{grpc}"))
        .unwrap()
        .tls_config(client_tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = PostSpansRequest::decode(&std::fs::read(fixtures.join("jaeger_post_spans.pb")).unwrap()[..]).unwrap();
    CollectorServiceClient::new(channel).post_spans(request).await.unwrap();

    let http = reqwest::Client::new();
    let traces = [
        "32f1d51d37245e8a1af14242fba42313",
        "2a25dc69a4a91ea5d81af9dc344fda6f",
        "f989373d2553f42ffc8feb3eff302ba3",
    ];
    for trace in traces {
        let id = hex::decode(trace).unwrap();
        let mut spans = 0;
        for _ in 0..50 {
            spans = span_count_v2(&http, &legato, &id).await;
            if spans == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(spans, 3, "trace {trace} read back:\n{}", legato.log_text());
    }

    for port in [zipkin, thrift_http] {
        let (code, _) = curl(&["-d", "[]", &format!("http://127.0.0.1:{port}/api/v2/spans")]);
        assert_ne!(code, 0, "plain HTTP must not be served on TLS port {port}");
    }
    let (code, _) = curl(&[&format!("https://localhost:{zipkin}/api/v2/spans")]);
    assert_eq!(code, 60, "curl must refuse the certificate without the CA");
}
