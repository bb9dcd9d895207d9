//! One object-store conformance test, run against every backend Legato builds from
//! `storage.trace`: memory, local disk, S3 (moto), Azure (Azurite) and GCS (fake-gcs-server),
//! each through `build_object_store` with a prefix. It checks the object semantics Legato
//! relies on, then writes, streams, lists, reads, marks and deletes blocks through Legato's
//! storage layer. Then, per cloud backend, the binary ingests, flushes and reads its traces
//! back from the bucket after a restart with the WAL deleted.
//!
//! GCS: fake-gcs-server implements none of the XML API's writes, which object_store's GCS
//! client (and so Legato) uses for every put, copy and multipart upload (see
//! `FakeGcsServer`). `gcs_emulator_refuses_xml_api_writes` pins that gap; the GCS tests write
//! through the emulator's JSON API instead and read, list and delete through Legato's client.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;

use futures::TryStreamExt;
use integration_tests::emulators::{AzuriteServer, FakeGcsServer};
use integration_tests::{
    Legato, Ports, S3Server, config_yaml, otlp_request, post_otlp, span_count_v2, store_from_yaml,
};
use legato_model::{BlockId, TenantId, TraceId};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::path::Path;
use legato_storage::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use legato_storage::{
    BlockMeta, BlockReader, Blocklist, TraceInput, delete_block, encode_block, seal_streamed, start_block_upload,
    write_block, write_compacted_marker,
};

/// A part as large as S3 and GCS accept for all but the last part of a multipart upload.
const PART: usize = 5 << 20;

fn trace(seed: u64, spans: u64) -> TraceInput {
    let (req, id) = otlp_request(seed, spans);
    TraceInput {
        id: TraceId(id),
        batches: req.resource_spans,
    }
}

async fn read(store: &Arc<dyn ObjectStore>, path: &Path) -> Vec<u8> {
    store.get(path).await.unwrap().bytes().await.unwrap().to_vec()
}

