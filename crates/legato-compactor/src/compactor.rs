//! The compaction cycle: per tenant, list; finish interrupted compactions; apply retention;
//! delete old compacted blocks and abandoned uploads; plan and run the jobs this compactor
//! owns; write the tenant index.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use legato_model::{BlockId, Clock, TenantId};
use legato_storage::metrics::StorageMetrics;
use legato_storage::{
    BlockMeta, BlockReader, Blocklist, CompactedBlockMeta, DEFAULT_PART_SIZE, ObjectStore, TenantListing, commit_block,
    delete_block, list_tenant, read_compacted_marker, write_compacted_marker, write_tenant_index,
};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::job::merge_job;
use crate::plan::{Job, PlanLimits, index_key, plan};
use crate::{CompactionConfig, CompactorMetrics, Error, Result};

/// Per-tenant `block_retention` override; `None` means the configured default.
pub type RetentionLookup = Arc<dyn Fn(&TenantId) -> Option<Duration> + Send + Sync>;

/// Whether this compactor owns a key: a job key `<tenant>/<window>/<level>` or a tenant's
/// housekeeping key `index/<tenant>`. Several compactors split the work through a ring; a
/// single compactor owns everything.
pub type Ownership = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Retention by policy: traces matching a TraceQL filter are kept for longer than the
/// tenant's `block_retention` (`overrides.*.compaction.retention_policies`).
#[derive(Clone)]
pub struct RetentionPolicy {
    /// The filter as written (it names the policy in block metas).
    pub query: String,
    pub plan: Arc<legato_traceql::eval::Plan>,
    pub retention: Duration,
}

impl std::fmt::Debug for RetentionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionPolicy")
            .field("query", &self.query)
            .field("retention", &self.retention)
            .finish()
    }
}

/// A tenant's retention policies (empty = none).
pub type RetentionPoliciesLookup = Arc<dyn Fn(&TenantId) -> Vec<RetentionPolicy> + Send + Sync>;

/// A lookup with no per-tenant overrides.
pub fn no_retention_overrides() -> RetentionLookup {
    Arc::new(|_| None)
}

/// Ownership of every key (a single compactor).
pub fn owns_everything() -> Ownership {
    Arc::new(|_| true)
}

/// What the compactor is built from.
pub struct CompactorDeps {
    pub store: Arc<dyn ObjectStore>,
    /// The process's blocklist: updated in place as blocks are written, marked and deleted,
    /// so readers in the same process see the changes at once.
    pub blocklist: Arc<Blocklist>,
    pub clock: Arc<dyn Clock>,
    pub retention: RetentionLookup,
    pub owns: Ownership,
    pub metrics: CompactorMetrics,
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleStats {
    pub tenants: usize,
    /// Tenants whose cycle failed (the others still ran).
    pub tenant_errors: usize,
    pub jobs_planned: usize,
    /// Planned jobs left to the compactor that owns them.
    pub jobs_not_owned: usize,
    pub jobs_run: usize,
    pub jobs_failed: usize,
    pub blocks_compacted: usize,
    pub blocks_written: usize,
    pub spans_deduped: u64,
    pub blocks_expired: usize,
    /// Expired blocks rewritten with the traces their retention policies keep.
    pub blocks_filtered: usize,
    pub blocks_deleted: usize,
    pub orphans_deleted: usize,
    pub markers_repaired: usize,
    pub indexes_written: usize,
}

impl CycleStats {
    /// Whether the cycle changed or attempted to change anything (worth a log line).
    pub fn did_work(&self) -> bool {
        let idle = CycleStats {
            tenants: self.tenants,
            jobs_planned: self.jobs_planned,
            jobs_not_owned: self.jobs_not_owned,
            indexes_written: self.indexes_written,
            ..CycleStats::default()
        };
        *self != idle
    }
}

/// Merges blocks, applies retention, and maintains compacted markers and tenant indexes.
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    blocklist: Arc<Blocklist>,
    reader: BlockReader,
    config: CompactionConfig,
    clock: Arc<dyn Clock>,
    retention: RetentionLookup,
    owns: Ownership,
    metrics: CompactorMetrics,
    /// Metas read in earlier cycles, so a listing reads only new meta files.
    known: Mutex<HashMap<TenantId, TenantListing>>,
    /// Part size of the streamed upload of an output's data file.
    part_size: usize,
    retention_policies: RetentionPoliciesLookup,
}

