use legato_model::{BlockId, TenantId};
use serde::{Deserialize, Serialize};

/// The encoding this build writes. Readers dispatch on `BlockMeta::encoding`.
pub const ENCODING_V1: &str = "legato-v1";

/// `meta.json`: written last; its presence makes a block visible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub encoding: String,
    #[serde(rename = "blockID")]
    pub block_id: BlockId,
    #[serde(rename = "tenantID")]
    pub tenant_id: TenantId,
    /// Earliest span start and latest span end in the block, Unix nanoseconds.
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub total_traces: u64,
    pub total_spans: u64,
    pub row_groups: u32,
    /// Bytes of `data.parquet`, of its footer, and of `bloom`.
    pub data_size: u64,
    pub footer_size: u64,
    pub bloom_size: u64,
    pub compaction_level: u32,
    pub created_at_unix_nano: u64,
}

impl BlockMeta {
    /// Whether the block may hold spans in [start, end] (Unix seconds, inclusive).
    pub fn overlaps_seconds(&self, start: Option<u64>, end: Option<u64>) -> bool {
        let block_start = self.start_time_unix_nano / 1_000_000_000;
        let block_end = self.end_time_unix_nano.div_ceil(1_000_000_000);
        start.is_none_or(|s| block_end >= s) && end.is_none_or(|e| block_start <= e)
    }
}
