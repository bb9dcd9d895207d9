//! Peak memory of one compaction job, for docs/benchmarks.md (not a test).
//!
//! ```text
//! cargo run --release -p legato-compactor --example compaction_memory -- prepare DIR BLOCKS SPANS_PER_BLOCK
//! cargo run --release -p legato-compactor --example compaction_memory -- compact DIR [PART_SIZE_MIB]
//! ```
//! `prepare` writes BLOCKS level-0 blocks of one tenant and one window into DIR (a local
//! backend); `compact` runs one compaction cycle over them in a fresh process and prints its
//! peak resident memory (VmHWM) next to the size of the block it wrote.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use legato_compactor::{CompactionConfig, Compactor, CompactorDeps, CompactorMetrics};
use legato_model::{BlockId, Clock, SystemClock, TenantId, TraceId};
use legato_proto::common::{AnyValue, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use legato_storage::object_store::local::LocalFileSystem;
use legato_storage::{Blocklist, ObjectStore, TraceInput, encode_block, write_block};

const SPANS_PER_TRACE: usize = 8;
const SERVICES: [&str; 6] = ["frontend", "cart", "checkout", "payment", "shipping", "ad"];
const ROUTES: [&str; 8] = [
    "/api/cart",
    "/api/checkout",
    "/api/products/{id}",
    "/api/recommendations",
    "/api/ads",
    "/api/currency",
    "/api/shipping",
    "/",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn trace(rng: &mut Rng, end: u64) -> TraceInput {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&rng.next().to_be_bytes());
    id[8..].copy_from_slice(&rng.next().to_be_bytes());
    let service = SERVICES[(rng.next() % SERVICES.len() as u64) as usize];
    let start = end - 1_000_000_000 - rng.next() % 1_000_000_000;
    let mut parent: Vec<u8> = Vec::new();
    let spans = (0..SPANS_PER_TRACE)
        .map(|i| {
            let span_id = rng.next().to_be_bytes().to_vec();
            let route = ROUTES[(rng.next() % ROUTES.len() as u64) as usize];
            let begin = start + i as u64 * 1_000_000 + rng.next() % 1_000_000;
            Span {
                trace_id: id.to_vec(),
                span_id: span_id.clone(),
                parent_span_id: std::mem::replace(&mut parent, span_id),
                name: format!("GET {route}"),
                kind: 2,
                start_time_unix_nano: begin,
                end_time_unix_nano: begin + rng.next() % 50_000_000,
                attributes: vec![
                    kv("http.route", Value::StringValue(route.into())),
                    kv(
                        "http.status_code",
                        Value::IntValue(if rng.next().is_multiple_of(50) { 500 } else { 200 }),
                    ),
                    kv("net.peer.port", Value::IntValue((rng.next() % 60_000) as i64)),
                ],
                ..Default::default()
            }
        })
        .collect();
    TraceInput {
        id: TraceId(id),
        batches: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue(service.into()))],
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

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn store(dir: &str) -> Arc<dyn ObjectStore> {
    std::fs::create_dir_all(dir).unwrap();
    Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("prepare") => {
            let store = store(&args[1]);
            let blocks: usize = args[2].parse().unwrap();
            let spans: usize = args[3].parse().unwrap();
            let end = SystemClock.now_nanos() - 10 * 60 * 1_000_000_000;
            let mut rng = Rng(42);
            for b in 0..blocks {
                let traces: Vec<TraceInput> = (0..spans / SPANS_PER_TRACE).map(|_| trace(&mut rng, end)).collect();
                let block = encode_block(&TenantId::single(), BlockId::random(), traces, 1).unwrap();
                write_block(&store, &block).await.unwrap();
                println!(
                    "block {b}: {} spans, {:.1} MiB",
                    block.meta.total_spans,
                    block.meta.data_size as f64 / 1048576.0
                );
            }
        }
        Some("compact") => {
            let store = store(&args[1]);
            let part_size_mib: Option<usize> = args.get(2).map(|a| a.parse().unwrap());
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let deps = CompactorDeps {
                store: store.clone(),
                blocklist: Arc::new(Blocklist::new(
                    legato_storage::DEFAULT_STALE_TENANT_INDEX,
                    clock.clone(),
                )),
                clock,
                retention: legato_compactor::no_retention_overrides(),
                owns: legato_compactor::owns_everything(),
                metrics: CompactorMetrics::default(),
            };
            let config = CompactionConfig {
                max_input_blocks: 64,
                max_compaction_objects: u64::MAX,
                ..CompactionConfig::default()
            };
            let compactor = Compactor::new(deps, config);
            let compactor = match part_size_mib {
                Some(mib) => compactor.with_upload_part_size(mib << 20),
                None => compactor,
            };
            let before = peak_rss_mib();
            let started = Instant::now();
            let stats = compactor.run_cycle().await.unwrap();
            let list = Blocklist::new(std::time::Duration::ZERO, Arc::new(SystemClock));
            list.poll(&store).await.unwrap();
            let out = list.blocks(&TenantId::single());
            println!(
                "compacted {} blocks in {:.1}s: output {} spans, {:.1} MiB; peak RSS {:.0} MiB (at start {:.0} MiB)",
                stats.blocks_compacted,
                started.elapsed().as_secs_f64(),
                out.iter().map(|m| m.total_spans).sum::<u64>(),
                out.iter().map(|m| m.data_size).sum::<u64>() as f64 / 1048576.0,
                peak_rss_mib(),
                before
            );
        }
        _ => eprintln!("usage: compaction_memory prepare DIR BLOCKS SPANS_PER_BLOCK | compact DIR [PART_SIZE_MIB]"),
    }
}
