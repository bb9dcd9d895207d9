//! What `legato blocks inspect` and `legato blocks verify` read: a block's Parquet layout (row
//! groups and column chunks, from the footer alone) and a full check that the block decodes
//! and agrees with its `meta.json` and bloom filter.

use legato_model::TraceId;
use object_store::ObjectStoreExt;
use parquet::file::metadata::ParquetMetaData;
use serde::Serialize;

use crate::compacted::get_if_present;
use crate::reader::guarded;
use crate::{BlockMeta, BlockPaths, BlockReader, ENCODING_V1, Error, Result, TraceBloom};

/// The Parquet layout of a block's `data.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockLayout {
    /// The writer's name and version as the footer records it.
    pub created_by: Option<String>,
    pub rows: u64,
    pub row_groups: Vec<RowGroupLayout>,
    /// Column chunks summed over row groups, in schema order.
    pub columns: Vec<ColumnLayout>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowGroupLayout {
    pub rows: u64,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    /// The trace-id range of the row group (hex), from its statistics.
    pub min_trace_id: Option<String>,
    pub max_trace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnLayout {
    /// The leaf column's dotted path (`attrs.list.item.key`).
    pub name: String,
    pub compression: String,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
}

/// The outcome of reading a whole block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verification {
    pub traces: u64,
    pub spans: u64,
    /// Everything found wrong, one sentence each; empty for a sound block.
    pub problems: Vec<String>,
}

impl BlockReader {
    /// The block's row groups and column chunks, read from its footer.
    pub async fn layout(&self, meta: &BlockMeta) -> Result<BlockLayout> {
        guarded(meta.block_id, async {
            check_encoding(meta)?;
            let (_, footer) = self.open(meta).await?;
            Ok(layout_of(footer.metadata()))
        })
        .await
    }

    /// Reads every object of the block and decodes every row, checking that the data file,
    /// the bloom filter and the tag summary agree with `meta.json`: sizes, row groups, trace
    /// and span counts, the time range, trace-id order, and that the bloom holds every trace.
    /// `progress` is called with the spans of each trace decoded.
    pub async fn verify(&self, meta: &BlockMeta, mut progress: impl FnMut(u64) + Send) -> Verification {
        let mut out = Verification::default();
        if let Err(e) = check_encoding(meta) {
            out.problems.push(e.to_string());
            return out;
        }
        let paths = BlockPaths::new(&meta.tenant_id, meta.block_id);
        match self.store().head(&paths.data()).await {
            Ok(head) if head.size != meta.data_size => out.problems.push(format!(
                "data.parquet is {} bytes, meta.json says {}",
                head.size, meta.data_size
            )),
            Ok(_) => {}
            Err(e) => out.problems.push(Error::store(paths.data(), e).to_string()),
        }
        let bloom = match get_if_present(self.store(), &paths.bloom()).await {
            Ok(Some(bytes)) => {
                if bytes.len() as u64 != meta.bloom_size {
                    out.problems.push(format!(
                        "bloom is {} bytes, meta.json says {}",
                        bytes.len(),
                        meta.bloom_size
                    ));
                }
                let bloom = TraceBloom::from_bytes(&bytes);
                if bloom.is_none() {
                    out.problems.push("bloom is not a readable bloom filter".into());
                }
                bloom
            }
            Ok(None) => {
                out.problems.push("bloom is missing".into());
                None
            }
            Err(e) => {
                out.problems.push(e.to_string());
                None
            }
        };
        match get_if_present(self.store(), &paths.tags()).await {
            Ok(Some(bytes)) if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() => {
                out.problems.push("tags.json is not JSON".into());
            }
            Ok(_) => {}
            Err(e) => out.problems.push(e.to_string()),
        }
        match self.layout(meta).await {
            Ok(layout) => {
                if layout.row_groups.len() as u64 != u64::from(meta.row_groups) {
                    out.problems.push(format!(
                        "data.parquet has {} row groups, meta.json says {}",
                        layout.row_groups.len(),
                        meta.row_groups
                    ));
                }
                if layout.rows != meta.total_spans {
                    out.problems.push(format!(
                        "data.parquet has {} rows, meta.json says {} spans",
                        layout.rows, meta.total_spans
                    ));
                }
            }
            Err(e) => {
                // Without a footer nothing below can be read.
                out.problems.push(e.to_string());
                return out;
            }
        }
        let mut rows = RowChecks::default();
        let scanned = self
            .scan_traces(meta, |trace| {
                rows.check(meta, bloom.as_ref(), &trace);
                progress(trace.spans.len() as u64);
                true
            })
            .await;
        if let Err(e) = scanned {
            out.problems.push(e.to_string());
        }
        out.traces = rows.traces;
        out.spans = rows.spans;
        rows.report(meta, &mut out.problems);
        out
    }
}

fn check_encoding(meta: &BlockMeta) -> Result<()> {
    if meta.encoding == ENCODING_V1 {
        return Ok(());
    }
    Err(Error::UnknownEncoding {
        block: meta.block_id,
        encoding: meta.encoding.clone(),
    })
}

/// Counts of what a full scan saw, and of rows that disagree with the meta or the bloom.
#[derive(Default)]
struct RowChecks {
    traces: u64,
    spans: u64,
    last_id: Option<[u8; 16]>,
    out_of_order: u64,
    not_in_bloom: u64,
    outside_range: u64,
}

