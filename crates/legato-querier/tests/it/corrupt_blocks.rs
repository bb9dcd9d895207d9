//! Issue 10: a corrupted or truncated block file is an error for that block, never a panic.
//! Mutates a real block's data and bloom files many ways (bit flips, overwritten runs,
//! truncation, garbage appended) and reads each one with a fresh reader, through trace-by-id
//! and a full scan. `LEGATO_FUZZ_CASES` raises the number of cases for longer runs.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::common::{AnyValue, KeyValue, any_value::Value};
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::memory::InMemory;
use legato_storage::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use legato_storage::{BlockPaths, BlockReader, TraceInput, encode_block};

fn trace(n: u8) -> TraceInput {
    let spans = (0..20u8)
        .map(|i| Span {
            trace_id: vec![n; 16],
            span_id: vec![n, i, 1, 2, 3, 4, 5, 6],
            name: format!("op-{}", i % 3),
            start_time_unix_nano: 1_000 + u64::from(i),
            end_time_unix_nano: 2_000 + u64::from(i),
            attributes: vec![KeyValue {
                key: "http.route".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(format!("/r/{i}"))),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    TraceInput {
        id: TraceId([n; 16]),
        batches: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    match rng.below(5) {
        0 => {
            for _ in 0..=rng.below(8) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let at = rng.below(bytes.len());
            let len = rng.below(64).min(bytes.len() - at);
            for b in &mut bytes[at..at + len] {
                *b = rng.next() as u8;
            }
        }
        2 => bytes.truncate(rng.below(bytes.len())),
        3 => bytes.extend((0..rng.below(256)).map(|_| rng.next() as u8)),
        _ => {
            // Damage the footer region, where Parquet's metadata lives.
            let tail = bytes.len().saturating_sub(rng.below(256) + 1);
            let at = tail + rng.below(bytes.len() - tail);
            bytes[at] = rng.next() as u8;
        }
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_block_files_give_errors_not_panics() {
    let tenant = TenantId::single();
    let block = encode_block(&tenant, BlockId::random(), (1..=30).map(trace).collect(), 0).unwrap();
    let paths = BlockPaths::new(&tenant, block.meta.block_id);
    let cases: u64 = std::env::var("LEGATO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut errors, mut answers) = (0u64, 0u64);
    for case in 0..cases {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (data, bloom) = if case % 4 == 3 {
            (block.data.to_vec(), mutate(&mut rng, &block.bloom))
        } else {
            (mutate(&mut rng, &block.data), block.bloom.to_vec())
        };
        store
            .put(&paths.data(), PutPayload::from(Bytes::from(data)))
            .await
            .unwrap();
        store
            .put(&paths.bloom(), PutPayload::from(Bytes::from(bloom)))
            .await
            .unwrap();
        let reader = BlockReader::new(store, StorageMetrics::default());
        let id = TraceId([1 + (case % 30) as u8; 16]);
        match reader.find_trace(&block.meta, &id).await {
            Ok(_) => answers += 1,
            Err(_) => errors += 1,
        }
        match reader.scan_traces(&block.meta, |_| true).await {
            Ok(_) => answers += 1,
            Err(_) => errors += 1,
        }
    }
    eprintln!("{cases} mutated blocks: {errors} errors, {answers} answers, no panic");
    assert!(errors > 0, "mutations should break some reads");
}