/// The conformance test body: what Legato needs of a store, then Legato's own use of it.
async fn conformance(store: Arc<dyn ObjectStore>) {
    // Objects: put, overwrite, head, whole and ranged reads, listing, delete, not-found.
    let obj = Path::from("conformance/a/obj");
    store.put(&obj, PutPayload::from_static(b"first")).await.unwrap();
    store.put(&obj, PutPayload::from_static(b"0123456789")).await.unwrap();
    assert_eq!(read(&store, &obj).await, b"0123456789", "an overwrite replaces");
    assert_eq!(store.head(&obj).await.unwrap().size, 10);
    assert_eq!(store.get_range(&obj, 2..5).await.unwrap().as_ref(), b"234");
    let ranges = store.get_ranges(&obj, &[0..1, 8..10]).await.unwrap();
    assert_eq!((ranges[0].as_ref(), ranges[1].as_ref()), (&b"0"[..], &b"89"[..]));
    store
        .put(&Path::from("conformance/b"), PutPayload::from_static(b"b"))
        .await
        .unwrap();
    let listed = store
        .list_with_delimiter(Some(&Path::from("conformance")))
        .await
        .unwrap();
    let dirs: Vec<String> = listed.common_prefixes.iter().map(Path::to_string).collect();
    let files: Vec<String> = listed.objects.iter().map(|o| o.location.to_string()).collect();
    assert_eq!(
        (dirs, files),
        (vec!["conformance/a".to_string()], vec!["conformance/b".to_string()])
    );
    let all: Vec<_> = store
        .list(Some(&Path::from("conformance")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    store.delete(&obj).await.unwrap();
    let gone = store.get(&obj).await.unwrap_err();
    assert!(
        matches!(gone, legato_storage::object_store::Error::NotFound { .. }),
        "{gone}"
    );

    // A multipart upload of two parts, read back across the part boundary.
    let big = Path::from("conformance/multipart");
    let first: Vec<u8> = (0..PART).map(|i| (i % 251) as u8).collect();
    let mut upload = store.put_multipart(&big).await.unwrap();
    upload.put_part(PutPayload::from(first.clone())).await.unwrap();
    upload.put_part(PutPayload::from_static(b"tail")).await.unwrap();
    upload.complete().await.unwrap();
    assert_eq!(store.head(&big).await.unwrap().size, (PART + 4) as u64);
    let across = store
        .get_range(&big, (PART as u64 - 2)..(PART as u64 + 4))
        .await
        .unwrap();
    assert_eq!(
        across.as_ref(),
        [first[PART - 2], first[PART - 1], b't', b'a', b'i', b'l']
    );

    // Legato's blocks: an ingester's (written whole) and a compactor's (streamed).
    let tenant = TenantId::single();
    let written = encode_block(&tenant, BlockId::random(), vec![trace(1, 5), trace(2, 3)], 1).unwrap();
    write_block(&store, &written).await.unwrap();
    let streamed_id = BlockId::random();
    let (mut writer, upload) = start_block_upload(&store, &tenant, streamed_id, PART).unwrap();
    let encoded = tokio::task::spawn_blocking(move || {
        writer.push(&trace(3, 4))?;
        seal_streamed(writer, 2)
    })
    .await
    .unwrap();
    let sealed = upload.conclude(encoded).await.unwrap();
    legato_storage::commit_block(&store, &sealed).await.unwrap();

    let blocklist = Blocklist::default();
    blocklist.poll(&store).await.unwrap();
    let metas = blocklist.blocks(&tenant);
    assert_eq!(metas.len(), 2, "{metas:?}");
    let reader = BlockReader::new(store.clone(), StorageMetrics::default());
    for (seed, spans) in [(1, 5), (2, 3), (3, 4)] {
        let id = trace(seed, spans).id;
        let mut found = 0;
        for meta in &metas {
            found += legato_proto::span_count(&reader.find_trace(meta, &id).await.unwrap());
        }
        assert_eq!(found, spans as usize, "trace {seed}");
    }

    // Compaction's end of a block: marked (hidden), then deleted object by object.
    write_compacted_marker(&store, &written.meta, 3).await.unwrap();
    blocklist.poll(&store).await.unwrap();
    assert_eq!(blocklist.blocks(&tenant).len(), 1, "a marked block is hidden");
    assert!(delete_block(&store, &tenant, written.meta.block_id).await.unwrap() >= 3);
    let left: Vec<_> = store
        .list(Some(&Path::from(tenant.as_str())))
        .try_collect()
        .await
        .unwrap();
    assert!(
        left.iter()
            .all(|o| o.location.as_ref().contains(&streamed_id.to_string())),
        "only the streamed block is left: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_memory() {
    conformance(store_from_yaml("    backend: memory\n")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("    backend: local\n    local:\n      path: {}\n", dir.path().display());
    conformance(store_from_yaml(&yaml)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_s3() {
    let s3 = S3Server::start("conformance").await;
    conformance(store_from_yaml(&s3.storage_yaml("conformance", "legato"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_azure() {
    let azure = AzuriteServer::start("conformance").await;
    conformance(store_from_yaml(&azure.storage_yaml("conformance", "legato"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_gcs() {
    let gcs = FakeGcsServer::start("conformance").await;
    conformance(gcs.store("conformance", "legato")).await;
}

/// The emulator's gap, exactly: Legato's GCS client's writes (XML API: put, multipart upload,
/// copy) are refused `400 invalid uploadType`, while its reads, listing and deletes of what the
/// JSON API wrote work. When this fails,
/// the emulator has learnt the XML API's writes: let the GCS tests write through Legato's own
/// client (`store_from_yaml`) instead of `FakeGcsServer::store`, and drop the gap from
/// docs/configuration.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_emulator_refuses_xml_api_writes() {
    let gcs = FakeGcsServer::start("gap").await;
    let legato = store_from_yaml(&gcs.storage_yaml("gap", "legato"));
    let refused = |what: &str, result: legato_storage::object_store::Result<()>| {
        let text = result.expect_err(what).to_string();
        assert!(
            text.contains("400") && text.contains("invalid uploadType"),
            "{what}: {text}"
        );
    };
    let obj = Path::from("gap/obj");
    let put = legato.put(&obj, PutPayload::from_static(b"x")).await;
    refused("put", put.map(drop));
    refused("multipart initiate", legato.put_multipart(&obj).await.map(drop));
    // A copy needs a source: one written through the JSON API.
    let json_writes = gcs.store("gap", "legato");
    json_writes.put(&obj, PutPayload::from_static(b"x")).await.unwrap();
    refused("copy", legato.copy(&obj, &Path::from("gap/copy")).await);

    // What it wrote is read, listed and deleted through Legato's client.
    assert_eq!(read(&legato, &obj).await, b"x");
    let listed: Vec<_> = legato.list(Some(&Path::from("gap"))).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    legato.delete(&obj).await.unwrap();
    let gone = legato.head(&obj).await.unwrap_err();
    assert!(
        matches!(gone, legato_storage::object_store::Error::NotFound { .. }),
        "{gone}"
    );
}

/// `legato_storage_object_store_requests_total{op}` from a /metrics page (0 when absent).
fn requests(metrics: &str, op: &str) -> f64 {
    integration_tests::metric_value(
        metrics,
        &format!("legato_storage_object_store_requests_total{{op=\"{op}\"}}"),
    )
}

/// The binary over a bucket: `storage` is its `storage.trace` (prefix `legato`), `bucket` the
/// same bucket without a prefix, to look at what it wrote. Ingests five traces, flushes, checks
/// the block's objects and meta.json, restarts with the WAL deleted and reads every trace back.
async fn binary_round_trip(storage: &str, bucket: Arc<dyn ObjectStore>) {
    binary_round_trip_via(Some(storage), storage, bucket, async |_| {}).await;
}

/// `binary_round_trip` for a bucket the binary cannot write to: it writes its blocks with
/// `write` (`None`: to local disk, `<dir>/blocks`), is stopped, `publish(dir)` brings them to
/// the bucket, and it restarts with `read_storage`.
async fn binary_round_trip_via(
    write: Option<&str>,
    read_storage: &str,
    bucket: Arc<dyn ObjectStore>,
    publish: impl AsyncFnOnce(&std::path::Path),
) {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let yaml = config_yaml(ports, dir.path(), write, "");
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
    assert!(legato.terminate().success());
    publish(dir.path()).await;

    // The bucket holds one block under the prefix: data, bloom, and meta.json naming it.
    let keys: Vec<String> = bucket
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
    let meta: BlockMeta = serde_json::from_slice(&read(&bucket, &Path::from(meta_key.as_str())).await).unwrap();
    assert_eq!((meta.total_spans, meta.total_traces), (15, 5));

    // Restart with the WAL gone: everything comes from the bucket.
    std::fs::write(&legato.config, config_yaml(ports, dir.path(), Some(read_storage), "")).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_stores_blocks_in_s3_and_reads_them_after_restart_without_wal() {
    let s3 = S3Server::start("traces").await;
    binary_round_trip(&s3.storage_yaml("traces", "legato"), s3.store("traces")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_stores_blocks_in_azure_and_reads_them_after_restart_without_wal() {
    let azure = AzuriteServer::start("traces").await;
    let container = store_from_yaml(&azure.storage_yaml("traces", ""));
    binary_round_trip(&azure.storage_yaml("traces", "legato"), container).await;
}

/// GCS: the binary cannot write to fake-gcs-server (see `FakeGcsServer`), so it writes its
/// block to local disk, which is then uploaded object by object through the emulator's JSON
/// API; the binary, restarted over GCS without its WAL, lists the bucket and reads the block
/// through its own GCS client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_reads_blocks_from_gcs_after_restart_without_wal() {
    let gcs = FakeGcsServer::start("traces").await;
    let publish = async |dir: &std::path::Path| {
        let uploaded = upload_tree(&gcs.store("traces", "legato"), &dir.join("blocks")).await;
        assert!(uploaded >= 3, "data, bloom and meta.json: {uploaded} objects");
    };
    let read = gcs.storage_yaml("traces", "legato");
    binary_round_trip_via(None, &read, gcs.store("traces", ""), publish).await;
}

/// Puts every file under `root` into `store` at its path relative to `root`; how many.
async fn upload_tree(store: &Arc<dyn ObjectStore>, root: &std::path::Path) -> usize {
    let mut uploaded = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let key = path.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            let bytes = std::fs::read(&path).unwrap();
            store.put(&Path::from(key), PutPayload::from(bytes)).await.unwrap();
            uploaded += 1;
        }
    }
    uploaded
}
