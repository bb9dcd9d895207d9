//! The querier: answers trace-by-id by combining what ingesters hold with every backend block
//! whose bloom filter may contain the trace, deduplicating spans. Keeps the blocklist fresh by
//! polling object storage.
//!
//! It does not parse HTTP (api crate) nor write blocks (ingester, compactor).

pub mod metrics;
pub mod metrics_columns;
pub mod prefilter;
mod search;

pub use prefilter::{metrics_scan_options, scan_options};

pub use search::{
    CopyKey, MetricsRequest, MetricsScope, Pieces, SearchOutcome, SearchRequest, SearchSnapshot, TagFilter,
    overlap_groups,
};

/// Which part of the data a query job covers: block shard `shard` of `shards` (blocks are
/// assigned by id), and whether to include recent data (what ingesters hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobScope {
    pub shard: u32,
    pub shards: u32,
    pub recent: bool,
    pub blocks: bool,
}

impl JobScope {
    /// Everything this querier can see.
    pub const ALL: JobScope = JobScope {
        shard: 0,
        shards: 1,
        recent: true,
        blocks: true,
    };

    pub fn covers(&self, meta: &legato_storage::BlockMeta) -> bool {
        self.blocks && (self.shards <= 1 || (meta.block_id.0.as_u128() % u128::from(self.shards)) as u32 == self.shard)
    }
}

/// Runs trace lookups and searches as jobs on other nodes (the query frontend's side).
#[async_trait::async_trait]
pub trait Fanout: Send + Sync + 'static {
    async fn find_trace(
        &self,
        tenant: &TenantId,
        id: &TraceId,
        start: Option<u64>,
        end: Option<u64>,
    ) -> Result<FoundTrace, QueryError>;

    async fn search(&self, tenant: &TenantId, req: SearchRequest) -> Result<SearchOutcome, QueryError>;

    async fn metrics(
        &self,
        tenant: &TenantId,
        req: MetricsRequest,
    ) -> Result<(Vec<legato_traceql::metrics::Series>, SearchOutcome), QueryError>;
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use legato_model::{TenantId, TraceId};
use legato_proto::combine::combine;
use legato_proto::push::RecentTraces;
use legato_proto::trace::ResourceSpans;
use legato_storage::{BlockReader, Blocklist};
use tokio_util::sync::CancellationToken;

use metrics::QuerierMetrics;

/// Blocks read concurrently for one trace lookup.
const BLOCK_CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("query job failed: {0}")]
    Job(String),
    #[error("query cancelled: the client went away or the query timeout passed")]
    Cancelled,
    /// A per-query limit was reached; the message names the limit and its key.
    #[error("{0}")]
    Limit(String),
    #[error("reading block {block} failed: {source}")]
    Block {
        block: String,
        source: legato_storage::Error,
    },
}

/// A combined trace and what it took to find it.
#[derive(Debug, Default)]
pub struct FoundTrace {
    pub batches: Vec<ResourceSpans>,
    pub blocks_inspected: u64,
}

pub struct Querier {
    recent: Vec<Arc<dyn RecentTraces>>,
    reader: Arc<BlockReader>,
    blocklist: Arc<Blocklist>,
    metrics: QuerierMetrics,
    fanout: Option<Arc<dyn Fanout>>,
    /// `querier.search.max_recent_bytes`: held (ingester) data one query may read; 0 = no limit.
    max_recent_bytes: u64,
    /// Tag summaries of blocks, computed on first use.
    tag_cache:
        parking_lot::Mutex<std::collections::HashMap<legato_model::BlockId, Arc<legato_traceql::tags::TagSummary>>>,
}

impl Querier {
    pub fn new(
        recent: Vec<Arc<dyn RecentTraces>>,
        reader: Arc<BlockReader>,
        blocklist: Arc<Blocklist>,
        metrics: QuerierMetrics,
    ) -> Self {
        Self {
            recent,
            reader,
            blocklist,
            metrics,
            fanout: None,
            max_recent_bytes: 0,
            tag_cache: Default::default(),
        }
    }

    /// Bounds the bytes of held (ingester) data one search, metrics or tag query may read.
    pub fn with_max_recent_bytes(mut self, max: u64) -> Self {
        self.max_recent_bytes = max;
        self
    }

    /// Runs trace lookups and searches through `fanout` instead of locally.
    pub fn with_fanout(mut self, fanout: Arc<dyn Fanout>) -> Self {
        self.fanout = Some(fanout);
        self
    }

    pub fn blocklist(&self) -> &Arc<Blocklist> {
        &self.blocklist
    }

    /// Finds a trace. `start`/`end` (Unix seconds) prune blocks by time only.
    pub async fn find_trace(
        &self,
        tenant: &TenantId,
        id: &TraceId,
        start: Option<u64>,
        end: Option<u64>,
    ) -> Result<FoundTrace, QueryError> {
        match &self.fanout {
            Some(fanout) => fanout.find_trace(tenant, id, start, end).await,
            None => self.find_trace_scoped(tenant, id, start, end, JobScope::ALL).await,
        }
    }

    /// Finds the spans of a trace within part of the data (one job of a fanned-out lookup).
    pub async fn find_trace_scoped(
        &self,
        tenant: &TenantId,
        id: &TraceId,
        start: Option<u64>,
        end: Option<u64>,
        scope: JobScope,
    ) -> Result<FoundTrace, QueryError> {
        let started = Instant::now();
        let mut parts: Vec<ResourceSpans> = Vec::new();
        for source in self.recent.iter().filter(|_| scope.recent) {
            parts.extend(source.find_trace(tenant, id).await);
        }
        let blocks: Vec<_> = self
            .blocklist
            .blocks(tenant)
            .into_iter()
            .filter(|m| m.overlaps_seconds(start, end) && scope.covers(m))
            .collect();
        let inspected = blocks.len() as u64;
        let mut results = futures::stream::iter(blocks)
            .map(|meta| {
                let reader = self.reader.clone();
                async move {
                    let found = reader.find_trace(&meta, id).await;
                    (meta, found)
                }
            })
            .buffer_unordered(BLOCK_CONCURRENCY);
        // An unreadable block (corrupt, or failing after the store's retries) is skipped,
        // logged and counted like in search; but "not found" is only answered when every
        // candidate block was read, so a lookup never turns a read error into a 404.
        let mut unreadable = None;
        while let Some((meta, found)) = results.next().await {
            match found {
                Ok(batches) => parts.extend(batches),
                Err(source) => {
                    tracing::error!(block = %meta.block_id, error = %source, "skipping a block that cannot be read");
                    self.metrics.blocks_skipped.inc();
                    unreadable.get_or_insert((meta.block_id.to_string(), source));
                }
            }
        }
        if parts.is_empty()
            && let Some((block, source)) = unreadable
        {
            return Err(QueryError::Block { block, source });
        }
        let batches = combine(parts);
        self.metrics
            .trace_lookup_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(FoundTrace {
            batches,
            blocks_inspected: inspected,
        })
    }

    /// Lists the bucket once.
    pub async fn poll_blocklist(&self) -> legato_storage::Result<()> {
        self.blocklist.poll(self.reader.store()).await?;
        let live = self.blocklist.all_block_ids();
        self.reader.retain_blocks(&live);
        self.retain_tag_cache(&live);
        Ok(())
    }

    /// Polls the blocklist every `period` until cancelled.
    pub async fn run_poller(self: Arc<Self>, period: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.poll_blocklist().await {
                tracing::warn!(error = %e, "blocklist poll failed");
            }
        }
    }
}
