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
        let deps = IngesterDeps {
            store: self.store.clone(),
            blocklist: self.blocklist.clone(),
            metrics: self.metrics.clone(),
            storage_metrics: StorageMetrics::default(),
            clock: self.clock.clone(),
        };
        Ingester::open(cfg, limits, wal, deps).unwrap().0
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
    std::fs::read_dir(dir).unwrap().count()
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

    let first = ing.recent_tag_summary(&TenantId::single()).await.unwrap();
    assert_eq!(names(first), vec!["s1"]);
    assert_eq!(summarised(), 1);
    // A request sees data pushed just before it, without waiting for the flush loop, and
    // summarises only what is new.
    ing.push(push_req(vec![segment(1, 2), segment(2, 3)])).await.unwrap();
    let second = ing.recent_tag_summary(&TenantId::single()).await.unwrap();
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
    let third = ing.recent_tag_summary(&TenantId::single()).await.unwrap();
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
    for (concurrent_flushes, expected_blocks) in [(1, 1), (2, 2), (3, 3)] {
        let h = Harness::new();
        let dir = tempfile::tempdir().unwrap();
        let cfg = IngesterConfig {
            concurrent_flushes,
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
