//! The compactor against real stores (local filesystem and in-memory): merging replicated
//! blocks, crashes at each step, retention, the tenant index and ownership (issue #5).
#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use legato_compactor::{CompactionConfig, Ownership};
use legato_model::{Clock, TenantId};
use legato_proto::combine::combine;
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::ObjectStoreExt;
use legato_storage::object_store::local::LocalFileSystem;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{BlockReader, Blocklist, ObjectStore, TenantIndex, read_tenant_index};
use support::*;

fn local_store() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    (dir, store)
}

/// Three ingesters each wrote traces 0..10 (replication) plus five traces of their own.
async fn replicated_blocks(store: &Arc<dyn ObjectStore>, tenant: &TenantId, end: u64) -> Vec<u32> {
    for replica in 0..3u32 {
        let mut traces: Vec<_> = (0..10).map(|n| trace(n, 4, end)).collect();
        traces.extend((0..5).map(|k| trace(100 + replica * 10 + k, 3, end)));
        put_block(store, tenant, traces).await;
    }
    (0..10)
        .chain((0..3).flat_map(|r| (0..5).map(move |k| 100 + r * 10 + k)))
        .collect()
}

#[tokio::test]
async fn replicated_blocks_merge_into_one_block_with_each_span_once() {
    let (_dir, store) = local_store();
    let setup = Setup::new(store.clone());
    let tenant = TenantId::single();
    let end = setup.clock.now_nanos() - 5 * MINUTE;
    let expected = replicated_blocks(&store, &tenant, end).await;

    let stats = setup.compactor().run_cycle().await.unwrap();
    assert_eq!(
        (stats.jobs_run, stats.blocks_compacted, stats.blocks_written),
        (1, 3, 1),
        "{stats:?}"
    );
    assert_eq!(
        stats.spans_deduped,
        2 * 10 * 4,
        "two extra copies of 10 traces of 4 spans"
    );

    let list = setup.fresh_blocklist().await;
    let blocks = list.blocks(&tenant);
    assert_eq!(blocks.len(), 1);
    let out = &blocks[0];
    assert_eq!(out.compaction_level, 1);
    assert_eq!(out.replaces.len(), 3);
    assert_eq!((out.total_traces, out.total_spans), (25, 10 * 4 + 15 * 3));
    assert_eq!(list.compacted(&tenant).len(), 3, "inputs carry markers");
    for input in &out.replaces {
        let marker = legato_storage::read_compacted_marker(&store, &tenant, *input)
            .await
            .unwrap();
        assert!(marker.is_some(), "input {input} has meta.compacted.json");
    }

    // Every trace reads back whole from the output, each span once.
    let reader = BlockReader::new(store.clone(), StorageMetrics::default());
    for n in &expected {
        let found = combine(reader.find_trace(out, &trace_id(*n)).await.unwrap());
        let spans: Vec<_> = found
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .collect();
        let want = if *n < 10 { 4 } else { 3 };
        assert_eq!(spans.len(), want, "trace {n}");
        let ids: HashSet<_> = spans.iter().map(|s| s.span_id.clone()).collect();
        assert_eq!(ids.len(), want, "trace {n} has no duplicate spans");
        assert_eq!(
            found,
            combine(trace(*n, want as u8, end).batches),
            "trace {n} at full fidelity"
        );
    }
    assert_each_once(&visible_copies(&store, &blocks).await, expected);
}

