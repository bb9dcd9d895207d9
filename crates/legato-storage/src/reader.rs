//! Reads traces back from blocks: bloom check, row-group pruning by trace-id statistics,
//! page pruning by the trace-id column index, one ranged read of the chosen pages of every
//! column, rows → OTLP resource spans.
#![allow(deprecated)] // ParquetObjectReader: its replacement (a hand-written AsyncFileReader) buys nothing yet.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int8Type, Int32Type, Int64Type, UInt32Type};
use arrow_array::{Array, RecordBatch};
use futures::TryStreamExt;
use legato_model::{BlockId, TraceId};
use legato_proto::common::{AnyValue, KeyValue, any_value};
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status};
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::async_reader::ParquetObjectReader;

/// The reader of a block's `data.parquet` (what `BlockReader::open` returns).
pub(crate) type BlockFile = ParquetObjectReader;
use parquet::file::metadata::{ColumnChunkMask, PageIndexPolicy, ParquetMetaData};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use prost::Message;

use crate::metrics::StorageMetrics;
use crate::schema;
use crate::{BlockMeta, BlockPaths, ENCODING_V1, Error, Result, TraceBloom};

/// Finds traces in blocks. Caches bloom filters and Parquet footers (with the page index) per
/// block, so a warm lookup costs one ranged read per candidate block (two when the trace
/// straddles row groups).
pub struct BlockReader {
    store: Arc<dyn ObjectStore>,
    blooms: Mutex<HashMap<BlockId, Arc<TraceBloom>>>,
    footers: Mutex<HashMap<BlockId, ArrowReaderMetadata>>,
    metrics: StorageMetrics,
}

