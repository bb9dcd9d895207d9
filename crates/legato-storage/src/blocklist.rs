//! The set of complete blocks per tenant, kept in memory and refreshed by listing the bucket.
//! Writers in the same process add their blocks directly, so a flushed block is visible at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use legato_model::{BlockId, TenantId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::RwLock;

use crate::{BlockMeta, Error, Result};

#[derive(Default)]
pub struct Blocklist {
    tenants: RwLock<HashMap<TenantId, HashMap<BlockId, Arc<BlockMeta>>>>,
    /// Blocks added in-process, with the poll generation they were added in: a poll that
    /// started before an add must not drop the block it could not have listed.
    added: RwLock<HashMap<BlockId, u64>>,
    generation: std::sync::atomic::AtomicU64,
}

impl Blocklist {
    pub fn add(&self, meta: BlockMeta) {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        self.added.write().insert(meta.block_id, generation);
        self.tenants
            .write()
            .entry(meta.tenant_id.clone())
            .or_default()
            .insert(meta.block_id, Arc::new(meta));
    }

    pub fn blocks(&self, tenant: &TenantId) -> Vec<Arc<BlockMeta>> {
        self.tenants
            .read()
            .get(tenant)
            .map(|b| b.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Keeps only the blocks `keep` accepts (an ingester forgetting blocks it flushed long ago).
    pub fn retain(&self, mut keep: impl FnMut(&BlockMeta) -> bool) {
        let mut tenants = self.tenants.write();
        for blocks in tenants.values_mut() {
            blocks.retain(|_, meta| keep(meta));
        }
        tenants.retain(|_, blocks| !blocks.is_empty());
    }

    pub fn all_block_ids(&self) -> HashSet<BlockId> {
        self.tenants.read().values().flat_map(|b| b.keys().copied()).collect()
    }

    /// Lists the bucket and replaces the blocklist with what is there. Blocks whose meta.json
    /// is already known are not read again.
    pub async fn poll(&self, store: &Arc<dyn ObjectStore>) -> Result<()> {
        let started = self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let root = store
            .list_with_delimiter(None)
            .await
            .map_err(|e| Error::store("/", e))?;
        let mut fresh: HashMap<TenantId, HashMap<BlockId, Arc<BlockMeta>>> = HashMap::new();
        for tenant_dir in root.common_prefixes {
            let Some(name) = tenant_dir.filename() else {
                continue;
            };
            let Ok(tenant) = TenantId::new(name) else {
                continue;
            };
            let listing = store
                .list_with_delimiter(Some(&tenant_dir))
                .await
                .map_err(|e| Error::store(&tenant_dir, e))?;
            let known = self.tenants.read().get(&tenant).cloned().unwrap_or_default();
            let blocks = fresh.entry(tenant.clone()).or_default();
            for block_dir in listing.common_prefixes {
                let Some(Ok(uuid)) = block_dir.filename().map(uuid::Uuid::parse_str) else {
                    continue;
                };
                let id = BlockId(uuid);
                if let Some(meta) = known.get(&id) {
                    blocks.insert(id, meta.clone());
                    continue;
                }
                if let Some(meta) = read_meta(store, &block_dir.clone().join("meta.json")).await? {
                    blocks.insert(id, Arc::new(meta));
                }
            }
        }
        let mut tenants = self.tenants.write();
        let mut added = self.added.write();
        // Keep blocks added while this poll was listing; forget older add records.
        added.retain(|_, generation| *generation >= started);
        for (tenant, blocks) in tenants.iter() {
            for (id, meta) in blocks {
                if added.contains_key(id) {
                    fresh
                        .entry(tenant.clone())
                        .or_default()
                        .entry(*id)
                        .or_insert_with(|| meta.clone());
                }
            }
        }
        *tenants = fresh;
        Ok(())
    }
}

/// Reads a meta.json; a missing one means the block is not committed yet.
async fn read_meta(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Option<BlockMeta>> {
    let got = match store.get(path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store(path, e)),
    };
    let bytes = got.bytes().await.map_err(|e| Error::store(path, e))?;
    match serde_json::from_slice::<BlockMeta>(&bytes) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) => {
            tracing::warn!(%path, error = %e, "skipping block with unreadable meta.json");
            Ok(None)
        }
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
        }
    }

    #[tokio::test]
    async fn a_block_added_during_a_poll_is_not_dropped() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let list = Blocklist::default();
        let tenant = TenantId::single();
        // Simulate an add racing a poll: the add lands after the poll took its generation.
        let started = list.generation.load(std::sync::atomic::Ordering::SeqCst);
        list.add(meta(&tenant));
        assert_eq!(*list.added.read().values().next().unwrap(), started);
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
}
