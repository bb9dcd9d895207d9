//! WAL append throughput with group commit: N concurrent 4 KiB appends share fsyncs.
//! `cargo bench -p legato-ingester`. Figures, not tests.
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use legato_ingester::Wal;
use legato_ingester::metrics::IngesterMetrics;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = Wal::open(
        dir.path(),
        std::sync::Arc::new(legato_ingester::wal::StdFs),
        IngesterMetrics::default(),
    )
    .unwrap();
    let payload = vec![7u8; 4096];
    let mut g = c.benchmark_group("wal");
    for concurrent in [1usize, 16, 64] {
        g.throughput(Throughput::Bytes((payload.len() * concurrent) as u64));
        g.bench_function(format!("append_4k_x{concurrent}_durable"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let pending: Vec<_> = (0..concurrent).map(|_| wal.append(payload.clone())).collect();
                    for p in pending {
                        p.wait().await.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(wal_benches, benches);
criterion_main!(wal_benches);