impl BlockReader {
    pub fn new(store: Arc<dyn ObjectStore>, metrics: StorageMetrics) -> Self {
        Self {
            store,
            blooms: Mutex::default(),
            footers: Mutex::default(),
            metrics,
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Drops cached state of blocks that are gone.
    pub fn retain_blocks(&self, live: &std::collections::HashSet<BlockId>) {
        self.blooms.lock().retain(|id, _| live.contains(id));
        self.footers.lock().retain(|id, _| live.contains(id));
    }

    /// Spans of `trace` in `block`, or an empty list.
    pub async fn find_trace(&self, meta: &BlockMeta, trace: &TraceId) -> Result<Vec<ResourceSpans>> {
        guarded(meta.block_id, self.find_trace_unguarded(meta, trace)).await
    }

    async fn find_trace_unguarded(&self, meta: &BlockMeta, trace: &TraceId) -> Result<Vec<ResourceSpans>> {
        if meta.encoding != ENCODING_V1 {
            return Err(Error::UnknownEncoding {
                block: meta.block_id,
                encoding: meta.encoding.clone(),
            });
        }
        if !self.bloom(meta).await?.may_contain(trace) {
            self.metrics.bloom_skips.inc();
            return Ok(Vec::new());
        }
        self.metrics.candidate_blocks.inc();
        let perr = |source| Error::Parquet {
            block: meta.block_id,
            source,
        };
        let (reader, footer) = self.open(meta).await?;
        let row_groups: Vec<usize> = footer
            .metadata()
            .row_groups()
            .iter()
            .enumerate()
            .filter(|(_, rg)| {
                trace_id_range(rg).is_none_or(|(min, max)| min <= trace.0.as_slice() && trace.0.as_slice() <= max)
            })
            .map(|(i, _)| i)
            .collect();
        if row_groups.is_empty() {
            return Ok(Vec::new());
        }
        self.metrics.block_reads.inc_by(row_groups.len() as u64);
        // Blocks are sorted by trace id, so the trace sits in one or two 1,024-row pages of a
        // row group: only those rows are fetched (the pages' byte ranges, coalesced into one
        // request) and decoded, instead of every column of the whole row group.
        let selection = trace_pages(footer.metadata(), &row_groups, trace);
        let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, footer)
            .with_row_groups(row_groups)
            .with_row_selection(selection)
            .build()
            .map_err(perr)?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(perr)?;
        // One batch, so a trace that straddles batch or row-group boundaries is contiguous
        // and parent offsets resolve.
        let batch = arrow_select::concat::concat_batches(&crate::schema::schema_v1(), &batches)?;
        rows_to_spans(meta.block_id, &batch, trace)
    }

    /// The block's tag summary (`tags.json`), if it has one.
    pub async fn read_tags(&self, meta: &BlockMeta) -> Result<Option<bytes::Bytes>> {
        let path = BlockPaths::new(&meta.tenant_id, meta.block_id).tags();
        match self.store.get(&path).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(|e| Error::store(&path, e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::store(&path, e)),
        }
    }

    /// A reader for the block's data file and its (cached) footer.
    pub(crate) async fn open(&self, meta: &BlockMeta) -> Result<(ParquetObjectReader, ArrowReaderMetadata)> {
        let paths = BlockPaths::new(&meta.tenant_id, meta.block_id);
        let reader = ParquetObjectReader::new(self.store.clone(), paths.data())
            .with_file_size(meta.data_size)
            .with_footer_size_hint(footer_prefetch(meta));
        let footer = self.footer(meta, reader.clone()).await?;
        Ok((reader, footer))
    }

    async fn bloom(&self, meta: &BlockMeta) -> Result<Arc<TraceBloom>> {
        if let Some(b) = self.blooms.lock().get(&meta.block_id) {
            return Ok(b.clone());
        }
        let path = BlockPaths::new(&meta.tenant_id, meta.block_id).bloom();
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(|e| Error::store(&path, e))?
            .bytes()
            .await
            .map_err(|e| Error::store(&path, e))?;
        let bloom = TraceBloom::from_bytes(&bytes).ok_or_else(|| Error::Corrupt {
            block: meta.block_id,
            message: "unreadable bloom filter".into(),
        })?;
        let bloom = Arc::new(bloom);
        self.blooms.lock().insert(meta.block_id, bloom.clone());
        Ok(bloom)
    }

    async fn footer(&self, meta: &BlockMeta, mut reader: ParquetObjectReader) -> Result<ArrowReaderMetadata> {
        if let Some(f) = self.footers.lock().get(&meta.block_id) {
            return Ok(f.clone());
        }
        // The page index: page locations of every column (to fetch only selected pages) and
        // page statistics of the trace-id column only (to select them). Blocks written
        // without one are read by row group.
        let options = ArrowReaderOptions::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .with_column_index_mask(ColumnChunkMask::columns([TRACE_ID_LEAF]));
        let footer = ArrowReaderMetadata::load_async(&mut reader, options)
            .await
            .map_err(|source| Error::Parquet {
                block: meta.block_id,
                source,
            })?;
        check_schema(meta.block_id, footer.schema())?;
        self.footers.lock().insert(meta.block_id, footer.clone());
        Ok(footer)
    }
}

/// The columns are decoded with the types the file declares, and the row decoders downcast
/// them to the v1 types (a panic on a mismatch), so a footer that declares another type for a
/// v1 column (a damaged one, found by fuzzing) is a `Corrupt` block.
fn check_schema(block: BlockId, file: &arrow_schema::Schema) -> Result<()> {
    let v1 = schema::schema_v1();
    for field in file.fields() {
        if let Ok(expected) = v1.field_with_name(field.name())
            && expected.data_type() != field.data_type()
        {
            return Err(Error::Corrupt {
                block,
                message: format!(
                    "column {} is {} in the file, {} in {ENCODING_V1}",
                    field.name(),
                    field.data_type(),
                    expected.data_type()
                ),
            });
        }
    }
    Ok(())
}

/// Runs one block's read so that a panic inside it (the Parquet decoder asserts on some
/// malformed footers instead of returning an error) becomes that block's `Corrupt` error,
/// never a crashed request or job.
pub(crate) async fn guarded<T>(block: BlockId, read: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(read).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(panicked(block, panic)),
    }
}

/// `guarded` for a decode that does not wait.
pub(crate) fn guarded_sync<T>(block: BlockId, read: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(result) => result,
        Err(panic) => Err(panicked(block, panic)),
    }
}

fn panicked(block: BlockId, panic: Box<dyn std::any::Any + Send>) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(%block, message, "block is corrupt: decoding it panicked");
    Error::Corrupt {
        block,
        message: format!("decoding the block panicked: {message}"),
    }
}

/// Bytes read from the end of a block's data file to load its footer: the footer and, in the
/// same request, the page index written just before it (1.3–1.5 times the footer's size in
/// one-row-group bench blocks, ~3 times with row groups of 32,768 spans, whose 32 pages per
/// column each have an entry). Too small only costs a second request for the page index.
fn footer_prefetch(meta: &BlockMeta) -> usize {
    meta.footer_size.saturating_mul(PAGE_INDEX_PREFETCH).min(meta.data_size) as usize
}

