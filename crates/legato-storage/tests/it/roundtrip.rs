//! Block write → read round trips against the in-memory store and the local filesystem.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;

use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::combine::combine;
use legato_proto::common::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status, span};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::local::LocalFileSystem;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{BlockReader, Blocklist, ObjectStore, TraceInput, encode_block, write_block};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn trace_id(n: u32) -> TraceId {
    let mut b = [7u8; 16];
    b[12..].copy_from_slice(&n.to_be_bytes());
    TraceId(b)
}

/// A trace of `spans` spans in a chain, from two services.
pub(crate) fn trace(n: u32, spans: u8) -> TraceInput {
    let id = trace_id(n);
    let make = |i: u8| Span {
        trace_id: id.0.to_vec(),
        span_id: vec![i + 1, 0, 0, 0, 0, 0, (n % 251) as u8, 1],
        parent_span_id: if i == 0 {
            vec![]
        } else {
            vec![i, 0, 0, 0, 0, 0, (n % 251) as u8, 1]
        },
        name: format!("op-{i}"),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i) * 1000,
        end_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i) * 1000 + 500,
        attributes: vec![
            kv("http.method", Value::StringValue("GET".into())),
            kv("http.status_code", Value::IntValue(200)),
            kv("ratio", Value::DoubleValue(0.5)),
            kv("ok", Value::BoolValue(true)),
            kv(
                "tags",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue("a".into())),
                    }],
                }),
            ),
        ],
        events: if i == 0 {
            vec![span::Event {
                time_unix_nano: 5,
                name: "exception".into(),
                ..Default::default()
            }]
        } else {
            vec![]
        },
        status: Some(Status {
            code: if i == 1 { 2 } else { 0 },
            message: if i == 1 { "boom".into() } else { String::new() },
        }),
        ..Default::default()
    };
    let batch = |service: &str, range: std::ops::Range<u8>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", Value::StringValue(service.into()))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.0".into(),
                ..Default::default()
            }),
            spans: range.map(make).collect(),
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    };
    TraceInput {
        id,
        batches: vec![batch("frontend", 0..spans / 2), batch("backend", spans / 2..spans)],
    }
}

async fn roundtrip(store: Arc<dyn ObjectStore>) {
    let tenant = TenantId::single();
    // Enough traces for several row groups.
    let traces: Vec<TraceInput> = (0..6000).map(|n| trace(n, 6)).collect();
    let expected = traces[1234].clone();
    let block = encode_block(&tenant, BlockId::random(), traces, 1).unwrap();
    assert_eq!(block.meta.total_spans, 36_000);
    assert_eq!(block.meta.total_traces, 6000);
    assert!(block.meta.row_groups > 1, "row groups: {}", block.meta.row_groups);
    write_block(&store, &block).await.unwrap();

    let blocklist = Blocklist::default();
    blocklist.poll(&store).await.unwrap();
    let metas = blocklist.blocks(&tenant);
    assert_eq!(metas.len(), 1);
    assert_eq!(*metas[0], block.meta);

    let reader = BlockReader::new(store.clone(), StorageMetrics::default());
    // 170 straddles a 1024-row read batch; 5461 ends the first row group (cut after the
    // trace holding row 32,768), 5462 starts the second.
    for n in [0u32, 170, 5461, 5462, 5999] {
        let t = trace(n, 6);
        let found = combine(reader.find_trace(&metas[0], &t.id).await.unwrap());
        assert_eq!(found, combine(t.batches), "trace {n}");
    }
    let found = combine(reader.find_trace(&metas[0], &expected.id).await.unwrap());
    let want = combine(expected.batches.clone());
    assert_eq!(found, want);
    // Parent ids come back from row offsets.
    let spans: Vec<&Span> = found
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    assert_eq!(spans.iter().filter(|s| s.parent_span_id.is_empty()).count(), 1);

    assert!(
        reader
            .find_trace(&metas[0], &trace_id(999_999))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn roundtrip_in_memory() {
    roundtrip(Arc::new(InMemory::new())).await;
}

#[tokio::test]
async fn roundtrip_local_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    roundtrip(Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn orphan_parent_ids_are_kept() {
    let mut t = trace(1, 2);
    // The parent of this span is not in the block.
    t.batches[1].scope_spans[0].spans[0].parent_span_id = vec![9; 8];
    let block = encode_block(&TenantId::single(), BlockId::random(), vec![t.clone()], 1).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    write_block(&store, &block).await.unwrap();
    let reader = BlockReader::new(store, StorageMetrics::default());
    let found = combine(reader.find_trace(&block.meta, &t.id).await.unwrap());
    assert_eq!(found, combine(t.batches));
}

/// A block written by the first release of the v1 encoding, checked in: every later build
/// must still read it. Regenerate (only when v1 itself is meant to change, which it is not)
/// with `LEGATO_REGENERATE_FIXTURES=1 cargo test -p legato-storage --test it roundtrip`.
const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legato-v1");
const FIXTURE_BLOCK: &str = "4f1c8a52-6d3e-4b7a-9c0f-2e8d5a1b3c7e";

#[tokio::test]
async fn reads_the_checked_in_v1_fixture_block() {
    let tenant = TenantId::single();
    let traces: Vec<TraceInput> = (0..20).map(|n| trace(n, 4)).collect();
    if std::env::var_os("LEGATO_REGENERATE_FIXTURES").is_some() {
        std::fs::create_dir_all(FIXTURE_DIR).unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(FIXTURE_DIR).unwrap());
        let id = BlockId(FIXTURE_BLOCK.parse().unwrap());
        let block = encode_block(&tenant, id, traces.clone(), 1_700_000_000_000_000_000).unwrap();
        write_block(&store, &block).await.unwrap();
    }
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(FIXTURE_DIR).unwrap());
    let blocklist = Blocklist::default();
    blocklist.poll(&store).await.unwrap();
    let metas = blocklist.blocks(&tenant);
    assert_eq!(metas.len(), 1);
    let meta = &metas[0];
    assert_eq!(meta.encoding, "legato-v1");
    assert_eq!((meta.total_traces, meta.total_spans), (20, 80));
    // meta.json is a contract: its exact shape round-trips.
    let raw = std::fs::read_to_string(format!("{FIXTURE_DIR}/single-tenant/{FIXTURE_BLOCK}/meta.json")).unwrap();
    assert_eq!(serde_json::to_string(meta.as_ref()).unwrap(), raw);
    let reader = BlockReader::new(store, StorageMetrics::default());
    for t in [&traces[0], &traces[7], &traces[19]] {
        let found = combine(reader.find_trace(meta, &t.id).await.unwrap());
        assert_eq!(found, combine(t.batches.clone()));
    }
}

#[tokio::test]
async fn a_block_read_in_parts_holds_each_trace_whole_in_one_part() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // Traces of 3..=9 spans: the groups end wherever a trace ends past 32,768 rows.
    let traces: Vec<TraceInput> = (0..30_000).map(|n| trace(n, 3 + (n % 7) as u8)).collect();
    let block = encode_block(&TenantId::single(), BlockId::random(), traces, 1).unwrap();
    assert!(block.meta.row_groups >= 5, "{}", block.meta.row_groups);
    write_block(&store, &block).await.unwrap();
    let reader = BlockReader::new(store, StorageMetrics::default());
    let columns = [legato_storage::schema::TRACE_ID];
    for wanted in [1, 2, 3, 64] {
        let parts = reader.column_parts(&block.meta, wanted).await.unwrap();
        assert!(!parts.is_empty() && parts.len() <= wanted, "{wanted}: {parts:?}");
        if wanted > 1 {
            assert!(parts.len() > 1, "{wanted}: {parts:?}");
        }
        // Every group once, in order; each trace's rows all in one part.
        let groups: Vec<usize> = parts.iter().flatten().copied().collect();
        assert_eq!(groups, (0..block.meta.row_groups as usize).collect::<Vec<_>>());
        let mut owner = std::collections::HashMap::new();
        let mut rows = 0;
        for (p, part) in parts.iter().enumerate() {
            reader
                .scan_columns(&block.meta, &columns, Some(part), |batch| {
                    use arrow_array::Array;
                    use arrow_array::cast::AsArray;
                    let ids = batch.column(0).as_fixed_size_binary();
                    for row in 0..ids.len() {
                        let id = ids.value(row).to_vec();
                        assert_eq!(*owner.entry(id).or_insert(p), p, "a trace in parts {p} and another");
                    }
                    rows += ids.len() as u64;
                    true
                })
                .await
                .unwrap();
        }
        assert_eq!(rows, block.meta.total_spans);
        assert_eq!(owner.len() as u64, block.meta.total_traces);
    }
}

