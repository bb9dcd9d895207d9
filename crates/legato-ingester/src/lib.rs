//! The ingester: makes pushes durable in the write-ahead log before acknowledging them, holds
//! live traces in memory, cuts idle traces into the head block and the head block into
//! complete blocks, uploads them to object storage, and answers trace-by-id for everything
//! not yet in a block.
//!
//! It does not receive OTLP (the distributor does) nor read blocks (the querier does).
//!
//! Durability invariant: every acknowledged span is in a WAL segment that has not been
//! deleted, or in an uploaded block. Memory appends and WAL appends are queued under one
//! lock, so a WAL rotation splits them consistently; segments are deleted only after every
//! block cut from them is uploaded and the traces still live were re-logged in a newer segment.
//!
//! WAL failure rule (see `wal`): a failed or short write or a failed fsync abandons the file;
//! the pushes in that group commit fail with a retryable error and later records go to a
//! fresh, fsynced file, so nothing acknowledged ever sits behind a bad record.

mod config;
pub mod metrics;
mod spill;
mod state;
pub mod tail;
pub mod wal;

use legato_traceql::tags::TagSummary;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use legato_model::{BlockId, Clock, TenantId, TraceId};
use legato_proto::push::{PushError, PushOutcome, PushRequest, PushSink};
use legato_proto::span_wire::WireTrace;
use legato_proto::tempopb;
use legato_proto::trace::ResourceSpans;
use legato_storage::ObjectStore;
use legato_storage::metrics::StorageMetrics;
use legato_storage::{BlockWriter, Blocklist, write_block};
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{IngestLimits, IngestLimitsLookup, IngesterConfig};
use metrics::IngesterMetrics;
use state::{Completing, State};
pub use wal::Wal;

pub struct Ingester {
    cfg: IngesterConfig,
    limits: IngestLimitsLookup,
    wal: Wal,
    state: Mutex<State>,
    store: Arc<dyn ObjectStore>,
    blocklist: Arc<Blocklist>,
    metrics: IngesterMetrics,
    storage_metrics: StorageMetrics,
    clock: Arc<dyn Clock>,
    /// Serialises cuts and uploads.
    flush_lock: tokio::sync::Mutex<()>,
    /// Per-tenant tag summaries of held data and the segments they cover (by address).
    tag_summaries: tokio::sync::Mutex<std::collections::HashMap<TenantId, HeldTags>>,
    /// Until when (clock nanos) the flush loop keeps tag summaries fresh: set by each tag
    /// request, so summaries cost nothing while nobody autocompletes.
    tags_wanted_until: std::sync::atomic::AtomicU64,
    /// `concurrent_flushes` resolved once (counting cores reads cgroup files).
    flush_parallelism: usize,
    cut_requested: Notify,
    /// Tail sampling per tenant (`overrides.*.sampling.tail_sampling`).
    tail: Option<tail::TailLookup>,
    /// The size of the last push refused for memory (0 = none): while it still would not fit,
    /// receivers refuse exports before reading them.
    backpressured: std::sync::atomic::AtomicU64,
    /// Where held segments go when more than `max_resident_bytes / 2` are on the heap.
    spill: Arc<spill::Spill>,
    spill_requested: Notify,
    /// One spill at a time (the push-driven loop and the flush loop both spill).
    spill_lock: tokio::sync::Mutex<()>,
}

/// A live trace whose data goes back this many WAL segments is re-logged into the current
/// one at the next cut, so a trace that keeps receiving spans does not keep old segments
/// (about `max_block_bytes` each) on disk. Every other trace is written to the WAL once.
const RELOG_AFTER_SEGMENTS: u64 = 4;

/// Traces decoded at once when a query scans held data.
const RECENT_SCAN_CHUNK: usize = 256;

/// How long after a tag request the flush loop keeps summarising new data in the background,
/// so the next request has little left to do.
const TAG_INTEREST: Duration = Duration::from_secs(600);

/// A head cut in progress: the WAL rotation, the re-log records and the traces they cover.
struct Cut {
    rotation: wal::Pending,
    rewrites: Vec<wal::Pending>,
    relogged: Vec<(TenantId, TraceId)>,
    cut_seq: u64,
}

/// The rounds of a background loop: every `period`, or sooner when woken.
struct Rounds(tokio::time::Interval);

impl Rounds {
    fn new(period: Duration) -> Self {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self(tick)
    }

    /// Waits for the next tick or `wake`; false once `cancel` fires.
    async fn next(&mut self, wake: &Notify, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = self.0.tick() => true,
            _ = wake.notified() => true,
        }
    }
}

/// What start-up found in the WAL.
#[derive(Debug, Clone, Copy)]
pub struct ReplayStats {
    pub records: usize,
    pub traces: usize,
    pub torn_tails: usize,
}

pub struct IngesterDeps {
    /// The file layer under the WAL ([`wal::StdFs`]; tests inject faults with [`wal::FaultFs`]).
    pub wal_fs: Arc<dyn wal::WalFs>,
    pub store: Arc<dyn ObjectStore>,
    pub blocklist: Arc<Blocklist>,
    pub metrics: IngesterMetrics,
    pub storage_metrics: StorageMetrics,
    pub clock: Arc<dyn Clock>,
    /// Tail sampling per tenant; `None` keeps every trace.
    pub tail: Option<tail::TailLookup>,
}

