//! The binary over a real S3-compatible server that fails: faults injected by a proxy. (The
//! conformance test and the plain round trip through the binary, shared with the other
//! backends, are in `object_stores.rs`.)
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use integration_tests::{Legato, Ports, S3Server, config_yaml, get_json_query, otlp_request, post_otlp, span_count_v2};

/// Issue 10: the binary over an S3 that refuses 10% of requests (503), loses the answer of
/// another 10% after doing them (500), and stalls 3% past the client's timeout. Ingest, flushes,
/// compaction and queries run through it: every acknowledged trace is stored once and whole,
/// a query during the faults answers correctly or fails clearly (never a wrong or missing
/// trace), and after them every trace reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_over_a_flaky_s3_loses_nothing_and_answers_or_fails_clearly() {
    use integration_tests::s3_proxy::{Faults, start_proxy};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let s3 = S3Server::start("traces").await;
    let faults = Faults::new(0.2, 0.03, Duration::from_millis(2000));
    let proxy = start_proxy(s3.port, faults.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let storage = format!(
        "    backend: s3\n    s3:\n      bucket: traces\n      endpoint: 127.0.0.1:{proxy}\n      region: us-east-1\n      access_key: test\n      secret_key: test\n      insecure: true\n      forcepathstyle: true\n      timeout: 1s\n      max_retries: 10\n      min_backoff: 5ms\n      max_backoff: 50ms\n    blocklist_poll: 1s\n",
    );
    let yaml = config_yaml(
        ports,
        dir.path(),
        Some(&storage),
        "compactor:\n  compaction:\n    compaction_cycle: 1s\n    compacted_block_retention: 1h\n",
    );
    let legato = Legato::start(dir.path(), ports, &yaml);
    let client = reqwest::Client::new();
    let mut acked: Vec<([u8; 16], usize)> = Vec::new();
    let (mut answered, mut failed_clearly) = (0, 0);
    for round in 0..5u64 {
        for k in 0..8u64 {
            let spans = 1 + (round + k) as usize % 4;
            let (req, id) = otlp_request(100 + round * 10 + k, spans as u64);
            assert_eq!(post_otlp(&client, &legato, &req).await.0, 200);
            acked.push((id, spans));
        }
        // A flush that meets the faults fails retryably (its data stays in the WAL); retry.
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.post(legato.url("/flush")).send().await.unwrap().status() != 204 {
            assert!(
                Instant::now() < deadline,
                "flush never got through; log:\n{}",
                legato.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Queries during the faults: right, or a clear failure.
        for (id, spans) in &acked {
            let (status, got) = integration_tests::trace_by_id_v2(&client, &legato, id).await;
            if status >= 500 {
                failed_clearly += 1;
                continue;
            }
            assert_eq!(
                (status, got),
                (200, *spans),
                "trace {} during the faults",
                hex::encode(id)
            );
            answered += 1;
        }
    }
    // Compaction ran through the faults too.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let metrics = integration_tests::get_text(&client, &legato.url("/metrics")).await;
        if integration_tests::metric_value(&metrics, "legato_compactor_jobs_total") >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no compaction job succeeded; log:\n{}",
            legato.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stats = &faults.stats;
    eprintln!(
        "{} requests: {} refused, {} lost, {} stalled; queries during the faults: {answered} right, {failed_clearly} failed clearly",
        stats.requests.load(Ordering::SeqCst),
        stats.refused.load(Ordering::SeqCst),
        stats.lost.load(Ordering::SeqCst),
        stats.stalled.load(Ordering::SeqCst),
    );
    assert!(stats.refused.load(Ordering::SeqCst) > 0 && stats.lost.load(Ordering::SeqCst) > 0);

    // Without faults every acknowledged trace reads back whole, and search finds each once.
    faults.enabled.store(false, Ordering::SeqCst);
    for (id, spans) in &acked {
        assert_eq!(
            span_count_v2(&client, &legato, id).await,
            *spans,
            "trace {}",
            hex::encode(id)
        );
    }
    let search: serde_json::Value = get_json_query(
        &client,
        &legato.url("/api/search"),
        &[("q", "{}"), ("limit", "1000"), ("spss", "1")],
    )
    .await;
    let mut found: Vec<&str> = search["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    let total = found.len();
    found.sort_unstable();
    found.dedup();
    assert_eq!(
        (found.len(), total),
        (acked.len(), acked.len()),
        "each trace found once"
    );
}
