//! TraceQL search and tag lookups over ingester data and backend blocks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::StreamExt;

use legato_model::span::TraceData;
use legato_model::{BlockId, TenantId};
use legato_storage::BlockMeta;
use legato_traceql::eval::Plan;
use legato_traceql::search::{TraceHit, hit};
use legato_traceql::tags::TagSummary;

use crate::{JobScope, Querier, QueryError};

/// A TraceQL metrics query over `(start_ns, end_ns]` in steps of `step_ns` (each closed at
/// the right, as Tempo's; see `legato_traceql::metrics`).
pub struct MetricsRequest {
    pub plan: Arc<Plan>,
    pub stage: legato_traceql::ast::MetricsStage,
    pub start_ns: u64,
    pub end_ns: u64,
    pub step_ns: u64,
    pub max_exemplars: usize,
    /// Cancelled when the client goes away or the query timeout passes: scans stop at the
    /// next trace.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Most series in the answer (0 = no limit); see `SearchOutcome::series_truncated`.
    pub max_series: usize,
    /// The query as written, for jobs run on other nodes.
    pub query_text: String,
}

/// A search as the API hands it over.
pub struct SearchRequest {
    pub plan: Arc<Plan>,
    /// The query as written, for jobs run on other nodes.
    pub query_text: String,
    /// Unix nanoseconds, inclusive; `None` = unbounded.
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    pub limit: usize,
    /// Spans per spanset (0 = all).
    pub spss: usize,
    /// Receives the results so far after each batch of work (for streaming clients).
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<SearchSnapshot>>,
    /// Cancelled when the client goes away or the query timeout passes: scans stop at the
    /// next trace.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// A tag query's TraceQL filter: the plan, and the query as written for other nodes.
#[derive(Clone)]
pub struct TagFilter {
    pub plan: Arc<Plan>,
    pub text: String,
}

/// Results so far of a running search.
#[derive(Debug, Clone, Default)]
pub struct SearchSnapshot {
    pub traces: Vec<TraceHit>,
    pub inspected_traces: u64,
    pub completed_jobs: u32,
    pub total_jobs: u32,
    pub total_blocks: u32,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SearchOutcome {
    pub traces: Vec<TraceHit>,
    pub inspected_traces: u64,
    pub inspected_spans: u64,
    pub inspected_bytes: u64,
    pub total_blocks: u32,
    pub completed_jobs: u32,
    pub total_jobs: u32,
    /// Metrics only: series were left out to stay within the series limit.
    #[serde(default)]
    pub series_truncated: bool,
    /// Metrics only: what could not be read (an ingester that did not answer), so the
    /// answer is partial.
    #[serde(default)]
    pub missing_data: Option<String>,
}

/// Collects hits from several sources, merging by trace id, until the limit is met.
struct Collector {
    hits: parking_lot::Mutex<HashMap<[u8; 16], TraceHit>>,
    limit: usize,
    spss: usize,
    /// Keep going past the limit (most_recent needs every candidate).
    exhaustive: bool,
    done: AtomicBool,
    inspected_traces: AtomicU64,
    inspected_spans: AtomicU64,
    /// Spans of ingester traces looked at.
    recent_spans: AtomicU64,
}

impl Collector {
    fn snapshot(&self, spss: usize, completed_jobs: u32, total_jobs: u32, total_blocks: u32) -> SearchSnapshot {
        let mut traces: Vec<TraceHit> = self.hits.lock().values().cloned().collect();
        traces.sort_by_key(|h| std::cmp::Reverse(h.start_unix_nano));
        traces.truncate(self.limit);
        for t in &mut traces {
            t.cap_spans(spss);
        }
        SearchSnapshot {
            traces,
            inspected_traces: self.inspected_traces.load(Ordering::Relaxed),
            completed_jobs,
            total_jobs,
            total_blocks,
        }
    }

    fn offer(&self, plan: &Plan, trace: &TraceData, req: &SearchRequest) -> bool {
        self.inspected_traces.fetch_add(1, Ordering::Relaxed);
        self.inspected_spans
            .fetch_add(trace.spans.len() as u64, Ordering::Relaxed);
        let (start, end) = (trace.start_unix_nano(), trace.end_unix_nano());
        let in_range = req.start_ns.is_none_or(|s| end >= s) && req.end_ns.is_none_or(|e| start <= e);
        if in_range {
            let sets = plan.eval(trace);
            // Spans per spanset are capped as hits are made (`matched` keeps the full count),
            // so a broad exhaustive search does not hold every matching span.
            if let Some(h) = hit(plan, trace, &sets, self.spss) {
                let mut hits = self.hits.lock();
                match hits.get_mut(&h.trace_id) {
                    Some(existing) => existing.merge(h),
                    None => {
                        hits.insert(h.trace_id, h);
                    }
                }
                if !self.exhaustive && hits.len() >= self.limit {
                    self.done.store(true, Ordering::SeqCst);
                }
                if self.exhaustive && hits.len() > 2 * self.limit {
                    // most_recent: keep the newest `limit` traces.
                    let mut starts: Vec<u64> = hits.values().map(|h| h.start_unix_nano).collect();
                    starts.sort_unstable_by(|a, b| b.cmp(a));
                    let cutoff = starts[self.limit - 1];
                    hits.retain(|_, h| h.start_unix_nano >= cutoff);
                }
            }
        }
        !self.done.load(Ordering::SeqCst)
    }
}

impl Querier {
    /// Runs a TraceQL search: ingester data first, then blocks newest first, in parallel.
    /// With a fan-out configured (query frontend), the search runs as jobs on other nodes.
    pub async fn search(&self, tenant: &TenantId, req: SearchRequest) -> Result<SearchOutcome, QueryError> {
        match &self.fanout {
            Some(fanout) => fanout.search(tenant, req).await,
            None => self.search_scoped(tenant, req, JobScope::ALL).await,
        }
    }