impl RowChecks {
    fn check(&mut self, meta: &BlockMeta, bloom: Option<&TraceBloom>, trace: &legato_model::span::TraceData) {
        self.traces += 1;
        self.spans += trace.spans.len() as u64;
        if self.last_id.is_some_and(|last| last >= trace.trace_id) {
            self.out_of_order += 1;
        }
        self.last_id = Some(trace.trace_id);
        if bloom.is_some_and(|b| !b.may_contain(&TraceId(trace.trace_id))) {
            self.not_in_bloom += 1;
        }
        self.outside_range += trace
            .spans
            .iter()
            .filter(|s| s.start_unix_nano < meta.start_time_unix_nano || s.end_unix_nano > meta.end_time_unix_nano)
            .count() as u64;
    }

    fn report(&self, meta: &BlockMeta, problems: &mut Vec<String>) {
        if self.traces != meta.total_traces {
            problems.push(format!(
                "decoded {} traces, meta.json says {}",
                self.traces, meta.total_traces
            ));
        }
        if self.spans != meta.total_spans {
            problems.push(format!(
                "decoded {} spans, meta.json says {}",
                self.spans, meta.total_spans
            ));
        }
        if self.out_of_order > 0 {
            problems.push(format!("{} traces are out of trace-id order", self.out_of_order));
        }
        if self.not_in_bloom > 0 {
            problems.push(format!(
                "{} traces are missing from the bloom filter",
                self.not_in_bloom
            ));
        }
        if self.outside_range > 0 {
            problems.push(format!(
                "{} spans lie outside the block's time range in meta.json",
                self.outside_range
            ));
        }
    }
}

fn layout_of(metadata: &ParquetMetaData) -> BlockLayout {
    let row_groups: Vec<RowGroupLayout> = metadata
        .row_groups()
        .iter()
        .map(|rg| {
            let ids = crate::reader::trace_id_range(rg);
            RowGroupLayout {
                rows: rg.num_rows().max(0) as u64,
                compressed_bytes: rg.compressed_size().max(0) as u64,
                uncompressed_bytes: rg.total_byte_size().max(0) as u64,
                min_trace_id: ids.map(|(min, _)| hex_string(min)),
                max_trace_id: ids.map(|(_, max)| hex_string(max)),
            }
        })
        .collect();
    let mut columns: Vec<ColumnLayout> = Vec::new();
    for rg in metadata.row_groups() {
        for (i, chunk) in rg.columns().iter().enumerate() {
            if columns.len() <= i {
                columns.push(ColumnLayout {
                    name: chunk.column_path().string(),
                    compression: chunk.compression().to_string(),
                    compressed_bytes: 0,
                    uncompressed_bytes: 0,
                });
            }
            columns[i].compressed_bytes += chunk.compressed_size().max(0) as u64;
            columns[i].uncompressed_bytes += chunk.uncompressed_size().max(0) as u64;
        }
    }
    BlockLayout {
        created_by: metadata.file_metadata().created_by().map(str::to_string),
        rows: row_groups.iter().map(|rg| rg.rows).sum(),
        row_groups,
        columns,
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use legato_model::{BlockId, TenantId};
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, PutPayload};

    use super::*;
    use crate::metrics::StorageMetrics;
    use crate::reader::tests::trace;
    use crate::{encode_block, write_block};

    async fn one_block(store: &Arc<dyn ObjectStore>) -> BlockMeta {
        let traces = (1..=3).map(trace).collect();
        let block = encode_block(&TenantId::single(), BlockId::random(), traces, 1).unwrap();
        write_block(store, &block).await.unwrap();
        block.meta
    }

    #[tokio::test]
    async fn a_sound_block_verifies_and_a_damaged_one_does_not() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let meta = one_block(&store).await;
        let reader = BlockReader::new(store.clone(), StorageMetrics::default());
        let mut seen = 0;
        let ok = reader.verify(&meta, |n| seen += n).await;
        assert_eq!(ok.problems, Vec::<String>::new());
        assert_eq!((ok.traces, ok.spans, seen), (3, 18, 18));

        let layout = reader.layout(&meta).await.unwrap();
        assert_eq!(layout.rows, 18);
        assert_eq!(layout.row_groups.len(), meta.row_groups as usize);
        assert_eq!(layout.columns[0].name, "trace_id");

        let mut lying = meta.clone();
        lying.total_traces = 4;
        let bad = reader.verify(&lying, |_| {}).await;
        assert_eq!(bad.problems, vec!["decoded 3 traces, meta.json says 4".to_string()]);

        let paths = BlockPaths::new(&meta.tenant_id, meta.block_id);
        store.put(&paths.bloom(), PutPayload::from_static(b"x")).await.unwrap();
        let fresh = BlockReader::new(store.clone(), StorageMetrics::default());
        let bad = fresh.verify(&meta, |_| {}).await;
        assert!(bad.problems.iter().any(|p| p.contains("bloom is 1 bytes")), "{bad:?}");
        assert!(
            bad.problems.iter().any(|p| p.contains("not a readable bloom")),
            "{bad:?}"
        );
    }
}
