//! Inputs found by `make fuzz TARGET=block_reader` (docs/fuzzing.md), kept as regression
//! cases: damaged copies of the checked-in v1 fixture block must read as errors (or answers),
//! never a panic, an abort or a lookup that runs for minutes.
//!
//! Damaged data files live in `tests/data/fuzz/block_reader/` (each read with the fixture's
//! meta and bloom); damaged bloom files are built below from the fixture's.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use legato_model::TraceId;
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::memory::InMemory;
use legato_storage::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use legato_storage::{BlockMeta, BlockPaths, BlockReader, Error, ScanOptions, TraceBloom};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/legato-v1/single-tenant/4f1c8a52-6d3e-4b7a-9c0f-2e8d5a1b3c7e"
);
const FOUND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fuzz/block_reader");

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURE).join(file)).unwrap()
}

fn fixture_meta() -> BlockMeta {
    serde_json::from_slice(&fixture("meta.json")).unwrap()
}

async fn reader(meta: &BlockMeta, data: &[u8], bloom: &[u8]) -> BlockReader {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let paths = BlockPaths::new(&meta.tenant_id, meta.block_id);
    for (path, bytes) in [(paths.data(), data), (paths.bloom(), bloom)] {
        store
            .put(&path, PutPayload::from(Bytes::copy_from_slice(bytes)))
            .await
            .unwrap();
    }
    BlockReader::new(store, StorageMetrics::default())
}

/// Trace ids of the intact fixture block.
async fn fixture_traces() -> Vec<TraceId> {
    let meta = fixture_meta();
    let reader = reader(&meta, &fixture("data.parquet"), &fixture("bloom")).await;
    let mut ids = Vec::new();
    reader
        .scan_traces(&meta, |t| {
            ids.push(TraceId(t.trace_id));
            true
        })
        .await
        .unwrap();
    assert_eq!(ids.len(), 20);
    ids
}

/// The bloom header (bloomfilter 3): version (1 byte), bitmap length in bytes (u64 LE), number
/// of hash functions (u32 LE), seed (32 bytes), then the bitmap.
const K_NUM: std::ops::Range<usize> = 9..13;
const HEADER: usize = 45;

#[tokio::test]
async fn damaged_data_files_from_fuzzing_read_as_errors_not_panics() {
    let traces = fixture_traces().await;
    let bloom = fixture("bloom");
    let mut cases = 0;
    for entry in std::fs::read_dir(FOUND).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let mut meta = fixture_meta();
        meta.data_size = data.len() as u64;
        let reader = reader(&meta, &data, &bloom).await;
        // Every read returns (an answer or an error); a panic here would fail the test.
        let mut errors = 0;
        for id in &traces {
            errors += usize::from(reader.find_trace(&meta, id).await.is_err());
        }
        errors += usize::from(reader.scan_traces(&meta, |_| true).await.is_err());
        let fewer = ScanOptions {
            attrs: false,
            extras: false,
            resource: false,
            ..ScanOptions::default()
        };
        errors += usize::from(reader.scan_traces_with(&meta, &fewer, |_| true).await.is_err());
        errors += usize::from(drain(&reader, &meta).await.is_err());
        assert!(
            errors > 0,
            "{}: every read succeeded on a damaged block",
            path.display()
        );
        cases += 1;
    }
    assert!(cases > 0, "no inputs in {FOUND}");
}

/// Reads the whole block through `trace_stream` (the compactor's read): the traces, or the
/// first error.
async fn drain(reader: &BlockReader, meta: &BlockMeta) -> Result<usize, Error> {
    let mut traces = reader.trace_stream(meta).await?;
    let mut n = 0;
    while let Some(trace) = traces.next().await {
        trace?;
        n += 1;
    }
    Ok(n)
}

#[tokio::test]
async fn compactor_stream_of_a_damaged_block_ends_in_an_error_not_a_panic() {
    // Found by the fuzzer: parquet panics decoding this file, and `trace_stream` (the
    // compactor's read) was not guarded, so the panic reached the caller.
    let data = std::fs::read(Path::new(FOUND).join("parquet-fixed-len-byte-array-index.parquet")).unwrap();
    let mut meta = fixture_meta();
    meta.data_size = data.len() as u64;
    let reader = reader(&meta, &data, &fixture("bloom")).await;
    let err = drain(&reader, &meta).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn bloom_with_an_empty_bitmap_is_unreadable() {
    // Found by the fuzzer: a lookup in it divided by zero (a panic inside bloomfilter).
    let mut bloom = fixture("bloom")[..HEADER].to_vec();
    bloom[1..9].copy_from_slice(&0u64.to_le_bytes());
    assert!(TraceBloom::from_bytes(&bloom).is_none());
}

#[tokio::test]
async fn bloom_claiming_billions_of_hash_functions_is_unreadable() {
    // Found by the fuzzer with 8,847,360 hash functions (89 s for one lookup); at 2^32 - 1 and
    // a full bitmap every lookup in the block would run 4 billion hashes.
    let mut bloom = fixture("bloom");
    bloom[K_NUM].copy_from_slice(&u32::MAX.to_le_bytes());
    bloom[HEADER..].fill(0xFF);
    assert!(TraceBloom::from_bytes(&bloom).is_none());
    let meta = fixture_meta();
    let reader = reader(&meta, &fixture("data.parquet"), &bloom).await;
    let id = fixture_traces().await[0];
    let err = reader.find_trace(&meta, &id).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn bloom_with_the_hash_count_build_uses_still_reads() {
    let bloom = fixture("bloom");
    assert_eq!(u32::from_le_bytes(bloom[K_NUM].try_into().unwrap()), 7);
    assert!(TraceBloom::from_bytes(&bloom).is_some());
}

#[tokio::test]
async fn a_footer_that_declares_another_column_type_is_corrupt() {
    // Found by the fuzzer: a damaged footer declared another type for a v1 column, and the
    // scan's row decoder downcast the column and panicked (in Legato's code, under `guarded`).
    let data = std::fs::read(Path::new(FOUND).join("legato-column-type-not-v1.parquet")).unwrap();
    let mut meta = fixture_meta();
    meta.data_size = data.len() as u64;
    let reader = reader(&meta, &data, &fixture("bloom")).await;
    let err = reader.scan_traces(&meta, |_| true).await.unwrap_err();
    let Error::Corrupt { message, .. } = &err else {
        panic!("{err}");
    };
    assert!(message.contains("in legato-v1"), "{message}");
}