    /// A search over part of the data (one job of a fanned-out search).
    pub async fn search_scoped(
        &self,
        tenant: &TenantId,
        req: SearchRequest,
        scope: JobScope,
    ) -> Result<SearchOutcome, QueryError> {
        let plan = req.plan.clone();
        let collector = Arc::new(Collector {
            hits: parking_lot::Mutex::new(HashMap::new()),
            limit: req.limit.max(1),
            spss: req.spss,
            exhaustive: plan.most_recent(),
            done: AtomicBool::new(false),
            inspected_traces: AtomicU64::new(0),
            inspected_spans: AtomicU64::new(0),
            recent_spans: AtomicU64::new(0),
        });
        let req = Arc::new(req);
        let budget = Arc::new(RecentBudget::new(self.max_recent_bytes));
        let options = Arc::new(crate::prefilter::scan_options(&plan.query, &[]));
        let prefilter = crate::prefilter::recent_prefilter(&options);
        for source in self.recent.iter().filter(|_| scope.recent) {
            if req.cancel.is_cancelled() {
                return Err(QueryError::Cancelled);
            }
            let visit = {
                let (collector, plan, req) = (collector.clone(), plan.clone(), req.clone());
                budget.visitor(move |trace: TraceData| {
                    collector
                        .recent_spans
                        .fetch_add(trace.spans.len() as u64, Ordering::Relaxed);
                    !req.cancel.is_cancelled() && collector.offer(&plan, &trace, &req)
                })
            };
            // Search has no partial status: data that could not be read fails the search,
            // and so does reaching the limit on held data.
            source
                .scan_recent_filtered(tenant, prefilter.clone(), visit)
                .await
                .map_err(QueryError::Job)?;
            budget.check()?;
        }
        let mut blocks = self.blocks_in_range(tenant, req.start_ns, req.end_ns);
        blocks.retain(|b| scope.covers(b));
        blocks.sort_by_key(|b| std::cmp::Reverse(b.end_time_unix_nano));
        let total_blocks = blocks.len() as u32;
        let progress = req.progress.clone();
        let report = {
            let collector = collector.clone();
            let spss = req.spss;
            move |completed_blocks: u32| {
                if let Some(tx) = &progress {
                    let _ = tx.send(collector.snapshot(spss, completed_blocks + 1, total_blocks + 1, total_blocks));
                }
            }
        };
        report(0);
        let results = self
            .scan_blocks(
                blocks,
                options,
                {
                    let collector = collector.clone();
                    let plan = plan.clone();
                    let req = req.clone();
                    move |trace: TraceData| !req.cancel.is_cancelled() && collector.offer(&plan, &trace, &req)
                },
                {
                    let collector = collector.clone();
                    let cancel = req.cancel.clone();
                    move || collector.done.load(Ordering::SeqCst) || cancel.is_cancelled()
                },
                report,
            )
            .await?;
        if req.cancel.is_cancelled() {
            return Err(QueryError::Cancelled);
        }
        let mut traces: Vec<TraceHit> = collector.hits.lock().drain().map(|(_, h)| h).collect();
        traces.sort_by_key(|h| std::cmp::Reverse(h.start_unix_nano));
        traces.truncate(req.limit.max(1));
        for t in &mut traces {
            t.cap_spans(req.spss);
        }
        Ok(SearchOutcome {
            traces,
            inspected_traces: collector.inspected_traces.load(Ordering::Relaxed),
            inspected_spans: collector.recent_spans.load(Ordering::Relaxed) + results.spans,
            inspected_bytes: results.bytes,
            total_blocks,
            completed_jobs: results.completed + 1,
            total_jobs: total_blocks + 1,
            series_truncated: false,
            missing_data: None,
        })
    }