impl Compactor {
    pub fn new(deps: CompactorDeps, config: CompactionConfig) -> Self {
        Self {
            reader: BlockReader::new(deps.store.clone(), StorageMetrics::default()),
            store: deps.store,
            blocklist: deps.blocklist,
            config,
            clock: deps.clock,
            retention: deps.retention,
            owns: deps.owns,
            metrics: deps.metrics,
            known: Mutex::default(),
            part_size: DEFAULT_PART_SIZE,
            retention_policies: Arc::new(|_| Vec::new()),
        }
    }

    /// Keeps traces matching a tenant's retention policies past its `block_retention`.
    pub fn with_retention_policies(mut self, lookup: RetentionPoliciesLookup) -> Self {
        self.retention_policies = lookup;
        self
    }

    /// Uploads outputs in parts of `bytes` (`storage.trace.s3.part_size`; S3 needs at least
    /// 5 MiB). Memory per running job is about four parts.
    pub fn with_upload_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// How a job writes block `id`.
    fn output(&self, id: BlockId) -> crate::job::Output {
        crate::job::Output {
            id,
            now_nanos: self.clock.now_nanos(),
            part_size: self.part_size,
            nice: self.config.nice,
        }
    }

    pub fn metrics(&self) -> &CompactorMetrics {
        &self.metrics
    }

