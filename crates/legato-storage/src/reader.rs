//! Reads traces back from blocks: bloom check, row-group pruning by trace-id statistics,
//! one ranged read of the chosen row groups, rows → OTLP resource spans.
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
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetObjectReader;
use prost::Message;

use crate::metrics::StorageMetrics;
use crate::schema;
use crate::{BlockMeta, BlockPaths, ENCODING_V1, Error, Result, TraceBloom};

/// Finds traces in blocks. Caches bloom filters and Parquet footers per block, so a warm
/// lookup costs one ranged read per candidate block.
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
                let Some(stats) = rg.column(0).statistics() else {
                    return true;
                };
                let (Some(min), Some(max)) = (stats.min_bytes_opt(), stats.max_bytes_opt()) else {
                    return true;
                };
                min <= trace.0.as_slice() && trace.0.as_slice() <= max
            })
            .map(|(i, _)| i)
            .collect();
        if row_groups.is_empty() {
            return Ok(Vec::new());
        }
        self.metrics.block_reads.inc_by(row_groups.len() as u64);
        let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, footer)
            .with_row_groups(row_groups)
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
            .with_footer_size_hint(meta.footer_size as usize);
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
        let options = ArrowReaderOptions::new();
        let footer = ArrowReaderMetadata::load_async(&mut reader, options)
            .await
            .map_err(|source| Error::Parquet {
                block: meta.block_id,
                source,
            })?;
        self.footers.lock().insert(meta.block_id, footer.clone());
        Ok(footer)
    }
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
