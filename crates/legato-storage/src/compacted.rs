//! Compacted markers and block deletion.
//!
//! Marking a block compacted writes `meta.compacted.json` (the meta plus the time) and then
//! deletes `meta.json`; a crash in between leaves both, and the marker wins. Deleting a block
//! removes every object under its directory with the marker last, so an interrupted deletion
//! is still a compacted block and is finished by the next run.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use legato_model::{BlockId, TenantId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::paths::COMPACTED_META;
use crate::{BlockMeta, BlockPaths, CompactedBlockMeta, Error, Result};

/// Writes the compacted marker of `meta`'s block, then removes its `meta.json`.
pub async fn write_compacted_marker(
    store: &Arc<dyn ObjectStore>,
    meta: &BlockMeta,
    compacted_at_unix_nano: u64,
) -> Result<CompactedBlockMeta> {
    let paths = BlockPaths::new(&meta.tenant_id, meta.block_id);
    let marker = CompactedBlockMeta {
        meta: meta.clone(),
        compacted_at_unix_nano,
    };
    let json = serde_json::to_vec(&marker).map_err(|e| Error::Corrupt {
        block: meta.block_id,
        message: format!("encoding the compacted marker: {e}"),
    })?;
    let path = paths.compacted_meta();
    store
        .put(&path, PutPayload::from(Bytes::from(json)))
        .await
        .map_err(|e| Error::store(&path, e))?;
    delete_if_present(store, &paths.meta()).await?;
    Ok(marker)
}

/// Reads a compacted marker; `None` when the block has none (or it is unreadable).
pub async fn read_compacted_marker(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: BlockId,
) -> Result<Option<CompactedBlockMeta>> {
    let path = BlockPaths::new(tenant, block).compacted_meta();
    let Some(bytes) = get_if_present(store, &path).await? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(marker) => Ok(Some(marker)),
        Err(e) => {
            tracing::warn!(%path, error = %e, "unreadable compacted marker");
            Ok(None)
        }
    }
}

/// Deletes every object of a block, the compacted marker last. Returns the objects deleted.
pub async fn delete_block(store: &Arc<dyn ObjectStore>, tenant: &TenantId, block: BlockId) -> Result<usize> {
    let dir = BlockPaths::new(tenant, block).dir;
    let objects: Vec<Path> = store
        .list(Some(&dir))
        .map_ok(|o| o.location)
        .try_collect()
        .await
        .map_err(|e| Error::store(&dir, e))?;
    let (markers, rest): (Vec<Path>, Vec<Path>) =
        objects.into_iter().partition(|p| p.filename() == Some(COMPACTED_META));
    let mut deleted = 0;
    for path in rest.iter().chain(&markers) {
        delete_if_present(store, path).await?;
        deleted += 1;
    }
    Ok(deleted)
}

pub(crate) async fn delete_if_present(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::store(path, e)),
    }
}

pub(crate) async fn get_if_present(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Option<Bytes>> {
    let got = match store.get(path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store(path, e)),
    };
    got.bytes().await.map(Some).map_err(|e| Error::store(path, e))
}
