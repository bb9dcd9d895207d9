use legato_model::{BlockId, TenantId};
use object_store::path::Path;

/// The object keys of one block. Only this crate builds object keys.
#[derive(Debug, Clone)]
pub struct BlockPaths {
    pub dir: Path,
}

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
        self.dir.clone().join("meta.json")
    }
}
