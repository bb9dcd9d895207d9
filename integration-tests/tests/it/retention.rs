//! Retention in the single binary: the compactor deletes a tenant's blocks older than its
//! retention (a per-tenant override), after the grace period, and nothing else.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use integration_tests::{Legato, Ports, config_yaml, otlp_request_at};
use prost::Message;

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn export(client: &reqwest::Client, legato: &Legato, tenant: &str, seed: u64, start: u64) -> [u8; 16] {
    let (req, id) = otlp_request_at(seed, 3, start);
    let resp = client
        .post(legato.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .header("x-scope-orgid", tenant)
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    id
}

async fn status(client: &reqwest::Client, legato: &Legato, tenant: &str, id: &[u8; 16]) -> u16 {
    client
        .get(legato.url(&format!("/api/traces/{}", hex::encode(id))))
        .header("x-scope-orgid", tenant)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn flush(client: &reqwest::Client, legato: &Legato) {
    assert_eq!(client.post(legato.url("/flush")).send().await.unwrap().status(), 204);
}

/// Block directories holding any object (the local store leaves empty directories behind).
fn block_dirs(root: &std::path::Path, tenant: &str) -> usize {
    std::fs::read_dir(root.join("blocks").join(tenant))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| std::fs::read_dir(e.path()).is_ok_and(|mut files| files.next().is_some()))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_expired_blocks_of_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let extra = "multitenancy_enabled: true
overrides:
  per_tenant:
    short:
      compaction:
        block_retention: 1h
compactor:
  compaction:
    compaction_cycle: 500ms
    compacted_block_retention: 2s
";
    let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, extra));
    let client = reqwest::Client::new();
    let three_hours_ago = now_ns() - 3 * 3600 * 1_000_000_000;
    let old_short = export(&client, &legato, "short", 1, three_hours_ago).await;
    let old_long = export(&client, &legato, "long", 2, three_hours_ago).await;
    flush(&client, &legato).await;
    let new_short = export(&client, &legato, "short", 3, now_ns()).await;
    flush(&client, &legato).await;

    // The expired block of "short" goes (after the grace period); the rest stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if status(&client, &legato, "short", &old_short).await == 404 && block_dirs(dir.path(), "short") == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired block not deleted (status {}, {} block dirs); log:\n{}",
            status(&client, &legato, "short", &old_short).await,
            block_dirs(dir.path(), "short"),
            legato.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(&client, &legato, "short", &new_short).await, 200);
    assert_eq!(
        status(&client, &legato, "long", &old_long).await,
        200,
        "default retention is 14 days"
    );
    assert_eq!(block_dirs(dir.path(), "long"), 1);
    // Tenants' indexes are written by the compactor.
    assert!(dir.path().join("blocks/short/index.json.gz").exists());
}

/// Issue 12: retention by policy in the single binary. An error trace and a normal trace in
/// the same block, both past the tenant's 1h `block_retention`: the compactor rewrites the
/// block, so the error trace (kept 24h by `{ status = error }`) stays readable, whole, and the
/// normal one goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_policies_keep_error_traces_after_the_rest_of_their_block_expired() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let extra = "overrides:
  defaults:
    compaction:
      block_retention: 1h
      retention_policies:
        - query: '{ status = error }'
          retention: 24h
compactor:
  compaction:
    compaction_cycle: 500ms
    compacted_block_retention: 2s
";
    let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, extra));
    let client = reqwest::Client::new();
    let three_hours_ago = now_ns() - 3 * 3600 * 1_000_000_000;
    let (mut failed, error_id) = otlp_request_at(10, 3, three_hours_ago);
    failed.resource_spans[0].scope_spans[0].spans[2].status = Some(legato_proto::trace::Status {
        code: 2,
        message: "boom".into(),
    });
    let (normal, normal_id) = otlp_request_at(11, 3, three_hours_ago);
    for req in [failed, normal] {
        assert_eq!(integration_tests::post_otlp(&client, &legato, &req).await.0, 200);
    }
    flush(&client, &legato).await;

    // The compactor rewrites the block (its log names what it kept and dropped).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !legato.log_text().contains("traces=1 dropped=1") {
        assert!(
            Instant::now() < deadline,
            "the block was not rewritten; log:\n{}",
            legato.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(&client, &legato, "single-tenant", &normal_id).await, 404);
    assert_eq!(
        integration_tests::span_count_v2(&client, &legato, &error_id).await,
        3,
        "the error trace is kept whole"
    );
    let metrics = integration_tests::get_text(&client, &legato.url("/metrics")).await;
    assert!(
        metrics.contains("legato_compactor_blocks_filtered_total 1"),
        "{metrics}"
    );
}