    /// Tag names and values, from ingester data and blocks. Without a filter, per-block
    /// summaries are computed once and cached; with one, matching spans are scanned.
    pub async fn tags(
        &self,
        tenant: &TenantId,
        filter: Option<TagFilter>,
        start_ns: Option<u64>,
        end_ns: Option<u64>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<TagSummary, QueryError> {
        let mut summary = self.held_tags(tenant, filter.as_ref(), cancel.clone()).await?;
        let filter = filter.map(|f| f.plan);
        let blocks = self.blocks_in_range(tenant, start_ns, end_ns);
        let mut to_scan = Vec::new();
        for b in blocks {
            let cached = if filter.is_none() {
                self.tag_cache.lock().get(&b.block_id).cloned()
            } else {
                None
            };
            match cached {
                Some(s) => summary.merge(&s),
                None => to_scan.push(b),
            }
        }
        for meta in to_scan {
            if cancel.is_cancelled() {
                return Err(QueryError::Cancelled);
            }
            // Blocks carry a summary written at flush time; older ones are scanned once.
            if filter.is_none()
                && let Some(stored) = self.stored_summary(&meta).await
            {
                summary.merge(&stored);
                continue;
            }
            let block_summary = Arc::new(parking_lot::Mutex::new(TagSummary::default()));
            let f = filter.clone();
            let sink = block_summary.clone();
            // Tags need every column of the spans they summarise; a filter only prunes traces.
            let options = match &filter {
                Some(plan) => legato_storage::ScanOptions {
                    required: crate::prefilter::scan_options(&plan.query, &[]).required,
                    ..legato_storage::ScanOptions::full()
                },
                None => legato_storage::ScanOptions::full(),
            };
            let scanned = self
                .scan_blocks(
                    vec![meta.clone()],
                    Arc::new(options),
                    {
                        let cancel = cancel.clone();
                        // A scan stops at the next trace once the query is cancelled.
                        move |trace: TraceData| {
                            add_tags(&mut sink.lock(), &trace, f.as_deref());
                            !cancel.is_cancelled()
                        }
                    },
                    {
                        let cancel = cancel.clone();
                        move || cancel.is_cancelled()
                    },
                    |_| {},
                )
                .await?;
            if cancel.is_cancelled() {
                return Err(QueryError::Cancelled);
            }
            let s = std::mem::take(&mut *block_summary.lock());
            summary.merge(&s);
            // A block that could not be read is tried again next time, not cached as empty.
            if filter.is_none() && scanned.skipped.is_empty() {
                self.tag_cache.lock().insert(meta.block_id, Arc::new(s));
            }
        }
        Ok(summary)
    }

    /// Tag names and values of the data held outside blocks (ingesters), all or those of
    /// the spans `filter` matches. Where the data lives on another node, that node evaluates
    /// the filter and returns its summary.
    pub async fn held_tags(
        &self,
        tenant: &TenantId,
        filter: Option<&TagFilter>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<TagSummary, QueryError> {
        let mut summary = TagSummary::default();
        let budget = Arc::new(RecentBudget::new(self.max_recent_bytes));
        for source in &self.recent {
            if cancel.is_cancelled() {
                return Err(QueryError::Cancelled);
            }
            // Tag answers have no partial status: data that could not be read fails them.
            let kept = source
                .recent_tag_summary(tenant, filter.map(|f| f.text.as_str()))
                .await
                .map_err(QueryError::Job)?
                .and_then(|b| TagSummary::from_json(&b));
            match kept {
                Some(s) => summary.merge(&s),
                None => {
                    let scanned = Arc::new(parking_lot::Mutex::new(TagSummary::default()));
                    let visit = {
                        let (scanned, plan) = (scanned.clone(), filter.map(|f| f.plan.clone()));
                        let cancel = cancel.clone();
                        budget.visitor(move |trace: TraceData| {
                            add_tags(&mut scanned.lock(), &trace, plan.as_deref());
                            !cancel.is_cancelled()
                        })
                    };
                    source.scan_recent(tenant, visit).await.map_err(QueryError::Job)?;
                    budget.check()?;
                    summary.merge(&scanned.lock());
                }
            }
        }
        Ok(summary)
    }

    fn blocks_in_range(&self, tenant: &TenantId, start_ns: Option<u64>, end_ns: Option<u64>) -> Vec<Arc<BlockMeta>> {
        self.blocklist
            .blocks(tenant)
            .into_iter()
            .filter(|m| {
                start_ns.is_none_or(|s| m.end_time_unix_nano >= s) && end_ns.is_none_or(|e| m.start_time_unix_nano <= e)
            })
            .collect()
    }

    /// Scans blocks on blocking threads (decoding and evaluation are CPU work), a few at a time.
    async fn scan_blocks(
        &self,
        blocks: Vec<Arc<BlockMeta>>,
        options: Arc<legato_storage::ScanOptions>,
        visit: impl Fn(TraceData) -> bool + Send + Sync + Clone + 'static,
        stop: impl Fn() -> bool + Send + Sync + Clone + 'static,
        after_chunk: impl Fn(u32),
    ) -> Result<ScanTotals, QueryError> {
        let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let mut totals = ScanTotals::default();
        // Blocks whose tag summary rules a required predicate out are not read at all.
        let mut blocks_to_read = Vec::with_capacity(blocks.len());
        for meta in blocks {
            if self.block_may_match(&meta, &options).await {
                blocks_to_read.push(meta);
            } else {
                self.metrics.blocks_pruned.inc();
                totals.completed += 1;
            }
        }
        let blocks = blocks_to_read;
        let handle = tokio::runtime::Handle::current();
        let reader = self.reader.clone();
        let mut done = per_block(blocks, parallel, stop, move |meta: Arc<BlockMeta>| {
            handle.block_on(reader.scan_traces_with(&meta, &options, visit.clone()))
        });
        while let Some(finished) = done.next().await {
            let (meta, result) = finished?;
            self.record_block(&mut totals, &meta, result);
            after_chunk(totals.completed);
        }
        Ok(totals)
    }

    /// Counts one block's read in `totals`. One unreadable block (corrupt, or failing after
    /// the store's retries) is skipped, logged and counted, and named to the caller; the rest
    /// answer.
    fn record_block(&self, totals: &mut ScanTotals, meta: &BlockMeta, result: legato_storage::Result<u64>) {
        match result {
            Ok(bytes) => {
                totals.bytes += bytes;
                totals.spans += meta.total_spans;
            }
            Err(source) => {
                let block = meta.block_id;
                tracing::error!(%block, error = %source, "skipping a block that cannot be read");
                self.metrics.blocks_skipped.inc();
                totals.skipped.push(format!("block {block}: {source}"));
            }
        }
        totals.completed += 1;
    }

    /// Counts a metrics query's spans in `blocks` from their columns (`ColumnMetrics`), one
    /// block per core on blocking threads, adding each block's series to `eval` once it has
    /// been read whole. `counts` decides whether a trace copy counts (replica dedup).
    async fn count_blocks(
        &self,
        blocks: Vec<Arc<BlockMeta>>,
        plan: Arc<crate::metrics_columns::ColumnMetrics>,
        eval: Arc<parking_lot::Mutex<legato_traceql::metrics::MetricsEval>>,
        counts: Arc<dyn Fn(&CopyKey) -> bool + Send + Sync>,
        inspected: Arc<AtomicU64>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<ScanTotals, QueryError> {
        let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let mut totals = ScanTotals::default();
        let mut to_read = Vec::with_capacity(blocks.len());
        for meta in blocks {
            if self.block_admits(&meta, plan.predicates()).await {
                to_read.push(meta);
            } else {
                self.metrics.blocks_pruned.inc();
                totals.completed += 1;
            }
        }
        let ((step_of, steps), exemplar_buckets) = {
            let e = eval.lock();
            (e.stepper(), e.exemplar_buckets())
        };
        let handle = tokio::runtime::Handle::current();
        let reader = self.reader.clone();
        let stop = {
            let cancel = cancel.clone();
            move || cancel.is_cancelled()
        };
        // With fewer than two blocks per core, each is read in parts (runs of row groups,
        // every trace whole in one), so a query over a few large compacted blocks still keeps
        // every core busy; their footers are read side by side (from an object store, one at
        // a time would add a round trip per block). A block's series count only once all its
        // parts were read.
        let split = to_read.len() < 2 * parallel;
        let split_runs: Vec<_> = futures::stream::iter(to_read)
            .map(|meta| async move {
                let runs = match split {
                    true => self
                        .reader
                        .column_parts(&meta, parallel)
                        .await
                        // A block without row groups is still read (and counted) once.
                        .map(|r| match r.is_empty() {
                            true => vec![None],
                            false => r.into_iter().map(Some).collect(),
                        }),
                    false => Ok(vec![None]),
                };
                (meta, runs)
            })
            .buffered(PARALLEL_FOOTERS)
            .collect()
            .await;
        let mut parts = Vec::new();
        let mut pending: HashMap<BlockId, BlockCount> = HashMap::new();
        for (meta, runs) in split_runs {
            match runs {
                Ok(runs) => {
                    pending.insert(
                        meta.block_id,
                        BlockCount {
                            parts: runs.len(),
                            ..Default::default()
                        },
                    );
                    parts.extend(runs.into_iter().map(|run: Option<Vec<usize>>| (meta.clone(), run)));
                }
                Err(e) => self.record_block(&mut totals, &meta, Err(e)),
            }
        }
        let mut done = per_part(
            parts,
            parallel,
            stop,
            move |meta: Arc<BlockMeta>, run: Option<Vec<usize>>| {
                let mut counter = crate::metrics_columns::ColumnCounter::new(
                    &plan,
                    step_of.as_ref(),
                    steps,
                    exemplar_buckets.fresh(),
                );
                let mut dedup = |k: &CopyKey| counts(k);
                let mut unreadable = false;
                let read = handle.block_on(reader.scan_columns(&meta, &plan.columns(), run.as_deref(), |batch| {
                    if counter.batch(batch, &mut dedup).is_none() {
                        unreadable = true;
                        return false;
                    }
                    !cancel.is_cancelled()
                }));
                let read = read.and_then(|bytes| match unreadable {
                    true => Err(legato_storage::Error::Corrupt {
                        block: meta.block_id,
                        message: "a column has an unexpected type".into(),
                    }),
                    false => Ok(bytes),
                });
                let traces = counter.traces;
                let series = counter.finish(&mut dedup);
                read.map(|bytes| (bytes, series, traces))
            },
        );
        while let Some(finished) = done.next().await {
            let (meta, result) = finished?;
            let Some(block) = pending.get_mut(&meta.block_id) else {
                continue;
            };
            block.parts -= 1;
            match result {
                Ok((bytes, series, traces)) if block.error.is_none() => {
                    block.bytes = bytes;
                    block.traces += traces;
                    block.series.extend(series);
                }
                Ok(_) => {}
                Err(e) => block.error = Some(e),
            }
            if block.parts > 0 {
                continue;
            }
            let Some(block) = pending.remove(&meta.block_id) else {
                continue;
            };
            let result = match block.error {
                Some(e) => Err(e),
                None => {
                    let mut e = eval.lock();
                    for (labels, spans, exemplars) in block.series {
                        e.add_spans(labels, &spans, &exemplars);
                    }
                    inspected.fetch_add(block.traces, Ordering::Relaxed);
                    Ok(block.bytes)
                }
            };
            self.record_block(&mut totals, &meta, result);
        }
        Ok(totals)
    }

    /// The block's tag summary as written with it (`tags.json`), cached; `None` for blocks
    /// written without one, or when it cannot be read.
    async fn stored_summary(&self, meta: &BlockMeta) -> Option<Arc<TagSummary>> {
        if let Some(s) = self.tag_cache.lock().get(&meta.block_id) {
            return Some(s.clone());
        }
        let stored = Arc::new(TagSummary::from_json(&self.reader.read_tags(meta).await.ok()??)?);
        self.tag_cache.lock().insert(meta.block_id, stored.clone());
        Some(stored)
    }

    /// False when the block's tag summary shows that no span of it meets one of the scan's
    /// required predicates (`prefilter::summary_admits`).
    async fn block_may_match(&self, meta: &BlockMeta, options: &legato_storage::ScanOptions) -> bool {
        self.block_admits(meta, &options.required).await
    }

    /// False when the block's tag summary shows no span of it meets one of `required`.
    async fn block_admits(&self, meta: &BlockMeta, required: &[legato_storage::RowPredicate]) -> bool {
        if required.is_empty() {
            return true;
        }
        let Some(summary) = self.stored_summary(meta).await else {
            return true;
        };
        required.iter().all(|p| crate::prefilter::summary_admits(&summary, p))
    }

    /// Drops cached summaries of blocks that are gone.
    pub(crate) fn retain_tag_cache(&self, live: &HashSet<BlockId>) {
        self.tag_cache.lock().retain(|id, _| live.contains(id));
    }
}

/// Adds a trace's tags to `summary`: all of them, or those of the spans `filter` matches.
fn add_tags(summary: &mut TagSummary, trace: &TraceData, filter: Option<&Plan>) {
    match filter {
        None => summary.add_trace(trace, None),
        Some(plan) => {
            for set in plan.eval(trace) {
                summary.add_trace(trace, Some(&set.spans));
            }
        }
    }
}

#[derive(Default)]
struct ScanTotals {
    bytes: u64,
    /// Spans in the scanned blocks (read column-wise, whether rebuilt or skipped).
    spans: u64,
    completed: u32,
    /// Blocks that could not be read, and why.
    skipped: Vec<String>,
}

/// Which pieces of possibly replicated data a metrics job counts. A piece is a copy of (part
/// of) a trace: its id and the fingerprint of its span ids.
#[derive(Clone, Default)]
pub enum Pieces {
    /// Every piece, each distinct one once.
    #[default]
    All,
    /// Only these (the pieces the frontend gave this ingester to count).
    Only(Arc<HashSet<CopyKey>>),
    /// All but these (pieces the ingesters count).
    Skip(Arc<HashSet<CopyKey>>),
}

impl Pieces {
    fn counts(&self, key: &CopyKey) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => set.contains(key),
            Self::Skip(set) => !set.contains(key),
        }
    }
}

/// The part of the data one metrics job covers.
#[derive(Clone)]
pub struct MetricsScope {
    /// Recent data, and the block shard when `blocks` is `None`.
    pub scope: JobScope,
    /// Exactly these blocks (as the frontend lists them) instead of a shard.
    pub blocks: Option<Vec<Arc<BlockMeta>>>,
    pub pieces: Pieces,
}

impl MetricsScope {
    pub const ALL: MetricsScope = MetricsScope {
        scope: JobScope::ALL,
        blocks: None,
        pieces: Pieces::All,
    };
}

/// Blocks in groups whose time ranges overlap (sorted by start). Replicated copies of a trace
/// (each ingester flushes its own, and compaction merges them only over time) are only in
/// blocks whose ranges overlap, so deduplicating within a group counts each copy once, with
/// memory bounded by one group's traces.
pub fn overlap_groups(mut blocks: Vec<Arc<BlockMeta>>) -> Vec<Vec<Arc<BlockMeta>>> {
    blocks.sort_by_key(|b| (b.start_time_unix_nano, b.end_time_unix_nano));
    let mut groups: Vec<Vec<Arc<BlockMeta>>> = Vec::new();
    let mut group_end = 0u64;
    for b in blocks {
        match groups.last_mut() {
            Some(group) if b.start_time_unix_nano <= group_end => {
                group_end = group_end.max(b.end_time_unix_nano);
                group.push(b);
            }
            _ => {
                group_end = b.end_time_unix_nano;
                groups.push(vec![b]);
            }
        }
    }
    groups
}

impl Querier {
    /// Evaluates a TraceQL metrics query over `(start, end]` in steps. With a fan-out
    /// configured (query frontend), jobs on the ingesters and queriers evaluate it where the
    /// data is and return partial results, merged there.
    pub async fn metrics(
        &self,
        tenant: &TenantId,
        req: MetricsRequest,
    ) -> Result<(Vec<legato_traceql::metrics::Series>, SearchOutcome), QueryError> {
        if let Some(fanout) = &self.fanout {
            return fanout.metrics(tenant, req).await;
        }
        let (eval, outcome) = self.metrics_eval(tenant, req, MetricsScope::ALL).await?;
        Ok((eval.finish(), outcome))
    }

