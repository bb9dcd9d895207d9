//! Writing blocks, compaction and reads through a store that fails a share of requests (before
//! or after they take effect) and stalls others (issue #10). Nothing acknowledged is lost or
//! shown twice, and reads answer correctly or fail with an error naming the fault.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use legato_model::{BlockId, Clock, TenantId, TraceId};
use legato_proto::combine::combine;
use legato_proto::trace::ResourceSpans;
use legato_storage::fault::{FaultConfig, FaultStore};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::ObjectStoreExt;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{BlockMeta, BlockReader, Blocklist, ObjectStore, encode_block, write_block};
use parking_lot::Mutex;
use support::*;

const BLOCKS: u32 = 24;
const TRACES_PER_BLOCK: u32 = 12;
const SPANS: u8 = 3;

/// A failure must say what failed and why.
fn assert_clear(e: &dyn std::fmt::Display) {
    let text = e.to_string();
    assert!(text.contains("injected fault on "), "unclear error: {text}");
}

/// Trace `n` from the visible blocks: the stored copies (empty lookups dropped), or the first
/// error.
async fn lookup(
    reader: &BlockReader,
    blocks: &[Arc<BlockMeta>],
    n: u32,
) -> Result<Vec<Vec<ResourceSpans>>, legato_storage::Error> {
    let mut copies = Vec::new();
    for meta in blocks {
        let found = reader.find_trace(meta, &trace_id(n)).await?;
        if !found.is_empty() {
            copies.push(found);
        }
    }
    Ok(copies)
}

/// How many visible blocks hold each trace, or the first error.
async fn copies(
    store: &Arc<dyn ObjectStore>,
    blocks: &[Arc<BlockMeta>],
) -> Result<BTreeMap<TraceId, usize>, legato_storage::Error> {
    let reader = BlockReader::new(store.clone(), StorageMetrics::default());
    let mut copies = BTreeMap::new();
    for meta in blocks {
        let mut stream = reader.trace_stream(meta).await?;
        while let Some(trace) = stream.next().await {
            *copies.entry(trace?.id).or_insert(0) += 1;
        }
    }
    Ok(copies)
}

