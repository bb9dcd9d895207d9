//! A compactor killed at every point of a job (issue #10): its store stops after the Nth write,
//! for every N from none to all of them, so the crash lands before the upload, between the
//! parts of the streamed data file, after the data, after meta.json, between and after the
//! inputs' markers, and after the tenant index. At the crash and after a fresh compactor has
//! taken over, every trace is readable exactly once, and once the grace period has passed
//! nothing is left behind.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use legato_model::{Clock, TenantId};
use legato_storage::fault::{FaultConfig, FaultStore};
use legato_storage::object_store::ObjectStoreExt;
use legato_storage::object_store::local::LocalFileSystem;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{Blocklist, ObjectStore};
use support::*;

const INPUTS: u32 = 3;
const TRACES_PER_INPUT: u32 = 150;

/// Where the crash landed, from what reached the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    BeforeUpload,
    DuringData,
    AfterData,
    AfterMeta,
    MarkingInputs,
    AfterMarkingInputs,
    AfterIndex,
}

/// `indexed`: the block ids the tenant index lists, if there is one. The compactor writes the
/// index before its job (the cycle's first write) and again after it.
fn stage(objects: &[String], inputs: &HashSet<String>, writes: u64, indexed: &HashSet<String>) -> Stage {
    let output: Vec<&String> = objects
        .iter()
        .filter(|p| {
            p.split('/')
                .nth(1)
                .is_some_and(|d| !d.starts_with("index") && !inputs.contains(d))
        })
        .collect();
    let markers = objects.iter().filter(|p| p.ends_with("meta.compacted.json")).count();
    let input_metas = objects
        .iter()
        .filter(|p| p.ends_with("/meta.json") && p.split('/').nth(1).is_some_and(|d| inputs.contains(d)))
        .count();
    let has = |file: &str| output.iter().any(|p| p.ends_with(file));
    let output_indexed = output
        .iter()
        .filter_map(|p| p.split('/').nth(1))
        .any(|d| indexed.contains(d));
    if output_indexed && markers == INPUTS as usize {
        Stage::AfterIndex
    } else if markers == INPUTS as usize && input_metas == 0 {
        Stage::AfterMarkingInputs
    } else if markers > 0 || input_metas < INPUTS as usize {
        Stage::MarkingInputs
    } else if has("/meta.json") {
        Stage::AfterMeta
    } else if has("data.parquet") {
        Stage::AfterData
    } else if writes > 1 {
        Stage::DuringData
    } else {
        Stage::BeforeUpload
    }
}

/// Every trace once, to readers from the tenant index (if any) and from a listing.
async fn assert_readable_once(setup: &Setup, store: &Arc<dyn ObjectStore>, tenant: &TenantId, what: &str) {
    let expected = 0..INPUTS * TRACES_PER_INPUT;
    let list = Blocklist::new(legato_storage::DEFAULT_STALE_TENANT_INDEX, setup.clock.clone());
    list.poll(store).await.unwrap();
    let copies = visible_copies(store, &list.blocks(tenant)).await;
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "{what}: traces seen twice: {twice:?}");
    assert_eq!(copies.len(), expected.len(), "{what}: traces visible");
    // Without the index: a listing.
    let list = Blocklist::new(legato_storage::DEFAULT_STALE_TENANT_INDEX, setup.clock.clone());
    let index = legato_storage::tenant_index_path(tenant);
    let saved = match store.get(&index).await {
        Ok(got) => Some(got.bytes().await.unwrap()),
        Err(_) => None,
    };
    if saved.is_some() {
        store.delete(&index).await.unwrap();
    }
    list.poll(store).await.unwrap();
    if let Some(bytes) = saved {
        store.put(&index, bytes.into()).await.unwrap();
    }
    assert_each_once(&visible_copies(store, &list.blocks(tenant)).await, expected);
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

