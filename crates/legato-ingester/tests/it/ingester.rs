//! Ingester behaviour with a manual clock and an in-memory object store.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use legato_ingester::metrics::IngesterMetrics;
use legato_ingester::{IngestLimits, Ingester, IngesterConfig, IngesterDeps};
use legato_model::{ByteSize, ManualClock, TenantId, TraceId};
use legato_proto::push::{PushError, PushRequest, RejectReason, TraceSegment};
use legato_proto::tempopb;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use legato_storage::metrics::StorageMetrics;
use legato_storage::{BlockReader, Blocklist, ObjectStore};
use object_store::memory::InMemory;
use prost::Message;

const SEC: u64 = 1_000_000_000;

struct Harness {
    clock: Arc<ManualClock>,
    store: Arc<dyn ObjectStore>,
    blocklist: Arc<Blocklist>,
    metrics: IngesterMetrics,
}

impl Harness {
    fn new() -> Self {
        Self {
            clock: Arc::new(ManualClock::new(1_000 * SEC)),
            store: Arc::new(InMemory::new()),
            blocklist: Arc::default(),
            metrics: IngesterMetrics::default(),
        }
    }

    fn open(&self, wal: &Path, cfg: IngesterConfig, limits: IngestLimits) -> Arc<Ingester> {
        self.open_with_fs(wal, cfg, limits, Arc::new(legato_ingester::wal::StdFs))
    }

    fn open_with_fs(
        &self,
        wal: &Path,
        cfg: IngesterConfig,
        limits: IngestLimits,
        wal_fs: Arc<dyn legato_ingester::wal::WalFs>,
    ) -> Arc<Ingester> {
        let deps = IngesterDeps {
            wal_fs,
            store: self.store.clone(),
            blocklist: self.blocklist.clone(),
            metrics: self.metrics.clone(),
            storage_metrics: StorageMetrics::default(),
            clock: self.clock.clone(),
            tail: None,
        };
        Ingester::open(cfg, limits.for_every_tenant(), wal, deps).unwrap().0
    }
}

fn cfg() -> IngesterConfig {
    IngesterConfig {
        trace_idle_period: Duration::from_secs(5),
        max_block_duration: Duration::from_secs(60),
        ..Default::default()
    }
}

fn id(n: u8) -> TraceId {
    TraceId([n; 16])
}

fn segment(trace: u8, span: u8) -> TraceSegment {
    let batch = ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![trace; 16],
                span_id: vec![span; 8],
                name: format!("s{span}"),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let data = tempopb::Trace {
        resource_spans: vec![batch],
    }
    .encode_to_vec();
    TraceSegment {
        id: Bytes::copy_from_slice(&[trace; 16]),
        data: Bytes::from(data),
        spans: 1,
    }
}

fn push_req(segments: Vec<TraceSegment>) -> PushRequest {
    PushRequest {
        tenant: TenantId::single().to_string(),
        traces: segments,
    }
}

fn span_count(ingester: &Ingester, trace: u8) -> usize {
    legato_proto::span_count(&ingester.find_trace(&TenantId::single(), &id(trace)))
}

fn wal_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("wal-"))
        .count()
}

#[tokio::test]
async fn traces_move_from_live_to_block_and_wal_is_trimmed() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let ing = h.open(dir.path(), cfg(), IngestLimits::default());
    ing.push(push_req(vec![segment(1, 1), segment(1, 2), segment(2, 3)]))
        .await
        .unwrap();
    assert_eq!(span_count(&ing, 1), 2);

    h.clock.advance(6 * SEC);
    ing.tick().await; // idle cut: into the head
    assert_eq!(span_count(&ing, 1), 2, "head traces stay readable");
    assert!(h.blocklist.blocks(&TenantId::single()).is_empty());

    ing.push(push_req(vec![segment(3, 4)])).await.unwrap(); // stays live
    h.clock.advance(61 * SEC);
    ing.push(push_req(vec![segment(3, 5)])).await.unwrap();
    ing.tick().await; // head is due: block cut and uploaded
    let blocks = h.blocklist.blocks(&TenantId::single());
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].total_spans, 3);
    assert_eq!(span_count(&ing, 1), 0, "flushed traces leave the ingester");
    assert_eq!(span_count(&ing, 3), 2, "live trace kept");
    let reader = BlockReader::new(h.store.clone(), StorageMetrics::default());
    assert_eq!(
        legato_proto::span_count(&reader.find_trace(&blocks[0], &id(2)).await.unwrap()),
        1
    );
    // The segment the block came from stays while trace 3, still live, has data in it; the
    // block's data is written once, never re-logged.
    assert_eq!(wal_files(dir.path()), 2);

    // Restart without flushing: the live trace comes back from the WAL. So does trace 1, which
    // shared its segment: after a crash it is held (and later flushed) again, a duplicate that
    // reads deduplicate by span id and compaction removes. Nothing acknowledged is lost.
    drop(ing);
    let ing = h.open(dir.path(), cfg(), IngestLimits::default());
    assert_eq!(span_count(&ing, 3), 2);
    assert_eq!(span_count(&ing, 1), 2);
}

