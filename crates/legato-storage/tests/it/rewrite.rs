//! `BlockReader::trace_stream`: every trace of a block, once, at full fidelity, including
//! traces that straddle Parquet batches and row groups.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use futures::StreamExt;
use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::combine::combine;
use legato_proto::common::{AnyValue, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{BlockReader, ObjectStore, TraceInput, encode_block, write_block};

fn trace(n: u32, spans: u8) -> TraceInput {
    let mut id = [1u8; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    let span_id = |i: u8| vec![i + 1, 0, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 0, 1];
    let batch = |service: &str, range: std::ops::Range<u8>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(service.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: range
                .map(|i| Span {
                    trace_id: id.to_vec(),
                    span_id: span_id(i),
                    parent_span_id: if i == 0 { vec![] } else { span_id(i - 1) },
                    name: format!("op-{i}"),
                    kind: 1,
                    start_time_unix_nano: 1_000 + u64::from(i),
                    end_time_unix_nano: 2_000,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    TraceInput {
        id: TraceId(id),
        batches: vec![batch("front", 0..spans / 2), batch("back", spans / 2..spans)],
    }
}

#[tokio::test]
async fn streams_every_trace_once_across_batches_and_row_groups() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::single();
    // 7 spans per trace against 2048-row batches: many traces straddle them; and more than
    // one row group (32,768 rows each).
    let traces: Vec<TraceInput> = (0..5000).map(|n| trace(n, 7)).collect();
    let block = encode_block(&tenant, BlockId::random(), traces.clone(), 1).unwrap();
    assert!(block.meta.row_groups > 1);
    write_block(&store, &block).await.unwrap();
    let reader = BlockReader::new(store, StorageMetrics::default());
    assert_same_traces(&read_all(&reader, &block.meta).await, &traces);
}

/// The same traces, in the same order, with the same spans.
fn assert_same_traces(got: &[TraceInput], want: &[TraceInput]) {
    assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(want) {
        assert_eq!(got.id, want.id);
        assert_eq!(
            combine(got.batches.clone()),
            combine(want.batches.clone()),
            "trace {}",
            got.id
        );
    }
}

/// Every trace of a block read back in full, in id order.
async fn read_all(reader: &BlockReader, meta: &legato_storage::BlockMeta) -> Vec<TraceInput> {
    let mut stream = reader.trace_stream(meta).await.unwrap();
    let mut out = Vec::new();
    while let Some(t) = stream.next().await {
        out.push(t.unwrap());
    }
    out
}

#[tokio::test]
async fn rows_copied_from_other_blocks_make_the_block_their_spans_would() {
    use legato_storage::{BlockWriter, RowGroups};
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::single();
    let reader = BlockReader::new(store.clone(), StorageMetrics::default());
    // Two inputs over interleaved ids (as flushed blocks are), traces of 1-9 spans straddling
    // their 2048-row batches.
    let rich = |n: u32| super::roundtrip::trace(n, (n % 9 + 1) as u8);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for n in 0..3000 {
        if n % 3 == 0 { b.push(rich(n)) } else { a.push(rich(n)) }
    }
    let mut inputs = Vec::new();
    for traces in [a, b] {
        let block = encode_block(&tenant, BlockId::random(), traces, 1).unwrap();
        write_block(&store, &block).await.unwrap();
        inputs.push(block.meta);
    }
    // Copy rows from both, every fifth trace of `a` pushed as decoded spans instead, so copied
    // and built rows alternate within encode batches.
    let mut rows = Vec::new();
    for meta in &inputs {
        let mut stream = reader.trace_rows(meta).await.unwrap();
        while let Some(t) = stream.next().await {
            rows.push(t.unwrap());
        }
    }
    rows.sort_by_key(|r| r.id);
    let groups = RowGroups {
        spans: 4096,
        ..RowGroups::COMPACTED
    };
    let mut writer = BlockWriter::with_sink(&tenant, BlockId::random(), Vec::new(), groups).unwrap();
    for (i, r) in rows.iter().enumerate() {
        if i % 5 == 0 {
            writer.push(&r.to_input().unwrap()).unwrap();
        } else {
            writer.push_rows(r).unwrap();
        }
    }
    let (sealed, data) = writer.finish_into_sink(1).unwrap();
    // The same traces encoded from spans.
    let all: Vec<TraceInput> = (0..3000).map(rich).collect();
    let want = encode_block(&tenant, BlockId::random(), all.clone(), 1).unwrap();
    assert_eq!(sealed.meta.total_traces, 3000);
    assert_eq!(sealed.meta.total_spans, want.meta.total_spans);
    assert_eq!(sealed.meta.start_time_unix_nano, want.meta.start_time_unix_nano);
    assert_eq!(sealed.meta.end_time_unix_nano, want.meta.end_time_unix_nano);
    assert!(sealed.meta.row_groups > 1, "{} row groups", sealed.meta.row_groups);
    let bloom = legato_storage::TraceBloom::from_bytes(&sealed.bloom).unwrap();
    assert!(want.meta.total_traces == 3000 && (0..3000).all(|n| bloom.may_contain(&rich(n).id)));
    let copied = legato_storage::WrittenBlock {
        meta: sealed.meta.clone(),
        data: data.into(),
        bloom: sealed.bloom.clone(),
        tags: None,
    };
    write_block(&store, &copied).await.unwrap();
    assert_same_traces(&read_all(&reader, &copied.meta).await, &all);
    // Lookups and row-group splits rely on each group ending after a whole trace.
    for want in all.iter().step_by(97) {
        let found = reader.find_trace(&copied.meta, &want.id).await.unwrap();
        assert_eq!(combine(found), combine(want.batches.clone()), "lookup of {}", want.id);
    }
}