#[tokio::test]
async fn a_crash_after_the_output_meta_leaves_each_trace_once_and_the_next_cycle_marks_the_inputs() {
    let faulty = FaultyStore::new(Arc::new(InMemory::new()));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let setup = Setup::new(store.clone());
    let tenant = TenantId::single();
    let end = setup.clock.now_nanos() - 5 * MINUTE;
    let expected = replicated_blocks(&store, &tenant, end).await;

    // The "crash": writing the first compacted marker fails after the output's meta.json.
    faulty.fail_puts(Some("meta.compacted.json"));
    let compactor = setup.compactor();
    let stats = compactor.run_cycle().await.unwrap();
    assert_eq!(stats.jobs_failed, 1, "{stats:?}");
    let unmarked = objects(&store, tenant.as_str()).await;
    assert!(
        !unmarked.iter().any(|p| p.ends_with("meta.compacted.json")),
        "{unmarked:?}"
    );
    assert_eq!(unmarked.iter().filter(|p| p.ends_with("/meta.json")).count(), 4);

    // A reader of the index written at the end of that cycle sees the output only ...
    let list = setup.fresh_blocklist().await;
    assert_eq!(list.blocks(&tenant).len(), 1);
    assert_each_once(&visible_copies(&store, &list.blocks(&tenant)).await, expected.clone());
    // ... and so does a reader listing the bucket (drop the index to take that path).
    store.delete(&legato_storage::tenant_index_path(&tenant)).await.unwrap();
    let list = setup.fresh_blocklist().await;
    let blocks = list.blocks(&tenant);
    assert_eq!(blocks.len(), 1, "inputs are hidden by the output's `replaces`");
    assert_each_once(&visible_copies(&store, &blocks).await, expected.clone());

    // The next cycle (a restarted compactor) writes the missing markers and compacts nothing.
    faulty.fail_puts(None);
    let stats = setup.compactor().run_cycle().await.unwrap();
    assert_eq!((stats.markers_repaired, stats.jobs_run), (3, 0), "{stats:?}");
    let after = objects(&store, tenant.as_str()).await;
    assert_eq!(after.iter().filter(|p| p.ends_with("meta.compacted.json")).count(), 3);
    assert_eq!(after.iter().filter(|p| p.ends_with("/meta.json")).count(), 1);
    let list = setup.fresh_blocklist().await;
    assert_each_once(&visible_copies(&store, &list.blocks(&tenant)).await, expected);
}

#[tokio::test]
async fn a_crash_before_the_output_meta_leaves_invisible_orphans_that_are_removed_later() {
    let faulty = FaultyStore::new(Arc::new(InMemory::new()));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let setup = Setup::new(store.clone());
    let tenant = TenantId::single();
    let end = setup.clock.now_nanos() - 5 * MINUTE;
    for b in 0..3u32 {
        put_block(
            &store,
            &tenant,
            (b * 10..b * 10 + 10).map(|n| trace(n, 2, end)).collect(),
        )
        .await;
    }
    let inputs: HashSet<_> = setup.fresh_blocklist().await.all_block_ids();

    faulty.fail_puts(Some("/meta.json"));
    let stats = setup.compactor().run_cycle().await.unwrap();
    assert_eq!(stats.jobs_failed, 1, "{stats:?}");
    let dirs: HashSet<String> = objects(&store, tenant.as_str())
        .await
        .iter()
        .filter_map(|p| p.split('/').nth(1).map(str::to_string))
        .filter(|d| !d.starts_with("index"))
        .collect();
    assert_eq!(dirs.len(), 4, "the output's data and bloom were written: {dirs:?}");

    faulty.fail_puts(None);
    store.delete(&legato_storage::tenant_index_path(&tenant)).await.unwrap();
    let list = setup.fresh_blocklist().await;
    assert_eq!(list.all_block_ids(), inputs, "the orphan is invisible");
    assert_each_once(&visible_copies(&store, &list.blocks(&tenant)).await, 0..30);

    // Retried: compacts; the orphan stays within its grace period.
    let stats = setup.compactor().run_cycle().await.unwrap();
    assert_eq!((stats.jobs_run, stats.orphans_deleted), (1, 0), "{stats:?}");
    // Past compacted_block_retention (1h): the orphan and the compacted inputs go.
    setup.clock.advance(2 * HOUR);
    let stats = setup.compactor().run_cycle().await.unwrap();
    assert_eq!((stats.orphans_deleted, stats.blocks_deleted), (1, 3), "{stats:?}");
    let left = objects(&store, tenant.as_str()).await;
    assert_eq!(
        left.iter().filter(|p| p.ends_with("data.parquet")).count(),
        1,
        "{left:?}"
    );
    let list = setup.fresh_blocklist().await;
    assert!(list.compacted(&tenant).is_empty());
    assert_each_once(&visible_copies(&store, &list.blocks(&tenant)).await, 0..30);
}