impl Ingester {
    /// Opens the WAL under `wal_dir` and replays it into memory. Blocking file IO: call it
    /// from a blocking context or before serving.
    pub fn open(
        cfg: IngesterConfig,
        limits: IngestLimitsLookup,
        wal_dir: &std::path::Path,
        deps: IngesterDeps,
    ) -> std::io::Result<(Arc<Self>, ReplayStats)> {
        let spill = spill::Spill::open(&wal_dir.join("spill"), deps.wal_fs.clone())?;
        let now = deps.clock.now_nanos();
        let mut state = State::new(0);
        let (mut records, mut traces) = (0, 0);
        // Replayed traces count as held since the oldest segment: it stays until they are in
        // blocks or re-logged.
        let oldest = wal::oldest_segment(wal_dir)?.unwrap_or(1);
        let threshold = cfg.spill_threshold();
        let mut spill_failed = false;
        // Records are replayed as they are read, and spilled as in service, so a WAL larger
        // than memory comes back within `max_resident_bytes`.
        let (wal, replay, seq) =
            Wal::open_streaming(wal_dir, deps.wal_fs.clone(), deps.metrics.clone(), &mut |record| {
                records += 1;
                match PushRequest::decode(record.as_slice()) {
                    Ok(req) => traces += state.replay(req, now, oldest),
                    Err(e) => tracing::warn!(error = %e, "skipping undecodable WAL record"),
                }
                // After a failure (a full disk) the rest is replayed into memory: retrying for
                // every record would only slow start-up.
                if let Some(threshold) = threshold.filter(|t| !spill_failed && state.resident_bytes > *t) {
                    let plan = state.spill_plan(threshold / 2);
                    let written = spill.write(&plan);
                    spill_failed = !settle_spill(&mut state, &plan, written, &deps.metrics);
                }
            })?;
        state.wal_seq = seq;
        let stats = ReplayStats {
            records,
            traces,
            torn_tails: replay.torn_tails,
        };
        tracing::info!(
            records = stats.records,
            traces,
            torn_tails = stats.torn_tails,
            "WAL replayed"
        );
        deps.metrics.buffered_bytes.set(state.buffered_bytes as i64);
        deps.metrics.resident_bytes.set(state.resident_bytes as i64);
        deps.metrics
            .buffered_bytes_limit
            .set(i64::try_from(cfg.max_buffered_bytes.0).unwrap_or(i64::MAX));
        deps.metrics
            .resident_bytes_limit
            .set(i64::try_from(cfg.max_resident_bytes.0).unwrap_or(i64::MAX));
        let ingester = Arc::new(Self {
            flush_parallelism: cfg.flush_parallelism(),
            cfg,
            limits,
            wal,
            state: Mutex::new(state),
            store: deps.store,
            blocklist: deps.blocklist,
            metrics: deps.metrics,
            storage_metrics: deps.storage_metrics,
            clock: deps.clock,
            flush_lock: tokio::sync::Mutex::new(()),
            tag_summaries: tokio::sync::Mutex::default(),
            tags_wanted_until: std::sync::atomic::AtomicU64::new(0),
            cut_requested: Notify::new(),
            tail: deps.tail,
            backpressured: std::sync::atomic::AtomicU64::new(0),
            spill: Arc::new(spill),
            spill_requested: Notify::new(),
            spill_lock: tokio::sync::Mutex::new(()),
        });
        Ok((ingester, stats))
    }