#[tokio::test]
async fn searches_read_large_row_groups_in_windows_and_rebuild_every_trace_whole() {
    use legato_storage::{Cmp, RowPredicate, ScanOptions, StrTest};
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // Traces of 3..=9 spans in row groups of 32,768+ rows; a search reads the first 8,192
    // rows of the first group, then the rest: a trace may cross that boundary, and batch
    // boundaries.
    let traces: Vec<TraceInput> = (0..12_000).map(|n| trace(n, 3 + (n % 7) as u8)).collect();
    let block = encode_block(&TenantId::single(), BlockId::random(), traces, 1).unwrap();
    assert!(block.meta.row_groups >= 2, "{}", block.meta.row_groups);
    write_block(&store, &block).await.unwrap();
    let reader = BlockReader::new(store, StorageMetrics::default());
    let spans_of = |n: u32| 3 + (n % 7) as usize;
    let number = |t: &legato_model::span::TraceData| u32::from_be_bytes(t.trace_id[12..].try_into().unwrap());

    // Everything: every trace once, in id order, whole.
    let mut seen = Vec::new();
    reader
        .scan_traces(&block.meta, |t| {
            assert_eq!(t.spans.len(), spans_of(number(&t)), "trace {}", number(&t));
            seen.push(number(&t));
            true
        })
        .await
        .unwrap();
    assert_eq!(seen, (0..12_000).collect::<Vec<_>>());

    // Only traces with a 9th span (`op-8`) can match: each is rebuilt whole, and every
    // other trace rebuilt is one kept at a batch or window boundary.
    let options = ScanOptions {
        required: vec![RowPredicate::Name(StrTest::Cmp(Cmp::Eq, "op-8".into()))],
        ..ScanOptions::default()
    };
    let mut matched = Vec::new();
    let mut others = 0;
    reader
        .scan_traces_with(&block.meta, &options, |t| {
            let n = number(&t);
            assert_eq!(t.spans.len(), spans_of(n), "trace {n}");
            match t.spans.iter().any(|s| s.name == "op-8") {
                true => matched.push(n),
                false => others += 1,
            }
            true
        })
        .await
        .unwrap();
    assert_eq!(matched, (0..12_000).filter(|n| n % 7 == 6).collect::<Vec<_>>());
    assert!(others < 100, "{others} traces that cannot match were rebuilt");

    // A scan that stops early stops.
    let mut visited = 0;
    reader
        .scan_traces(&block.meta, |_| {
            visited += 1;
            visited < 10
        })
        .await
        .unwrap();
    assert_eq!(visited, 10);
}
