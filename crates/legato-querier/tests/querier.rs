//! Trace-by-id combines ingester data with blocks and deduplicates spans.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;

use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::push::RecentTraces;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use legato_querier::Querier;
use legato_querier::metrics::QuerierMetrics;
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{BlockReader, Blocklist, ObjectStore, TraceInput, encode_block, write_block};

fn batch(trace: u8, spans: std::ops::Range<u8>) -> ResourceSpans {
    ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: spans
                .map(|i| Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![i; 8],
                    start_time_unix_nano: u64::from(i),
                    end_time_unix_nano: 1_000_000_000_000,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

struct Recent(Vec<ResourceSpans>);

#[async_trait::async_trait]
impl RecentTraces for Recent {
    async fn find_trace(&self, _: &TenantId, _: &TraceId) -> Vec<ResourceSpans> {
        self.0.clone()
    }
}

#[tokio::test]
async fn combines_ingester_and_blocks_without_duplicates() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::single();
    let blocklist = Arc::new(Blocklist::default());
    // Two blocks overlap on span 3 (a replayed WAL, say); the ingester holds 4..6 and 5 again.
    for spans in [1..4, 3..5] {
        let block = encode_block(
            &tenant,
            BlockId::random(),
            vec![TraceInput {
                id: TraceId([9; 16]),
                batches: vec![batch(9, spans)],
            }],
            0,
        )
        .unwrap();
        write_block(&store, &block).await.unwrap();
        blocklist.add(block.meta);
    }
    let recent: Arc<dyn RecentTraces> = Arc::new(Recent(vec![batch(9, 4..7)]));
    let reader = Arc::new(BlockReader::new(store, StorageMetrics::default()));
    let querier = Querier::new(vec![recent], reader, blocklist, QuerierMetrics::default());
    let found = querier
        .find_trace(&tenant, &TraceId([9; 16]), None, None)
        .await
        .unwrap();
    assert_eq!(legato_proto::span_count(&found.batches), 6);
    assert_eq!(found.blocks_inspected, 2);
    // A time range that excludes the blocks leaves only the ingester's spans.
    let found = querier
        .find_trace(&tenant, &TraceId([9; 16]), Some(2_000), Some(3_000))
        .await
        .unwrap();
    assert_eq!(legato_proto::span_count(&found.batches), 3);
}