#[tokio::test]
async fn retention_marks_only_expired_blocks_and_deletes_after_the_grace_period() {
    let (_dir, store) = local_store();
    let mut setup = Setup::new(store.clone());
    let short = TenantId::new("short").unwrap();
    let long = TenantId::new("long").unwrap();
    let overridden = short.clone();
    setup.retention = Arc::new(move |t: &TenantId| (*t == overridden).then(|| Duration::from_secs(3 * 3600)));
    let now = setup.clock.now_nanos();
    let mut old = Vec::new();
    for tenant in [&short, &long] {
        // Two windows apart, so the blocks are not merged.
        old.push(put_block(&store, tenant, vec![trace(1, 2, now - 4 * HOUR)]).await);
        put_block(&store, tenant, vec![trace(2, 2, now - MINUTE)]).await;
    }

    let compactor = setup.compactor();
    let stats = compactor.run_cycle().await.unwrap();
    assert_eq!((stats.blocks_expired, stats.jobs_run), (1, 0), "{stats:?}");
    let list = setup.fresh_blocklist().await;
    assert_eq!(
        list.blocks(&short).len(),
        1,
        "the 4h-old block of the 3h tenant expired"
    );
    assert_eq!(list.blocks(&long).len(), 2, "the default retention is 14 days");
    let expired = format!("short/{}/data.parquet", old[0].block_id);
    assert!(
        objects(&store, "short").await.contains(&expired),
        "kept during the grace period"
    );

    setup.clock.advance(30 * MINUTE);
    assert_eq!(compactor.run_cycle().await.unwrap().blocks_deleted, 0);
    assert!(objects(&store, "short").await.contains(&expired));

    setup.clock.advance(40 * MINUTE);
    let stats = compactor.run_cycle().await.unwrap();
    assert_eq!((stats.blocks_deleted, stats.blocks_expired), (1, 0), "{stats:?}");
    let left = objects(&store, "short").await;
    assert!(
        !left.iter().any(|p| p.contains(&old[0].block_id.to_string())),
        "every object of the expired block is gone, marker included: {left:?}"
    );
    assert_eq!(setup.fresh_blocklist().await.blocks(&long).len(), 2);
}

/// Issue 12: retention by policy. Error traces (`{ status = error }`, 30 days) outlive the
/// normal traces of the same block (the default 14 days); the block is rewritten once, with
/// the crash safety of a compaction, and expires when the policy's retention has passed.
#[tokio::test]
async fn retention_policies_keep_matching_traces_past_block_retention() {
    let (_dir, store) = local_store();
    let mut setup = Setup::new(store.clone());
    let query = "{ status = error }".to_string();
    let plan = Arc::new(legato_traceql::eval::Plan::new(legato_traceql::parse(&query).unwrap()).unwrap());
    setup.retention_policies = Arc::new(move |_: &TenantId| {
        vec![legato_compactor::RetentionPolicy {
            query: query.clone(),
            plan: plan.clone(),
            retention: Duration::from_secs(30 * 24 * 3600),
        }]
    });
    let tenant = TenantId::single();
    let now = setup.clock.now_nanos();
    let traces: Vec<_> = (0..20)
        .map(|n| {
            let mut t = trace(n, 3, now - MINUTE);
            if n % 4 == 0 {
                t.batches[0].scope_spans[0].spans[1].status = Some(legato_proto::trace::Status {
                    code: 2,
                    ..Default::default()
                });
            }
            t
        })
        .collect();
    let input = put_block(&store, &tenant, traces).await;
    let compactor = setup.compactor();
    assert_eq!(
        compactor.run_cycle().await.unwrap().blocks_filtered,
        0,
        "not expired yet"
    );

    // Past the 14-day block retention: only the five error traces stay, whole.
    setup.clock.advance(15 * 24 * HOUR);
    let stats = compactor.run_cycle().await.unwrap();
    assert_eq!((stats.blocks_filtered, stats.blocks_expired), (1, 0), "{stats:?}");
    let list = setup.fresh_blocklist().await;
    let blocks = list.blocks(&tenant);
    assert_eq!(blocks.len(), 1);
    assert_ne!(blocks[0].block_id, input.block_id);
    assert_eq!((blocks[0].total_traces, blocks[0].total_spans), (5, 15));
    assert_eq!(blocks[0].replaces, vec![input.block_id]);
    assert_each_once(&visible_copies(&store, &blocks).await, (0..20).filter(|n| n % 4 == 0));
    let tags = BlockReader::new(store.clone(), StorageMetrics::default())
        .read_tags(&blocks[0])
        .await
        .unwrap()
        .expect("the rewritten block has a tag summary");
    assert!(!tags.is_empty());

    // Later cycles leave the rewritten block alone.
    setup.clock.advance(24 * HOUR);
    let stats = compactor.run_cycle().await.unwrap();
    assert_eq!((stats.blocks_filtered, stats.blocks_expired), (0, 0), "{stats:?}");

    // Past the policy's 30 days the rest goes too.
    setup.clock.advance(15 * 24 * HOUR);
    let stats = compactor.run_cycle().await.unwrap();
    assert_eq!((stats.blocks_filtered, stats.blocks_expired), (0, 1), "{stats:?}");
    assert!(setup.fresh_blocklist().await.blocks(&tenant).is_empty());
}

