//! Microservices mode end to end: separate processes on loopback (1 distributor, 3 ingesters
//! with replication factor 3, 1 query frontend, 2 queriers) over a real S3 server, gossip
//! membership, an ingester SIGKILLed under load and restarted, compaction running under the
//! load, and every acknowledged span readable exactly once through the frontend throughout.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use integration_tests::{
    ClusterSite, Legato, S3Server, free_udp_port, get_json, get_text, one_replica, otlp_request_at, post_otlp,
};
use legato_proto::tempopb::TraceByIdResponse;
use prost::Message;

struct Node {
    name: String,
    dir: PathBuf,
    legato: Legato,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Span count of a trace through `node`'s HTTP API (0 when absent); panics on other errors.
async fn span_count(client: &reqwest::Client, node: &Legato, id: &[u8]) -> Result<usize, String> {
    let resp = client
        .get(node.url(&format!("/api/v2/traces/{}", hex::encode(id))))
        .header("accept", "application/protobuf")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match resp.status().as_u16() {
        200 => {
            let decoded = TraceByIdResponse::decode(resp.bytes().await.unwrap()).unwrap();
            Ok(legato_proto::span_count(
                &decoded.trace.map(|t| t.resource_spans).unwrap_or_default(),
            ))
        }
        404 => Ok(0),
        s => Err(format!("status {s}: {}", resp.text().await.unwrap_or_default())),
    }
}

async fn ring_members(client: &reqwest::Client, node: &Legato) -> Vec<(String, String)> {
    ring_members_at(client, node, "/ring").await
}

async fn ring_members_at(client: &reqwest::Client, node: &Legato, ring: &str) -> Vec<(String, String)> {
    let Ok(resp) = client.get(node.url(&format!("{ring}?format=json"))).send().await else {
        return Vec::new();
    };
    let Ok(json) = resp.json::<serde_json::Value>().await else {
        return Vec::new();
    };
    json["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["id"].as_str().unwrap_or_default().to_string(),
                        m["state"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_for_active_ingesters(client: &reqwest::Client, node: &Legato, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let members = ring_members(client, node).await;
        if members.iter().filter(|(_, s)| s == "ACTIVE").count() == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ring never showed {n} active ingesters: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_every_acknowledged_span_readable_through_an_ingester_crash() {
    let s3 = S3Server::start("traces").await;
    let root = tempfile::tempdir().unwrap();
    let seed_port = free_udp_port();
    let site = ClusterSite {
        root: root.path(),
        s3_port: s3.port,
        seed_port,
    };
    let start = |target: &str, name: &str, gossip: u16, extra: &str| Node {
        name: name.to_string(),
        dir: root.path().join(name),
        legato: site.start(target, name, gossip, extra, |yaml| yaml).0,
    };
    let mut ingesters = vec![start("ingester", "ingester-0", seed_port, "")];
    for i in 1..3 {
        ingesters.push(start("ingester", &format!("ingester-{i}"), free_udp_port(), ""));
    }
    let _queriers: Vec<Node> = (0..2)
        .map(|i| start("querier", &format!("querier-{i}"), free_udp_port(), ""))
        .collect();
    // Spans are sent until just before the metrics query counts them all: no end cutoff.
    let frontend = start(
        "query-frontend",
        "frontend",
        free_udp_port(),
        "query_frontend:\n  query_end_cutoff: 0s\n",
    );
    // Compacts as soon as there are two blocks; deletes replaced blocks 30 s later.
    let compactor = start(
        "compactor",
        "compactor",
        free_udp_port(),
        "compactor:\n  compaction:\n    compaction_cycle: 1s\n    compacted_block_retention: 30s\n",
    );
    let distributor = start("distributor", "distributor", free_udp_port(), "");
    let client = reqwest::Client::new();
    wait_for_active_ingesters(&client, &distributor.legato, 3).await;
    wait_for_active_ingesters(&client, &frontend.legato, 3).await;

    // The ring page renders as HTML too.
    let html = get_text(&client, &frontend.legato.url("/ingester/ring")).await;
    assert!(html.contains("<table") && html.contains("ingester-2"), "{html}");

    // Steady load from a background task; it records what was acknowledged.
    let acked: Arc<parking_lot::Mutex<BTreeMap<[u8; 16], usize>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (acked, stop, client) = (acked.clone(), stop.clone(), client.clone());
        let otlp = distributor.legato.otlp_http_url();
        tokio::spawn(async move {
            let mut seed = 0u64;
            let mut refused = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                seed += 1;
                let spans = 1 + seed % 5;
                let (req, id) = otlp_request_at(seed, spans, now_ns());
                let resp = client
                    .post(&otlp)
                    .header("content-type", "application/x-protobuf")
                    .body(req.encode_to_vec())
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().insert(id, spans as usize);
                    }
                    _ => refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            (seed, refused)
        })
    };

    // Every trace acknowledged so far must be complete (and not duplicated) through the
    // frontend.
    let check_all = |label: &'static str| {
        let (acked, client, fe) = (acked.clone(), client.clone(), &frontend.legato);
        async move {
            let snapshot: Vec<([u8; 16], usize)> = acked.lock().iter().map(|(k, v)| (*k, *v)).collect();
            let bad: Vec<_> = futures::stream::iter(snapshot.iter().map(|(id, want)| {
                let client = client.clone();
                async move {
                    match span_count(&client, fe, id).await {
                        Ok(got) if got == *want => None,
                        other => Some((hex::encode(id), *want, other)),
                    }
                }
            }))
            .buffer_unordered(8)
            .filter_map(|r| async move { r })
            .collect()
            .await;
            assert!(
                bad.is_empty(),
                "{label}: {} of {} acknowledged traces wrong through the frontend (id, want, got): {:?}",
                bad.len(),
                snapshot.len(),
                &bad[..bad.len().min(5)]
            );
            snapshot.len()
        }
    };

    tokio::time::sleep(Duration::from_secs(4)).await;
    let n = check_all("before the crash").await;
    assert!(n > 20, "load too slow: {n}");

    // SIGKILL one ingester mid-load.
    let victim = ingesters.remove(1);
    let (victim_name, victim_dir) = (victim.name.clone(), victim.dir.clone());
    let victim_ports = victim.legato.ports;
    let mut victim_legato = victim.legato;
    victim_legato.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = check_all("with an ingester dead").await;
    eprintln!("{n} traces readable with {victim_name} dead");

    // Restart it on the same WAL; it replays and rejoins.
    victim_legato.spawn();
    wait_for_active_ingesters(&client, &frontend.legato, 3).await;
    let _ = (victim_dir, victim_ports);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, refused) = load.await.unwrap();
    let n = check_all("after the restart").await;
    eprintln!("sent {sent}, acknowledged {n}, refused {refused}");
    // Only a short window around the crash may refuse writes (quorum lost until the ring notices).
    assert!(n as u64 * 10 >= sent * 9, "too many refused: {n} of {sent}");

    // Blocks flushed by ingesters reach the bucket and queriers read them: wait for the
    // ingesters' recent-block window to matter less by checking again after flushes.
    for node in &ingesters {
        assert_eq!(
            client.post(node.legato.url("/flush")).send().await.unwrap().status(),
            204
        );
    }
    let n = check_all("after flush").await;

    // TraceQL metrics through the frontend count every acknowledged span once: ingesters
    // and queriers evaluate where the data is (three replicas, level-0 and compacted blocks)
    // and the frontend merges their results.
    let acked_spans: usize = acked.lock().values().sum();
    let counted = get_json(
        &client,
        &frontend
            .legato
            .url("/api/metrics/query?q=%7B%7D%20%7C%20count_over_time()&since=1h"),
    )
    .await;
    assert!(counted.get("status").is_none(), "{counted}");
    assert_eq!(counted["series"][0]["value"], acked_spans as f64, "{counted}");

    // Search through the frontend finds each trace once.
    let search = get_json(
        &client,
        &frontend.legato.url("/api/search?q=%7B%7D&limit=100000&spss=1"),
    )
    .await;
    let traces = search["traces"].as_array().unwrap();
    let mut ids: Vec<&str> = traces.iter().map(|t| t["traceID"].as_str().unwrap()).collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "a trace appeared twice in search results");
    assert_eq!(total, n, "search should find every acknowledged trace");

