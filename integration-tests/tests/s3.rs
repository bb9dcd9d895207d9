//! Blocks in a real S3-compatible server: the storage conformance round trip, and the
//! binary writing, listing and reading blocks there after a restart with the WAL deleted.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use futures::TryStreamExt;
use integration_tests::{Legato, Ports, S3Server, config_yaml, otlp_request, post_otlp, span_count_v2};
use legato_model::{BlockId, TenantId, TraceId};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::ObjectStoreExt;
use legato_storage::object_store::path::Path;
use legato_storage::{BlockMeta, BlockReader, Blocklist, TraceInput, encode_block, write_block};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_roundtrip_against_s3() {
    let s3 = S3Server::start("conformance").await;
    let store = s3.store("conformance");
    let (req, id) = otlp_request(1, 5);
    let tenant = TenantId::single();
    let trace = TraceInput {
        id: TraceId(id),
        batches: req.resource_spans.clone(),
    };
    let block = encode_block(&tenant, BlockId::random(), vec![trace], 1).unwrap();
    write_block(&store, &block).await.unwrap();
    let blocklist = Blocklist::default();
    blocklist.poll(&store).await.unwrap();
    let metas = blocklist.blocks(&tenant);
    assert_eq!(metas.len(), 1);
    let reader = BlockReader::new(store.clone(), StorageMetrics::default());
    let found = reader.find_trace(&metas[0], &TraceId(id)).await.unwrap();
    assert_eq!(legato_proto::span_count(&found), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_stores_blocks_in_s3_and_reads_them_after_restart_without_wal() {
    let s3 = S3Server::start("traces").await;
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let storage = format!(
        "    backend: s3\n    s3:\n      bucket: traces\n      endpoint: 127.0.0.1:{}\n      region: us-east-1\n      access_key: test\n      secret_key: test\n      insecure: true\n      forcepathstyle: true\n      prefix: legato\n",
        s3.port
    );
    let yaml = config_yaml(ports, dir.path(), Some(&storage), "");
    let mut legato = Legato::start(dir.path(), ports, &yaml);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for seed in 0..5 {
        let (req, id) = otlp_request(seed, 3);
        assert_eq!(post_otlp(&client, &legato, &req).await.0, 200);
        ids.push(id);
    }
    assert_eq!(
        client.post(legato.url("/flush")).send().await.unwrap().status(),
        204,
        "log:\n{}",
        legato.log_text()
    );

    // Every upload reached the bucket through the counting store.
    let metrics = integration_tests::get_text(&client, &legato.url("/metrics")).await;
    assert!(
        requests(&metrics, "put") >= 3.0,
        "data, bloom and meta.json:\n{metrics}"
    );

    // The bucket holds one block under the prefix: data, bloom, and meta.json naming it.
    let store = s3.store("traces");
    let keys: Vec<String> = store
        .list(Some(&Path::from("legato")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    let meta_key = keys
        .iter()
        .find(|k| k.ends_with("/meta.json"))
        .unwrap_or_else(|| panic!("no meta.json in {keys:?}"));
    let block_dir = meta_key.trim_end_matches("meta.json");
    assert!(block_dir.starts_with("legato/single-tenant/"), "{block_dir}");
    for name in ["data.parquet", "bloom"] {
        assert!(keys.contains(&format!("{block_dir}{name}")), "{name} missing: {keys:?}");
    }
    let meta_bytes = store
        .get(&Path::from(meta_key.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let meta: BlockMeta = serde_json::from_slice(&meta_bytes).unwrap();
    assert_eq!(meta.total_spans, 15);
    assert_eq!(meta.total_traces, 5);

    // Restart with the WAL gone: everything comes from S3.
    assert!(legato.terminate().success());
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    legato.spawn();
    for id in &ids {
        assert_eq!(
            span_count_v2(&client, &legato, id).await,
            3,
            "trace {}",
            hex::encode(id)
        );
    }
    // The lookups listed the bucket, read the block's bloom filter (a GET) and its footer and
    // row group (ranged GETs); the filter and footer only once, as they are cached.
    let metrics = integration_tests::get_text(&client, &legato.url("/metrics")).await;
    assert!(requests(&metrics, "list_with_delimiter") >= 1.0, "{metrics}");
    assert!(requests(&metrics, "get") >= 1.0, "{metrics}");
    assert!(requests(&metrics, "get_range") >= 1.0 + ids.len() as f64, "{metrics}");
}

/// `legato_storage_object_store_requests_total{op}` from a /metrics page (0 when absent).
fn requests(metrics: &str, op: &str) -> f64 {
    let prefix = format!("legato_storage_object_store_requests_total{{op=\"{op}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
