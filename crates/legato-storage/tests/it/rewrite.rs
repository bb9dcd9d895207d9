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
    let mut stream = reader.trace_stream(&block.meta).await.unwrap();
    let mut read = Vec::new();
    while let Some(t) = stream.next().await {
        read.push(t.unwrap());
    }
    assert_eq!(read.len(), traces.len());
    for (got, want) in read.iter().zip(&traces) {
        assert_eq!(got.id, want.id);
        assert_eq!(
            combine(got.batches.clone()),
            combine(want.batches.clone()),
            "trace {}",
            got.id
        );
    }
}