    /// Makes a push durable, then acknowledges it. Spans refused by limits are listed in the
    /// outcome and never written.
    pub async fn push(&self, mut request: PushRequest) -> Result<PushOutcome, PushError> {
        let tenant = TenantId::new(&request.tenant).map_err(|e| PushError::Unavailable(e.to_string()))?;
        let now = self.clock.now_nanos();
        if let Some(sampler) = self.tail_sampler(&tenant) {
            // Spans of a trace already decided follow the decision: a dropped trace's late
            // spans are acknowledged and not written.
            let mut late = [0u64; 2];
            request.traces.retain(|seg| {
                let decided = <[u8; 16]>::try_from(seg.id.as_ref())
                    .ok()
                    .and_then(|id| sampler.decided(&id));
                if let Some(keep) = decided {
                    late[usize::from(keep)] += u64::from(seg.spans.max(1));
                }
                decided != Some(false)
            });
            for (keep, spans) in late.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                let labels = metrics::DecisionLabels {
                    tenant: tenant.to_string(),
                    decision: if keep == 1 { "sampled" } else { "not_sampled" }.into(),
                };
                self.metrics.tail_late_spans.get_or_create(&labels).inc_by(spans);
            }
            if request.traces.is_empty() {
                return Ok(PushOutcome::default());
            }
        }
        let limits = (self.limits)(&tenant);
        let (pending, outcome, cut_needed, spill_needed) = {
            let mut st = self.state.lock();
            let incoming: u64 = request.traces.iter().map(|t| t.data.len() as u64).sum();
            if let Some(refusal) = self.over_memory(&st, incoming) {
                self.backpressured
                    .store(incoming.max(1), std::sync::atomic::Ordering::Relaxed);
                return Err(refusal);
            }
            let outcome = st.admit(&tenant, &mut request.traces, &limits, now);
            for r in &outcome.rejected {
                let labels = metrics::ReasonLabels {
                    tenant: tenant.to_string(),
                    reason: r.reason.as_str().into(),
                };
                self.metrics.rejected_spans.get_or_create(&labels).inc_by(r.spans);
            }
            if request.traces.is_empty() {
                return Ok(outcome);
            }
            let pending = self.wal.append(request);
            self.metrics.buffered_bytes.set(st.buffered_bytes as i64);
            self.metrics.resident_bytes.set(st.resident_bytes as i64);
            self.metrics.live_traces.set(st.live_trace_count() as i64);
            let spill_needed = self.cfg.spill_threshold().is_some_and(|t| st.resident_bytes > t);
            (
                pending,
                outcome,
                st.head_bytes >= self.cfg.max_block_bytes.0,
                spill_needed,
            )
        };
        if cut_needed {
            self.cut_requested.notify_one();
        }
        if spill_needed {
            self.spill_requested.notify_one();
        }
        pending.wait().await.map_err(PushError::Wal)?;
        Ok(outcome)
    }

    /// Spans of a trace held by this ingester (live, head, or uploading).
    pub fn find_trace(&self, tenant: &TenantId, id: &TraceId) -> Vec<ResourceSpans> {
        let segments = self.state.lock().segments_of(tenant, id);
        decode_segments(&load_or_log(&segments, &self.metrics))
    }

    /// Every trace held for `tenant` as its stored segments (encoded `tempopb.Trace`s), for
    /// a querier on another node.
    pub fn recent_segments(&self, tenant: &TenantId) -> Vec<(TraceId, Vec<Bytes>)> {
        let held = self.state.lock().all_segments(tenant);
        held.into_iter()
            .map(|(id, segments)| (id, load_or_log(&segments, &self.metrics)))
            .collect()
    }

    /// Why a push of `incoming` bytes is refused now, if it is: held data (heap and spill
    /// files) would pass `max_buffered_bytes`, or heap would pass `max_resident_bytes` (spills
    /// have not kept up, or fail). An export larger than a quarter of `max_resident_bytes` is
    /// still taken once spills have brought the heap down to that quarter, so no export is
    /// refused for ever.
    fn over_memory(&self, st: &State, incoming: u64) -> Option<PushError> {
        let buffered = (
            st.buffered_bytes,
            self.cfg.max_buffered_bytes.0,
            "ingester.max_buffered_bytes",
        );
        let resident = (
            st.resident_bytes,
            self.cfg.max_resident_bytes.0,
            "ingester.max_resident_bytes",
        );
        let resident_applies = st.resident_bytes > self.cfg.max_resident_bytes.0 / 4;
        let (held, limit, limit_key) = [Some(buffered), resident_applies.then_some(resident)]
            .into_iter()
            .flatten()
            .find(|(held, limit, _)| *limit > 0 && held + incoming > *limit)?;
        Some(PushError::Overloaded {
            buffered: held,
            limit,
            limit_key,
            retry_after: Duration::from_secs(5),
        })
    }

    /// Moves held segments to spill files until a quarter of `max_resident_bytes` is left on
    /// the heap (head block first, then the live traces idle longest). Runs off the push lock;
    /// a failure leaves everything on the heap.
    async fn spill_excess(&self) {
        let Some(threshold) = self.cfg.spill_threshold() else {
            return;
        };
        let _one_at_a_time = self.spill_lock.lock().await;
        let plan = {
            let st = self.state.lock();
            if st.resident_bytes <= threshold {
                return;
            }
            st.spill_plan(threshold / 2)
        };
        if plan.is_empty() {
            return;
        }
        let spill = self.spill.clone();
        let plan = Arc::new(plan);
        let written = {
            let plan = plan.clone();
            tokio::task::spawn_blocking(move || spill.write(&plan))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
        };
        settle_spill(&mut self.state.lock(), &plan, written, &self.metrics);
    }

    /// Spills whenever a push finds the heap past the threshold, and at least every flush
    /// check period, until cancelled.
    async fn run_spills(self: Arc<Self>, cancel: CancellationToken) {
        let mut rounds = Rounds::new(self.cfg.flush_check_period);
        while rounds.next(&self.spill_requested, &cancel).await {
            self.spill_excess().await;
        }
    }

    /// Runs the periodic cut and flush loop until cancelled, then flushes everything.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        tokio::spawn(self.clone().run_spills(cancel.clone()));
        let mut rounds = Rounds::new(self.cfg.flush_check_period);
        while rounds.next(&self.cut_requested, &cancel).await {
            self.tick().await;
        }
        tracing::info!("ingester stopping: flushing all traces to blocks");
        self.cut_and_flush(true).await;
    }

    /// One round of the flush loop: cut idle traces, cut the head block when due, retry
    /// pending uploads.
    pub async fn tick(&self) {
        let wanted_until = self.tags_wanted_until.load(std::sync::atomic::Ordering::Relaxed);
        if self.clock.now_nanos() < wanted_until {
            self.refresh_tag_summaries().await;
        }
        self.cut_idle();
        self.decide_tail(false).await;
        self.spill_excess().await;
        if self.head_due() {
            self.cut_and_flush(false).await;
        } else if self.state.lock().has_completing() {
            self.flush_completing().await;
        }
    }

    /// Cuts every trace, live or not, into blocks and uploads them (used by `/flush` and
    /// shutdown). Returns whether nothing is left pending.
    pub async fn flush_all(&self) -> bool {
        self.cut_and_flush(true).await;
        !self.state.lock().has_completing()
    }

    fn cut_idle(&self) {
        let now = self.clock.now_nanos();
        let idle = self.cfg.trace_idle_period.as_nanos() as u64;
        let mut st = self.state.lock();
        st.cut_idle(now, idle, &|tenant| self.tail_sampler(tenant).is_some());
        self.metrics.live_traces.set(st.live_trace_count() as i64);
    }

    fn tail_sampler(&self, tenant: &TenantId) -> Option<Arc<tail::TailSampler>> {
        self.tail.as_ref().and_then(|lookup| lookup(tenant))
    }

    /// Tail sampling: decides the traces that are due (their first span arrived
    /// `decision_wait` ago, or early: past `num_traces`, under memory pressure, or every one
    /// at `shutdown`), off the push lock, then moves kept ones to the head block and drops
    /// the rest.
    async fn decide_tail(&self, shutdown: bool) {
        if self.tail.is_none() {
            return;
        }
        let now = self.clock.now_nanos();
        let due = {
            let st = self.state.lock();
            // Three quarters of the memory limit: decide the older half of undecided traces.
            let pressure = st.buffered_bytes > self.cfg.max_buffered_bytes.0 / 4 * 3;
            let reason = match (shutdown, pressure) {
                (true, _) => "shutdown",
                (false, true) => "memory",
                (false, false) => "num_traces",
            };
            let mut due = Vec::new();
            for tenant in st.tenant_ids() {
                let Some(sampler) = self.tail_sampler(&tenant) else {
                    continue;
                };
                let cap = match pressure {
                    true => sampler.num_traces.min(st.live_count(&tenant) / 2),
                    false => sampler.num_traces,
                };
                for (id, segments, early) in st.due_for_decision(&tenant, now, sampler.decision_wait_ns, cap, shutdown)
                {
                    due.push((tenant.clone(), sampler.clone(), id, segments, early.then_some(reason)));
                }
            }
            due
        };
        if due.is_empty() {
            return;
        }
        let metrics = self.metrics.clone();
        let decided = tokio::task::spawn_blocking(move || {
            due.into_iter()
                .filter_map(|(tenant, sampler, id, segments, early)| {
                    // A trace whose spilled segments cannot be read now stays live: the next
                    // tick decides it.
                    let segments = try_load(&segments, &metrics)?;
                    let keep = decide_one(&sampler, &tenant, id, &segments, early, now, &metrics);
                    Some((tenant, id, keep))
                })
                .collect::<Vec<_>>()
        })
        .await;
        match decided {
            Ok(decided) => {
                let mut st = self.state.lock();
                st.settle(&decided, now);
                self.metrics.buffered_bytes.set(st.buffered_bytes as i64);
                self.metrics.live_traces.set(st.live_trace_count() as i64);
            }
            // The traces stay live and are decided at the next tick.
            Err(e) => tracing::error!(error = %e, "tail sampling decisions failed"),
        }
    }

    fn head_due(&self) -> bool {
        let st = self.state.lock();
        let now = self.clock.now_nanos();
        let too_old = st
            .head_since
            .is_some_and(|since| now.saturating_sub(since) >= self.cfg.max_block_duration.as_nanos() as u64);
        too_old || st.head_bytes >= self.cfg.max_block_bytes.0
    }

    async fn cut_and_flush(&self, everything: bool) {
        if everything {
            self.decide_tail(true).await;
        }
        let guard = self.flush_lock.lock().await;
        let Some(cut) = self.cut_head(everything) else {
            drop(guard);
            self.flush_completing().await;
            return;
        };
        // Segments are deleted under the flush lock only: holding it until the re-logged
        // records are durable keeps a re-logged trace's old segment until then. If a re-log
        // fails, those traces keep their old segment number and the next cut tries again.
        let _ = cut.rotation.wait().await;
        let mut relogged = true;
        for r in cut.rewrites {
            if let Err(e) = r.wait().await {
                tracing::warn!(cut_seq = cut.cut_seq, error = %e, "re-logging live traces failed; their old WAL segments are kept");
                relogged = false;
            }
        }
        if relogged {
            self.state.lock().relogged(&cut.relogged, cut.cut_seq + 1);
        }
        drop(guard);
        self.flush_completing().await;
    }

    /// Rotates the WAL, re-logs long-lived live traces into the new segment and turns the
    /// head into blocks to upload. `None` when the head is empty.
    fn cut_head(&self, everything: bool) -> Option<Cut> {
        let mut st = self.state.lock();
        if everything {
            st.cut_idle(u64::MAX, 0, &|_| false);
        }
        if st.head_bytes == 0 {
            return None;
        }
        let cut_seq = st.wal_seq;
        st.wal_seq += 1;
        let rotation = self.wal.rotate(st.wal_seq);
        let (records, relogged) = st.relog_live_older_than(cut_seq.saturating_sub(RELOG_AFTER_SEGMENTS));
        let rewrites = records.into_iter().map(|r| self.wal.append(r)).collect();
        // Blocks encoded at once hold about `max_block_bytes` of input together.
        let max_part = self.cfg.max_block_bytes.0 / self.flush_parallelism.max(1) as u64;
        let cut = st.cut_head(cut_seq, self.flush_parallelism, max_part);
        self.metrics.blocks_cut.inc_by(cut as u64);
        Some(Cut {
            rotation,
            rewrites,
            relogged,
            cut_seq,
        })
    }

    /// Uploads cut blocks; deletes WAL segments whose data is all in uploaded blocks.
    async fn flush_completing(&self) {
        let _guard = self.flush_lock.lock().await;
        let pending: Vec<Completing> = self.state.lock().completing.clone();
        // Encoding is CPU-bound: up to `concurrent_flushes` blocks at once, one core each.
        let mut results = Vec::with_capacity(pending.len());
        for chunk in pending.chunks(self.flush_parallelism.max(1)) {
            let mut uploads: Vec<futures::future::BoxFuture<'_, _>> = Vec::with_capacity(chunk.len());
            for block in chunk {
                uploads.push(Box::pin(self.upload(block)));
            }
            results.extend(futures::future::join_all(uploads).await);
        }
        for (block, result) in pending.into_iter().zip(results) {
            match result {
                Ok(meta) => {
                    self.blocklist.add(meta);
                    let mut st = self.state.lock();
                    st.finish_completing(block.block_id);
                    self.metrics.buffered_bytes.set(st.buffered_bytes as i64);
                }
                Err(e) => {
                    self.metrics.flush_failures.inc();
                    tracing::error!(block = %block.block_id, tenant = %block.tenant, error = %e, "block upload failed; will retry");
                }
            }
        }
        let deletable = self.state.lock().deletable_segments();
        if let Some(seq) = deletable {
            match self.wal.delete_upto(seq) {
                Ok(n) if n > 0 => tracing::debug!(upto = seq, segments = n, "WAL segments deleted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not delete WAL segments"),
            }
        }
    }

    /// Brings every tenant's tag summary up to date with the segments held now.
    async fn refresh_tag_summaries(&self) {
        let tenants = self.state.lock().tenant_ids();
        for tenant in tenants {
            self.refresh_tenant_tags(&tenant).await;
        }
    }

    /// Summarises only segments not seen before (decoding is the cost).
    async fn refresh_tenant_tags(&self, tenant: &TenantId) {
        let all = self.state.lock().all_segments(tenant);
        let mut cache = self.tag_summaries.lock().await;
        let (summary, seen) = cache.entry(tenant.clone()).or_default();
        let current: std::collections::HashSet<(usize, u64, usize)> = all
            .iter()
            .flat_map(|(_, segs)| segs.iter().map(spill::Segment::key))
            .collect();
        let fresh: Vec<(TraceId, Segments)> = all
            .into_iter()
            .map(|(id, segs)| {
                (
                    id,
                    segs.into_iter()
                        .filter(|b| !seen.contains(&b.key()))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, segs)| !segs.is_empty())
            .collect();
        if fresh.is_empty() {
            *seen = current;
            return;
        }
        let taken = std::mem::take(summary);
        let summarised = fresh.iter().map(|(_, segs)| segs.len() as u64).sum();
        self.metrics.tag_summary_segments.inc_by(summarised);
        let metrics = self.metrics.clone();
        let updated = tokio::task::spawn_blocking(move || {
            let mut tags = WireTags {
                summary: taken,
                ..WireTags::default()
            };
            for (_, held) in &fresh {
                // Spilled segments are read back one trace at a time.
                let Some(segments) = try_load(held, &metrics) else {
                    continue;
                };
                let mut wire = WireTrace::default();
                // Held segments were checked at ingest; one that is not readable adds nothing.
                if segments.iter().all(|segment| wire.read(segment).is_ok()) {
                    tags.add(&wire);
                }
            }
            tags.summary
        })
        .await
        .unwrap_or_default();
        *summary = updated;
        // Forget segments that left the ingester, so the set does not grow without bound.
        *seen = current;
    }

    async fn upload(&self, block: &Completing) -> legato_storage::Result<legato_storage::BlockMeta> {
        let tenant = block.tenant.clone();
        let block_id: BlockId = block.block_id;
        let traces = block.traces.clone();
        let now = self.clock.now_nanos();
        let started = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || encode_held_block(&tenant, block_id, &traces, now))
            .await
            .map_err(|e| legato_storage::Error::Join(e.to_string()))??;
        let encoded = started.elapsed();
        write_block(&self.store, &written).await?;
        self.storage_metrics.blocks_flushed.inc();
        self.storage_metrics
            .bytes_flushed
            .inc_by(written.meta.data_size + written.meta.bloom_size);
        tracing::info!(block = %block_id, tenant = %written.meta.tenant_id, spans = written.meta.total_spans,
            traces = written.meta.total_traces, bytes = written.meta.data_size,
            encode_ms = encoded.as_millis() as u64, write_ms = (started.elapsed() - encoded).as_millis() as u64,
            "block flushed");
        Ok(written.meta)
    }
}

