//! The set of complete blocks per tenant, kept in memory and refreshed from the tenant index
//! (when fresh) or by listing the bucket. Writers in the same process add their blocks
//! directly, so a flushed block is visible at once; the compactor in the same process marks
//! its inputs compacted directly, so they disappear at once.
//!
//! A block is visible when it has a meta.json, no compacted marker, and no known block lists
//! it in `replaces`: a compaction's output hides its inputs from the moment its meta.json
//! exists, whether or not the inputs' markers were written.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use legato_model::{BlockId, Clock, SystemClock, TenantId};
use object_store::ObjectStore;
use parking_lot::RwLock;

use crate::listing::{list_tenant, visible};
use crate::tenant_index::read_tenant_index;
use crate::{BlockMeta, CompactedBlockMeta, Error, Result};

/// How old a tenant index may be before readers list the tenant instead (default).
pub const DEFAULT_STALE_TENANT_INDEX: Duration = Duration::from_secs(15 * 60);

/// How much later than an in-process change an index must have been built to be trusted to
/// contain it: covers clock skew between this process and the compactor writing the index.
const INDEX_CLOCK_SLACK_NANOS: u64 = 5 * 60 * 1_000_000_000;

/// Known blocks of one tenant.
#[derive(Debug, Default, Clone)]
struct TenantBlocks {
    /// Every committed block, visible or not.
    metas: HashMap<BlockId, Arc<BlockMeta>>,
    compacted: HashMap<BlockId, Arc<CompactedBlockMeta>>,
    /// `metas` minus compacted and replaced blocks.
    live: HashMap<BlockId, Arc<BlockMeta>>,
}

impl TenantBlocks {
    fn refresh(&mut self) {
        self.live = visible(&self.metas, &self.compacted);
    }
}

/// A change made in this process, kept across polls until the source of a poll must know it.
#[derive(Debug, Clone)]
enum Change {
    Added(Arc<BlockMeta>),
    Compacted(Arc<CompactedBlockMeta>),
}

#[derive(Debug, Clone)]
struct Pending {
    tenant: TenantId,
    change: Change,
    /// Poll generation when the change was made: a listing that started later has seen it.
    generation: u64,
    /// Clock time of the change: an index built (sufficiently) later has seen it.
    at_nanos: u64,
}

/// Where a poll took a tenant's blocks from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Listing,
    Index { created_at_unix_nano: u64 },
}

/// What one poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Tenants whose blocks came from a fresh tenant index.
    pub tenants_from_index: usize,
    /// Tenants listed because their index was missing, unreadable or stale.
    pub tenants_listed: usize,
    /// Visible blocks after the poll, all tenants.
    pub live_blocks: usize,
}

/// The in-memory blocklist shared by queriers, ingesters and the compactor of a process.
pub struct Blocklist {
    tenants: RwLock<HashMap<TenantId, TenantBlocks>>,
    /// Changes made in-process: a poll whose source predates a change must not undo it.
    pending: RwLock<HashMap<BlockId, Pending>>,
    generation: AtomicU64,
    stale_index: Duration,
    clock: Arc<dyn Clock>,
}

impl Default for Blocklist {
    fn default() -> Self {
        Self::new(DEFAULT_STALE_TENANT_INDEX, Arc::new(SystemClock))
    }
}

