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
    Gossip, Legato, Ports, S3Server, cluster_node_yaml, free_udp_port, get_json, get_text, otlp_request_at,
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
    let Ok(resp) = client.get(node.url("/ring?format=json")).send().await else {
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
    let start = |target: &str, name: &str, gossip: u16, extra: &str| {
        let dir = root.path().join(name);
        let ports = Ports::free();
        let gossip = Gossip {
            port: gossip,
            seed: seed_port,
        };
        let yaml = cluster_node_yaml(target, name, ports, gossip, &dir, s3.port, extra);
        Node {
            name: name.to_string(),
            dir: dir.clone(),
            legato: Legato::start(&dir, ports, &yaml),
        }
    };
    let mut ingesters = vec![start("ingester", "ingester-0", seed_port, "")];
    for i in 1..3 {
        ingesters.push(start("ingester", &format!("ingester-{i}"), free_udp_port(), ""));
    }
    let _queriers: Vec<Node> = (0..2)
        .map(|i| start("querier", &format!("querier-{i}"), free_udp_port(), ""))
        .collect();
    let frontend = start("query-frontend", "frontend", free_udp_port(), "");
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
    let jobs: f64 = metrics
        .lines()
        .find(|l| l.starts_with("legato_compactor_jobs_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
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
    let start = |target: &str, name: &str, gossip: u16| {
        let dir = root.path().join(name);
        let ports = Ports::free();
        let gossip = Gossip {
            port: gossip,
            seed: seed_port,
        };
        let yaml = cluster_node_yaml(target, name, ports, gossip, &dir, s3.port, "")
            .replace("replication_factor: 3", "replication_factor: 1");
        Legato::start(&dir, ports, &yaml)
    };
    let mut ingester = start("ingester", "ingester-0", seed_port);
    let frontend = start("query-frontend", "frontend", free_udp_port());
    let distributor = start("distributor", "distributor", free_udp_port());
    let client = reqwest::Client::new();
    wait_for_active_ingesters(&client, &distributor, 1).await;
    wait_for_active_ingesters(&client, &frontend, 1).await;
    for seed in 0..3 {
        // A minute ago: every span starts before the metrics query's end (now).
        let (req, _) = otlp_request_at(seed, 2, now_ns() - 60_000_000_000);
        let resp = client
            .post(distributor.otlp_http_url())
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
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
