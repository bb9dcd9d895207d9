//! A full listing of one tenant's objects: every committed block, every compacted marker and
//! every block directory holding neither (an upload in progress or one a crash abandoned).
//! The compactor lists its tenants this way each cycle and builds the tenant index from it;
//! the blocklist falls back to it when a tenant has no fresh index.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use legato_model::{BlockId, TenantId};
use object_store::ObjectStore;

use crate::compacted::{get_if_present, read_compacted_marker};
use crate::paths::{COMPACTED_META, META, block_file, tenant_dir};
use crate::{BlockMeta, BlockPaths, CompactedBlockMeta, Error, Result, TenantIndex};

/// How many meta files a listing reads at once.
const READ_CONCURRENCY: usize = 16;

/// What a tenant's prefix holds.
#[derive(Debug, Clone, Default)]
pub struct TenantListing {
    /// Blocks with a `meta.json` and no compacted marker, including blocks that a visible
    /// block `replaces` (see [`TenantListing::live`]).
    pub metas: HashMap<BlockId, Arc<BlockMeta>>,
    /// Blocks with a compacted marker.
    pub compacted: HashMap<BlockId, Arc<CompactedBlockMeta>>,
    /// Block directories with neither meta file, with the newest object's modification time
    /// (Unix nanoseconds).
    pub orphans: HashMap<BlockId, u64>,
}

impl TenantListing {
    /// Ids of blocks some known block (live or compacted) replaces.
    pub fn replaced(&self) -> HashSet<BlockId> {
        replaced_ids(&self.metas, &self.compacted)
    }

    /// The blocks readers see: committed, not marked compacted, not replaced by another block.
    pub fn live(&self) -> HashMap<BlockId, Arc<BlockMeta>> {
        visible(&self.metas, &self.compacted)
    }

    /// Committed blocks that another block replaces but that carry no compacted marker yet:
    /// the trace of a compaction interrupted before it marked its inputs.
    pub fn unmarked_replaced(&self) -> Vec<Arc<BlockMeta>> {
        let replaced = self.replaced();
        self.metas
            .values()
            .filter(|m| replaced.contains(&m.block_id))
            .cloned()
            .collect()
    }

    /// The tenant index of this listing (live and compacted blocks; orphans are not indexed).
    pub fn to_index(&self, created_at_unix_nano: u64) -> TenantIndex {
        let mut meta: Vec<BlockMeta> = self.live().into_values().map(|m| m.as_ref().clone()).collect();
        meta.sort_by_key(|m| m.block_id);
        // Replaced blocks without markers are indexed as compacted so that index readers hide
        // them even once the replacing block is itself compacted and forgotten.
        let replaced: Vec<CompactedBlockMeta> = self
            .unmarked_replaced()
            .into_iter()
            .map(|m| CompactedBlockMeta {
                meta: m.as_ref().clone(),
                compacted_at_unix_nano: created_at_unix_nano,
            })
            .collect();
        let mut compacted: Vec<CompactedBlockMeta> = self
            .compacted
            .values()
            .map(|m| m.as_ref().clone())
            .chain(replaced)
            .collect();
        compacted.sort_by_key(|m| m.meta.block_id);
        TenantIndex {
            created_at_unix_nano,
            meta,
            compacted,
        }
    }
}

/// Ids that a block in either map replaces.
pub(crate) fn replaced_ids(
    metas: &HashMap<BlockId, Arc<BlockMeta>>,
    compacted: &HashMap<BlockId, Arc<CompactedBlockMeta>>,
) -> HashSet<BlockId> {
    metas
        .values()
        .flat_map(|m| m.replaces.iter())
        .chain(compacted.values().flat_map(|c| c.meta.replaces.iter()))
        .copied()
        .collect()
}

/// `metas` without compacted blocks and without blocks some known block replaces.
pub(crate) fn visible(
    metas: &HashMap<BlockId, Arc<BlockMeta>>,
    compacted: &HashMap<BlockId, Arc<CompactedBlockMeta>>,
) -> HashMap<BlockId, Arc<BlockMeta>> {
    let replaced = replaced_ids(metas, compacted);
    metas
        .iter()
        .filter(|(id, _)| !compacted.contains_key(id) && !replaced.contains(id))
        .map(|(id, m)| (*id, m.clone()))
        .collect()
}

#[derive(Default)]
struct DirState {
    has_meta: bool,
    has_marker: bool,
    newest_nanos: u64,
}

/// Lists `<tenant>/` recursively (one LIST, paged by the store) and reads the meta files of
/// blocks not in `known_metas` / `known_compacted`.
pub async fn list_tenant(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    known_metas: &HashMap<BlockId, Arc<BlockMeta>>,
    known_compacted: &HashMap<BlockId, Arc<CompactedBlockMeta>>,
) -> Result<TenantListing> {
    let dir = tenant_dir(tenant);
    let objects: Vec<object_store::ObjectMeta> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| Error::store(&dir, e))?;
    let mut dirs: HashMap<BlockId, DirState> = HashMap::new();
    for object in objects {
        let Some((id, file)) = block_file(&object.location) else {
            continue;
        };
        let state = dirs.entry(id).or_default();
        state.has_meta |= file == META;
        state.has_marker |= file == COMPACTED_META;
        let modified = object.last_modified.timestamp_nanos_opt().unwrap_or(0).max(0) as u64;
        state.newest_nanos = state.newest_nanos.max(modified);
    }
    let mut listing = TenantListing::default();
    let mut to_read_meta = Vec::new();
    let mut to_read_marker = Vec::new();
    for (id, state) in dirs {
        if state.has_marker {
            match known_compacted.get(&id) {
                Some(known) => {
                    listing.compacted.insert(id, known.clone());
                }
                None => to_read_marker.push(id),
            }
        } else if state.has_meta {
            match known_metas.get(&id) {
                Some(known) => {
                    listing.metas.insert(id, known.clone());
                }
                None => to_read_meta.push(id),
            }
        } else {
            listing.orphans.insert(id, state.newest_nanos);
        }
    }
    let metas: Vec<Option<BlockMeta>> = futures::stream::iter(to_read_meta)
        .map(|id| read_block_meta(store, tenant, id))
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    for meta in metas.into_iter().flatten() {
        listing.metas.insert(meta.block_id, Arc::new(meta));
    }
    let markers: Vec<Option<CompactedBlockMeta>> = futures::stream::iter(to_read_marker)
        .map(|id| read_compacted_marker(store, tenant, id))
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    for marker in markers.into_iter().flatten() {
        listing.compacted.insert(marker.meta.block_id, Arc::new(marker));
    }
    Ok(listing)
}

/// Reads a block's meta.json; `None` when it is missing (not committed, or marked compacted
/// since the listing) or unreadable.
pub async fn read_block_meta(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: BlockId,
) -> Result<Option<BlockMeta>> {
    let path = BlockPaths::new(tenant, block).meta();
    let Some(bytes) = get_if_present(store, &path).await? else {
        return Ok(None);
    };
    match serde_json::from_slice::<BlockMeta>(&bytes) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) => {
            tracing::warn!(%path, error = %e, "skipping block with unreadable meta.json");
            Ok(None)
        }
    }
}
