//! The metrics generator's span metrics (issue 11, first part) remote-written to a real
//! Prometheus (Debian's package, started here with the remote-write receiver), which then
//! answers the RED-table queries Grafana's Tempo data source sends. Sampling is set to keep
//! nothing, so the test also shows span metrics count every span before sampling drops it.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{Legato, Ports, config_yaml, free_port, get_json_query, span_count_v2};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;

struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &std::path::Path) -> Self {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--enable-feature=exemplar-storage")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (installed by ci/setup.sh)");
        let me = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/-/ready")])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return me;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus did not become ready");
    }

    async fn query(&self, client: &reqwest::Client, q: &str) -> Vec<serde_json::Value> {
        instant_query(client, &format!("http://127.0.0.1:{}/api/v1/query", self.port), q).await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OpenTelemetry SDK tracer provider for `service`, exporting to Legato over gRPC.
fn sdk_provider(legato: &Legato, service: &str) -> opentelemetry_sdk::trace::SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(legato.otlp_grpc_url())
        .build()
        .unwrap();
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service.to_string()).build())
        .build()
}

/// Request `i` of frontend (root server span `GET /checkout`, one in five failing) calling
/// checkout (client span `checkout.PlaceOrder`, then server span `PlaceOrder`): the contexts of
/// the root, the call and the server span, none of them ended.
fn place_order(
    ft: &opentelemetry_sdk::trace::SdkTracer,
    ct: &opentelemetry_sdk::trace::SdkTracer,
    i: usize,
) -> [opentelemetry::Context; 3] {
    let mut root = ft.span_builder("GET /checkout").with_kind(SpanKind::Server).start(ft);
    if i.is_multiple_of(5) {
        root.set_status(Status::error("boom"));
    }
    let root_cx = opentelemetry::Context::current_with_span(root);
    let call = ft
        .span_builder("checkout.PlaceOrder")
        .with_kind(SpanKind::Client)
        .start_with_context(ft, &root_cx);
    let call_cx = root_cx.with_span(call);
    let server = ct
        .span_builder("PlaceOrder")
        .with_kind(SpanKind::Server)
        .start_with_context(ct, &call_cx);
    let server_cx = call_cx.with_span(server);
    [root_cx, call_cx, server_cx]
}

