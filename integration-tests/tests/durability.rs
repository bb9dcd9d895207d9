//! Acknowledged spans survive SIGKILL (WAL replay) and SIGTERM (flush to blocks).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use integration_tests::{Legato, Ports, config_yaml, otlp_request, post_otlp, span_count_v2};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_span_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    // Long idle period: everything is still live (only in memory + WAL) when the process dies.
    let yaml = config_yaml(ports, dir.path(), None, "").replace("trace_idle_period: 1s", "trace_idle_period: 1h");
    let mut legato = Legato::start(dir.path(), ports, &yaml);
    let client = reqwest::Client::new();

    // Concurrent exports, so group commit is exercised; keep only acknowledged ones.
    let mut tasks = Vec::new();
    for seed in 0..40u64 {
        let client = client.clone();
        let url = legato.otlp_http_url();
        tasks.push(tokio::spawn(async move {
            let (req, id) = otlp_request(seed, 5);
            let body = prost::Message::encode_to_vec(&req);
            let resp = client
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), id)
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        assert_eq!(status, 200);
        acked.push(id);
    }
    legato.kill9();
    assert!(
        std::fs::read_dir(dir.path().join("blocks"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "nothing was flushed"
    );

    legato.spawn();
    assert!(legato.log_text().contains("WAL replayed"), "replay logged");
    for id in &acked {
        assert_eq!(
            span_count_v2(&client, &legato, id).await,
            5,
            "trace {}",
            hex::encode(id)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_wal_tail_is_dropped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let yaml = config_yaml(ports, dir.path(), None, "").replace("trace_idle_period: 1s", "trace_idle_period: 1h");
    let mut legato = Legato::start(dir.path(), ports, &yaml);
    let client = reqwest::Client::new();
    let (req, id) = otlp_request(7, 3);
    assert_eq!(post_otlp(&client, &legato, &req).await.0, 200);
    legato.kill9();
    // Simulate a crash mid-write: garbage after the last good record.
    let wal = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[0xff, 0xff, 0, 0, 1, 2]);
    std::fs::write(&wal, bytes).unwrap();

    legato.spawn();
    assert!(
        legato.log_text().contains("torn or corrupt tail"),
        "log:\n{}",
        legato.log_text()
    );
    assert_eq!(span_count_v2(&client, &legato, &id).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_to_blocks_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let yaml = config_yaml(ports, dir.path(), None, "").replace("trace_idle_period: 1s", "trace_idle_period: 1h");
    let mut legato = Legato::start(dir.path(), ports, &yaml);
    let client = reqwest::Client::new();
    let (req, id) = otlp_request(11, 4);
    assert_eq!(post_otlp(&client, &legato, &req).await.0, 200);
    let status = legato.terminate();
    assert!(status.success(), "exit status {status}; log:\n{}", legato.log_text());
    assert!(legato.log_text().contains("block flushed"));

    // The WAL holds nothing any more: delete it, restart, and read from the block.
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    legato.spawn();
    assert_eq!(span_count_v2(&client, &legato, &id).await, 4);
}