#[tokio::test]
async fn the_tenant_index_is_written_and_a_fresh_blocklist_polls_from_it() {
    let faulty = FaultyStore::new(Arc::new(InMemory::new()));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let setup = Setup::new(store.clone());
    let tenant = TenantId::single();
    let end = setup.clock.now_nanos() - 5 * MINUTE;
    let expected = replicated_blocks(&store, &tenant, end).await;
    setup.compactor().run_cycle().await.unwrap();

    let index: TenantIndex = read_tenant_index(&store, &tenant).await.unwrap().unwrap();
    assert_eq!(index.meta.len(), 1);
    assert_eq!(index.compacted.len(), 3);
    assert_eq!(index.created_at_unix_nano, setup.clock.now_nanos());

    // A reader in another process: one GET of the index, no listing of the tenant.
    let before = faulty.list_calls();
    let list = Blocklist::new(legato_storage::DEFAULT_STALE_TENANT_INDEX, setup.clock.clone());
    let stats = list.poll_with_stats(&store).await.unwrap();
    assert_eq!((stats.tenants_from_index, stats.tenants_listed), (1, 0));
    assert_eq!(faulty.list_calls(), before, "no LIST below the root");
    assert_eq!(list.blocks(&tenant)[0].block_id, index.meta[0].block_id);
    assert_each_once(&visible_copies(&store, &list.blocks(&tenant)).await, expected);

    // A block flushed in-process after the index was built survives polls of that index.
    let flushed = put_block(&store, &tenant, vec![trace(500, 1, end)]).await;
    list.add(flushed.clone());
    for _ in 0..3 {
        list.poll(&store).await.unwrap();
        assert!(
            list.all_block_ids().contains(&flushed.block_id),
            "kept: the index predates it"
        );
    }

    // A stale index is not trusted: the tenant is listed instead, and sees the new block.
    setup.clock.advance(20 * MINUTE);
    let list = Blocklist::new(legato_storage::DEFAULT_STALE_TENANT_INDEX, setup.clock.clone());
    let before = faulty.list_calls();
    let stats = list.poll_with_stats(&store).await.unwrap();
    assert_eq!((stats.tenants_from_index, stats.tenants_listed), (0, 1));
    assert_eq!(faulty.list_calls(), before + 1);
    assert_eq!(list.blocks(&tenant).len(), 2);
}

/// A cycle with several jobs runs for minutes on real data; the index must not wait for its
/// end. A reader polling the index between two jobs sees the first job's output, and blocks
/// flushed after the cycle began.
#[tokio::test]
async fn the_tenant_index_is_rewritten_after_each_job_of_a_cycle() {
    let faulty = FaultyStore::new(Arc::new(InMemory::new()));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let mut setup = Setup::new(store.clone());
    setup.config = CompactionConfig {
        max_input_blocks: 3,
        ..CompactionConfig::default()
    };
    let tenant = TenantId::single();
    let now = setup.clock.now_nanos();
    // Two time windows of three blocks each: two jobs.
    for w in 0..2u64 {
        for b in 0..3u32 {
            let first = (w as u32) * 100 + b * 10;
            put_block(
                &store,
                &tenant,
                (first..first + 10)
                    .map(|n| trace(n, 2, now - (w * 2 + 1) * HOUR))
                    .collect(),
            )
            .await;
        }
    }
    faulty.puts.lock().clear();
    let stats = setup.compactor().run_cycle().await.unwrap();
    assert_eq!(stats.jobs_run, 2, "{stats:?}");
    let puts = faulty.puts.lock().clone();
    let index_at: Vec<usize> = (0..puts.len())
        .filter(|&i| puts[i].ends_with("index.json.gz"))
        .collect();
    let metas_at: Vec<usize> = (0..puts.len()).filter(|&i| puts[i].ends_with("/meta.json")).collect();
    assert_eq!(metas_at.len(), 2, "one output per job: {puts:#?}");
    let second_output = puts[metas_at[1]].trim_end_matches("meta.json");
    let second_starts = puts.iter().position(|p| p.starts_with(second_output)).unwrap();
    assert!(
        index_at.iter().any(|&i| i > metas_at[0] && i < second_starts),
        "no index between the first job's commit and the second job: {puts:#?}"
    );
    assert!(
        index_at.first() < metas_at.first(),
        "an index before the first job: {puts:#?}"
    );
    // The last index shows exactly the two outputs.
    let list = Blocklist::new(legato_storage::DEFAULT_STALE_TENANT_INDEX, setup.clock.clone());
    assert_eq!(list.poll_with_stats(&store).await.unwrap().tenants_from_index, 1);
    assert_eq!(list.blocks(&tenant).len(), 2);
}