/// Kills the compactor after each possible number of writes, on `make_store`'s stores.
async fn crash_at_every_write(make_store: impl Fn() -> (Option<tempfile::TempDir>, Arc<dyn ObjectStore>)) {
    let tenant = TenantId::single();
    let mut covered = BTreeSet::new();
    let total_writes;
    let mut n = 0u64;
    loop {
        let (dir, inner) = make_store();
        let mut setup = Setup::new(inner.clone());
        setup.part_size = 4 << 10;
        let end = setup.clock.now_nanos() - 5 * MINUTE;
        let mut inputs = HashSet::new();
        for b in 0..INPUTS {
            let first = b * TRACES_PER_INPUT;
            let traces = (first..first + TRACES_PER_INPUT).map(|t| trace(t, 2, end)).collect();
            inputs.insert(put_block(&inner, &tenant, traces).await.block_id.to_string());
        }

        // The compactor that dies: nothing it does after its nth write reaches the bucket.
        let halt = FaultStore::new(
            inner.clone(),
            FaultConfig {
                halt_after_writes: Some(n),
                ..FaultConfig::default()
            },
        );
        let mut doomed = Setup::new(halt.clone());
        doomed.clock = setup.clock.clone();
        doomed.part_size = setup.part_size;
        let _ = doomed.compactor().run_cycle().await;
        let writes = halt.stats().writes;
        let landed = objects(&inner, tenant.as_str()).await;
        let indexed: HashSet<String> = legato_storage::read_tenant_index(&inner, &tenant)
            .await
            .unwrap()
            .map(|index| index.meta.iter().map(|m| m.block_id.to_string()).collect())
            .unwrap_or_default();
        let at = stage(&landed, &inputs, writes, &indexed);
        covered.insert(at);
        let what = format!("killed after write {n} ({at:?})");
        assert_readable_once(&setup, &inner, &tenant, &what).await;

        // A new compactor takes over and finishes or redoes the job.
        let successor = setup.compactor();
        for _ in 0..3 {
            successor.run_cycle().await.unwrap();
        }
        assert_readable_once(&setup, &inner, &tenant, &format!("{what}, then recovered")).await;
        // After the grace period, the inputs and any abandoned upload are gone.
        setup.clock.advance(2 * HOUR);
        successor.run_cycle().await.unwrap();
        successor.run_cycle().await.unwrap();
        let list = setup.fresh_blocklist().await;
        let blocks = list.blocks(&tenant);
        assert_eq!(blocks.len(), 1, "{what}: one block holds everything");
        assert_eq!(blocks[0].replaces.len(), INPUTS as usize, "{what}");
        let left = objects(&inner, tenant.as_str()).await;
        let stray: Vec<_> = left
            .iter()
            .filter(|p| !p.contains(&blocks[0].block_id.to_string()) && !p.ends_with("index.json.gz"))
            .collect();
        assert!(stray.is_empty(), "{what}: left behind: {stray:?}");
        assert_readable_once(&setup, &inner, &tenant, &format!("{what}, then cleaned up")).await;
        // On disk, what no listing shows: a multipart upload's staging file.
        if let Some(dir) = &dir {
            let files = files_under(dir.path());
            let stray: Vec<_> = files
                .iter()
                .filter(|p| !p.contains(&blocks[0].block_id.to_string()) && !p.ends_with("index.json.gz"))
                .collect();
            assert!(stray.is_empty(), "{what}: files left on disk: {stray:?}");
        }

        // The first run that was never cut short tells how many writes a cycle makes.
        if n > writes {
            total_writes = writes;
            break;
        }
        n += 1;
    }
    let total: u64 = total_writes;
    eprintln!("a cycle made {total} writes; crashes landed at {covered:?}");
    assert!(total >= 10, "a cycle wrote {total} objects");
    for required in [
        Stage::BeforeUpload,
        Stage::DuringData,
        Stage::AfterData,
        Stage::AfterMeta,
        Stage::MarkingInputs,
        Stage::AfterMarkingInputs,
        Stage::AfterIndex,
    ] {
        assert!(covered.contains(&required), "no crash at {required:?}: {covered:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compactor_killed_at_any_write_leaves_every_trace_readable_once_in_memory() {
    crash_at_every_write(|| (None, Arc::new(InMemory::new()) as Arc<dyn ObjectStore>)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compactor_killed_at_any_write_leaves_every_trace_readable_once_on_local_disk() {
    crash_at_every_write(|| {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        (Some(dir), store)
    })
    .await;
}