    /// One job of a fanned-out metrics query: what `scope` contributes, unfinished.
    pub async fn metrics_scoped(
        &self,
        tenant: &TenantId,
        req: MetricsRequest,
        scope: MetricsScope,
    ) -> Result<(legato_traceql::metrics::MetricsPartial, SearchOutcome), QueryError> {
        let (eval, outcome) = self.metrics_eval(tenant, req, scope).await?;
        Ok((eval.into_partial(), outcome))
    }

    /// The pieces (see `Pieces`) this node holds outside the bucket listing (an ingester's
    /// traces, and the blocks it flushed recently, which queriers may not have polled yet)
    /// with a span starting in `(start_ns, end_ns]`, where a metrics query counts spans: the
    /// frontend gives each piece to one ingester to count, and has the queriers skip it.
    pub async fn held_pieces(
        &self,
        tenant: &TenantId,
        start_ns: u64,
        end_ns: u64,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<Vec<CopyKey>, QueryError> {
        let keys: Arc<parking_lot::Mutex<HashSet<CopyKey>>> = Arc::default();
        // Held traces and recently flushed blocks alike: a piece with a span in range is listed.
        let record = {
            let (keys, cancel) = (keys.clone(), cancel.clone());
            move |trace: TraceData| {
                if trace
                    .spans
                    .iter()
                    .any(|s| s.start_unix_nano > start_ns && s.start_unix_nano <= end_ns)
                {
                    keys.lock().insert(copy_fingerprint(&trace));
                }
                !cancel.is_cancelled()
            }
        };
        let budget = Arc::new(RecentBudget::new(self.max_recent_bytes));
        for source in &self.recent {
            source
                .scan_recent(tenant, budget.visitor(record.clone()))
                .await
                .map_err(QueryError::Job)?;
            budget.check()?;
        }
        let blocks = self.blocks_in_range(tenant, Some(start_ns), Some(end_ns));
        let scanned = self
            .scan_blocks(
                blocks,
                Arc::new(legato_storage::ScanOptions::full()),
                record,
                {
                    let cancel = cancel.clone();
                    move || cancel.is_cancelled()
                },
                |_| {},
            )
            .await?;
        if cancel.is_cancelled() {
            return Err(QueryError::Cancelled);
        }
        if let Some(why) = scanned.skipped.first() {
            // A piece left out here would be counted by nobody.
            return Err(QueryError::Job(why.clone()));
        }
        let keys = std::mem::take(&mut *keys.lock());
        Ok(keys.into_iter().collect())
    }

    async fn metrics_eval(
        &self,
        tenant: &TenantId,
        req: MetricsRequest,
        mscope: MetricsScope,
    ) -> Result<(legato_traceql::metrics::MetricsEval, SearchOutcome), QueryError> {
        use legato_traceql::metrics::MetricsEval;
        let MetricsRequest {
            plan,
            stage,
            start_ns,
            end_ns,
            step_ns,
            max_exemplars,
            max_series,
            cancel,
            query_text: _,
        } = req;
        let MetricsScope { scope, blocks, pieces } = mscope;
        let options = Arc::new(crate::prefilter::metrics_scan_options(&plan.query, &stage));
        let prefilter = crate::prefilter::recent_prefilter(&options);
        let columnar = crate::metrics_columns::ColumnMetrics::plan(&plan.query, &stage).map(Arc::new);
        let eval = Arc::new(parking_lot::Mutex::new(
            MetricsEval::new(plan, stage, start_ns, end_ns, step_ns, max_exemplars).with_max_series(max_series),
        ));
        let inspected = Arc::new(AtomicU64::new(0));
        // Replicated copies (ingesters' live data and the blocks each flushes, until
        // compaction merges them) must count once: a copy with the same trace id and span ids
        // as one already counted is skipped, and so is one `pieces` leaves to another job.
        // Held data is remembered for the whole query, blocks' copies per overlap group.
        let seen_held = Arc::new(CopySet::new(0));
        let mut missing = Vec::new();
        let budget = Arc::new(RecentBudget::new(self.max_recent_bytes));
        for source in self.recent.iter().filter(|_| scope.recent) {
            if cancel.is_cancelled() {
                return Err(QueryError::Cancelled);
            }
            let visit = {
                let (eval, inspected, seen, pieces) =
                    (eval.clone(), inspected.clone(), seen_held.clone(), pieces.clone());
                let cancel = cancel.clone();
                budget.visitor(move |trace: TraceData| {
                    inspected.fetch_add(1, Ordering::Relaxed);
                    let key = copy_fingerprint(&trace);
                    if pieces.counts(&key) && seen.insert(key) {
                        eval.lock().observe(&trace);
                    }
                    !cancel.is_cancelled()
                })
            };
            // Metrics answer partial (Tempo's status and message) when recent data is missing
            // or the limit on held data stopped the scan.
            if let Err(why) = source.scan_recent_filtered(tenant, prefilter.clone(), visit).await {
                missing.push(why);
            }
            if let Err(limit) = budget.check() {
                missing.push(limit.to_string());
                break;
            }
        }
        let in_range = match blocks {
            Some(given) => given,
            None => {
                let mut mine = self.blocks_in_range(tenant, Some(start_ns), Some(end_ns));
                mine.retain(|b| scope.covers(b));
                mine
            }
        };
        let total_blocks = in_range.len() as u32;
        let mut totals = ScanTotals::default();
        // No held copy to skip when no held trace was counted.
        let held_counted = !seen_held.is_empty();
        let seen_held = held_counted.then_some(seen_held);
        for group in overlap_groups(in_range) {
            // Each trace id is once in a block: one block alone needs no copy set, and a
            // group's set takes room for its share of the group's traces per partition at
            // once (growing it was most of its cost).
            let seen_group: Option<Arc<CopySet>> = (group.len() > 1).then(|| {
                let traces = group.iter().map(|b| b.total_traces as usize).sum();
                Arc::new(CopySet::new(traces))
            });
            let fresh = {
                let (seen_held, seen_group) = (seen_held.clone(), seen_group.clone());
                move |key: &CopyKey| {
                    seen_held.as_ref().is_none_or(|held| !held.contains(key))
                        && seen_group.as_ref().is_none_or(|group| group.insert(*key))
                }
            };
            if let Some(columnar) = &columnar {
                let counts = {
                    let (pieces, fresh) = (pieces.clone(), fresh.clone());
                    Arc::new(move |key: &CopyKey| pieces.counts(key) && fresh(key))
                };
                let part = self
                    .count_blocks(
                        group,
                        columnar.clone(),
                        eval.clone(),
                        counts,
                        inspected.clone(),
                        cancel.clone(),
                    )
                    .await?;
                totals.bytes += part.bytes;
                totals.spans += part.spans;
                totals.completed += part.completed;
                missing.extend(part.skipped);
                continue;
            }
            let part = self
                .scan_blocks(
                    group,
                    options.clone(),
                    {
                        let (eval, inspected, pieces) = (eval.clone(), inspected.clone(), pieces.clone());
                        let cancel = cancel.clone();
                        move |trace: TraceData| {
                            if cancel.is_cancelled() {
                                return false;
                            }
                            inspected.fetch_add(1, Ordering::Relaxed);
                            let key = copy_fingerprint(&trace);
                            if pieces.counts(&key) && fresh(&key) {
                                eval.lock().observe(&trace);
                            }
                            true
                        }
                    },
                    {
                        let cancel = cancel.clone();
                        move || cancel.is_cancelled()
                    },
                    |_| {},
                )
                .await?;
            totals.bytes += part.bytes;
            totals.spans += part.spans;
            totals.completed += part.completed;
            missing.extend(part.skipped);
        }
        if cancel.is_cancelled() {
            return Err(QueryError::Cancelled);
        }
        let eval = Arc::try_unwrap(eval).map_err(|_| QueryError::Block {
            block: "metrics".into(),
            source: legato_storage::Error::Join("evaluator still shared".into()),
        })?;
        let eval = eval.into_inner();
        let outcome = SearchOutcome {
            traces: Vec::new(),
            inspected_traces: inspected.load(Ordering::Relaxed),
            inspected_spans: 0,
            inspected_bytes: totals.bytes,
            total_blocks,
            completed_jobs: totals.completed + 1,
            total_jobs: total_blocks + 1,
            series_truncated: eval.truncated(),
            missing_data: (!missing.is_empty()).then(|| missing.join("; ")),
        };
        Ok((eval, outcome))
    }
}

/// Runs `work` on each block on blocking threads, `parallel` at a time (the next starts as
/// soon as one ends), starting no more once `stop()` says so; yields each block with its
/// result as it finishes.
fn per_block<T: Send + 'static>(
    blocks: Vec<Arc<BlockMeta>>,
    parallel: usize,
    stop: impl Fn() -> bool + Send + 'static,
    work: impl Fn(Arc<BlockMeta>) -> T + Send + Sync + Clone + 'static,
) -> impl futures::Stream<Item = Result<(Arc<BlockMeta>, T), QueryError>> {
    let units = blocks.into_iter().map(|meta| (meta, ())).collect();
    per_part(units, parallel, stop, move |meta, ()| work(meta))
}

/// `per_block` over parts of blocks: `work(block, part)` for each, `parallel` at a time.
fn per_part<P: Send + 'static, T: Send + 'static>(
    parts: Vec<(Arc<BlockMeta>, P)>,
    parallel: usize,
    stop: impl Fn() -> bool + Send + 'static,
    work: impl Fn(Arc<BlockMeta>, P) -> T + Send + Sync + Clone + 'static,
) -> impl futures::Stream<Item = Result<(Arc<BlockMeta>, T), QueryError>> {
    futures::stream::iter(parts)
        .take_while(move |_| std::future::ready(!stop()))
        .map(move |(meta, part)| {
            let work = work.clone();
            async move {
                let m = meta.clone();
                let out = tokio::task::spawn_blocking(move || work(m, part))
                    .await
                    .map_err(|e| QueryError::Block {
                        block: meta.block_id.to_string(),
                        source: legato_storage::Error::Join(e.to_string()),
                    })?;
                Ok((meta, out))
            }
        })
        .buffer_unordered(parallel.max(1))
}

/// Footers `count_blocks` reads at once to split blocks into parts.
const PARALLEL_FOOTERS: usize = 16;

/// What the parts of one block read so far counted (`count_blocks`).
#[derive(Default)]
struct BlockCount {
    /// Parts not yet read.
    parts: usize,
    bytes: u64,
    traces: u64,
    series: Vec<crate::metrics_columns::CountedSeries>,
    error: Option<legato_storage::Error>,
}

/// Counts the held (ingester) bytes one query reads against `querier.search.max_recent_bytes`.
struct RecentBudget {
    max: u64,
    used: AtomicU64,
}

impl RecentBudget {
    fn new(max: u64) -> Self {
        Self {
            max,
            used: AtomicU64::new(0),
        }
    }