#[derive(Default)]
struct Tally {
    flush_retries: u32,
    cycles: u32,
    jobs_run: usize,
    jobs_failed: usize,
    tenant_errors: usize,
    reads_answered: u32,
    reads_failed: u32,
    bucket_checks: u32,
    refused: u64,
    lost: u64,
    stalled: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_store_loses_and_duplicates_nothing() {
    // Failures are after the S3 client gave up retrying; the rates are far above what an
    // outage-free bucket shows, so that every step of every job meets some.
    let mut all = Tally::default();
    for (seed, fail_ratio) in [(1, 0.05), (2, 0.05), (3, 0.1), (4, 0.1), (5, 0.2)] {
        let t = run_flaky(seed, fail_ratio).await;
        all.flush_retries += t.flush_retries;
        all.jobs_run += t.jobs_run;
        all.reads_answered += t.reads_answered;
        all.reads_failed += t.reads_failed;
        all.refused += t.refused;
        all.lost += t.lost;
        all.stalled += t.stalled;
    }
    // The faults reached every part of the system, and it still made progress. A job makes
    // about 25 requests: at 20% failures few finish, at 5% most do.
    assert!(all.refused > 0 && all.lost > 0 && all.stalled > 0);
    assert!(all.flush_retries > 0 && all.reads_failed > 0 && all.reads_answered > 0);
    assert!(
        all.jobs_run > 5,
        "compaction made progress through the faults: {} jobs",
        all.jobs_run
    );
}

/// What happened while the faults lasted.
async fn run_flaky(seed: u64, fail_ratio: f64) -> Tally {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faults = FaultStore::new(
        inner.clone(),
        FaultConfig::flaky(fail_ratio, 0.05, Duration::from_millis(10), seed),
    );
    let store: Arc<dyn ObjectStore> = faults.clone();
    let mut setup = Setup::new(store.clone());
    setup.config.max_input_blocks = 4;
    // Outputs of a few KiB: every upload is multipart, and parts meet the faults too.
    setup.part_size = 2 << 10;
    // One process (the single binary): the flusher, the compactor and the readers share the
    // blocklist.
    let blocklist = Arc::new(Blocklist::new(
        legato_storage::DEFAULT_STALE_TENANT_INDEX,
        setup.clock.clone(),
    ));
    let compactor = setup.compactor_sharing(blocklist.clone());
    let tenant = TenantId::single();
    let end = setup.clock.now_nanos() - 5 * MINUTE;
    let acked: Mutex<Vec<u32>> = Mutex::default();
    let done = AtomicBool::new(false);
    let tally = Mutex::new(Tally::default());

    let flushing = async {
        for b in 0..BLOCKS {
            let first = b * TRACES_PER_BLOCK;
            let traces = (first..first + TRACES_PER_BLOCK)
                .map(|n| trace(n, SPANS, end))
                .collect();
            let block = encode_block(&tenant, BlockId::random(), traces, 1).unwrap();
            // As the ingester flushes: the same block, same id, until the upload succeeds.
            while let Err(e) = write_block(&store, &block).await {
                assert!(e.is_retryable(), "{e}");
                assert_clear(&e);
                tally.lock().flush_retries += 1;
            }
            blocklist.add(block.meta.clone());
            acked.lock().extend(first..first + TRACES_PER_BLOCK);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        done.store(true, Ordering::SeqCst);
    };

    let compacting = async {
        while !done.load(Ordering::SeqCst) {
            match compactor.run_cycle().await {
                Ok(stats) => {
                    let mut t = tally.lock();
                    t.cycles += 1;
                    t.jobs_run += stats.jobs_run;
                    t.jobs_failed += stats.jobs_failed;
                    t.tenant_errors += stats.tenant_errors;
                }
                Err(e) => assert_clear(&e),
            }
        }
    };

    let reading = async {
        let reader = BlockReader::new(store.clone(), StorageMetrics::default());
        while !done.load(Ordering::SeqCst) {
            // A failed poll keeps the blocks known so far.
            if let Err(e) = blocklist.poll(&store).await {
                assert_clear(&e);
            }
            let ids = acked.lock().clone();
            let blocks = blocklist.blocks(&tenant);
            for n in ids {
                match lookup(&reader, &blocks, n).await {
                    Ok(found) => {
                        assert_eq!(found.len(), 1, "acknowledged trace {n} in exactly one visible block");
                        assert_eq!(
                            combine(found[0].clone()),
                            combine(trace(n, SPANS, end).batches),
                            "trace {n} whole"
                        );
                        tally.lock().reads_answered += 1;
                    }
                    Err(e) => {
                        assert_clear(&e);
                        tally.lock().reads_failed += 1;
                    }
                }
            }
            // Another process's view of the bucket: it may lag, but never shows a trace twice.
            let other = Blocklist::new(legato_storage::DEFAULT_STALE_TENANT_INDEX, setup.clock.clone());
            if other.poll(&store).await.is_ok()
                && let Ok(seen) = copies(&store, &other.blocks(&tenant)).await
            {
                let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
                assert!(twice.is_empty(), "traces visible twice to another process: {twice:?}");
                tally.lock().bucket_checks += 1;
            }
        }
    };

    tokio::join!(flushing, compacting, reading);
    let stats = faults.stats();
    {
        let t = tally.lock();
        eprintln!(
            "seed {seed}, fail ratio {fail_ratio}: {stats:?}; flush retries {}, cycles {}, jobs run {} failed {}, tenant errors {}, reads answered {} failed {}, bucket checks {}",
            t.flush_retries,
            t.cycles,
            t.jobs_run,
            t.jobs_failed,
            t.tenant_errors,
            t.reads_answered,
            t.reads_failed,
            t.bucket_checks
        );
    }
    {
        let mut t = tally.lock();
        (t.refused, t.lost, t.stalled) = (stats.refused, stats.lost, stats.stalled);
    }

    // The store heals: cycles finish what failed jobs left (markers, orphans, jobs).
    faults.set_config(FaultConfig::default());
    for _ in 0..20 {
        let stats = compactor.run_cycle().await.unwrap();
        assert_eq!((stats.jobs_failed, stats.tenant_errors), (0, 0), "{stats:?}");
        if stats.jobs_planned == 0 {
            break;
        }
    }
    // Past compacted_block_retention: compacted inputs and abandoned uploads are deleted.
    setup.clock.advance(2 * HOUR);
    compactor.run_cycle().await.unwrap();
    setup.clock.advance(2 * HOUR);
    compactor.run_cycle().await.unwrap();

    let expected: Vec<u32> = (0..BLOCKS * TRACES_PER_BLOCK).collect();
    assert_eq!(acked.lock().len(), expected.len());
    // Readers in other processes: from the tenant index, and from a listing.
    let list = setup.fresh_blocklist().await;
    assert_each_once(&visible_copies(&store, &list.blocks(&tenant)).await, expected.clone());
    store.delete(&legato_storage::tenant_index_path(&tenant)).await.unwrap();
    let list = setup.fresh_blocklist().await;
    let blocks = list.blocks(&tenant);
    assert_each_once(&visible_copies(&store, &blocks).await, expected.clone());
    // This process's blocklist agrees.
    blocklist.poll(&store).await.unwrap();
    let ours: HashSet<_> = blocklist.all_block_ids();
    assert_eq!(ours, list.all_block_ids());
    // Every span whole, once.
    let reader = BlockReader::new(store.clone(), StorageMetrics::default());
    for n in expected {
        let found = lookup(&reader, &blocks, n).await.unwrap();
        assert_eq!(found.len(), 1, "trace {n}");
        assert_eq!(combine(found[0].clone()), combine(trace(n, SPANS, end).batches));
    }
    // Nothing left behind: every block directory is a committed block.
    let left = objects(&inner, tenant.as_str()).await;
    let dirs: HashSet<&str> = left.iter().filter_map(|p| p.split('/').nth(1)).collect();
    let committed: HashSet<String> = blocks.iter().map(|m| m.block_id.to_string()).collect();
    let strays: Vec<_> = dirs
        .iter()
        .filter(|d| !d.starts_with("index") && !committed.contains(**d))
        .collect();
    assert!(strays.is_empty(), "objects of no visible block: {strays:?} in {left:?}");
    tally.into_inner()
}

/// The output's meta.json lands but the compactor hears an error (a lost answer): the next
/// cycle marks the inputs. In a single binary the readers share the compactor's blocklist,
/// which must then show the output, not nothing.
#[tokio::test]
async fn inputs_marked_after_a_lost_commit_leave_their_traces_visible_in_process() {
    let faulty = FaultyStore::new(Arc::new(InMemory::new()));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let setup = Setup::new(store.clone());
    let blocklist = Arc::new(Blocklist::new(
        legato_storage::DEFAULT_STALE_TENANT_INDEX,
        setup.clock.clone(),
    ));
    let tenant = TenantId::single();
    let end = setup.clock.now_nanos() - 5 * MINUTE;
    for b in 0..3u32 {
        let traces = (b * 10..b * 10 + 10).map(|n| trace(n, 2, end)).collect();
        blocklist.add(put_block(&store, &tenant, traces).await);
    }
    let compactor = setup.compactor_sharing(blocklist.clone());

    faulty.lose_puts(Some("/meta.json"));
    let stats = compactor.run_cycle().await.unwrap();
    assert_eq!((stats.jobs_failed, stats.jobs_run), (1, 0), "{stats:?}");
    assert_each_once(&visible_copies(&store, &blocklist.blocks(&tenant)).await, 0..30);

    faulty.lose_puts(None);
    let stats = compactor.run_cycle().await.unwrap();
    assert_eq!(stats.markers_repaired, 3, "{stats:?}");
    // No poll in between: what the shared blocklist shows right now.
    let blocks = blocklist.blocks(&tenant);
    assert_each_once(&visible_copies(&store, &blocks).await, 0..30);
    assert_eq!(blocks.len(), 1, "the output, which replaces the inputs");
}
