//! Criterion micro-benchmarks of the hot paths: OTLP decode, block write, block lookup, block
//! scan with a TraceQL-style row predicate. `cargo bench -p legato-storage`. Figures, not tests.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::collector::ExportTraceServiceRequest;
use legato_proto::common::{AnyValue, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{
    BlockReader, Cmp, ObjectStore, RowPredicate, ScanOptions, StrTest, TraceInput, encode_block, write_block,
};
use prost::Message;

const TRACES: u32 = 2000;
const SPANS: u32 = 10;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn traces() -> Vec<TraceInput> {
    (0..TRACES)
        .map(|t| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&t.wrapping_mul(2_654_435_761).to_be_bytes());
            id[12..].copy_from_slice(&t.to_be_bytes());
            let spans = (0..SPANS)
                .map(|i| Span {
                    trace_id: id.to_vec(),
                    span_id: [t.to_be_bytes(), (i + 1).to_be_bytes()].concat(),
                    parent_span_id: if i == 0 {
                        vec![]
                    } else {
                        [t.to_be_bytes(), 1u32.to_be_bytes()].concat()
                    },
                    name: format!("GET /api/{}", i % 4),
                    kind: 2,
                    start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(t) * 1_000_000 + u64::from(i) * 1000,
                    end_time_unix_nano: 1_700_000_000_000_000_000
                        + u64::from(t) * 1_000_000
                        + u64::from(i) * 1000
                        + 500_000,
                    attributes: vec![
                        kv("http.route", &format!("/api/{}", i % 4)),
                        kv("http.method", "GET"),
                        kv("app.user.id", &format!("user-{}", t % 500)),
                        kv("net.peer.name", "cart"),
                    ],
                    status: Some(Status::default()),
                    ..Default::default()
                })
                .collect();
            let batch = ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &format!("svc-{}", t % 10))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                schema_url: String::new(),
            };
            TraceInput {
                id: TraceId(id),
                batches: vec![batch],
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let input = traces();
    let spans = u64::from(TRACES * SPANS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let request = ExportTraceServiceRequest {
        resource_spans: input.iter().take(40).flat_map(|t| t.batches.clone()).collect(),
    };
    let wire = request.encode_to_vec();
    let mut g = c.benchmark_group("otlp");
    g.throughput(Throughput::Elements(40 * u64::from(SPANS)));
    g.bench_function("decode_export_request", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(wire.as_slice()).unwrap())
    });
    // What the distributor does instead of decoding: check every field and cut the export
    // into per-trace segments straight from the wire format.
    g.bench_function("split_by_trace_on_wire", |b| {
        b.iter(|| legato_proto::wire::split_request(wire.as_slice(), 0).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Elements(spans));
    g.sample_size(10);
    g.bench_function("write_20k_spans", |b| {
        b.iter_batched(
            || input.clone(),
            |t| encode_block(&TenantId::single(), BlockId::random(), t, 0).unwrap(),
            BatchSize::LargeInput,
        )
    });
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let block = encode_block(&TenantId::single(), BlockId::random(), input.clone(), 0).unwrap();
    rt.block_on(write_block(&store, &block)).unwrap();
    let reader = BlockReader::new(store, StorageMetrics::default());
    let id = input[777].id;
    rt.block_on(reader.find_trace(&block.meta, &id)).unwrap();
    g.bench_function("scan_service_name_no_match", |b| {
        let options = ScanOptions {
            required: vec![RowPredicate::ServiceName(StrTest::Cmp(Cmp::Eq, "nope".into()))],
            ..ScanOptions::default()
        };
        b.iter(|| {
            rt.block_on(reader.scan_traces_with(&block.meta, &options, |_| true))
                .unwrap()
        })
    });
    g.bench_function("scan_full_rebuild", |b| {
        b.iter(|| rt.block_on(reader.scan_traces(&block.meta, |_| true)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1));
    g.bench_function("find_trace_warm", |b| {
        b.iter(|| rt.block_on(reader.find_trace(&block.meta, &id)).unwrap())
    });
    g.finish();
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);