#[async_trait::async_trait]
impl PushSink for Ingester {
    async fn push(&self, request: PushRequest) -> Result<PushOutcome, PushError> {
        Ingester::push(self, request).await
    }

    /// Since a push was refused for memory, as long as that push still would not fit: exports
    /// like it would be refused too.
    fn backpressure(&self) -> Option<PushError> {
        use std::sync::atomic::Ordering;
        let refused = self.backpressured.load(Ordering::Relaxed);
        if refused == 0 {
            return None;
        }
        let refusal = self.over_memory(&self.state.lock(), refused);
        if refusal.is_none() {
            self.backpressured.store(0, Ordering::Relaxed);
        }
        refusal
    }
}

/// Encodes a block of held traces (each as the encoded segments it was pushed in, in trace-id
/// order) with its tag summary: what a flush does before uploading. The segments are read in
/// place (`WireTrace`), never decoded into OTLP structs. CPU-heavy: call from a blocking
/// thread. Public for `legato-bench encode`, which measures it alone.
pub fn encode_flushed_block(
    tenant: &TenantId,
    block_id: BlockId,
    traces: &[(TraceId, Vec<Bytes>)],
    now: u64,
) -> legato_storage::Result<legato_storage::WrittenBlock> {
    let mut encoder = FlushEncoder::new(tenant, block_id)?;
    encoder.add(traces)?;
    encoder.finish(now)
}