    /// Runs a cycle every `compaction_cycle` until cancelled. Cancelling mid-cycle is safe:
    /// every step leaves the bucket consistent, and the next run finishes or cleans up.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.compaction_cycle);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                result = self.run_cycle() => match result {
                    Ok(stats) if stats.did_work() => tracing::info!(?stats, "compaction cycle"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "compaction cycle failed"),
                },
            }
        }
    }

    /// One pass over every tenant in the bucket. A failing tenant or job is logged and
    /// counted; the others still run.
    pub async fn run_cycle(&self) -> Result<CycleStats> {
        self.metrics.cycles.inc();
        let root = self
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| legato_storage::Error::store("/", e))?;
        let mut stats = CycleStats::default();
        for dir in root.common_prefixes {
            let Some(Ok(tenant)) = dir.filename().map(TenantId::new) else {
                continue;
            };
            stats.tenants += 1;
            if let Err(e) = self.tenant_cycle(&tenant, &mut stats).await {
                stats.tenant_errors += 1;
                self.metrics.cycle_errors.inc();
                tracing::warn!(%tenant, error = %e, "compaction cycle of tenant failed");
            }
        }
        Ok(stats)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(%tenant))]
    async fn tenant_cycle(&self, tenant: &TenantId, stats: &mut CycleStats) -> Result<()> {
        let now = self.clock.now_nanos();
        let known = self.known.lock().get(tenant).cloned().unwrap_or_default();
        let mut listing = list_tenant(&self.store, tenant, &known.metas, &known.compacted).await?;
        let housekeeper = (self.owns)(&index_key(tenant));
        // The index is rewritten after housekeeping and after each job, not once at the end
        // of the cycle: a cycle over much data runs for minutes, and readers that poll the
        // index in the meantime must see the blocks flushed and compacted since the last one.
        if housekeeper {
            self.housekeeping(tenant, &mut listing, now, stats).await?;
            self.write_index(tenant, &listing, stats).await?;
        }
        let live: Vec<Arc<BlockMeta>> = listing.live().into_values().collect();
        for job in plan(tenant, &live, &self.limits()) {
            stats.jobs_planned += 1;
            if !(self.owns)(&job.key()) {
                stats.jobs_not_owned += 1;
                continue;
            }
            let started = Instant::now();
            match self.run_job(&job, &mut listing).await {
                Ok(deduped) => {
                    stats.jobs_run += 1;
                    stats.blocks_compacted += job.blocks.len();
                    stats.blocks_written += 1;
                    stats.spans_deduped += deduped;
                    self.metrics.jobs.inc();
                    self.metrics.job_seconds.observe(started.elapsed().as_secs_f64());
                }
                Err(e) => {
                    stats.jobs_failed += 1;
                    self.metrics.job_errors.inc();
                    tracing::warn!(%tenant, job = %job.key(), error = %e, "compaction job failed");
                }
            }
            if housekeeper {
                // Listed again first: blocks flushed since the cycle began belong in the
                // index too, and so does the output of a job whose commit landed but whose
                // answer was lost. A failure here waits for the next job or cycle.
                let refreshed = match list_tenant(&self.store, tenant, &listing.metas, &listing.compacted).await {
                    Ok(fresh) => {
                        listing = fresh;
                        self.write_index(tenant, &listing, stats).await
                    }
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = refreshed {
                    tracing::warn!(%tenant, error = %e, "tenant index not rewritten after a compaction job");
                }
            }
        }
        self.known.lock().insert(tenant.clone(), listing);
        Ok(())
    }

    async fn write_index(&self, tenant: &TenantId, listing: &TenantListing, stats: &mut CycleStats) -> Result<()> {
        let index = listing.to_index(self.clock.now_nanos());
        write_tenant_index(&self.store, tenant, &index).await?;
        stats.indexes_written += 1;
        self.metrics.tenant_indexes_written.inc();
        Ok(())
    }

    /// Finishes interrupted compactions, applies retention, deletes compacted blocks past
    /// `compacted_block_retention` and abandoned block directories past the same grace.
    async fn housekeeping(
        &self,
        tenant: &TenantId,
        listing: &mut TenantListing,
        now: u64,
        stats: &mut CycleStats,
    ) -> Result<()> {
        let unmarked = listing.unmarked_replaced();
        // Their replacing blocks may be unknown to this process's blocklist (a job whose
        // commit landed but whose answer was lost never added its output): show those first,
        // or marking the inputs would hide their traces here until the next poll.
        let replaced: HashSet<BlockId> = unmarked.iter().map(|m| m.block_id).collect();
        for meta in listing.metas.values() {
            if meta.replaces.iter().any(|id| replaced.contains(id)) {
                self.blocklist.add(meta.as_ref().clone());
            }
        }
        for meta in unmarked {
            self.mark(listing, &meta, now).await?;
            stats.markers_repaired += 1;
            self.metrics.markers_repaired.inc();
            tracing::info!(%tenant, block = %meta.block_id, "marked the input of an interrupted compaction");
        }

        let retention = (self.retention)(tenant).unwrap_or(self.config.block_retention);
        let cutoff = now.saturating_sub(nanos(retention));
        let mut expired: Vec<Arc<BlockMeta>> = listing
            .live()
            .into_values()
            .filter(|m| m.end_time_unix_nano < cutoff)
            .collect();
        expired.sort_by_key(|m| m.block_id);
        let policies = (self.retention_policies)(tenant);
        for meta in expired {
            // Policies whose retention the block has not outlived keep their traces.
            let wanted: Vec<&RetentionPolicy> = policies
                .iter()
                .filter(|p| meta.end_time_unix_nano >= now.saturating_sub(nanos(p.retention)))
                .collect();
            if !wanted.is_empty() {
                let key = policy_key(&wanted);
                if meta.retention_filter.as_deref() == Some(key.as_str()) {
                    continue;
                }
                match self.filter_block(tenant, listing, &meta, &wanted, key).await {
                    Ok(kept) if kept > 0 => {
                        stats.blocks_filtered += 1;
                        continue;
                    }
                    // Nothing matched: the block just expires.
                    Ok(_) => {}
                    Err(e) => {
                        // Never expire what a policy may keep: try again next cycle.
                        tracing::warn!(%tenant, block = %meta.block_id, error = %e, "retention by policy failed to rewrite a block; it is kept");
                        self.metrics.job_errors.inc();
                        continue;
                    }
                }
            }
            self.mark(listing, &meta, now).await?;
            stats.blocks_expired += 1;
            self.metrics.blocks_expired.inc();
            tracing::info!(%tenant, block = %meta.block_id, retention = ?retention, "block expired");
        }

        let grace = nanos(self.config.compacted_block_retention);
        let deletable: Vec<BlockId> = listing
            .compacted
            .values()
            .filter(|c| c.compacted_at_unix_nano.saturating_add(grace) < now)
            .map(|c| c.meta.block_id)
            .collect();
        for id in deletable {
            delete_block(&self.store, tenant, id).await?;
            listing.compacted.remove(&id);
            self.blocklist.remove(tenant, id);
            stats.blocks_deleted += 1;
            self.metrics.blocks_deleted.inc();
            tracing::info!(%tenant, block = %id, "compacted block deleted");
        }

        let orphans: Vec<BlockId> = listing
            .orphans
            .iter()
            .filter(|(_, newest)| newest.saturating_add(grace) < now)
            .map(|(id, _)| *id)
            .collect();
        for id in orphans {
            delete_block(&self.store, tenant, id).await?;
            listing.orphans.remove(&id);
            stats.orphans_deleted += 1;
            self.metrics.orphans_deleted.inc();
            tracing::info!(%tenant, block = %id, "abandoned block directory deleted");
        }
        Ok(())
    }

    /// Rewrites an expired block keeping only the traces `policies` match, with the crash
    /// safety of a compaction job (the output names the input in `replaces` before the input
    /// is marked). Returns the traces kept; with none, nothing is committed.
    async fn filter_block(
        &self,
        tenant: &TenantId,
        listing: &mut TenantListing,
        input: &Arc<BlockMeta>,
        policies: &[&RetentionPolicy],
        key: String,
    ) -> Result<u64> {
        let plans: Vec<Arc<legato_traceql::eval::Plan>> = policies.iter().map(|p| p.plan.clone()).collect();
        let keep: crate::job::Keep = Arc::new(move |trace| plans.iter().any(|p| !p.eval(trace).is_empty()));
        let job = Job {
            tenant: tenant.clone(),
            window: 0,
            level: input.compaction_level,
            blocks: vec![input.clone()],
        };
        let output = BlockId::random();
        let (mut written, kept) =
            crate::job::filter_block(&self.reader, &self.store, &job, self.output(output), keep).await?;
        if kept == 0 {
            // Its uploaded data file is an orphan, deleted after the grace period.
            return Ok(0);
        }
        written.meta.retention_filter = Some(key);
        if read_compacted_marker(&self.store, tenant, input.block_id)
            .await?
            .is_some()
        {
            return Err(Error::InputGone {
                tenant: tenant.clone(),
                block: input.block_id,
            });
        }
        commit_block(&self.store, &written).await?;
        listing.metas.insert(output, Arc::new(written.meta.clone()));
        self.blocklist.add(written.meta.clone());
        self.metrics.blocks_written.inc();
        self.metrics.blocks_filtered.inc();
        tracing::info!(%tenant, input = %input.block_id, output = %output, traces = kept,
            dropped = input.total_traces.saturating_sub(kept), "block past retention rewritten with the traces its retention policies keep");
        self.mark(listing, input, self.clock.now_nanos()).await?;
        Ok(kept)
    }

    /// Writes a compacted marker and records it in the listing and the blocklist.
    async fn mark(&self, listing: &mut TenantListing, meta: &BlockMeta, now: u64) -> Result<CompactedBlockMeta> {
        let marker = write_compacted_marker(&self.store, meta, now).await?;
        listing.metas.remove(&meta.block_id);
        listing.compacted.insert(meta.block_id, Arc::new(marker.clone()));
        self.blocklist.mark_compacted(marker.clone());
        Ok(marker)
    }

    /// Merges while uploading the output's data file, commits the output (bloom, tags, then
    /// meta.json naming the inputs in `replaces`), then marks the inputs. Returns the number
    /// of duplicate spans dropped.
    #[tracing::instrument(level = "info", skip_all, fields(tenant = %job.tenant, job = %job.key(), inputs = job.blocks.len()))]
    async fn run_job(&self, job: &Job, listing: &mut TenantListing) -> Result<u64> {
        let output = BlockId::random();
        let written = merge_job(&self.reader, &self.store, job, self.output(output)).await?;
        // Another compactor (after a ring change) may have taken an input meanwhile: then
        // committing would show its traces twice. The output's objects become an orphan.
        for input in &job.blocks {
            if read_compacted_marker(&self.store, &job.tenant, input.block_id)
                .await?
                .is_some()
            {
                return Err(Error::InputGone {
                    tenant: job.tenant.clone(),
                    block: input.block_id,
                });
            }
        }
        commit_block(&self.store, &written).await?;
        let meta = Arc::new(written.meta.clone());
        listing.metas.insert(output, meta.clone());
        self.blocklist.add(written.meta.clone());
        self.metrics.blocks_written.inc();
        self.metrics.spans_written.inc_by(meta.total_spans);
        let now = self.clock.now_nanos();
        for input in &job.blocks {
            self.mark(listing, input, now).await?;
            self.metrics.blocks_compacted.inc();
        }
        let deduped = job.total_spans().saturating_sub(meta.total_spans);
        self.metrics.spans_deduped.inc_by(deduped);
        tracing::info!(output = %output, spans = meta.total_spans, traces = meta.total_traces, deduped,
            level = meta.compaction_level, "blocks compacted");
        Ok(deduped)
    }

    fn limits(&self) -> PlanLimits {
        PlanLimits {
            window_nanos: nanos(self.config.compaction_window),
            max_input_blocks: self.config.max_input_blocks,
            max_spans: self.config.max_compaction_objects,
            max_bytes: self.config.max_block_bytes.0,
        }
    }
}

/// Names the set of policies a rewritten block was filtered with.
fn policy_key(policies: &[&RetentionPolicy]) -> String {
    let mut parts: Vec<String> = policies
        .iter()
        .map(|p| format!("{} for {}s", p.query, p.retention.as_secs()))
        .collect();
    parts.sort();
    parts.join(" | ")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
