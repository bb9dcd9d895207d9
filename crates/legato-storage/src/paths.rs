use legato_model::{BlockId, TenantId};
use object_store::path::Path;

/// The object keys of one block. Only this crate builds object keys.
#[derive(Debug, Clone)]
pub struct BlockPaths {
    pub dir: Path,
}

/// File name of the commit point of a block.
pub(crate) const META: &str = "meta.json";
/// File name of the compacted marker of a block.
pub(crate) const COMPACTED_META: &str = "meta.compacted.json";
/// File name of the per-tenant block index.
pub(crate) const TENANT_INDEX: &str = "index.json.gz";

impl BlockPaths {
    pub fn new(tenant: &TenantId, block: BlockId) -> Self {
        Self {
            dir: Path::from(tenant.as_str()).join(block.to_string()),
        }
    }
    pub fn data(&self) -> Path {
        self.dir.clone().join("data.parquet")
    }
    pub fn bloom(&self) -> Path {
        self.dir.clone().join("bloom")
    }
    /// Optional tag summary for autocomplete (JSON, written before meta.json).
    pub fn tags(&self) -> Path {
        self.dir.clone().join("tags.json")
    }
    pub fn meta(&self) -> Path {
        self.dir.clone().join(META)
    }
    /// `meta.compacted.json`: present once the block was compacted or expired.
    pub fn compacted_meta(&self) -> Path {
        self.dir.clone().join(COMPACTED_META)
    }
}

/// The directory of a tenant's objects.
pub fn tenant_dir(tenant: &TenantId) -> Path {
    Path::from(tenant.as_str())
}

/// `<tenant>/index.json.gz`: the tenant index written by the compactor that owns the tenant.
pub fn tenant_index_path(tenant: &TenantId) -> Path {
    tenant_dir(tenant).join(TENANT_INDEX)
}

/// Splits `<tenant>/<block id>/<file>` into the block id and the file name; `None` for keys
/// that are not inside a block directory (the tenant index, foreign objects).
pub(crate) fn block_file(path: &Path) -> Option<(BlockId, String)> {
    let mut parts = path.parts();
    let _tenant = parts.next()?;
    let block = parts.next()?;
    let file = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let id = uuid::Uuid::parse_str(block.as_ref()).ok()?;
    Some((BlockId(id), file.as_ref().to_string()))
}