/// Encodes a block of held traces added in trace-id order, a run of them at a time (so a
/// flush needs only that run's segments in memory, not the block's).
struct FlushEncoder {
    // Memory holds one row group of spans and one trace's tables.
    writer: BlockWriter,
    // Tag names and values for autocomplete, so queriers need not scan the block.
    tags: WireTags,
}

impl FlushEncoder {
    fn new(tenant: &TenantId, block_id: BlockId) -> legato_storage::Result<Self> {
        Ok(Self {
            writer: BlockWriter::new(tenant, block_id, legato_storage::RowGroups::FLUSH)?,
            tags: WireTags::default(),
        })
    }

    fn add(&mut self, traces: &[(TraceId, Vec<Bytes>)]) -> legato_storage::Result<()> {
        let mut wire = WireTrace::default();
        for (id, segments) in traces {
            wire.clear();
            for segment in segments {
                self.writer.read_wire(&mut wire, segment)?;
            }
            self.tags.add(&wire);
            self.writer.push_wire(*id, &wire)?;
        }
        Ok(())
    }

    fn finish(self, now: u64) -> legato_storage::Result<legato_storage::WrittenBlock> {
        let mut written = self.writer.finish(now)?;
        written.tags = Some(Bytes::from(self.tags.summary.to_json()));
        Ok(written)
    }
}