const PAGE_INDEX_PREFETCH: u64 = 8;

/// The first and last trace id of a row group, by its statistics (rows are sorted by trace
/// id); `None` when it has none.
pub(crate) fn trace_id_range(group: &parquet::file::metadata::RowGroupMetaData) -> Option<(&[u8], &[u8])> {
    let stats = group.column(TRACE_ID_LEAF).statistics()?;
    Some((stats.min_bytes_opt()?, stats.max_bytes_opt()?))
}

/// Leaf column index of the trace id (the first column of the schema).
const TRACE_ID_LEAF: usize = 0;

/// The rows of `row_groups` (in order) in pages whose trace-id range holds `trace`; all rows
/// of a row group without a page index.
fn trace_pages(metadata: &ParquetMetaData, row_groups: &[usize], trace: &TraceId) -> RowSelection {
    let id = trace.0.as_slice();
    let mut selectors = Vec::new();
    for &rg in row_groups {
        let num_rows = metadata.row_group(rg).num_rows().max(0) as usize;
        let index = metadata.page_index_for_row_group(rg);
        let (Some(ColumnIndexMetaData::FIXED_LEN_BYTE_ARRAY(stats)), Some(offsets)) =
            (index.column_index(TRACE_ID_LEAF), index.offset_index(TRACE_ID_LEAF))
        else {
            selectors.push(RowSelector::select(num_rows));
            continue;
        };
        let pages = offsets.page_locations();
        if stats.num_pages() != pages.len() as u64 || pages.first().is_none_or(|p| p.first_row_index != 0) {
            selectors.push(RowSelector::select(num_rows));
            continue;
        }
        for (page, location) in pages.iter().enumerate() {
            let first = location.first_row_index.max(0) as usize;
            let end = pages
                .get(page + 1)
                .map_or(num_rows, |next| next.first_row_index.max(0) as usize);
            let holds = match (stats.min_value(page), stats.max_value(page)) {
                (Some(min), Some(max)) => min <= id && id <= max,
                _ => true,
            };
            selectors.push(if holds {
                RowSelector::select(end.saturating_sub(first))
            } else {
                RowSelector::skip(end.saturating_sub(first))
            });
        }
    }
    RowSelection::from(selectors)
}

pub(crate) fn column<'a>(batch: &'a RecordBatch, name: &str, block: BlockId) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::Corrupt {
            block,
            message: format!("column {name} missing"),
        })
}

/// Converts the rows of one trace in a batch back to OTLP.
fn rows_to_spans(block: BlockId, batch: &RecordBatch, trace: &TraceId) -> Result<Vec<ResourceSpans>> {
    let trace_ids = column(batch, schema::TRACE_ID, block)?.as_fixed_size_binary();
    let rows: Vec<usize> = (0..batch.num_rows())
        .filter(|&i| trace_ids.value(i) == trace.0)
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    rows_to_otlp(block, batch, trace, &rows)
}