/// Sends `n` requests of frontend (server span `GET /checkout`, one in five failing) calling
/// checkout (client span, then a server span `PlaceOrder` in another service).
fn send_traffic(legato: &Legato, n: usize) -> Vec<[u8; 16]> {
    let provider = |service: &str| sdk_provider(legato, service);
    let (frontend, checkout) = (provider("frontend"), provider("checkout"));
    let (ft, ct) = (frontend.tracer("test"), checkout.tracer("test"));
    let mut ids = Vec::new();
    for i in 0..n {
        let [root, call, server] = place_order(&ft, &ct, i);
        ids.push(root.span().span_context().trace_id().to_bytes());
        server.span().set_attribute(KeyValue::new("app.order.items", 3i64));
        for cx in [server, call, root] {
            cx.span().end();
        }
    }
    for p in [frontend, checkout] {
        p.force_flush().unwrap();
        p.shutdown().unwrap();
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_metrics_reach_prometheus_and_answer_grafanas_red_queries() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path());
    let ports = Ports::free();
    let extra = format!(
        "metrics_generator:\n  registry:\n    collection_interval: 1s\n    external_labels:\n      cluster: test\n  storage:\n    remote_write:\n      - url: http://127.0.0.1:{}/api/v1/write\noverrides:\n  defaults:\n    metrics_generator:\n      processors: [span-metrics]\n    sampling:\n      probabilistic:\n        sampling_percentage: 0\n",
        prometheus.port
    );
    let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, &extra));
    let ids = send_traffic(&legato, 10);
    let client = reqwest::Client::new();

    // Every span is counted, though sampling stored none of them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let r = prometheus
            .query(
                &client,
                "sum by (service, span_name, span_kind) (traces_spanmetrics_calls_total)",
            )
            .await;
        let total: f64 = r
            .iter()
            .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
            .sum();
        if total >= 30.0 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let count = |service: &str, name: &str, kind: &str| {
        counts
            .iter()
            .find(|s| {
                s["metric"]["service"] == service
                    && s["metric"]["span_name"] == name
                    && s["metric"]["span_kind"] == kind
            })
            .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
    };
    assert_eq!(
        count("frontend", "GET /checkout", "SPAN_KIND_SERVER"),
        Some(10.0),
        "{counts:?}"
    );
    assert_eq!(count("frontend", "checkout.PlaceOrder", "SPAN_KIND_CLIENT"), Some(10.0));
    assert_eq!(count("checkout", "PlaceOrder", "SPAN_KIND_SERVER"), Some(10.0));
    assert_eq!(
        span_count_v2(&client, &legato, &ids[0]).await,
        0,
        "sampling kept nothing"
    );

    // Grafana's RED table queries, as it sends them. `rate` needs two samples of a series:
    // wait until Prometheus has the second one of the error series too.
    let deadline = Instant::now() + Duration::from_secs(15);
    while prometheus
        .query(
            &client,
            r#"rate(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_ERROR"}[5m]) > 0"#,
        )
        .await
        .is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let rate = prometheus
        .query(
            &client,
            r#"topk(5, sum(rate(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER"}[5m])) by (span_name))"#,
        )
        .await;
    let names: Vec<&str> = rate
        .iter()
        .map(|s| s["metric"]["span_name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"GET /checkout") && names.contains(&"PlaceOrder"),
        "{rate:?}"
    );
    let errors = prometheus
        .query(
            &client,
            r#"topk(5, sum(rate(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_ERROR"}[5m])) by (span_name))"#,
        )
        .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["metric"]["span_name"], "GET /checkout");
    let p90 = prometheus
        .query(
            &client,
            r#"histogram_quantile(.9, sum(rate(traces_spanmetrics_latency_bucket{span_name="GET /checkout"}[5m])) by (le))"#,
        )
        .await;
    let p90: f64 = p90[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        p90 > 0.0 && p90 <= 0.002,
        "fast in-process spans land in the first bucket: {p90}"
    );
    // Tempo's labels on every series: the generator's instance and the external labels.
    let labelled = prometheus
        .query(
            &client,
            r#"traces_spanmetrics_size_total{cluster="test", __metrics_gen_instance!=""}"#,
        )
        .await;
    assert_eq!(labelled.len(), 4, "one per service, span name, kind and status");

    // Exemplars carry the trace id under Tempo's label name.
    let exemplars: serde_json::Value = get_json_query(
        &client,
        &format!("http://127.0.0.1:{}/api/v1/query_exemplars", prometheus.port),
        &[
            ("query", "traces_spanmetrics_latency_bucket"),
            ("start", "0"),
            ("end", "4102444800"),
        ],
    )
    .await;
    let trace_ids: Vec<String> = exemplars["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["exemplars"].as_array().unwrap().iter())
        .map(|e| e["labels"]["traceID"].as_str().unwrap().to_string())
        .collect();
    assert!(!trace_ids.is_empty(), "{exemplars}");
    let known: Vec<String> = ids
        .iter()
        .map(|id| hex::encode(id).trim_start_matches('0').to_string())
        .collect();
    assert!(trace_ids.iter().all(|t| known.contains(t)), "{trace_ids:?}");

    let metrics = integration_tests::get_text(&client, &legato.url("/metrics")).await;
    assert!(
        metrics.contains("legato_generator_spans_observed_total{tenant=\"single-tenant\"} 30"),
        "{metrics}"
    );
    assert!(metrics.contains("legato_generator_remote_write_requests_total{result=\"ok\"}"));
}