    /// Takes `bytes` from the budget; false once it is spent (the scan should stop).
    fn take(&self, bytes: u64) -> bool {
        self.max == 0 || self.used.fetch_add(bytes, Ordering::Relaxed) + bytes <= self.max
    }

    /// A visitor of held traces that stops the scan once the budget is spent and otherwise
    /// hands each trace to `visit`.
    fn visitor(
        self: &Arc<Self>,
        visit: impl Fn(TraceData) -> bool + Send + Sync + 'static,
    ) -> legato_proto::push::RecentVisitor {
        let budget = self.clone();
        Arc::new(move |trace: TraceData, bytes| budget.take(bytes) && visit(trace))
    }

    /// The limit error once the budget was overdrawn.
    fn check(&self) -> Result<(), QueryError> {
        if self.max == 0 || self.used.load(Ordering::Relaxed) <= self.max {
            return Ok(());
        }
        Err(QueryError::Limit(format!(
            "the query would read more than {} bytes of recent (ingester) data, the limit set by querier.search.max_recent_bytes; narrow the query or its time range",
            self.max
        )))
    }
}

/// A trace id and the fingerprint of a set of its span ids.
pub type CopyKey = ([u8; 16], u64);

/// Trace copies already counted by a metrics query, shared by the threads reading blocks:
/// millions of keys on large queries. Partitioned by the trace id's leading bits, each with
/// its own lock: a block is read in trace-id order, so a reader inserts into one partition
/// after another, the one it works in stays in cache and two readers seldom want the same
/// lock. (One set under one lock spent a quarter of a `rate()` over 26 M spans on cache
/// misses into a 300 MB table and on lock handoffs.)
struct CopySet {
    parts: Box<[parking_lot::Mutex<HashSet<CopyKey, foldhash::fast::RandomState>>]>,
    /// Room each partition takes when first used: its share of the expected keys.
    per_part: usize,
}

/// Leading trace-id bits that choose a `CopySet` partition.
const COPY_PART_BITS: u32 = 12;

impl CopySet {
    /// A set for about `expected` keys (memory is taken per partition as it is first used).
    fn new(expected: usize) -> Self {
        let parts = 1usize << COPY_PART_BITS;
        let share = expected.div_ceil(parts);
        Self {
            parts: (0..parts).map(|_| Default::default()).collect(),
            per_part: share + share / 4,
        }
    }