/// Converts the given rows of one trace back to OTLP. `rows[0]` must be the trace's first
/// row in the batch (parent offsets are relative to it).
pub(crate) fn rows_to_otlp(
    block: BlockId,
    batch: &RecordBatch,
    trace: &TraceId,
    rows: &[usize],
) -> Result<Vec<ResourceSpans>> {
    let corrupt = |message: String| Error::Corrupt { block, message };
    let trace_ids = column(batch, schema::TRACE_ID, block)?.as_fixed_size_binary();
    let Some(&first) = rows.first() else {
        return Ok(Vec::new());
    };
    let span_ids = column(batch, schema::SPAN_ID, block)?.as_fixed_size_binary();
    let parent_index = column(batch, schema::PARENT_INDEX, block)?.as_primitive::<Int32Type>();
    let parent_ids = column(batch, schema::PARENT_SPAN_ID, block)?.as_fixed_size_binary();
    let names = column(batch, schema::NAME, block)?.as_string::<i32>();
    let kinds = column(batch, schema::KIND, block)?.as_primitive::<Int8Type>();
    let starts = column(batch, schema::START, block)?.as_primitive::<Int64Type>();
    let durations = column(batch, schema::DURATION, block)?.as_primitive::<Int64Type>();
    let codes = column(batch, schema::STATUS_CODE, block)?.as_primitive::<Int8Type>();
    let messages = column(batch, schema::STATUS_MESSAGE, block)?.as_string::<i32>();
    let states = column(batch, schema::TRACE_STATE, block)?.as_string::<i32>();
    let flags = column(batch, schema::FLAGS, block)?.as_primitive::<UInt32Type>();
    let resources = column(batch, schema::RESOURCE, block)?.as_binary::<i32>();
    let scopes = column(batch, schema::SCOPE, block)?.as_binary::<i32>();
    let attrs = column(batch, schema::ATTRS, block)?.as_list::<i32>();
    let extras = column(batch, schema::EXTRAS, block)?.as_binary::<i32>();
    let attr_values = attrs.values().as_struct();
    let a_key = attr_values.column(0).as_string::<i32>();
    let a_str = attr_values.column(1).as_string::<i32>();
    let a_int = attr_values.column(2).as_primitive::<Int64Type>();
    let a_dbl = attr_values.column(3).as_primitive::<Float64Type>();
    let a_bool = attr_values.column(4).as_boolean();
    let a_raw = attr_values.column(5).as_binary::<i32>();

    // The trace's first row in this batch: parent_index is relative to the trace's first row
    // in the block, which may sit in an earlier row group; then the parent id comes from the
    // explicit column or is unknown to this batch, and the merge keeps whichever we have.
    let mut groups: Vec<ResourceSpans> = Vec::new();
    let mut headers: HashMap<(&[u8], &[u8]), usize> = HashMap::new();
    for &row in rows {
        let mut attributes = Vec::new();
        let offsets = attrs.value_offsets();
        for a in offsets[row] as usize..offsets[row + 1] as usize {
            use any_value::Value as V;
            let value = if !a_str.is_null(a) {
                Some(V::StringValue(a_str.value(a).to_string()))
            } else if !a_int.is_null(a) {
                Some(V::IntValue(a_int.value(a)))
            } else if !a_dbl.is_null(a) {
                Some(V::DoubleValue(a_dbl.value(a)))
            } else if !a_bool.is_null(a) {
                Some(V::BoolValue(a_bool.value(a)))
            } else {
                AnyValue::decode(a_raw.value(a))
                    .map_err(|e| corrupt(e.to_string()))?
                    .value
            };
            attributes.push(KeyValue {
                key: a_key.value(a).to_string(),
                value: Some(AnyValue { value }),
                ..Default::default()
            });
        }
        let parent_span_id = if !parent_ids.is_null(row) {
            parent_ids.value(row).to_vec()
        } else {
            let p = parent_index.value(row);
            let parent_row = first as i64 + i64::from(p);
            if p >= 0 && (parent_row as usize) < batch.num_rows() && trace_ids.value(parent_row as usize) == trace.0 {
                span_ids.value(parent_row as usize).to_vec()
            } else {
                Vec::new()
            }
        };
        let start = starts.value(row) as u64;
        let mut span = Span {
            trace_id: trace.0.to_vec(),
            span_id: span_ids.value(row).to_vec(),
            trace_state: optional_string(states, row),
            parent_span_id,
            flags: flags.value(row),
            name: names.value(row).to_string(),
            kind: i32::from(kinds.value(row)),
            start_time_unix_nano: start,
            end_time_unix_nano: start.wrapping_add(durations.value(row) as u64),
            attributes,
            status: Some(Status {
                code: i32::from(codes.value(row)),
                message: optional_string(messages, row),
            }),
            ..Default::default()
        };
        if extras.is_valid(row) {
            let e = Span::decode(extras.value(row)).map_err(|e| corrupt(e.to_string()))?;
            span.events = e.events;
            span.links = e.links;
            span.dropped_attributes_count = e.dropped_attributes_count;
            span.dropped_events_count = e.dropped_events_count;
            span.dropped_links_count = e.dropped_links_count;
        }
        let key = (resources.value(row), scopes.value(row));
        let slot = match headers.get(&key) {
            Some(slot) => *slot,
            None => {
                let mut rs = ResourceSpans::decode(key.0).map_err(|e| corrupt(e.to_string()))?;
                let ss = ScopeSpans::decode(key.1).map_err(|e| corrupt(e.to_string()))?;
                rs.scope_spans = vec![ss];
                groups.push(rs);
                headers.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        if let Some(ss) = groups[slot].scope_spans.first_mut() {
            ss.spans.push(span);
        }
    }
    Ok(groups)
}

fn optional_string(array: &arrow_array::StringArray, row: usize) -> String {
    if array.is_valid(row) {
        array.value(row).to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{RowGroups, TraceInput, encode_block, write_block};
    use legato_model::TenantId;
    use object_store::memory::InMemory;

    /// A trace of six spans whose id ends in `n` (other tests build blocks from it too).
    pub(crate) fn trace(n: u32) -> TraceInput {
        let mut id = [9u8; 16];
        id[12..].copy_from_slice(&n.to_be_bytes());
        let spans = (0..6u8)
            .map(|i| Span {
                trace_id: id.to_vec(),
                span_id: vec![i + 1, 0, 0, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 1],
                name: format!("op-{i}"),
                start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i),
                end_time_unix_nano: 1_700_000_000_000_000_100,
                ..Default::default()
            })
            .collect();
        TraceInput {
            id: TraceId(id),
            batches: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// Flushed blocks group 8,192 spans, compacted ones 32,768, each group ending after a
    /// whole trace; both read back the same.
    #[tokio::test]
    async fn flushed_and_compacted_blocks_group_rows_by_their_layout() {
        for (groups, rows) in [
            (RowGroups::FLUSH, vec![8196, 8196, 3612]),
            (RowGroups::COMPACTED, vec![20_004]),
        ] {
            let mut writer = crate::BlockWriter::new(&TenantId::single(), BlockId::random(), groups).unwrap();
            for n in 0..20_000 / 6 + 1 {
                writer.push(&trace(n)).unwrap();
            }
            let block = writer.finish(1).unwrap();
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            write_block(&store, &block).await.unwrap();
            let reader = BlockReader::new(store, StorageMetrics::default());
            let (_, footer) = reader.open(&block.meta).await.unwrap();
            let got: Vec<i64> = footer.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
            assert_eq!(got, rows.iter().map(|r| *r as i64).collect::<Vec<_>>(), "{groups:?}");
            let last = reader.find_trace(&block.meta, &trace(20_000 / 6).id).await.unwrap();
            assert_eq!(legato_proto::span_count(&last), 6);
        }
    }

    /// A lookup decodes the 1,024-row pages that hold the trace, not its whole row group.
    #[tokio::test]
    async fn a_lookup_selects_only_the_pages_holding_the_trace() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // 6,000 traces of 6 spans: row groups of 32,768 rows cut after a whole trace (the
        // first ends with trace 5,461 at row 32,772), pages of 1,024.
        let block = encode_block(
            &TenantId::single(),
            BlockId::random(),
            (0..6000).map(trace).collect(),
            1,
        )
        .unwrap();
        assert_eq!(block.meta.row_groups, 2);
        write_block(&store, &block).await.unwrap();
        let reader = BlockReader::new(store, StorageMetrics::default());
        let (_, footer) = reader.open(&block.meta).await.unwrap();
        let metadata = footer.metadata();
        assert!(metadata.page_index().is_some(), "page index loaded with the footer");
        assert_eq!(
            metadata.row_group(0).num_rows(),
            32_772,
            "the group ends after a whole trace"
        );
        // Page locations of every column (a lookup fetches only its pages of each), page
        // statistics of trace_id only.
        for rg in 0..metadata.num_row_groups() {
            let index = metadata.page_index_for_row_group(rg);
            for column in 0..metadata.row_group(rg).num_columns() {
                let pages = index.offset_index(column).map(|o| o.page_locations().len());
                assert!(
                    pages.is_some_and(|n| n > 0),
                    "row group {rg} column {column}: {pages:?}"
                );
            }
        }
        let chunk = metadata.row_group(0).column(1);
        assert!(
            chunk.column_index_length().is_none(),
            "{:?} has page statistics",
            chunk.column_path()
        );
        assert!(
            metadata
                .row_group(0)
                .column(TRACE_ID_LEAF)
                .column_index_length()
                .is_some()
        );
        // Trace 10: rows 60..66, in the first page. Trace 170: rows 1020..1026, across the first
        // two pages. Trace 5999: the last rows of the second row group (3,228 rows).
        for (n, pages) in [(10u32, 1..=1024), (170, 1025..=2048), (5999, 1..=1024)] {
            let t = trace(n);
            let row_groups: Vec<usize> = if n < 5462 { vec![0] } else { vec![1] };
            let selection = trace_pages(metadata, &row_groups, &t.id);
            assert!(pages.contains(&selection.row_count()), "trace {n}: {selection:?}");
            let found = reader.find_trace(&block.meta, &t.id).await.unwrap();
            assert_eq!(legato_proto::span_count(&found), 6, "trace {n}");
        }
    }
}
