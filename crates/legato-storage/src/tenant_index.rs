//! The per-tenant block index, `<tenant>/index.json.gz`: gzip'd JSON with the metas of the
//! tenant's live blocks, its compacted blocks (with their compacted time) and when the index
//! was built. The compactor owning a tenant writes it after each cycle; readers use it instead
//! of listing the tenant while it is fresh.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use legato_model::TenantId;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::compacted::{delete_if_present, get_if_present};
use crate::paths::tenant_index_path;
use crate::{BlockMeta, CompactedBlockMeta, Error, Result};

/// The content of `index.json.gz`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantIndex {
    /// When the listing behind the index was taken, Unix nanoseconds (writer's clock).
    pub created_at_unix_nano: u64,
    /// Live blocks.
    #[serde(default)]
    pub meta: Vec<BlockMeta>,
    /// Compacted (or expired) blocks whose objects are not deleted yet.
    #[serde(default)]
    pub compacted: Vec<CompactedBlockMeta>,
}

impl TenantIndex {
    /// gzip(JSON).
    pub fn encode(&self) -> Result<Bytes> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Config(format!("encoding a tenant index: {e}")))?;
        let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::default());
        gz.write_all(&json)
            .and_then(|()| gz.finish())
            .map(Bytes::from)
            .map_err(|e| Error::Config(format!("compressing a tenant index: {e}")))
    }

    /// Parses gzip(JSON); `None` when the bytes are not a tenant index.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut json = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut json).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// Writes `<tenant>/index.json.gz`, or deletes it when the tenant has no blocks left.
pub async fn write_tenant_index(store: &Arc<dyn ObjectStore>, tenant: &TenantId, index: &TenantIndex) -> Result<()> {
    let path = tenant_index_path(tenant);
    if index.meta.is_empty() && index.compacted.is_empty() {
        return delete_if_present(store, &path).await;
    }
    let bytes = index.encode()?;
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(|e| Error::store(&path, e))?;
    Ok(())
}

/// Reads a tenant's index; `None` when there is none or it cannot be parsed.
pub async fn read_tenant_index(store: &Arc<dyn ObjectStore>, tenant: &TenantId) -> Result<Option<TenantIndex>> {
    let path = tenant_index_path(tenant);
    let Some(bytes) = get_if_present(store, &path).await? else {
        return Ok(None);
    };
    let index = TenantIndex::decode(&bytes);
    if index.is_none() {
        tracing::warn!(%path, "unreadable tenant index; listing the tenant instead");
    }
    Ok(index)
}