#[tokio::test]
async fn wal_segments_go_once_their_data_is_in_blocks_even_under_a_long_lived_trace() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let ing = h.open(dir.path(), cfg(), IngestLimits::default());
    // Trace 100 keeps receiving spans across many cuts; each round another trace goes idle
    // and into a block.
    for round in 1..=10u8 {
        ing.push(push_req(vec![segment(round, 1), segment(100, round)]))
            .await
            .unwrap();
        h.clock.advance(4 * SEC);
        ing.push(push_req(vec![segment(100, round + 100)])).await.unwrap();
        h.clock.advance(2 * SEC);
        ing.tick().await; // trace `round` idle: into the head
        h.clock.advance(61 * SEC);
        ing.push(push_req(vec![segment(100, round + 200)])).await.unwrap();
        ing.tick().await; // head due: cut, rotate, upload
        assert!(
            wal_files(dir.path()) <= 6,
            "round {round}: {} WAL segments kept",
            wal_files(dir.path())
        );
    }
    assert_eq!(h.blocklist.blocks(&TenantId::single()).len(), 10);
    // The long-lived trace was re-logged, not lost: all its spans come back after a restart.
    drop(ing);
    let ing = h.open(dir.path(), cfg(), IngestLimits::default());
    assert_eq!(span_count(&ing, 100), 30);
}

#[tokio::test]
async fn acknowledged_pushes_survive_a_restart() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let ing = h.open(dir.path(), cfg(), IngestLimits::default());
    let pushes: Vec<_> = (1..=20u8).map(|n| ing.push(push_req(vec![segment(n, n)]))).collect();
    for r in futures::future::join_all(pushes).await {
        r.unwrap();
    }
    h.clock.advance(6 * SEC);
    ing.tick().await; // in the head, not uploaded
    drop(ing);
    let ing = h.open(dir.path(), cfg(), IngestLimits::default());
    for n in 1..=20u8 {
        assert_eq!(span_count(&ing, n), 1, "trace {n}");
    }
    assert!(ing.flush_all().await);
    assert_eq!(h.blocklist.blocks(&TenantId::single())[0].total_spans, 20);
}

#[tokio::test]
async fn limits_answer_at_push_time() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let one_span = segment(1, 1).data.len() as u64;
    let limits = IngestLimits {
        max_traces_per_user: 2,
        max_bytes_per_trace: one_span * 2,
    };
    let ing = h.open(dir.path(), cfg(), limits);
    let outcome = ing
        .push(push_req(vec![
            segment(1, 1),
            segment(1, 2),
            segment(1, 3),
            segment(2, 4),
            segment(3, 5),
        ]))
        .await
        .unwrap();
    let reasons: Vec<_> = outcome.rejected.iter().map(|r| (r.reason, r.spans)).collect();
    assert_eq!(
        reasons,
        vec![(RejectReason::LiveTracesExceeded, 1), (RejectReason::TraceTooLarge, 1)]
    );
    assert_eq!(span_count(&ing, 1), 2);
    assert_eq!(span_count(&ing, 3), 0);
}