/// Segment bytes a flush reads back from spill files at a time.
const FLUSH_LOAD_BYTES: u64 = 4 << 20;

/// [`encode_flushed_block`] over held segments, spilled ones read back `FLUSH_LOAD_BYTES`
/// at a time.
fn encode_held_block(
    tenant: &TenantId,
    block_id: BlockId,
    traces: &[(TraceId, Segments)],
    now: u64,
) -> legato_storage::Result<legato_storage::WrittenBlock> {
    let mut encoder = FlushEncoder::new(tenant, block_id)?;
    let mut rest = traces;
    while !rest.is_empty() {
        let mut bytes = 0;
        let run = rest
            .iter()
            .take_while(|(_, segments)| {
                let fits = bytes < FLUSH_LOAD_BYTES;
                bytes += segments.iter().map(|s| s.len() as u64).sum::<u64>();
                fits
            })
            .count();
        let loaded = rest[..run]
            .iter()
            .map(|(id, segments)| spill::load(segments).map(|bytes| (*id, bytes)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| legato_storage::Error::Input(format!("reading spilled segments: {e}")))?;
        encoder.add(&loaded)?;
        rest = &rest[run..];
    }
    encoder.finish(now)
}

/// A tag summary built from traces read in place. A resource's or scope's attributes are
/// added once per distinct encoding, not once per trace: spans of one pod share them.
#[derive(Default)]
pub struct WireTags {
    pub summary: TagSummary,
    /// Encodings seen (each field length-prefixed, concatenated).
    seen: std::collections::HashSet<Box<[u8]>>,
    key: Vec<u8>,
}

impl WireTags {
    /// Adds a trace's tag names and values: the same as `TagSummary::add_trace` of its query
    /// view, without building it.
    pub fn add(&mut self, trace: &WireTrace<'_>) {
        let summary = &mut self.summary;
        let root = trace
            .spans
            .iter()
            .filter(|s| s.span.parent_span_id.is_empty())
            .reduce(|r, s| {
                if s.span.start_unix_nano < r.span.start_unix_nano {
                    s
                } else {
                    r
                }
            });
        if let Some(r) = root {
            summary.add_str("intrinsic", "rootName", r.span.name);
            let resource = &trace.resources[trace.scopes[r.scope].resource];
            summary.add_str("intrinsic", "rootServiceName", resource.service_name);
        }
        let mut used = vec![false; trace.scopes.len()];
        for span in &trace.spans {
            used[span.scope] = true;
            summary.add_str("intrinsic", "name", span.span.name);
            if !span.span.status_message.is_empty() {
                summary.add_str("intrinsic", "statusMessage", span.span.status_message);
            }
            add_wire_attrs(summary, "span", trace.attrs(&span.attrs));
            for event in &trace.events[span.events.clone()] {
                summary.add_str("intrinsic", "event:name", event.name);
                add_wire_attrs(summary, "event", trace.attrs(&event.attrs));
            }
            for link in &trace.links[span.links.clone()] {
                add_wire_attrs(summary, "link", trace.attrs(link));
            }
        }
        for (scope, _) in trace.scopes.iter().zip(&used).filter(|(_, used)| **used) {
            let resource = &trace.resources[scope.resource];
            if first_time(&mut self.seen, &mut self.key, trace.raw(&resource.header)) {
                add_wire_attrs(summary, "resource", trace.attrs(&resource.attrs));
            }
            if first_time(&mut self.seen, &mut self.key, trace.raw(&scope.header)) {
                add_wire_attrs(summary, "instrumentation", trace.attrs(&scope.attrs));
                if !scope.name.is_empty() {
                    summary.add_str("intrinsic", "instrumentation:name", scope.name);
                }
            }
        }
    }
}

/// Whether an encoded header is in `seen` for the first time (a copy is kept only then);
/// `key` is scratch space.
fn first_time(seen: &mut std::collections::HashSet<Box<[u8]>>, key: &mut Vec<u8>, header: &[&[u8]]) -> bool {
    key.clear();
    for field in header {
        key.extend_from_slice(&(field.len() as u32).to_le_bytes());
        key.extend_from_slice(field);
    }
    !seen.contains(key.as_slice()) && seen.insert(key.as_slice().into())
}

fn add_wire_attrs(summary: &mut TagSummary, scope: &'static str, attrs: legato_proto::span_wire::Attrs<'_>) {
    use legato_model::span::AttrValue;
    use legato_proto::span_wire::AnyRef;
    for (key, value, raw) in attrs.iter() {
        match value {
            AnyRef::Str(v) => summary.add_str(scope, key, v),
            AnyRef::Int(i) => summary.add(scope, key, &AttrValue::Int(i)),
            AnyRef::Double(d) => summary.add(scope, key, &AttrValue::Float(d)),
            AnyRef::Bool(b) => summary.add(scope, key, &AttrValue::Bool(b)),
            // Arrays, maps and bytes (rare): decoded as the query view decodes them.
            AnyRef::Other => {
                let value = legato_proto::common::AnyValue::decode(raw).ok();
                if let Some(v) = value.as_ref().and_then(legato_proto::span_view::attr_value) {
                    summary.add(scope, key, &v);
                }
            }
        }
    }
}

/// Decides one trace (or follows the decision already made for it) and counts it.
fn decide_one(
    sampler: &tail::TailSampler,
    tenant: &TenantId,
    id: TraceId,
    segments: &[Bytes],
    early: Option<&str>,
    now_ns: u64,
    metrics: &IngesterMetrics,
) -> bool {
    if let Some(keep) = sampler.decided(&id.0) {
        // Late spans of a decided trace (counted when they arrived).
        return keep;
    }
    let tenant_label = tenant.to_string();
    if let Some(reason) = early {
        let labels = metrics::ReasonLabels {
            tenant: tenant_label.clone(),
            reason: reason.into(),
        };
        metrics.tail_early.get_or_create(&labels).inc();
        if reason == "shutdown" && sampler.drop_pending_on_shutdown {
            return false;
        }
    }
    let batches = decode_segments(segments);
    let data = legato_proto::span_view::trace_data(id.0, &batches);
    let verdict = sampler.decide(&tail::TraceView {
        data: &data,
        batches: &batches,
        bytes: segments.iter().map(|s| s.len() as u64).sum(),
        now_ns,
    });
    for (policy, decision) in &verdict.policies {
        let labels = metrics::PolicyLabels {
            tenant: tenant_label.clone(),
            policy: policy.clone(),
            decision: decision.as_str().into(),
        };
        metrics.tail_policy_decisions.get_or_create(&labels).inc();
    }
    let labels = metrics::DecisionLabels {
        tenant: tenant_label,
        decision: if verdict.keep { "sampled" } else { "not_sampled" }.into(),
    };
    metrics.tail_traces.get_or_create(&labels).inc();
    metrics
        .tail_spans
        .get_or_create(&labels)
        .inc_by(data.spans.len() as u64);
    verdict.keep
}

/// A trace's segment bytes, spilled ones read back; `None` (logged and counted) when a spill
/// file cannot be read, an IO error on a file written moments ago. The WAL still holds them.
fn try_load(segments: &[spill::Segment], metrics: &IngesterMetrics) -> Option<Vec<Bytes>> {
    spill::load(segments)
        .inspect_err(|e| {
            metrics.count_spill_failure("read");
            tracing::error!(error = %e, "reading spilled segments failed");
        })
        .ok()
}

/// [`try_load`] for answers: a spilled segment that cannot be read is left out of this
/// answer only (a flush that cannot read it fails and is retried).
fn load_or_log(segments: &[spill::Segment], metrics: &IngesterMetrics) -> Vec<Bytes> {
    try_load(segments, metrics).unwrap_or_else(|| segments.iter().filter_map(spill::Segment::heap).cloned().collect())
}

/// Applies the outcome of writing a spill plan: the written segments replace their heap
/// copies, or the failure is counted and logged (the data stays on the heap). Returns whether
/// the plan was written.
fn settle_spill(
    st: &mut State,
    plan: &[state::SpillItem],
    written: std::io::Result<Vec<Vec<spill::Segment>>>,
    metrics: &IngesterMetrics,
) -> bool {
    match written {
        Ok(spilled) => {
            metrics.spilled_bytes.inc_by(st.apply_spill(plan, &spilled));
            metrics.resident_bytes.set(st.resident_bytes as i64);
            true
        }
        Err(e) => {
            metrics.count_spill_failure("write");
            tracing::error!(error = %e, "spilling held segments failed; they stay in memory");
            false
        }
    }
}

/// The OTLP batches of a trace's held segments (each an encoded `tempopb.Trace`).
fn decode_segments(segments: &[Bytes]) -> Vec<ResourceSpans> {
    segments
        .iter()
        .filter_map(|d| tempopb::Trace::decode(d.as_ref()).ok())
        .flat_map(|t| t.resource_spans)
        .collect()
}

/// A tenant's tag summary of held data and the segments it covers.
type HeldTags = (
    legato_traceql::tags::TagSummary,
    std::collections::HashSet<(usize, u64, usize)>,
);

/// Encoded segments of one trace, as held (on the heap or spilled).
pub(crate) type Segments = Vec<spill::Segment>;

#[async_trait::async_trait]
impl legato_proto::push::RecentTraces for Ingester {
    async fn find_trace(&self, tenant: &TenantId, id: &TraceId) -> Vec<ResourceSpans> {
        Ingester::find_trace(self, tenant, id)
    }

    /// Summarises what arrived since the last refresh, then serialises the summary. After a
    /// request the flush loop keeps summarising new data for `TAG_INTEREST`, so the next
    /// request finds little left to do; while nobody asks for tags, ingest pays nothing for
    /// them. Values of traces that have since moved to blocks stay in it (blocks' own
    /// summaries hold them anyway). With a filter there is no summary: callers scan.
    async fn recent_tag_summary(&self, tenant: &TenantId, filter: Option<&str>) -> Result<Option<Vec<u8>>, String> {
        if filter.is_some() {
            return Ok(None);
        }
        let now = self.clock.now_nanos();
        let until = now.saturating_add(TAG_INTEREST.as_nanos() as u64);
        let previous = self
            .tags_wanted_until
            .fetch_max(until, std::sync::atomic::Ordering::Relaxed);
        if previous < now {
            // Interest had lapsed: segments came and went unseen, and a new one may sit at a
            // freed one's address (how `seen` identifies them). Start over.
            self.tag_summaries.lock().await.clear();
        }
        self.refresh_tenant_tags(tenant).await;
        Ok(self
            .tag_summaries
            .lock()
            .await
            .get(tenant)
            .map(|(summary, _)| summary.to_json()))
    }

    /// Walks the held traces `RECENT_SCAN_CHUNK` at a time: the push lock is held only to
    /// list ids and to take one chunk's segments (reference-counted, not copied), and only one
    /// chunk is decoded at a time, off the runtime threads.
    async fn scan_recent(&self, tenant: &TenantId, visit: legato_proto::push::RecentVisitor) -> Result<(), String> {
        self.scan_recent_filtered(tenant, None, visit).await
    }

    /// Traces the prefilter refuses are not decoded (it reads the segments in place).
    async fn scan_recent_filtered(
        &self,
        tenant: &TenantId,
        prefilter: Option<legato_proto::push::RecentPrefilter>,
        visit: legato_proto::push::RecentVisitor,
    ) -> Result<(), String> {
        let ids = self.state.lock().trace_ids(tenant);
        for chunk in ids.chunks(RECENT_SCAN_CHUNK) {
            let held: Vec<(TraceId, Segments)> = {
                let st = self.state.lock();
                chunk.iter().map(|id| (*id, st.segments_of(tenant, id))).collect()
            };
            let (visit, prefilter) = (visit.clone(), prefilter.clone());
            let metrics = self.metrics.clone();
            let go_on = tokio::task::spawn_blocking(move || {
                held.into_iter()
                    .filter(|(_, segments)| !segments.is_empty())
                    .map(|(id, segments)| (id, load_or_log(&segments, &metrics)))
                    .filter(|(_, segments)| prefilter.as_ref().is_none_or(|p| p(segments)))
                    .all(|(id, segments)| {
                        let bytes = segments.iter().map(|s| s.len() as u64).sum();
                        let batches: Vec<ResourceSpans> = decode_segments(&segments);
                        visit(legato_proto::span_view::trace_data(id.0, &batches), bytes)
                    })
            })
            .await
            .map_err(|e| format!("scanning recent traces: {e}"))?;
            if !go_on {
                break;
            }
        }
        Ok(())
    }
}