#[tokio::test]
async fn compactors_with_disjoint_ownership_never_take_the_same_job() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::single();
    let clock_now = clock().now_nanos();
    // Three windows with three blocks each: three jobs.
    let mut expected = Vec::new();
    for w in 0..3u64 {
        let end = clock_now - (w * 2 + 1) * HOUR;
        for b in 0..3u32 {
            let first = (w as u32) * 100 + b * 10;
            put_block(&store, &tenant, (first..first + 10).map(|n| trace(n, 2, end)).collect()).await;
            expected.extend(first..first + 10);
        }
    }
    let owner = |k: &str| k.bytes().map(u32::from).sum::<u32>() % 2;
    let mut a = Setup::new(store.clone());
    a.owns = Arc::new(move |k: &str| owner(k) == 0) as Ownership;
    let mut b = Setup::new(store.clone());
    b.clock = a.clock.clone();
    b.owns = Arc::new(move |k: &str| owner(k) == 1) as Ownership;
    for setup in [&mut a, &mut b] {
        setup.config = CompactionConfig {
            max_input_blocks: 3,
            ..CompactionConfig::default()
        };
    }
    let (ca, cb) = (a.compactor(), b.compactor());
    let (sa, sb) = tokio::join!(ca.run_cycle(), cb.run_cycle());
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    assert_eq!(sa.jobs_planned, 3);
    assert_eq!(sb.jobs_planned, 3);
    assert_eq!(sa.jobs_run + sb.jobs_run, 3, "{sa:?} {sb:?}");
    assert_eq!(sa.jobs_run + sa.jobs_not_owned, 3);
    assert_eq!(sb.jobs_run + sb.jobs_not_owned, 3);
    assert_eq!(sa.jobs_failed + sb.jobs_failed, 0);

    // No input is replaced by two outputs, and every trace is visible once.
    let list = Blocklist::new(Duration::ZERO, a.clock.clone());
    let listing = legato_storage::list_tenant(&store, &tenant, &Default::default(), &Default::default())
        .await
        .unwrap();
    let mut claimed = HashSet::new();
    for meta in listing.metas.values() {
        for input in &meta.replaces {
            assert!(claimed.insert(*input), "block {input} compacted twice");
        }
    }
    assert_eq!(claimed.len(), 9);
    // The index was written by one of them while the other was still compacting: it may lag,
    // but what it shows holds each trace once.
    list.poll(&store).await.unwrap();
    assert_each_once(&visible_copies(&store, &list.blocks(&tenant)).await, expected.clone());
    // The next cycles have nothing to merge, and the index catches up.
    let (sa, sb) = tokio::join!(ca.run_cycle(), cb.run_cycle());
    assert_eq!(sa.unwrap().jobs_run + sb.unwrap().jobs_run, 0);
    list.poll(&store).await.unwrap();
    assert_eq!(list.blocks(&tenant).len(), 3);
    assert_each_once(&visible_copies(&store, &list.blocks(&tenant)).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_uploaded_in_parts_while_they_are_encoded() {
    let metrics = StorageMetrics::default();
    let store = legato_storage::instrument(Arc::new(InMemory::new()), &metrics);
    let mut setup = Setup::new(store.clone());
    setup.part_size = 16 << 10;
    let tenant = TenantId::single();
    let end = setup.clock.now_nanos() - 5 * MINUTE;
    for b in 0..4u32 {
        put_block(
            &store,
            &tenant,
            (b * 2000..b * 2000 + 2000).map(|n| trace(n, 4, end)).collect(),
        )
        .await;
    }
    let count = |op: &str| {
        metrics
            .object_store_requests
            .get_or_create(&legato_storage::OpLabels { op: op.into() })
            .get()
    };
    let puts_before = count("put");

    let stats = setup.compactor().run_cycle().await.unwrap();
    assert_eq!((stats.jobs_run, stats.blocks_compacted), (1, 4), "{stats:?}");
    let list = setup.fresh_blocklist().await;
    let out = list.blocks(&tenant);
    assert_eq!(out.len(), 1);
    let parts = out[0].data_size.div_ceil(16 << 10);
    assert!(parts >= 4, "a data file of {} bytes", out[0].data_size);
    assert_eq!(count("put_multipart"), 1);
    assert_eq!(count("put_part"), parts);
    assert_eq!(count("complete_multipart"), 1);
    // The other PUTs: bloom, meta.json, 4 markers, the tenant index before and after the job
    // (the inputs have no tags, so neither has the output); none is the data file.
    assert_eq!(count("put") - puts_before, 2 + 4 + 2);
    assert_each_once(&visible_copies(&store, &out).await, 0..8000);
}