#[tokio::test]
async fn memory_limit_refuses_with_retryable_error() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let small = IngesterConfig {
        max_block_bytes: ByteSize(100),
        max_buffered_bytes: ByteSize(200),
        ..cfg()
    };
    let ing = h.open(dir.path(), small, IngestLimits::default());
    let mut refused = None;
    for n in 1..50u8 {
        if let Err(e) = ing.push(push_req(vec![segment(n, n)])).await {
            refused = Some((n, e));
            break;
        }
    }
    let (n, err) = refused.expect("the memory limit must refuse pushes");
    assert!(matches!(err, PushError::Overloaded { .. }), "{err}");
    // Everything acknowledged before the refusal is readable.
    for m in 1..n {
        assert_eq!(span_count(&ing, m), 1);
    }
}

#[tokio::test]
async fn tag_summaries_are_made_on_demand_and_incrementally() {
    use legato_proto::push::RecentTraces;
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let ing = h.open(dir.path(), cfg(), IngestLimits::default());
    let summarised = || h.metrics.tag_summary_segments.get();
    let names = |json: Vec<u8>| -> Vec<String> {
        let s = legato_traceql::tags::TagSummary::from_json(&json).unwrap();
        let field = legato_traceql::ast::FieldExpr::Intrinsic(legato_traceql::ast::Intrinsic::Name);
        s.values(&field).into_iter().map(|v| v.value).collect()
    };
    ing.push(push_req(vec![segment(1, 1)])).await.unwrap();
    // Nobody asked for tags: the flush loop does not summarise.
    ing.tick().await;
    ing.tick().await;
    assert_eq!(summarised(), 0);

    let first = ing
        .recent_tag_summary(&TenantId::single(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(first), vec!["s1"]);
    assert_eq!(summarised(), 1);
    // A request sees data pushed just before it, without waiting for the flush loop, and
    // summarises only what is new.
    ing.push(push_req(vec![segment(1, 2), segment(2, 3)])).await.unwrap();
    let second = ing
        .recent_tag_summary(&TenantId::single(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(second), vec!["s1", "s2", "s3"]);
    assert_eq!(summarised(), 3);

    // After a request the flush loop keeps up in the background ...
    ing.push(push_req(vec![segment(3, 4)])).await.unwrap();
    ing.tick().await;
    assert_eq!(summarised(), 4);
    // ... until interest lapses.
    h.clock.advance(601 * SEC);
    ing.push(push_req(vec![segment(4, 5)])).await.unwrap();
    ing.tick().await;
    assert_eq!(summarised(), 4);
    // The next request starts over from what is held (all five segments are).
    let third = ing
        .recent_tag_summary(&TenantId::single(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(third), vec!["s1", "s2", "s3", "s4", "s5"]);
    assert_eq!(summarised(), 4 + 5);
}

/// A trace of one span whose name is `len` bytes long.
fn big_segment(trace: u8, len: usize) -> TraceSegment {
    let mut seg = segment(trace, 1);
    let data = tempopb::Trace {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![1; 8],
                    name: "x".repeat(len),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    seg.data = Bytes::from(data.encode_to_vec());
    seg
}

#[tokio::test]
async fn a_big_head_is_cut_into_blocks_encoded_in_parallel() {
    // A head past `max_block_bytes` (it grew while flushes lagged) is cut into blocks of at
    // most `max_block_bytes` / `concurrent_flushes`, so encoding memory stays bounded.
    for (concurrent_flushes, max_block_mib, expected_blocks) in
        [(1, 100, 1), (2, 100, 2), (3, 100, 3), (1, 8, 4), (2, 8, 8)]
    {
        let h = Harness::new();
        let dir = tempfile::tempdir().unwrap();
        let cfg = IngesterConfig {
            concurrent_flushes,
            max_block_bytes: ByteSize(max_block_mib << 20),
            ..cfg()
        };
        let ing = h.open(dir.path(), cfg, IngestLimits::default());
        // 30 traces of 1 MiB: a 30 MiB head.
        for trace in 1..=30u8 {
            ing.push(push_req(vec![big_segment(trace, 1 << 20)])).await.unwrap();
        }
        assert!(ing.flush_all().await);
        let blocks = h.blocklist.blocks(&TenantId::single());
        assert_eq!(blocks.len(), expected_blocks, "concurrent_flushes {concurrent_flushes}");
        assert_eq!(blocks.iter().map(|b| b.total_traces).sum::<u64>(), 30);
        assert!(blocks.iter().all(|b| b.total_traces >= 30 / expected_blocks as u64 - 1));
        assert!(blocks.iter().all(|b| b.total_traces <= 30 / expected_blocks as u64 + 1));
        let reader = BlockReader::new(h.store.clone(), StorageMetrics::default());
        for trace in 1..=30u8 {
            let mut found = 0;
            for b in &blocks {
                found += legato_proto::span_count(&reader.find_trace(b, &id(trace)).await.unwrap());
            }
            assert_eq!(found, 1, "trace {trace} is in exactly one block");
        }
    }
}

/// Span ids of a trace held by the ingester or in any uploaded block.
async fn stored_spans(h: &Harness, ingester: &Ingester, trace: u8) -> std::collections::HashSet<Vec<u8>> {
    let mut batches = ingester.find_trace(&TenantId::single(), &id(trace));
    let reader = BlockReader::new(h.store.clone(), StorageMetrics::default());
    for block in h.blocklist.blocks(&TenantId::single()) {
        batches.extend(reader.find_trace(&block, &id(trace)).await.unwrap());
    }
    batches
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.span_id.clone())
        .collect()
}

/// A one-span segment of `trace` whose span id is `n` (big endian).
fn numbered_segment(trace: u8, n: u64) -> TraceSegment {
    let mut seg = segment(trace, 0);
    let mut decoded = tempopb::Trace::decode(seg.data.as_ref()).unwrap();
    decoded.resource_spans[0].scope_spans[0].spans[0].span_id = n.to_be_bytes().to_vec();
    seg.data = Bytes::from(decoded.encode_to_vec());
    seg
}

/// Issue 10: a transient disk-full, write, short-write, fsync and create errors on the WAL,
/// while pushes, cuts and uploads go on, then a crash: every acknowledged span is there after
/// replay. Pushes whose records were not durable were refused with a retryable error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_wal_faults_lose_no_acknowledged_span() {
    use legato_ingester::wal::FaultFs;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultFs::new();
    let ing = h.open_with_fs(dir.path(), cfg(), IngestLimits::default(), Arc::new(faults.clone()));
    let acked = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut pushers = Vec::new();
    for task in 0..4u8 {
        let (ing, acked, refused, stop) = (ing.clone(), acked.clone(), refused.clone(), stop.clone());
        pushers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let trace = 1 + (n % 50) as u8 + task * 50;
                let span = (u64::from(task) << 32) | n;
                match ing.push(push_req(vec![numbered_segment(trace, span)])).await {
                    Ok(_) => acked.lock().push((trace, span)),
                    Err(PushError::Wal(_)) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("unexpected push error: {e}"),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    for step in 0..48u32 {
        faults.set(|f| match step % 6 {
            0 => f.disk_full = true,
            1 => f.short_writes = 1,
            2 => f.fail_syncs = 1,
            3 => f.fail_creates = 1,
            4 => f.fail_writes = 1,
            _ => {}
        });
        tokio::time::sleep(Duration::from_millis(4)).await;
        faults.set(|f| f.disk_full = false);
        if step % 16 == 7 {
            // Cut idle traces and the head: rotations and uploads under the faults. The last
            // cut comes well before the end, so much acknowledged data is only in the WAL.
            h.clock.advance(61 * SEC);
            ing.tick().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        p.await.unwrap();
    }
    let acked = acked.lock().clone();
    let refused = refused.load(Ordering::Relaxed);
    assert!(faults.injected() >= 5, "faults injected: {}", faults.injected());
    assert!(
        refused > 0 && acked.len() > 40,
        "acked {} refused {refused}",
        acked.len()
    );
    assert!(
        !h.blocklist.blocks(&TenantId::single()).is_empty(),
        "some data reached blocks"
    );

    // Crash (no flush) and restart on a healthy disk.
    drop(ing);
    let ing = h.open(dir.path(), cfg(), IngestLimits::default());
    let mut missing = Vec::new();
    for trace in 1..=200u8 {
        let stored = stored_spans(&h, &ing, trace).await;
        for (_, span) in acked.iter().filter(|(t, _)| *t == trace) {
            if !stored.contains(span.to_be_bytes().as_slice()) {
                missing.push((trace, *span));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged spans lost: {missing:?}",
        missing.len(),
        acked.len()
    );
}

/// Issue 10: queries walk held data where it is, a chunk at a time: every held trace (live,
/// in the head, or both) is visited once with all its spans, and a visitor that says stop
/// is not called again.
#[tokio::test]
async fn scanning_held_traces_visits_each_once_and_stops_when_asked() {
    use legato_proto::push::RecentTraces;
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let ing = h.open(dir.path(), cfg(), IngestLimits::default());
    for n in 1..=200u8 {
        ing.push(push_req(vec![segment(n, 1)])).await.unwrap();
    }
    h.clock.advance(6 * SEC);
    ing.tick().await; // all 200 into the head
    ing.push(push_req(vec![segment(7, 2), segment(201, 1)])).await.unwrap(); // live again, and new
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let visit: legato_proto::push::RecentVisitor = {
        let seen = seen.clone();
        Arc::new(move |t: legato_model::span::TraceData, _bytes| {
            seen.lock().push((t.trace_id[0], t.spans.len()));
            true
        })
    };
    ing.scan_recent(&TenantId::single(), visit).await.unwrap();
    let mut seen = seen.lock().clone();
    seen.sort_unstable();
    assert_eq!(seen.len(), 201);
    assert!(seen.windows(2).all(|w| w[0].0 != w[1].0), "each trace once");
    assert_eq!(
        seen.iter().find(|(id, _)| *id == 7),
        Some(&(7, 2)),
        "live and head parts together"
    );

    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let visit: legato_proto::push::RecentVisitor = {
        let calls = calls.clone();
        Arc::new(move |_, _| calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 2)
    };
    ing.scan_recent(&TenantId::single(), visit).await.unwrap();
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "stops at the first false"
    );
}

/// A one-span segment of `trace` whose span id is `n` and whose name is `len` bytes long.
fn numbered_big_segment(trace: u8, n: u64, len: usize) -> TraceSegment {
    let mut seg = big_segment(trace, len);
    let mut decoded = tempopb::Trace::decode(seg.data.as_ref()).unwrap();
    decoded.resource_spans[0].scope_spans[0].spans[0].span_id = n.to_be_bytes().to_vec();
    seg.data = Bytes::from(decoded.encode_to_vec());
    seg
}

/// Issue 13: memory is bounded by `max_resident_bytes`, not by the ingest rate. Held data past
/// half of it goes to spill files; traces are answered, scanned and flushed from there the
/// same, and a restart rebuilds them from the WAL.
#[tokio::test]
async fn held_data_past_the_resident_limit_is_spilled_and_read_back() {
    use legato_proto::push::RecentTraces;
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let small = IngesterConfig {
        max_resident_bytes: ByteSize(64 << 10),
        ..cfg()
    };
    let ing = h.open(dir.path(), small.clone(), IngestLimits::default());
    let gauge = |m: &prometheus_client::metrics::gauge::Gauge| m.get() as u64;
    // 100 traces of 10 spans of ~1 KiB: ~1 MiB held, 16 times the limit.
    for span in 0..10u64 {
        for trace in 1..=100u8 {
            ing.push(push_req(vec![numbered_big_segment(trace, span + 1, 1000)]))
                .await
                .unwrap();
            if trace % 10 == 0 {
                // What the spill loop does when a push finds the heap past half the limit.
                ing.tick().await;
                assert!(
                    gauge(&h.metrics.resident_bytes) <= 32 << 10,
                    "resident {}",
                    gauge(&h.metrics.resident_bytes)
                );
            }
        }
    }
    assert!(gauge(&h.metrics.buffered_bytes) > 1_000_000);
    assert!(
        h.metrics.spilled_bytes.get() > 900 << 10,
        "spilled {}",
        h.metrics.spilled_bytes.get()
    );
    for trace in 1..=100u8 {
        assert_eq!(span_count(&ing, trace), 10, "trace {trace} by id");
    }
    let spans = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let visit: legato_proto::push::RecentVisitor = {
        let spans = spans.clone();
        Arc::new(move |t: legato_model::span::TraceData, _| {
            spans.fetch_add(t.spans.len(), std::sync::atomic::Ordering::Relaxed);
            true
        })
    };
    ing.scan_recent(&TenantId::single(), visit).await.unwrap();
    assert_eq!(
        spans.load(std::sync::atomic::Ordering::Relaxed),
        1000,
        "a scan of held data"
    );

    // A crash: the spill files are gone, the WAL has everything. Replay brings it back
    // within the same memory bound, spilling as it reads.
    drop(ing);
    let spilled_before = h.metrics.spilled_bytes.get();
    let ing = h.open(dir.path(), small, IngestLimits::default());
    assert!(gauge(&h.metrics.buffered_bytes) > 1_000_000);
    assert!(
        gauge(&h.metrics.resident_bytes) <= 32 << 10,
        "resident after replay {}",
        gauge(&h.metrics.resident_bytes)
    );
    assert!(h.metrics.spilled_bytes.get() - spilled_before > 900 << 10);
    for trace in 1..=100u8 {
        assert_eq!(span_count(&ing, trace), 10, "trace {trace} after restart");
    }
    assert!(ing.flush_all().await);
    for trace in 1..=100u8 {
        assert_eq!(stored_spans(&h, &ing, trace).await.len(), 10, "trace {trace} in blocks");
    }
    assert_eq!(std::fs::read_dir(dir.path().join("spill")).unwrap().count(), 0);
}

/// Issue 13: when spill files cannot be written, held data stays in memory up to
/// `max_resident_bytes`, pushes past it are refused with a retryable error, and once the disk
/// is back everything acknowledged reaches blocks.
#[tokio::test]
async fn when_spilling_fails_pushes_are_refused_at_the_resident_limit_and_nothing_is_lost() {
    use legato_ingester::wal::FaultFs;
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultFs::new();
    let small = IngesterConfig {
        max_resident_bytes: ByteSize(64 << 10),
        ..cfg()
    };
    let ing = h.open_with_fs(dir.path(), small, IngestLimits::default(), Arc::new(faults.clone()));
    // Spill files cannot be created (the WAL's file is already open and keeps working).
    faults.set(|f| f.fail_creates = u32::MAX);
    let mut acked = Vec::new();
    let mut refusal = None;
    for n in 0..200u64 {
        let trace = 1 + (n % 50) as u8;
        match ing.push(push_req(vec![numbered_big_segment(trace, n, 1000)])).await {
            Ok(_) => acked.push((trace, n)),
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
        ing.tick().await;
    }
    let refusal = refusal.expect("pushes past max_resident_bytes are refused");
    assert!(matches!(refusal, PushError::Overloaded { .. }), "{refusal}");
    assert!(
        refusal.to_string().contains("ingester.max_resident_bytes is 65536"),
        "{refusal}"
    );
    let failures = h
        .metrics
        .spill_failures
        .get_or_create(&legato_ingester::metrics::OpLabels { op: "write".into() })
        .get();
    assert!(failures > 0);
    assert!(acked.len() > 20, "acked {}", acked.len());

    faults.set(|f| f.fail_creates = 0);
    ing.tick().await;
    ing.push(push_req(vec![numbered_segment(1, 1000)])).await.unwrap();
    acked.push((1, 1000));
    assert!(ing.flush_all().await);
    for (trace, span) in acked {
        assert!(
            stored_spans(&h, &ing, trace)
                .await
                .contains(span.to_be_bytes().as_slice()),
            "span {span} of trace {trace}"
        );
    }
}

/// An export larger than `max_resident_bytes` is not refused for ever: it is taken once the
/// heap has been spilled down to a quarter of the limit.
#[tokio::test]
async fn an_export_larger_than_the_resident_limit_is_taken_once_the_heap_is_spilled() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let small = IngesterConfig {
        max_resident_bytes: ByteSize(64 << 10),
        ..cfg()
    };
    let ing = h.open(dir.path(), small, IngestLimits::default());
    ing.push(push_req(vec![numbered_big_segment(1, 1, 100 << 10)]))
        .await
        .unwrap();
    let refused = ing.push(push_req(vec![numbered_big_segment(2, 1, 100 << 10)])).await;
    assert!(matches!(refused, Err(PushError::Overloaded { .. })), "{refused:?}");
    ing.tick().await; // spills the first
    ing.push(push_req(vec![numbered_big_segment(2, 1, 100 << 10)]))
        .await
        .unwrap();
    assert_eq!(span_count(&ing, 1), 1);
    assert_eq!(span_count(&ing, 2), 1);
}
