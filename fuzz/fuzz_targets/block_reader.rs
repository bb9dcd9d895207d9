//! The block reader over a damaged `data.parquet` (or `bloom`): every read gives spans or an
//! `Err`, never a panic or an abort.
//!
//! Reads through `find_trace`, `scan_traces`, `scan_traces_with` and `trace_stream` (the
//! compactor's). They catch panics (`guarded` in legato-storage's reader.rs) and turn them
//! into `Error::Corrupt`. libfuzzer-sys installs a panic hook that aborts before any
//! unwinding, so a panic underneath that guard still stops the run here and is reported as a
//! crash. One exception: a panic raised inside the `parquet` crate itself (a bug there, not in
//! Legato) is printed once per source location, its input kept, and then left to unwind: into
//! `guarded`, which makes it an error, or, if a read is not guarded, out of this function,
//! which libfuzzer-sys reports as a crash. So the run goes on looking for Legato's own panics.
//! `LEGATO_FUZZ_STRICT=1` aborts on parquet's too (for `-minimize_crash`).
//!
//! Input: the bytes of `data.parquet`, read with the fixture block's meta and bloom; or
//! `BLOOM` followed by the bytes of `bloom`, read with the fixture's data file.
#![no_main]

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use legato_model::TraceId;
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::memory::InMemory;
use legato_storage::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use legato_storage::{BlockMeta, BlockPaths, BlockReader, ScanOptions};
use libfuzzer_sys::fuzz_target;

macro_rules! fixture {
    ($file:literal) => {
        include_bytes!(concat!(
            "../../crates/legato-storage/tests/fixtures/legato-v1/single-tenant/",
            "4f1c8a52-6d3e-4b7a-9c0f-2e8d5a1b3c7e/",
            $file
        ))
    };
}

const DATA: &[u8] = fixture!("data.parquet");
const BLOOM: &[u8] = fixture!("bloom");
const META: &[u8] = fixture!("meta.json");

struct Fixture {
    rt: tokio::runtime::Runtime,
    meta: BlockMeta,
    traces: Vec<TraceId>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    if std::env::var_os("LEGATO_FUZZ_STRICT").is_none() {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !raised_in_parquet() {
                return fuzzer_hook(info);
            }
            let at = info.location().map(|l| l.to_string()).unwrap_or_default();
            if PARQUET_PANICS
                .lock()
                .map(|mut seen| seen.insert(at.clone()))
                .unwrap_or(false)
            {
                eprintln!("block_reader: parquet panicked at {at}: {info}");
                keep_input(&at);
            }
        }));
    }
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let meta: BlockMeta = serde_json::from_slice(META).expect("fixture meta.json");
    let traces = rt.block_on(async {
        let reader = BlockReader::new(store(&meta, DATA, BLOOM).await, StorageMetrics::default());
        let mut ids = Vec::new();
        reader
            .scan_traces(&meta, |t| {
                ids.push(TraceId(t.trace_id));
                true
            })
            .await
            .expect("fixture block reads");
        ids
    });
    assert!(!traces.is_empty(), "fixture block has traces");
    Fixture { rt, meta, traces }
});

static PARQUET_PANICS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Whether the innermost frame of the panicking thread that lies in Legato's source or in the
/// `parquet` crate's lies in `parquet`'s (frames of arrow, std or futures in between are
/// skipped). Decided by the frames' source paths: inlined frames have short symbol names.
fn raised_in_parquet() -> bool {
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    // Frames before std's panic entry point are this hook's own.
    let frames = trace.lines().skip_while(|line| !line.contains("panic_with_hook"));
    for line in frames {
        let line = line.trim_start();
        if !line.starts_with("at ") {
            continue;
        }
        if line.contains("/crates/legato-") || line.contains("/fuzz_targets/") {
            return false;
        }
        if line.contains("/parquet-") {
            return true;
        }
    }
    false
}

thread_local! {
    static INPUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes the input that made `parquet` panic at a new place next to libFuzzer's crash
/// artifacts (`-artifact_prefix`), as `parquet-panic-<hash>`, for a regression test.
fn keep_input(at: &str) {
    let Some(prefix) = std::env::args().find_map(|a| a.strip_prefix("-artifact_prefix=").map(str::to_owned)) else {
        return;
    };
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(at, &mut hasher);
    let path = format!("{prefix}parquet-panic-{:016x}", std::hash::Hasher::finish(&hasher));
    INPUT.with(|input| match std::fs::write(&path, &*input.borrow()) {
        Ok(()) => eprintln!("block_reader: input written to {path}"),
        Err(e) => eprintln!("block_reader: writing {path}: {e}"),
    });
}

async fn store(meta: &BlockMeta, data: &[u8], bloom: &[u8]) -> Arc<dyn ObjectStore> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let paths = BlockPaths::new(&meta.tenant_id, meta.block_id);
    for (path, bytes) in [(paths.data(), data), (paths.bloom(), bloom)] {
        store
            .put(&path, PutPayload::from(Bytes::copy_from_slice(bytes)))
            .await
            .expect("in-memory put");
    }
    store
}

fuzz_target!(|input: &[u8]| {
    let f = &*FIXTURE;
    INPUT.with(|i| {
        let mut i = i.borrow_mut();
        i.clear();
        i.extend_from_slice(input);
    });
    let (data, bloom) = match input.strip_prefix(b"BLOOM") {
        Some(bloom) => (DATA, bloom),
        None => (input, BLOOM),
    };
    let mut meta = f.meta.clone();
    meta.data_size = data.len() as u64;
    meta.bloom_size = bloom.len() as u64;
    let trace = f.traces[input.len() % f.traces.len()];
    f.rt.block_on(async {
        let reader = BlockReader::new(store(&meta, data, bloom).await, StorageMetrics::default());
        let _ = reader.find_trace(&meta, &trace).await;
        let _ = reader.scan_traces(&meta, |_| true).await;
        // A projected scan reads fewer columns: another path through the footer and pages.
        let fewer = ScanOptions {
            required: Vec::new(),
            attrs: false,
            extras: false,
            resource: false,
        };
        let _ = reader.scan_traces_with(&meta, &fewer, |_| true).await;
        // The compactor's read: every trace at full fidelity, streamed.
        if let Ok(mut traces) = reader.trace_stream(&meta).await {
            while let Some(Ok(_)) = traces.next().await {}
        }
    });
});