impl Blocklist {
    /// A blocklist that trusts tenant indexes up to `stale_index` old (zero: at any age).
    pub fn new(stale_index: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            tenants: RwLock::default(),
            pending: RwLock::default(),
            generation: AtomicU64::new(0),
            stale_index,
            clock,
        }
    }

    fn record(&self, tenant: &TenantId, id: BlockId, change: Change) {
        let pending = Pending {
            tenant: tenant.clone(),
            change,
            generation: self.generation.load(Ordering::SeqCst),
            at_nanos: self.clock.now_nanos(),
        };
        self.pending.write().insert(id, pending);
    }

    /// Makes a block written by this process visible.
    pub fn add(&self, meta: BlockMeta) {
        let meta = Arc::new(meta);
        self.record(&meta.tenant_id, meta.block_id, Change::Added(meta.clone()));
        let mut tenants = self.tenants.write();
        let blocks = tenants.entry(meta.tenant_id.clone()).or_default();
        blocks.metas.insert(meta.block_id, meta);
        blocks.refresh();
    }

    /// Hides a block this process marked compacted (or expired).
    pub fn mark_compacted(&self, marker: CompactedBlockMeta) {
        let marker = Arc::new(marker);
        let (tenant, id) = (marker.meta.tenant_id.clone(), marker.meta.block_id);
        self.record(&tenant, id, Change::Compacted(marker.clone()));
        let mut tenants = self.tenants.write();
        let blocks = tenants.entry(tenant).or_default();
        blocks.metas.remove(&id);
        blocks.compacted.insert(id, marker);
        blocks.refresh();
    }

    /// Forgets a block whose objects this process deleted.
    pub fn remove(&self, tenant: &TenantId, id: BlockId) {
        self.pending.write().remove(&id);
        if let Some(blocks) = self.tenants.write().get_mut(tenant) {
            blocks.metas.remove(&id);
            blocks.compacted.remove(&id);
            blocks.refresh();
        }
    }

    /// Visible blocks of a tenant.
    pub fn blocks(&self, tenant: &TenantId) -> Vec<Arc<BlockMeta>> {
        self.tenants
            .read()
            .get(tenant)
            .map(|b| b.live.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Compacted blocks of a tenant whose objects are not deleted yet.
    pub fn compacted(&self, tenant: &TenantId) -> Vec<Arc<CompactedBlockMeta>> {
        self.tenants
            .read()
            .get(tenant)
            .map(|b| b.compacted.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Tenants with known blocks.
    pub fn tenants(&self) -> Vec<TenantId> {
        self.tenants.read().keys().cloned().collect()
    }

    /// Ids of the visible blocks of every tenant.
    pub fn all_block_ids(&self) -> HashSet<BlockId> {
        self.tenants
            .read()
            .values()
            .flat_map(|b| b.live.keys().copied())
            .collect()
    }

    /// Refreshes every tenant from its index or a listing; see [`Blocklist::poll_with_stats`].
    pub async fn poll(&self, store: &Arc<dyn ObjectStore>) -> Result<()> {
        self.poll_with_stats(store).await.map(|_| ())
    }

    /// Lists the tenants in the bucket and replaces the blocklist with what they hold: from
    /// `<tenant>/index.json.gz` when it is no older than the staleness bound, else from a
    /// listing of the tenant (meta files already known are not read again). Changes made in
    /// this process that the source cannot know yet are kept.
    pub async fn poll_with_stats(&self, store: &Arc<dyn ObjectStore>) -> Result<PollStats> {
        let started = self.generation.fetch_add(1, Ordering::SeqCst);
        let root = store
            .list_with_delimiter(None)
            .await
            .map_err(|e| Error::store("/", e))?;
        let mut stats = PollStats::default();
        let mut fresh: HashMap<TenantId, (TenantBlocks, Source)> = HashMap::new();
        for tenant_dir in root.common_prefixes {
            let Some(Ok(tenant)) = tenant_dir.filename().map(TenantId::new) else {
                continue;
            };
            if let Some(index) = read_tenant_index(store, &tenant).await?
                && self.index_is_fresh(index.created_at_unix_nano)
            {
                stats.tenants_from_index += 1;
                let blocks = TenantBlocks {
                    metas: index.meta.into_iter().map(|m| (m.block_id, Arc::new(m))).collect(),
                    compacted: index
                        .compacted
                        .into_iter()
                        .map(|c| (c.meta.block_id, Arc::new(c)))
                        .collect(),
                    live: HashMap::new(),
                };
                let source = Source::Index {
                    created_at_unix_nano: index.created_at_unix_nano,
                };
                fresh.insert(tenant, (blocks, source));
                continue;
            }
            stats.tenants_listed += 1;
            let known = self.tenants.read().get(&tenant).cloned().unwrap_or_default();
            let listing = list_tenant(store, &tenant, &known.metas, &known.compacted).await?;
            let blocks = TenantBlocks {
                metas: listing.metas,
                compacted: listing.compacted,
                live: HashMap::new(),
            };
            fresh.insert(tenant, (blocks, Source::Listing));
        }

        let mut tenants = self.tenants.write();
        let mut pending = self.pending.write();
        pending.retain(|_, p| {
            let source = fresh.get(&p.tenant).map_or(Source::Listing, |(_, s)| *s);
            let known = match source {
                Source::Listing => p.generation < started,
                Source::Index { created_at_unix_nano } => {
                    p.at_nanos.saturating_add(INDEX_CLOCK_SLACK_NANOS) < created_at_unix_nano
                }
            };
            !known
        });
        for (id, p) in pending.iter() {
            let (blocks, _) = fresh
                .entry(p.tenant.clone())
                .or_insert_with(|| (TenantBlocks::default(), Source::Listing));
            match &p.change {
                Change::Added(meta) => {
                    if !blocks.compacted.contains_key(id) {
                        blocks.metas.insert(*id, meta.clone());
                    }
                }
                Change::Compacted(marker) => {
                    blocks.metas.remove(id);
                    blocks.compacted.insert(*id, marker.clone());
                }
            }
        }
        *tenants = fresh
            .into_iter()
            .map(|(tenant, (mut blocks, _))| {
                blocks.refresh();
                (tenant, blocks)
            })
            .collect();
        stats.live_blocks = tenants.values().map(|b| b.live.len()).sum();
        Ok(stats)
    }

    fn index_is_fresh(&self, created_at_unix_nano: u64) -> bool {
        if self.stale_index.is_zero() {
            return true;
        }
        let age = self.clock.now_nanos().saturating_sub(created_at_unix_nano);
        u128::from(age) <= self.stale_index.as_nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn meta(tenant: &TenantId) -> BlockMeta {
        BlockMeta {
            encoding: crate::ENCODING_V1.into(),
            block_id: BlockId::random(),
            tenant_id: tenant.clone(),
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
            total_traces: 0,
            total_spans: 0,
            row_groups: 0,
            data_size: 0,
            footer_size: 0,
            bloom_size: 0,
            compaction_level: 0,
            created_at_unix_nano: 0,
            replaces: Vec::new(),
            retention_filter: None,
        }
    }

    #[tokio::test]
    async fn a_block_added_during_a_poll_is_not_dropped() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let list = Blocklist::default();
        let tenant = TenantId::single();
        // Simulate an add racing a poll: the add lands after the poll took its generation.
        let started = list.generation.load(Ordering::SeqCst);
        list.add(meta(&tenant));
        assert_eq!(list.pending.read().values().next().unwrap().generation, started);
        list.poll(&store).await.unwrap();
        assert_eq!(
            list.blocks(&tenant).len(),
            1,
            "kept although the bucket listing missed it"
        );
        // Two polls later an add record is stale, and only what the bucket holds counts.
        list.poll(&store).await.unwrap();
        list.poll(&store).await.unwrap();
        assert!(list.blocks(&tenant).is_empty());
    }

    #[test]
    fn a_block_replaced_by_a_visible_block_is_hidden() {
        let list = Blocklist::default();
        let tenant = TenantId::single();
        let (a, b) = (meta(&tenant), meta(&tenant));
        let mut out = meta(&tenant);
        out.replaces = vec![a.block_id, b.block_id];
        let out_id = out.block_id;
        list.add(a.clone());
        list.add(b);
        assert_eq!(list.blocks(&tenant).len(), 2);
        list.add(out);
        let ids: Vec<BlockId> = list.blocks(&tenant).iter().map(|m| m.block_id).collect();
        assert_eq!(ids, vec![out_id]);
        list.mark_compacted(CompactedBlockMeta {
            meta: a.clone(),
            compacted_at_unix_nano: 1,
        });
        assert_eq!(list.compacted(&tenant).len(), 1);
        list.remove(&tenant, a.block_id);
        assert!(list.compacted(&tenant).is_empty());
        assert_eq!(list.all_block_ids().len(), 1);
    }
}