    // Compaction ran during the load and merged the ingesters' replicated blocks.
    let metrics = get_text(&client, &compactor.legato.url("/metrics")).await;
    let jobs = integration_tests::metric_value(&metrics, "legato_compactor_jobs_total");
    assert!(jobs >= 1.0, "no compaction job ran:\n{metrics}");
    drop(victim_legato);
}

/// Issue 10: in microservices mode an ingester that does not answer makes tag and metrics
/// answers say so (metrics: Tempo's PARTIAL status with a message naming it; tags: an error
/// naming it), never a silently smaller answer. One ingester, replication factor 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ingester_makes_answers_partial_not_smaller() {
    let s3 = S3Server::start("traces").await;
    let root = tempfile::tempdir().unwrap();
    let seed_port = free_udp_port();
    let site = ClusterSite {
        root: root.path(),
        s3_port: s3.port,
        seed_port,
    };
    let start = |target: &str, name: &str, gossip: u16| site.start(target, name, gossip, "", one_replica).0;
    let mut ingester = start("ingester", "ingester-0", seed_port);
    let frontend = start("query-frontend", "frontend", free_udp_port());
    let distributor = start("distributor", "distributor", free_udp_port());
    let client = reqwest::Client::new();
    wait_for_active_ingesters(&client, &distributor, 1).await;
    wait_for_active_ingesters(&client, &frontend, 1).await;
    for seed in 0..3 {
        // A minute ago: every span starts before the metrics query's end (now).
        let (req, _) = otlp_request_at(seed, 2, now_ns() - 60_000_000_000);
        assert_eq!(post_otlp(&client, &distributor, &req).await.0, 200);
    }
    let metrics_url = frontend.url("/api/metrics/query?q=%7B%7D%20%7C%20count_over_time()&since=1h");
    let complete = get_json(&client, &metrics_url).await;
    assert_eq!(complete["series"][0]["value"], 6.0, "{complete}");
    assert!(complete.get("status").is_none(), "{complete}");

    // A filtered tag query is evaluated by the ingester, which returns a summary.
    let values = |filter: &'static str| {
        let request = client
            .get(frontend.url("/api/v2/search/tag/resource.service.name/values"))
            .query(&[("q", filter)]);
        async move {
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<serde_json::Value>().await.unwrap()["tagValues"].clone()
        }
    };
    assert_eq!(
        values(r#"{ name = "span-1" }"#).await,
        serde_json::json!([{"type": "string", "value": "it-service"}])
    );
    assert_eq!(values(r#"{ name = "no-such-span" }"#).await, serde_json::json!([]));

    ingester.kill9();
    let partial = get_json(&client, &metrics_url).await;
    assert_eq!(partial["status"], "PARTIAL", "{partial}");
    let message = partial["message"].as_str().unwrap();
    assert!(message.contains("1 of 1 ingesters did not answer"), "{message}");
    let resp = client.get(frontend.url("/api/v2/search/tags")).send().await.unwrap();
    assert!(resp.status().is_server_error(), "{}", resp.status());
    let body = resp.text().await.unwrap();
    assert!(body.contains("did not answer"), "{body}");
}

/// One span of service `service` in trace `trace`, as its own export.
fn one_span_export(
    trace: [u8; 16],
    service: &str,
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    kind: i32,
) -> legato_proto::collector::ExportTraceServiceRequest {
    use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
    let start = now_ns() - 2_000_000_000;
    legato_proto::collector::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(legato_proto::resource::Resource {
                attributes: vec![integration_tests::kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace.to_vec(),
                    span_id: span_id.to_vec(),
                    parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
                    name: "call".into(),
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + 5_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Issue 11: the `metrics-generator` role. The client span of each call goes through one
/// distributor and the server span through another; distributors send each trace to the
/// generator that owns its id, so every pair meets there and becomes a service-graph edge
/// (with a generator in each distributor, as before the role, none would pair).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_role_pairs_spans_that_came_through_different_distributors() {
    let s3 = S3Server::start("traces").await;
    let root = tempfile::tempdir().unwrap();
    let seed_port = free_udp_port();
    let extra = "metrics_generator:
  registry:
    collection_interval: 500ms
  processor:
    service_graphs:
      wait: 30s
overrides:
  defaults:
    metrics_generator:
      processors: [service-graphs]
";
    let site = ClusterSite {
        root: root.path(),
        s3_port: s3.port,
        seed_port,
    };
    let start = |target: &str, name: &str, gossip: u16| site.start(target, name, gossip, extra, one_replica).0;
    let _ingester = start("ingester", "ingester-0", seed_port);
    let generator = start("metrics-generator", "generator-0", free_udp_port());
    let distributors = [
        start("distributor", "distributor-a", free_udp_port()),
        start("distributor", "distributor-b", free_udp_port()),
    ];
    let client = reqwest::Client::new();
    for d in &distributors {
        wait_for_active_ingesters(&client, d, 1).await;
    }
    // Both distributors know the generator (gossip) before the first span.
    let deadline = Instant::now() + Duration::from_secs(20);
    for d in &distributors {
        while !ring_members_at(&client, d, "/metrics-generator/ring")
            .await
            .iter()
            .any(|(name, state)| name == "generator-0" && state == "ACTIVE")
        {
            assert!(
                Instant::now() < deadline,
                "distributors never saw the generator: {:?} {:?}",
                ring_members_at(&client, d, "/memberlist").await,
                get_text(&client, &d.url("/metrics-generator/ring?format=json")).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    for i in 0..10u8 {
        let trace = [i + 1; 16];
        let (client_span, server_span) = ([i + 1, 1, 0, 0, 0, 0, 0, 1], [i + 1, 2, 0, 0, 0, 0, 0, 2]);
        let client_export = one_span_export(trace, "frontend", client_span, None, 3);
        let server_export = one_span_export(trace, "checkout", server_span, Some(client_span), 2);
        assert_eq!(post_otlp(&client, &distributors[0], &client_export).await.0, 200);
        assert_eq!(post_otlp(&client, &distributors[1], &server_export).await.0, 200);
    }

    let query = "sum(traces_service_graph_request_total{client=\"frontend\",server=\"checkout\"})";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = client
            .get(generator.url("/prometheus/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        let value = answer["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or("0")
            .to_string();
        if value == "10" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the generator paired {value} of 10 calls: {answer}; generator log:\n{}",
            generator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for d in &distributors {
        let metrics = get_text(&client, &d.url("/metrics")).await;
        assert!(
            metrics.contains("legato_generator_forwarded_spans_total{result=\"ok\"} 10"),
            "{metrics}"
        );
    }
}

/// Issue 12: tail sampling in microservices mode. Three ingesters (replication factor 3) each
/// decide the traces they hold with the same policies (errors, slow); every replica decides
/// alike, so kept traces read back whole through the frontend and dropped ones are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_decides_tail_sampling_alike() {
    let s3 = S3Server::start("traces").await;
    let root = tempfile::tempdir().unwrap();
    let seed_port = free_udp_port();
    let extra = "overrides:
  defaults:
    sampling:
      tail_sampling:
        decision_wait: 2s
        policies:
          - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
          - {name: slow, type: latency, latency: {threshold_ms: 500}}
";
    let site = ClusterSite {
        root: root.path(),
        s3_port: s3.port,
        seed_port,
    };
    let start = |target: &str, name: &str, gossip: u16| site.start(target, name, gossip, extra, |yaml| yaml).0;
    let ingesters: Vec<Legato> = (0..3)
        .map(|i| {
            start(
                "ingester",
                &format!("ingester-{i}"),
                if i == 0 { seed_port } else { free_udp_port() },
            )
        })
        .collect();
    let _querier = start("querier", "querier-0", free_udp_port());
    let frontend = start("query-frontend", "frontend", free_udp_port());
    let distributor = start("distributor", "distributor", free_udp_port());
    let client = reqwest::Client::new();
    wait_for_active_ingesters(&client, &distributor, 3).await;
    wait_for_active_ingesters(&client, &frontend, 3).await;

    let mut sent = Vec::new();
    for seed in 0..30u64 {
        let (mut req, id) = otlp_request_at(seed, 3, now_ns() - 5_000_000_000);
        let kind = seed % 3; // 0: error, 1: slow, 2: neither
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        match kind {
            0 => {
                spans[1].status = Some(legato_proto::trace::Status {
                    code: 2,
                    message: "boom".into(),
                })
            }
            1 => spans[0].end_time_unix_nano = spans[0].start_time_unix_nano + 900_000_000,
            _ => {}
        }
        assert_eq!(post_otlp(&client, &distributor, &req).await.0, 200);
        sent.push((id, kind != 2));
    }
    // decision_wait (2 s) plus a few flush checks.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (id, kept) in &sent {
        let spans = span_count(&client, &frontend, id).await.unwrap();
        assert_eq!(
            spans,
            if *kept { 3 } else { 0 },
            "trace {} (kept: {kept})",
            hex::encode(id)
        );
    }
    // Each replica decided all 30 traces, 20 kept: the same decisions everywhere.
    for ingester in &ingesters {
        let metrics = get_text(&client, &ingester.url("/metrics")).await;
        let decided = |decision: &str| {
            integration_tests::metric_value(
                &metrics,
                &format!(
                    "legato_ingester_tail_sampling_traces_total{{tenant=\"single-tenant\",decision=\"{decision}\"}}"
                ),
            )
        };
        assert_eq!((decided("sampled"), decided("not_sampled")), (20.0, 10.0), "{metrics}");
    }
}
