//! Flushes, compaction and reads against a real S3 server (moto_server, or `$LEGATO_S3_SERVER`)
//! behind a proxy that answers a share of requests with a 503, forwards others and then loses
//! the answer (500), and stalls others past the client's timeout (issue #10). With
//! `storage.trace.s3.max_retries` the S3 client absorbs it all; without retries the failures
//! reach Legato's code as clear, retryable errors. Either way nothing written is lost or seen
//! twice.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use integration_tests::s3_proxy::{Faults, start_proxy};
use legato_model::{BlockId, Clock, TenantId};
use legato_proto::combine::combine;
use legato_storage::metrics::StorageMetrics;
use legato_storage::{BlockReader, ObjectStore, StorageBackend, TraceStorageConfig, encode_block, write_block};
use support::*;

const BUCKET: &str = "traces";

fn store_config(proxy: u16, retries: usize) -> TraceStorageConfig {
    let mut cfg = TraceStorageConfig {
        backend: StorageBackend::S3,
        ..TraceStorageConfig::default()
    };
    let s3 = &mut cfg.s3;
    s3.bucket = BUCKET.into();
    s3.endpoint = format!("127.0.0.1:{proxy}");
    s3.region = "us-east-1".into();
    s3.access_key = "test".into();
    s3.secret_key = "test".into();
    s3.insecure = true;
    s3.forcepathstyle = true;
    s3.client.timeout = Duration::from_millis(1500);
    s3.client.max_retries = retries;
    s3.client.min_backoff = Duration::from_millis(5);
    s3.client.max_backoff = Duration::from_millis(50);
    s3.client.retry_timeout = Duration::from_secs(60);
    cfg.validate().unwrap();
    cfg
}

const BLOCKS: u32 = 6;
const TRACES_PER_BLOCK: u32 = 20;

/// Flushes (retried like the ingester's), compaction cycles and reads through `store`.
/// Returns the errors Legato's code saw while the faults lasted.
async fn exercise(store: &Arc<dyn ObjectStore>, faults: &Faults, tenant: &TenantId) -> u64 {
    let setup = Setup::new(store.clone());
    let end = setup.clock.now_nanos() - 5 * MINUTE;
    let mut seen_errors = 0u64;
    let clear = |e: &dyn std::fmt::Display| {
        let text = e.to_string();
        assert!(
            text.contains("object store error on") || text.contains("Generic S3 error"),
            "unclear error: {text}"
        );
    };
    for b in 0..BLOCKS {
        let first = b * TRACES_PER_BLOCK;
        let traces = (first..first + TRACES_PER_BLOCK).map(|n| trace(n, 3, end)).collect();
        let block = encode_block(tenant, BlockId::random(), traces, 1).unwrap();
        while let Err(e) = write_block(store, &block).await {
            assert!(e.is_retryable(), "{e}");
            clear(&e);
            seen_errors += 1;
        }
    }
    let compactor = setup.compactor();
    for _ in 0..4 {
        match compactor.run_cycle().await {
            Ok(stats) => seen_errors += (stats.jobs_failed + stats.tenant_errors) as u64,
            Err(e) => {
                clear(&e);
                seen_errors += 1;
            }
        }
    }
    // Reads while faults last: right, or a clear error.
    let reader = BlockReader::new(store.clone(), StorageMetrics::default());
    let list = legato_storage::Blocklist::new(Duration::ZERO, setup.clock.clone());
    if let Err(e) = list.poll(store).await {
        clear(&e);
        seen_errors += 1;
    }
    for n in 0..BLOCKS * TRACES_PER_BLOCK {
        let mut found = Vec::new();
        let mut failed = false;
        for meta in list.blocks(tenant) {
            match reader.find_trace(&meta, &trace_id(n)).await {
                Ok(spans) if !spans.is_empty() => found.push(spans),
                Ok(_) => {}
                Err(e) => {
                    clear(&e);
                    failed = true;
                }
            }
        }
        if failed {
            seen_errors += 1;
            continue;
        }
        assert!(found.len() <= 1, "trace {n} in {} visible blocks", found.len());
        if let Some(spans) = found.pop() {
            assert_eq!(combine(spans), combine(trace(n, 3, end).batches), "trace {n}");
        }
    }

    // Healed: every trace once and whole.
    faults.enabled.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        compactor.run_cycle().await.unwrap();
    }
    let list = setup.fresh_blocklist().await;
    let blocks = list.blocks(tenant);
    assert_each_once(&visible_copies(store, &blocks).await, 0..BLOCKS * TRACES_PER_BLOCK);
    assert_eq!(blocks.len(), 1, "compacted into one block");
    seen_errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_s3_is_absorbed_by_retries_and_otherwise_fails_clearly() {
    let s3 = integration_tests::S3Server::start(BUCKET).await;
    let mut injected = [0u64; 3];
    for (retries, tenant) in [(10, "retried"), (0, "unretried")] {
        let faults = Faults::new(0.2, 0.03, Duration::from_millis(2500));
        *faults.rng.lock() = 0x5EED_u64 + retries as u64;
        let proxy = start_proxy(s3.port, faults.clone()).await;
        let store = legato_storage::build_object_store(&store_config(proxy, retries)).unwrap();
        let tenant = TenantId::new(tenant).unwrap();
        let errors = exercise(&store, &faults, &tenant).await;
        let stats = &faults.stats;
        let (requests, refused, lost, stalled) = (
            stats.requests.load(Ordering::SeqCst),
            stats.refused.load(Ordering::SeqCst),
            stats.lost.load(Ordering::SeqCst),
            stats.stalled.load(Ordering::SeqCst),
        );
        eprintln!(
            "max_retries {retries}: {requests} requests, {refused} refused (503), {lost} lost (500 after forwarding), {stalled} stalled; errors seen by Legato: {errors}"
        );
        injected = [injected[0] + refused, injected[1] + lost, injected[2] + stalled];
        if retries > 0 {
            // 20% failures, 3% stalls past the timeout: ten retries make a failure that
            // reaches Legato very unlikely (0.23^11 per request).
            assert_eq!(errors, 0, "the client's retries absorbed every fault");
        } else {
            assert!(errors > 0, "without retries the faults reach Legato, as clear errors");
        }
    }
    assert!(injected.iter().all(|n| *n > 0), "refused, lost, stalled: {injected:?}");
}
