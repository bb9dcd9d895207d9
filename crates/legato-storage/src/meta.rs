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
    /// Blocks this one replaces (a compaction's inputs). Once this meta.json exists, readers
    /// hide those blocks even if their compacted markers were never written, so a compactor
    /// that dies between the two steps leaves every trace visible exactly once. Absent (and
    /// empty) in blocks written by ingesters and in blocks older than the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<BlockId>,
    /// Set on a block that retention by policy rewrote: the policies (TraceQL filters) whose
    /// traces it kept past the tenant's `block_retention`, so it is not rewritten again until
    /// one of them expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_filter: Option<String>,
}

impl BlockMeta {
    /// Whether the block may hold spans in [start, end] (Unix seconds, inclusive).
    pub fn overlaps_seconds(&self, start: Option<u64>, end: Option<u64>) -> bool {
        let block_start = self.start_time_unix_nano / 1_000_000_000;
        let block_end = self.end_time_unix_nano.div_ceil(1_000_000_000);
        start.is_none_or(|s| block_end >= s) && end.is_none_or(|e| block_start <= e)
    }
}

/// `meta.compacted.json`: the block's meta plus when it was compacted (or expired by
/// retention). Its presence hides the block; the block's objects are deleted once the
/// marker is older than `compacted_block_retention`, the marker itself last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactedBlockMeta {
    #[serde(flatten)]
    pub meta: BlockMeta,
    pub compacted_at_unix_nano: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metas_without_replaces_still_parse_and_keep_their_shape() {
        let old = r#"{"encoding":"legato-v1","blockID":"4f1c8a52-6d3e-4b7a-9c0f-2e8d5a1b3c7e","tenantID":"t","startTimeUnixNano":1,"endTimeUnixNano":2,"totalTraces":3,"totalSpans":4,"rowGroups":1,"dataSize":5,"footerSize":6,"bloomSize":7,"compactionLevel":0,"createdAtUnixNano":8}"#;
        let meta: BlockMeta = serde_json::from_str(old).unwrap();
        assert!(meta.replaces.is_empty());
        assert_eq!(serde_json::to_string(&meta).unwrap(), old);
    }

    #[test]
    fn compacted_meta_round_trips_with_replaces() {
        let mut meta: BlockMeta = serde_json::from_str(r#"{"encoding":"legato-v1","blockID":"4f1c8a52-6d3e-4b7a-9c0f-2e8d5a1b3c7e","tenantID":"t","startTimeUnixNano":1,"endTimeUnixNano":2,"totalTraces":3,"totalSpans":4,"rowGroups":1,"dataSize":5,"footerSize":6,"bloomSize":7,"compactionLevel":0,"createdAtUnixNano":8}"#).unwrap();
        meta.replaces = vec![BlockId::random()];
        let compacted = CompactedBlockMeta {
            meta,
            compacted_at_unix_nano: 9,
        };
        let json = serde_json::to_string(&compacted).unwrap();
        assert!(json.contains(r#""compactedAtUnixNano":9"#), "{json}");
        assert!(json.contains(r#""replaces":["#), "{json}");
        assert_eq!(serde_json::from_str::<CompactedBlockMeta>(&json).unwrap(), compacted);
    }
}
