//! Streamed block uploads (issue #10): the data file goes up in parts while it is encoded,
//! byte for byte what the in-memory writer produces; a failed upload leaves no data file.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::common::{AnyValue, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use legato_storage::fault::{FaultConfig, FaultStore};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::ObjectStoreExt;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{
    BlockPaths, BlockReader, BlockWriter, Blocklist, ObjectStore, OpLabels, RowGroups, SealedBlock, TraceBloom,
    TraceInput, commit_block, instrument, seal_streamed, start_block_upload,
};

fn trace(n: u32) -> TraceInput {
    let mut id = [5u8; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    let spans = (0..4u8)
        .map(|i| Span {
            trace_id: id.to_vec(),
            span_id: vec![i + 1, 0, 0, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 1],
            name: format!("op-{}", (n + u32::from(i)) % 17),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n) * 1000 + u64::from(i),
            end_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n) * 1000 + 500,
            attributes: vec![KeyValue {
                key: "http.route".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(format!("/r/{}", n % 97))),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    TraceInput {
        id: TraceId(id),
        batches: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue("svc".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

const TRACES: u32 = 20_000;

/// Encodes the test traces into a streamed block on a blocking thread.
async fn stream_block(
    store: &Arc<dyn ObjectStore>,
    block: BlockId,
    part_size: usize,
) -> legato_storage::Result<SealedBlock> {
    let tenant = TenantId::single();
    let (mut writer, upload) = start_block_upload(store, &tenant, block, part_size)?;
    let encoded = tokio::task::spawn_blocking(move || {
        for n in 0..TRACES {
            writer.push(&trace(n))?;
        }
        seal_streamed(writer, 7)
    })
    .await
    .unwrap();
    upload.conclude(encoded).await
}

fn requests(metrics: &StorageMetrics, op: &str) -> u64 {
    metrics
        .object_store_requests
        .get_or_create(&OpLabels { op: op.into() })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_block_is_the_in_memory_block_uploaded_in_parts() {
    let tenant = TenantId::single();
    let block = BlockId::random();
    let mut in_memory = BlockWriter::new(&tenant, block, RowGroups::COMPACTED).unwrap();
    for n in 0..TRACES {
        in_memory.push(&trace(n)).unwrap();
    }
    let expected = in_memory.finish(7).unwrap();
    assert!(expected.meta.row_groups >= 2, "{}", expected.meta.row_groups);

    for part_size in [64 << 10, 1 << 20, 64 << 20] {
        let metrics = StorageMetrics::default();
        let store = instrument(Arc::new(InMemory::new()), &metrics);
        let sealed = stream_block(&store, block, part_size).await.unwrap();
        assert_eq!(
            format!("{:?}", sealed.meta),
            format!("{:?}", expected.meta),
            "part size {part_size}"
        );
        // Blooms are keyed at random: same size, same members.
        assert_eq!(sealed.bloom.len(), expected.bloom.len());
        let bloom = TraceBloom::from_bytes(&sealed.bloom).unwrap();
        assert!((0..TRACES).all(|n| bloom.may_contain(&trace(n).id)));
        let data = store
            .get(&BlockPaths::new(&tenant, block).data())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(data == expected.data, "the same bytes, part size {part_size}");

        let size = expected.data.len();
        let parts = size.div_ceil(part_size) as u64;
        if size >= part_size {
            assert_eq!(requests(&metrics, "put_multipart"), 1);
            assert_eq!(
                requests(&metrics, "put_part"),
                parts,
                "{size} bytes in parts of {part_size}"
            );
            assert_eq!(requests(&metrics, "complete_multipart"), 1);
            assert_eq!(requests(&metrics, "put"), 0);
        } else {
            assert_eq!(requests(&metrics, "put_multipart"), 0, "smaller than a part: one PUT");
            assert_eq!(requests(&metrics, "put"), 1);
        }

        // Committed, it reads back like any block.
        commit_block(&store, &sealed).await.unwrap();
        let list = Blocklist::default();
        list.poll(&store).await.unwrap();
        let metas = list.blocks(&tenant);
        assert_eq!(metas.len(), 1);
        let reader = BlockReader::new(store.clone(), StorageMetrics::default());
        let found = reader.find_trace(&metas[0], &trace(12_345).id).await.unwrap();
        assert_eq!(found.iter().map(|rs| rs.scope_spans[0].spans.len()).sum::<usize>(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_stops_encoding_and_leaves_no_data_file() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // Every write fails once the upload has started: the third part is refused.
    let faults = FaultStore::new(
        inner.clone(),
        FaultConfig {
            halt_after_writes: Some(2),
            ..FaultConfig::default()
        },
    );
    let store: Arc<dyn ObjectStore> = faults.clone();
    let block = BlockId::random();
    let err = stream_block(&store, block, 64 << 10).await.unwrap_err();
    assert!(err.to_string().contains("data.parquet"), "{err}");
    assert!(err.is_retryable(), "{err}");
    let path = BlockPaths::new(&TenantId::single(), block).data();
    assert!(
        inner.head(&path).await.is_err(),
        "no data file: the upload was never completed"
    );
    assert!(faults.stats().halted > 0, "{:?}", faults.stats());

    // A stalled store only slows the upload down.
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let slow: Arc<dyn ObjectStore> =
        FaultStore::new(inner.clone(), FaultConfig::flaky(0.0, 0.5, Duration::from_millis(5), 3));
    stream_block(&slow, block, 64 << 10).await.unwrap();
    assert!(inner.head(&path).await.is_ok());
}