    fn part(&self, key: &CopyKey) -> &parking_lot::Mutex<HashSet<CopyKey, foldhash::fast::RandomState>> {
        let lead = u16::from_be_bytes([key.0[0], key.0[1]]) >> (16 - COPY_PART_BITS);
        &self.parts[lead as usize]
    }

    /// True when `key` was not there yet.
    fn insert(&self, key: CopyKey) -> bool {
        let mut part = self.part(&key).lock();
        if part.capacity() == 0 {
            part.reserve(self.per_part);
        }
        part.insert(key)
    }

    fn contains(&self, key: &CopyKey) -> bool {
        self.part(key).lock().contains(key)
    }

    fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.lock().is_empty())
    }
}

/// Identifies one copy of (part of) a trace: its id and its set of span ids.
fn copy_fingerprint(trace: &TraceData) -> CopyKey {
    (trace.trace_id, legato_traceql::search::copy_fingerprint(trace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_set_tells_each_copy_once_across_partitions() {
        let set = CopySet::new(1000);
        assert!(set.is_empty());
        let id = |lead: u8, last: u8| {
            let mut id = [0u8; 16];
            id[0] = lead;
            id[15] = last;
            id
        };
        // Same trace, two copies; the same copy again; ids that differ only past the
        // partition bits, and ids in other partitions.
        let keys = [
            (id(0, 1), 7),
            (id(0, 1), 8),
            (id(0, 2), 7),
            (id(0xff, 1), 7),
            (id(0x80, 1), 7),
        ];
        for key in keys {
            assert!(!set.contains(&key), "{key:?}");
            assert!(set.insert(key), "{key:?} is new");
        }
        assert!(!set.is_empty());
        for key in keys {
            assert!(set.contains(&key));
            assert!(!set.insert(key), "{key:?} was counted");
        }
        assert!(!set.contains(&(id(0, 3), 7)));
        // Partitions hold only their own keys.
        let filled = set.parts.iter().filter(|p| !p.lock().is_empty()).count();
        assert_eq!(filled, 3);
    }
}
