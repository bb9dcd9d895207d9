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
}

impl Blocklist {
    pub fn add(&self, meta: BlockMeta) {
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

    pub fn all_block_ids(&self) -> HashSet<BlockId> {
        self.tenants.read().values().flat_map(|b| b.keys().copied()).collect()
    }

    /// Lists the bucket and replaces the blocklist with what is there. Blocks whose meta.json
    /// is already known are not read again.
    pub async fn poll(&self, store: &Arc<dyn ObjectStore>) -> Result<()> {
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
        *self.tenants.write() = fresh;
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