/// With Prometheus down, ingest goes on, remote writes are retried with backoff from a
/// bounded queue, and /metrics shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_never_blocks_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let closed = free_port();
    let extra = format!(
        "metrics_generator:\n  registry:\n    collection_interval: 200ms\n  storage:\n    remote_write:\n      - url: http://127.0.0.1:{closed}/api/v1/write\noverrides:\n  defaults:\n    metrics_generator:\n      processors: [span-metrics]\n"
    );
    let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, &extra));
    let ids = send_traffic(&legato, 3);
    let client = reqwest::Client::new();
    assert_eq!(span_count_v2(&client, &legato, &ids[0]).await, 3, "ingest unaffected");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = integration_tests::get_text(&client, &legato.url("/metrics")).await;
        let retries = metrics
            .lines()
            .find(|l| l.starts_with("legato_generator_remote_write_requests_total{result=\"retry\"}"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let queued = metrics
            .lines()
            .find(|l| l.starts_with("legato_generator_remote_write_queue_length "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if retries >= 2.0 && queued >= 1.0 {
            assert!(queued <= 64.0, "bounded queue: {queued}");
            break;
        }
        assert!(Instant::now() < deadline, "no retries counted:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// frontend (root server span, one in five failing) → checkout (client/server pair);
/// checkout → a database (`db.name`), → shipping over a queue (producer/consumer), → an
/// uninstrumented payment gateway (`peer.service`).
fn send_topology(legato: &Legato, n: usize) {
    let provider = |service: &str| sdk_provider(legato, service);
    let providers = [provider("frontend"), provider("checkout"), provider("shipping")];
    let [ft, ct, st] = [&providers[0], &providers[1], &providers[2]].map(|p| p.tracer("test"));
    for i in 0..n {
        let [cx, call_cx, server_cx] = place_order(&ft, &ct, i);
        let mut db = ct
            .span_builder("SELECT orders")
            .with_kind(SpanKind::Client)
            .start_with_context(&ct, &server_cx);
        db.set_attribute(KeyValue::new("db.system", "postgresql"));
        db.set_attribute(KeyValue::new("db.name", "orders"));
        db.end();
        let publish = ct
            .span_builder("orders publish")
            .with_kind(SpanKind::Producer)
            .start_with_context(&ct, &server_cx);
        let publish_cx = server_cx.with_span(publish);
        st.span_builder("orders process")
            .with_kind(SpanKind::Consumer)
            .start_with_context(&st, &publish_cx)
            .end();
        publish_cx.span().end();
        let mut charge = ct
            .span_builder("charge")
            .with_kind(SpanKind::Client)
            .start_with_context(&ct, &server_cx);
        charge.set_attribute(KeyValue::new("peer.service", "payment-gateway"));
        charge.end();
        server_cx.span().end();
        call_cx.span().end();
        cx.span().end();
    }
    for p in providers {
        p.force_flush().unwrap();
        p.shutdown().unwrap();
    }
}

/// A PromQL query to Legato's own Prometheus API, as Grafana's Prometheus data source sends
/// it (form POST): the result list.
async fn legato_query(client: &reqwest::Client, legato: &Legato, q: &str) -> Vec<serde_json::Value> {
    instant_query(client, &legato.url("/prometheus/api/v1/query"), q).await
}

/// An instant PromQL query POSTed as a form to `url`: the result list.
async fn instant_query(client: &reqwest::Client, url: &str, q: &str) -> Vec<serde_json::Value> {
    let body: serde_json::Value = client
        .post(url)
        .form(&[("query", q)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "success", "{q}: {body}");
    body["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Result series by their labels (`__name__` left out), with values.
fn by_labels(result: &[serde_json::Value]) -> std::collections::BTreeMap<String, f64> {
    result
        .iter()
        .map(|s| {
            let mut labels: Vec<String> = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect();
            labels.sort();
            (labels.join(","), s["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// Issue 11: the service graph of a small topology, remote-written to a real Prometheus and
/// read back with the queries Grafana's service map sends; then the same queries through
/// Legato's own `/prometheus` API (no Prometheus needed), which must agree, before and after
/// a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_graph_edges_answer_grafanas_service_map_queries() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path());
    let ports = Ports::free();
    let extra = format!(
        "metrics_generator:\n  registry:\n    collection_interval: 1s\n  processor:\n    service_graphs:\n      wait: 1s\n  storage:\n    remote_write:\n      - url: http://127.0.0.1:{}/api/v1/write\noverrides:\n  defaults:\n    metrics_generator:\n      processors: [service-graphs, span-metrics]\n",
        prometheus.port
    );
    let mut legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, &extra));
    send_topology(&legato, 10);
    let client = reqwest::Client::new();
    let edges = |r: &[serde_json::Value]| {
        let mut e: Vec<(String, String, String, f64)> = r
            .iter()
            .map(|s| {
                let m = &s["metric"];
                let label = |k: &str| m[k].as_str().unwrap_or_default().to_string();
                (
                    label("client"),
                    label("server"),
                    label("connection_type"),
                    s["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        e.sort_by(|a, b| a.partial_cmp(b).unwrap());
        e
    };
    let want = vec![
        (
            "checkout".to_string(),
            "orders".to_string(),
            "database".to_string(),
            10.0,
        ),
        ("checkout".into(), "payment-gateway".into(), "virtual_node".into(), 10.0),
        ("checkout".into(), "shipping".into(), "messaging_system".into(), 10.0),
        ("frontend".into(), "checkout".into(), String::new(), 10.0),
        ("user".into(), "frontend".into(), "virtual_node".into(), 10.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = prometheus
            .query(
                &client,
                "sum by (client, server, connection_type) (traces_service_graph_request_total)",
            )
            .await;
        let got = edges(&r);
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "edges {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let failed = prometheus
        .query(
            &client,
            "sum by (client, server) (traces_service_graph_request_failed_total)",
        )
        .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (
            failed[0]["metric"]["client"].as_str(),
            failed[0]["metric"]["server"].as_str()
        ),
        (Some("user"), Some("frontend"))
    );
    assert_eq!(failed[0]["value"][1], "2");

    // Grafana's service-map queries (instant, $__range = 1h).
    for q in [
        "sum by (client, server) (rate(traces_service_graph_request_total[3600s]))",
        "sum by (client, server) (rate(traces_service_graph_request_server_seconds_sum[3600s]))",
        "sum by (client, server) (rate(traces_service_graph_request_server_seconds_bucket[3600s]))",
    ] {
        // A series' `_sum` starts without a 0 sample (as in Tempo): `rate()` sees an edge
        // born at the last collection only after the next one.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = prometheus.query(&client, q).await;
            let pairs: std::collections::BTreeSet<(String, String)> = r
                .iter()
                .map(|s| {
                    (
                        s["metric"]["client"].as_str().unwrap().to_string(),
                        s["metric"]["server"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            if pairs.len() == 5 {
                break;
            }
            assert!(Instant::now() < deadline, "{q}: {r:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let labels = prometheus
        .query(
            &client,
            "group by (client, connection_type, server) (traces_service_graph_request_total)",
        )
        .await;
    assert_eq!(labels.len(), 5);
    let p90 = prometheus
        .query(
            &client,
            r#"histogram_quantile(0.9, sum(rate(traces_service_graph_request_server_seconds_bucket{server="checkout"}[5m])) by (le, client, server))"#,
        )
        .await;
    assert_eq!(p90.len(), 1, "{p90:?}");

    // Legato's own /prometheus: exact counts per edge (no extrapolation).
    let exact = "sum by (client, server, connection_type) (increase(traces_service_graph_request_total[1h]))";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = edges(&legato_query(&client, &legato, exact).await);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "legato /prometheus edges {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Grafana's service-map queries: the same series as Prometheus gives.
    let metrics = [
        "traces_service_graph_request_server_seconds_sum",
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
        "traces_service_graph_request_server_seconds_bucket",
    ];
    for m in metrics {
        for q in [
            format!("sum by (client, server) (rate({m}[3600s]))"),
            format!("group by (client, connection_type, server) ({m})"),
        ] {
            let ours: Vec<String> = by_labels(&legato_query(&client, &legato, &q).await)
                .into_keys()
                .collect();
            let theirs: Vec<String> = by_labels(&prometheus.query(&client, &q).await).into_keys().collect();
            assert_eq!(ours, theirs, "{q}");
            assert!(!ours.is_empty(), "{q}");
        }
    }
    // Request, failed and latency totals: Legato's increase over the hour is the counter's value.
    for m in [
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
        "traces_service_graph_request_server_seconds_sum",
        "traces_service_graph_request_client_seconds_sum",
        "traces_spanmetrics_calls_total",
        "traces_spanmetrics_latency_sum",
    ] {
        let ours = by_labels(
            &legato_query(
                &client,
                &legato,
                &format!("sum by (client, server, span_name) (increase({m}[1h]))"),
            )
            .await,
        );
        let theirs = by_labels(
            &prometheus
                .query(&client, &format!("sum by (client, server, span_name) ({m})"))
                .await,
        );
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{m}"
        );
        for (k, v) in &ours {
            assert!(
                (v - theirs[k]).abs() < 1e-9,
                "{m} {k}: legato {v}, prometheus {}",
                theirs[k]
            );
        }
    }
    // Node links and the RED table.
    let p90 = legato_query(
        &client,
        &legato,
        r#"histogram_quantile(0.9, sum(rate(traces_service_graph_request_server_seconds_bucket{server="checkout"}[5m])) by (le, client, server))"#,
    )
    .await;
    assert_eq!(p90.len(), 1, "{p90:?}");
    for q in [
        r#"topk(5, sum(rate(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER"}[3600s])) by (span_name))"#,
        r#"topk(5, sum(rate(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_ERROR"}[3600s])) by (span_name))"#,
        r#"histogram_quantile(.9, sum(rate(traces_spanmetrics_latency_bucket{span_name="GET /checkout"}[3600s])) by (le))"#,
    ] {
        let ours = by_labels(&legato_query(&client, &legato, q).await);
        let theirs = by_labels(&prometheus.query(&client, q).await);
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{q}"
        );
        assert!(!ours.is_empty(), "{q}");
    }
    // The "is it collected?" probe, label values, build info, and a clear refusal.
    let names = integration_tests::get_json(
        &client,
        &legato.url("/prometheus/api/v1/labels?match[]=%7B__name__%3D~%22traces_service_graph_request_total%7Ctraces_service_graph_request_failed_total%22%7D"),
    )
    .await;
    assert!(
        names["data"].as_array().unwrap().iter().any(|n| n == "connection_type"),
        "{names}"
    );
    let servers = integration_tests::get_json(&client, &legato.url("/prometheus/api/v1/label/server/values")).await;
    assert_eq!(servers["data"].as_array().unwrap().len(), 5, "{servers}");
    let info = integration_tests::get_json(&client, &legato.url("/prometheus/api/v1/status/buildinfo")).await;
    assert_eq!(info["status"], "success");
    let refused = client
        .post(legato.url("/prometheus/api/v1/query"))
        .form(&[("query", "predict_linear(traces_service_graph_request_total[5m], 60)")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["errorType"], "bad_data");
    assert!(body["error"].as_str().unwrap().contains("predict_linear"), "{body}");
    let end = unix_now();
    let range: serde_json::Value = get_json_query(
        &client,
        &legato.url("/prometheus/api/v1/query_range"),
        &[
            ("query", "sum(rate(traces_service_graph_request_total[1m]))"),
            ("start", &(end - 600).to_string()),
            ("end", &end.to_string()),
            ("step", "60"),
        ],
    )
    .await;
    assert_eq!(range["data"]["resultType"], "matrix", "{range}");
    // Steps before the traffic have no samples; the last step (at `end`) has the rate.
    let values = range["data"]["result"][0]["values"].as_array().unwrap();
    let (last_t, last_v) = (
        values.last().unwrap()[0].as_u64().unwrap(),
        values.last().unwrap()[1].as_str().unwrap(),
    );
    assert_eq!(last_t, end, "{range}");
    assert!(last_v.parse::<f64>().unwrap() > 0.0, "{range}");

    // Restart: the map of the last hour is still there.
    assert!(legato.terminate().success());
    legato.spawn();
    assert_eq!(edges(&legato_query(&client, &legato, exact).await), want);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
