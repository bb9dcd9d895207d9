//! Object-store requests of trace lookups, counted by the instrumented store: with warm
//! caches a candidate block costs one ranged GET (row groups end after a whole trace), and
//! blocks whose bloom filter excludes the trace cost nothing.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::sync::Arc;

use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::common::{AnyValue, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{BlockMeta, BlockReader, Blocklist, OpLabels, TraceInput, encode_block, instrument, write_block};

const TRACES_PER_BLOCK: u32 = 6000;
const SPANS_PER_TRACE: u8 = 6;

fn trace_id(n: u32) -> TraceId {
    let mut b = [3u8; 16];
    b[12..].copy_from_slice(&n.to_be_bytes());
    TraceId(b)
}

fn trace(n: u32) -> TraceInput {
    let id = trace_id(n);
    let spans = (0..SPANS_PER_TRACE)
        .map(|i| Span {
            trace_id: id.0.to_vec(),
            span_id: vec![i + 1, 0, 0, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 1],
            name: format!("op-{i}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i) * 1000,
            end_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i) * 1000 + 500,
            attributes: vec![KeyValue {
                key: "http.route".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(format!("/r/{}", n % 17))),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    TraceInput {
        id,
        batches: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue("checkout".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// Requests so far, by op.
fn snapshot(metrics: &StorageMetrics) -> BTreeMap<&'static str, u64> {
    [
        "get",
        "get_range",
        "head",
        "put",
        "list",
        "list_with_delimiter",
        "delete",
    ]
    .into_iter()
    .map(|op| {
        let n = metrics
            .object_store_requests
            .get_or_create(&OpLabels { op: op.into() })
            .get();
        (op, n)
    })
    .collect()
}

fn delta(before: &BTreeMap<&'static str, u64>, after: &BTreeMap<&'static str, u64>) -> BTreeMap<&'static str, u64> {
    after
        .iter()
        .map(|(op, n)| (*op, n - before[op]))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// One lookup the way the querier does it: every block of the tenant.
async fn lookup(reader: &BlockReader, blocks: &[Arc<BlockMeta>], n: u32) -> usize {
    let mut spans = 0;
    for meta in blocks {
        spans += legato_proto::span_count(&reader.find_trace(meta, &trace_id(n)).await.unwrap());
    }
    spans
}

#[tokio::test]
async fn warm_lookups_cost_one_ranged_get_per_candidate_block() {
    let metrics = StorageMetrics::default();
    let store = instrument(Arc::new(InMemory::new()), &metrics);
    let tenant = TenantId::single();

    // Three blocks of 6,000 traces each (two row groups per block), disjoint trace ids.
    for b in 0..3u32 {
        let traces = (b * TRACES_PER_BLOCK..(b + 1) * TRACES_PER_BLOCK).map(trace).collect();
        let block = encode_block(&tenant, BlockId::random(), traces, 1).unwrap();
        assert_eq!(block.meta.row_groups, 2);
        write_block(&store, &block).await.unwrap();
    }
    let written = snapshot(&metrics);
    assert_eq!(written["put"], 9, "data, bloom and meta.json per block");

    let blocklist = Blocklist::default();
    blocklist.poll(&store).await.unwrap();
    let blocks = blocklist.blocks(&tenant);
    assert_eq!(blocks.len(), 3);
    let polled = snapshot(&metrics);
    let poll = delta(&written, &polled);
    assert_eq!(poll.get("list_with_delimiter"), Some(&1), "{poll:?}");
    assert_eq!(
        poll.get("get").copied().unwrap_or(0),
        3 + 1,
        "three meta.json and the tenant index: {poll:?}"
    );

    let reader = BlockReader::new(store.clone(), metrics.clone());

    // Cold: every bloom filter, then the footer and one row group of the one candidate.
    let before = snapshot(&metrics);
    let candidates0 = metrics.candidate_blocks.get();
    assert_eq!(lookup(&reader, &blocks, 10).await, usize::from(SPANS_PER_TRACE));
    let cold = delta(&before, &snapshot(&metrics));
    let candidates = metrics.candidate_blocks.get() - candidates0;
    assert_eq!(cold.get("get"), Some(&3), "one bloom filter per block: {cold:?}");
    assert!(candidates >= 1);
    assert_eq!(
        cold.get("get_range").copied(),
        Some(candidates + 1),
        "a footer per candidate block plus one row group: {cold:?}"
    );

    // Warm every footer, then count: one ranged GET per lookup, nothing else.
    for n in (0..3 * TRACES_PER_BLOCK).step_by(97) {
        lookup(&reader, &blocks, n).await;
    }
    for n in [11, 7500, 17999] {
        let before = snapshot(&metrics);
        let (candidates0, row_groups0) = (metrics.candidate_blocks.get(), metrics.block_reads.get());
        assert_eq!(lookup(&reader, &blocks, n).await, usize::from(SPANS_PER_TRACE));
        let warm = delta(&before, &snapshot(&metrics));
        let candidates = metrics.candidate_blocks.get() - candidates0;
        let row_groups = metrics.block_reads.get() - row_groups0;
        assert_eq!(row_groups, 1, "trace {n}");
        assert_eq!(
            warm.into_iter().collect::<Vec<_>>(),
            vec![("get_range", 1)],
            "trace {n}"
        );
        assert!(candidates >= 1, "trace {n}");
    }

    // The last trace of a block's first row group (rows 32,766..32,772: the group was cut
    // after it, not at row 32,768) reads that row group only.
    let last_of_group = 32_768 / u32::from(SPANS_PER_TRACE);
    let before = snapshot(&metrics);
    let row_groups0 = metrics.block_reads.get();
    assert_eq!(
        lookup(&reader, &blocks, last_of_group).await,
        usize::from(SPANS_PER_TRACE)
    );
    let warm = delta(&before, &snapshot(&metrics));
    assert_eq!(warm.into_iter().collect::<Vec<_>>(), vec![("get_range", 1)]);
    assert_eq!(metrics.block_reads.get() - row_groups0, 1);

    // A trace no block holds costs nothing once the bloom filters are cached (unless a
    // filter's false positive makes a block a candidate; then statistics prune it here).
    let before = snapshot(&metrics);
    assert_eq!(lookup(&reader, &blocks, 1_000_000).await, 0);
    assert!(delta(&before, &snapshot(&metrics)).is_empty());
}
