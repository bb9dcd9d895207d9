//! Test helpers: blocks of known traces, a store that counts listings and fails chosen
//! writes (a crash at that step), and "every trace visible exactly once" checks.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::stream::BoxStream;
use legato_compactor::{
    CompactionConfig, Compactor, CompactorDeps, CompactorMetrics, Ownership, RetentionLookup, no_retention_overrides,
    owns_everything,
};
use legato_model::{BlockId, Clock, ManualClock, SystemClock, TenantId, TraceId};
use legato_proto::common::{AnyValue, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::path::Path;
use legato_storage::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions, PutOptions,
    PutPayload, PutResult,
};
use legato_storage::{BlockMeta, BlockReader, Blocklist, ObjectStore, TraceInput, encode_block, write_block};
use parking_lot::Mutex;

pub const MINUTE: u64 = 60 * 1_000_000_000;
pub const HOUR: u64 = 60 * MINUTE;

/// A clock starting at the real time (object modification times are real).
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now_nanos()))
}

pub fn trace_id(n: u32) -> TraceId {
    let mut b = [3u8; 16];
    b[12..].copy_from_slice(&n.to_be_bytes());
    TraceId(b)
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Trace `n` with `spans` spans in a chain ending at `end` (Unix nanoseconds).
pub fn trace(n: u32, spans: u8, end: u64) -> TraceInput {
    let id = trace_id(n);
    let span_id = |i: u8| vec![i + 1, 0, 0, 0, (n >> 8) as u8, n as u8, 9, 9];
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: id.0.to_vec(),
            span_id: span_id(i),
            parent_span_id: if i == 0 { vec![] } else { span_id(i - 1) },
            name: format!("op-{i}"),
            kind: 2,
            start_time_unix_nano: end - 1000 + u64::from(i),
            end_time_unix_nano: end,
            attributes: vec![kv("http.route", &format!("/r/{i}"))],
            ..Default::default()
        })
        .collect();
    TraceInput {
        id,
        batches: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "svc")],
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

/// Encodes and uploads a level-0 block of `traces`.
pub async fn put_block(store: &Arc<dyn ObjectStore>, tenant: &TenantId, traces: Vec<TraceInput>) -> BlockMeta {
    let block = encode_block(tenant, BlockId::random(), traces, 1).unwrap();
    write_block(store, &block).await.unwrap();
    block.meta
}

pub struct Setup {
    pub store: Arc<dyn ObjectStore>,
    pub clock: Arc<ManualClock>,
    pub config: CompactionConfig,
    pub retention: RetentionLookup,
    pub retention_policies: legato_compactor::RetentionPoliciesLookup,
    pub owns: Ownership,
    /// Part size of the compactor's streamed uploads.
    pub part_size: usize,
}

impl Setup {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            clock: clock(),
            config: CompactionConfig::default(),
            retention: no_retention_overrides(),
            retention_policies: Arc::new(|_| Vec::new()),
            owns: owns_everything(),
            part_size: legato_storage::DEFAULT_PART_SIZE,
        }
    }

    pub fn compactor(&self) -> Arc<Compactor> {
        self.compactor_sharing(Arc::new(Blocklist::new(
            legato_storage::DEFAULT_STALE_TENANT_INDEX,
            self.clock.clone(),
        )))
    }

    /// A compactor that updates `blocklist` (a single binary's, shared with its readers).
    pub fn compactor_sharing(&self, blocklist: Arc<Blocklist>) -> Arc<Compactor> {
        let deps = CompactorDeps {
            store: self.store.clone(),
            blocklist,
            clock: self.clock.clone(),
            retention: self.retention.clone(),
            owns: self.owns.clone(),
            metrics: CompactorMetrics::default(),
        };
        Arc::new(
            Compactor::new(deps, self.config.clone())
                .with_upload_part_size(self.part_size)
                .with_retention_policies(self.retention_policies.clone()),
        )
    }

    /// A reader's blocklist, as a querier in another process would poll it.
    pub async fn fresh_blocklist(&self) -> Blocklist {
        let list = Blocklist::new(legato_storage::DEFAULT_STALE_TENANT_INDEX, self.clock.clone());
        list.poll(&self.store).await.unwrap();
        list
    }
}

/// How many visible blocks hold each trace (must be 1 for every stored trace).
pub async fn visible_copies(store: &Arc<dyn ObjectStore>, blocks: &[Arc<BlockMeta>]) -> BTreeMap<TraceId, usize> {
    let reader = BlockReader::new(store.clone(), StorageMetrics::default());
    let mut copies = BTreeMap::new();
    for meta in blocks {
        let mut stream = reader.trace_stream(meta).await.unwrap();
        while let Some(trace) = stream.next().await {
            *copies.entry(trace.unwrap().id).or_insert(0) += 1;
        }
    }
    copies
}

pub fn assert_each_once(copies: &BTreeMap<TraceId, usize>, expected: impl IntoIterator<Item = u32>) {
    let expected: HashSet<TraceId> = expected.into_iter().map(trace_id).collect();
    let seen: HashSet<TraceId> = copies.keys().copied().collect();
    assert_eq!(seen, expected, "the visible traces");
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "traces visible more than once: {twice:?}");
}

/// Paths of every object under `prefix`.
pub async fn objects(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    let prefix = Path::from(prefix);
    let mut out: Vec<String> = store
        .list(Some(&prefix))
        .map(|o| o.unwrap().location.to_string())
        .collect()
        .await;
    out.sort();
    out
}

/// Wraps a store: counts listings and fails puts whose key ends with a chosen suffix, before
/// the write (a crash before it) or after it (the write landed, the answer was lost).
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    pub lists: AtomicUsize,
    pub fail_puts_ending_with: Mutex<Option<String>>,
    pub lose_puts_ending_with: Mutex<Option<String>>,
    /// Every object written (single and multipart puts), in order.
    pub puts: Mutex<Vec<String>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            lists: AtomicUsize::new(0),
            fail_puts_ending_with: Mutex::new(None),
            lose_puts_ending_with: Mutex::new(None),
            puts: Mutex::new(Vec::new()),
        })
    }

    pub fn fail_puts(&self, suffix: Option<&str>) {
        *self.fail_puts_ending_with.lock() = suffix.map(str::to_string);
    }

    /// Puts of keys ending with `suffix` land, but their caller gets an error.
    pub fn lose_puts(&self, suffix: Option<&str>) {
        *self.lose_puts_ending_with.lock() = suffix.map(str::to_string);
    }

    pub fn list_calls(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if let Some(suffix) = self.fail_puts_ending_with.lock().as_deref()
            && location.as_ref().ends_with(suffix)
        {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("simulated crash writing {location}").into(),
            });
        }
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.puts.lock().push(location.to_string());
        if let Some(suffix) = self.lose_puts_ending_with.lock().as_deref()
            && location.as_ref().ends_with(suffix)
        {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("simulated lost answer writing {location}").into(),
            });
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.puts.lock().push(location.to_string());
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        if prefix.is_some() {
            self.lists.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
