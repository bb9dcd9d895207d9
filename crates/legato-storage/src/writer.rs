//! Writes a block: spans → Arrow batch → Parquet bytes, bloom filter, then meta.json last.
//! The Parquet bytes go to any `Write` sink: a `Vec` (the ingester's blocks, uploaded whole)
//! or a streaming upload (the compactor's, see `upload.rs`).

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use arrow_array::Array as _;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int8Builder, Int32Builder, Int64Builder,
    StringBuilder, UInt32Builder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::OffsetBuffer;
use bytes::Bytes;
use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::span_wire::{AnyRef, WireTrace};
use legato_proto::trace::ResourceSpans;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::schema::{self, attr_fields, attr_item_field};
use crate::{BlockMeta, ENCODING_V1, Error, Result, TraceBloom, TraceRows};

/// One trace's spans, as received (possibly in several batches, possibly with duplicates).
#[derive(Debug, Clone)]
pub struct TraceInput {
    pub id: TraceId,
    pub batches: Vec<ResourceSpans>,
}

/// The encoded objects of a block, ready to upload.
pub struct WrittenBlock {
    pub meta: BlockMeta,
    pub data: Bytes,
    pub bloom: Bytes,
    /// Tag names and values of the block (`tags.json`), when the writer computed them.
    pub tags: Option<Bytes>,
}

/// A block whose data file went to a sink: everything else it needs to be committed.
#[derive(Debug, Clone)]
pub struct SealedBlock {
    pub meta: BlockMeta,
    pub bloom: Bytes,
    pub tags: Option<Bytes>,
}

/// How a block's rows are grouped. Each column chunk of a row group costs a decoder (zstd
/// contexts, page headers) on every read: a `rate()` from columns over one compacted block
/// of 9.2 M demo spans took 0.72-0.88 CPU-s with 8,192-span groups, 0.46 with 32,768. But a
/// trace lookup fetches the dictionary page of every column of the group it reads, and larger
/// groups have larger dictionaries: with 4 MiB dictionary pages (55.3 instead of 57.2 B/span in
/// `legato-bench encode --data demo`) lookups took 14.8 / 57 ms p50 / p99 in the realistic
/// run, with 1 MiB 13.8 / 39.6, with 8,192-span groups 10.6 / 33.3. Flushed blocks, written at
/// the ingest rate and compacted soon, keep the small groups; compacted blocks, where data
/// lives and most queries read, take the large ones with 1 MiB dictionary pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroups {
    /// Spans per row group; a group ends after the trace that reaches this.
    pub spans: usize,
    /// Largest dictionary page of a column chunk; a column past it falls back to plain.
    pub dictionary_page_bytes: usize,
}

impl RowGroups {
    /// Blocks the ingester flushes.
    pub const FLUSH: Self = Self {
        spans: 8192,
        dictionary_page_bytes: 1 << 20,
    };
    /// Blocks the compactor writes (and `encode_block`).
    pub const COMPACTED: Self = Self {
        spans: 32768,
        dictionary_page_bytes: 1 << 20,
    };
}

/// Spans held as rows before they are encoded into the row group being written: the rows of a
/// whole group, held at once, took ~4x the memory of one batch.
const ENCODE_ROWS: usize = 8192;
const PAGE_ROWS: usize = 1024;

/// Encodes a block from traces in any order (inputs sharing a trace id are merged).
/// CPU-heavy: call from a blocking thread.
pub fn encode_block(
    tenant: &TenantId,
    block_id: BlockId,
    mut traces: Vec<TraceInput>,
    created_at_unix_nano: u64,
) -> Result<WrittenBlock> {
    traces.sort_by_key(|t| t.id);
    // Merge inputs that share a trace id so each trace is one contiguous run.
    traces.dedup_by(|later, earlier| {
        if later.id == earlier.id {
            earlier.batches.append(&mut later.batches);
            true
        } else {
            false
        }
    });
    let mut writer = BlockWriter::new(tenant, block_id, RowGroups::COMPACTED)?;
    for trace in &traces {
        writer.push(trace)?;
    }
    writer.finish(created_at_unix_nano)
}

/// Streams traces into a block, one row group at a time, so memory holds a batch of decoded
/// spans (`ENCODE_ROWS`) and the row group being encoded rather than the whole block; the
/// encoded row groups go to `W` as they are complete. Besides that, it keeps the id of every
/// trace (16 bytes each) for the bloom filter.
pub struct BlockWriter<W: Write + Send = Vec<u8>> {
    tenant: TenantId,
    block_id: BlockId,
    writer: ArrowWriter<CountingSink<W>>,
    /// Rows not yet encoded (at most about `ENCODE_ROWS` with `picks`).
    rows: RowBuilder,
    /// Rows copied as they are from other blocks (`push_rows`): (index into `sources`, row),
    /// in block order. Rows in `rows` were all pushed after these.
    picks: Vec<(usize, usize)>,
    sources: Vec<Arc<RecordBatch>>,
    groups: RowGroups,
    /// Rows encoded into the row group being written.
    group_rows: usize,
    ids: Vec<TraceId>,
    total_spans: u64,
    min_start: u64,
    max_end: u64,
}

impl BlockWriter<Vec<u8>> {
    /// A writer that keeps the data file in memory.
    pub fn new(tenant: &TenantId, block_id: BlockId, groups: RowGroups) -> Result<Self> {
        Self::with_sink(tenant, block_id, Vec::new(), groups)
    }

    pub fn finish(self, created_at_unix_nano: u64) -> Result<WrittenBlock> {
        let (sealed, data) = self.finish_into_sink(created_at_unix_nano)?;
        Ok(WrittenBlock {
            meta: sealed.meta,
            data: Bytes::from(data),
            bloom: sealed.bloom,
            tags: sealed.tags,
        })
    }
}

impl<W: Write + Send> BlockWriter<W> {
    /// A writer whose data file goes to `sink` as row groups are complete.
    pub fn with_sink(tenant: &TenantId, block_id: BlockId, sink: W, groups: RowGroups) -> Result<Self> {
        let perr = |source| Error::Parquet {
            block: block_id,
            source,
        };
        let sink = CountingSink {
            inner: sink,
            written: 0,
            tail: [0; 8],
        };
        let writer = ArrowWriter::try_new(sink, schema::schema_v1(), Some(writer_properties(block_id, groups)?))
            .map_err(perr)?;
        Ok(Self {
            tenant: tenant.clone(),
            block_id,
            writer,
            rows: RowBuilder::default(),
            picks: Vec::new(),
            sources: Vec::new(),
            groups,
            group_rows: 0,
            ids: Vec::new(),
            total_spans: 0,
            min_start: u64::MAX,
            max_end: 0,
        })
    }

    /// Adds a trace. Traces must come in ascending id order, each id once.
    pub fn push(&mut self, trace: &TraceInput) -> Result<()> {
        // One row path for both inputs: the batches as an encoded `tempopb.Trace`.
        let mut encoded = Vec::new();
        for rs in &trace.batches {
            prost::encoding::message::encode(1, rs, &mut encoded);
        }
        let mut wire = WireTrace::default();
        self.read_wire(&mut wire, &encoded)?;
        self.push_wire(trace.id, &wire)
    }

    /// Reads an encoded `tempopb.Trace` into `wire`, naming the block if it is malformed.
    pub fn read_wire<'a>(&self, wire: &mut WireTrace<'a>, encoded: &'a [u8]) -> Result<()> {
        wire.read(encoded).map_err(|e| Error::Corrupt {
            block: self.block_id,
            message: format!("undecodable trace: {e}"),
        })
    }

    /// Adds a trace read from its encoded segments (`WireTrace::read`), with no decode into
    /// OTLP structs. Traces must come in ascending id order, each id once; spans repeated
    /// (same id and kind) are stored once.
    pub fn push_wire(&mut self, id: TraceId, trace: &WireTrace<'_>) -> Result<()> {
        if self.ids.last().is_some_and(|last| *last >= id) {
            return Err(Error::Corrupt {
                block: self.block_id,
                message: format!("trace {id} pushed out of order"),
            });
        }
        let mut seen = std::collections::HashSet::new();
        let mut order: Vec<usize> = (0..trace.spans.len())
            .filter(|&i| seen.insert((trace.spans[i].span.span_id, trace.spans[i].span.kind)))
            .collect();
        if order.is_empty() {
            return Ok(());
        }
        order.sort_by_key(|&i| trace.spans[i].span.start_unix_nano);
        for &i in &order {
            let span = &trace.spans[i].span;
            self.min_start = self.min_start.min(span.start_unix_nano);
            self.max_end = self.max_end.max(span.end_unix_nano.max(span.start_unix_nano));
        }
        self.rows.push_trace(&id, trace, &order);
        self.ids.push(id);
        self.pushed()
    }

    /// Adds a trace of another block as its stored rows, copied as they are (no decode into
    /// spans and back: what the compactor does with a trace only one input holds). Traces
    /// must come in ascending id order, each id once. Rows of another layout are converted.
    pub fn push_rows(&mut self, trace: &TraceRows) -> Result<()> {
        if self.ids.last().is_some_and(|last| *last >= trace.id) {
            return Err(Error::Corrupt {
                block: self.block_id,
                message: format!("trace {} pushed out of order", trace.id),
            });
        }
        if trace.start >= trace.end {
            return Ok(());
        }
        let source = match self.sources.iter().rposition(|s| Arc::ptr_eq(s, &trace.batch)) {
            Some(i) => i,
            None if trace.batch.schema().fields() != schema::schema_v1().fields() => {
                return self.push(&trace.to_input()?);
            }
            None => {
                self.sources.push(trace.batch.clone());
                self.sources.len() - 1
            }
        };
        // Rows built from spans so far go first.
        self.built_rows_to_picks()?;
        let corrupt = |what: &str| Error::Corrupt {
            block: trace.block,
            message: format!("{what} column missing"),
        };
        let starts = trace
            .batch
            .column_by_name(schema::START)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| corrupt(schema::START))?;
        let durations = trace
            .batch
            .column_by_name(schema::DURATION)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| corrupt(schema::DURATION))?;
        for row in trace.start..trace.end {
            let start = starts.value(row) as u64;
            self.min_start = self.min_start.min(start);
            self.max_end = self
                .max_end
                .max(start.saturating_add(durations.value(row).max(0) as u64));
            self.picks.push((source, row));
        }
        self.ids.push(trace.id);
        self.pushed()
    }

    /// Rows waiting to be encoded.
    fn pending_rows(&self) -> usize {
        self.rows.len + self.picks.len()
    }

    /// Moves the rows built from spans behind the picked ones, as one more source.
    fn built_rows_to_picks(&mut self) -> Result<()> {
        if self.rows.len == 0 {
            return Ok(());
        }
        let built = std::mem::take(&mut self.rows).finish()?;
        let source = self.sources.len();
        self.picks.extend((0..built.num_rows()).map(|row| (source, row)));
        self.sources.push(Arc::new(built));
        Ok(())
    }

    /// After a trace: buffered rows are encoded a batch at a time, and the row group is closed
    /// after a whole trace once it holds enough, so a reader can split a block's groups
    /// between threads without cutting a trace in two.
    fn pushed(&mut self) -> Result<()> {
        let group = self.groups.spans;
        if self.pending_rows() >= ENCODE_ROWS || self.group_rows + self.pending_rows() >= group {
            self.write_rows()?;
            if self.group_rows >= group {
                self.writer.flush().map_err(|source| Error::Parquet {
                    block: self.block_id,
                    source,
                })?;
                self.group_rows = 0;
            }
        }
        Ok(())
    }

    pub fn block_id(&self) -> BlockId {
        self.block_id
    }

    fn write_rows(&mut self) -> Result<()> {
        let batch = if self.picks.is_empty() {
            std::mem::take(&mut self.rows).finish()?
        } else {
            self.built_rows_to_picks()?;
            let sources: Vec<&RecordBatch> = self.sources.iter().map(|s| s.as_ref()).collect();
            let batch = arrow_select::interleave::interleave_record_batch(&sources, &self.picks)?;
            self.picks.clear();
            self.sources.clear();
            batch
        };
        self.total_spans += batch.num_rows() as u64;
        self.group_rows += batch.num_rows();
        self.writer.write(&batch).map_err(|source| Error::Parquet {
            block: self.block_id,
            source,
        })
    }

    /// Writes the last row group and the footer; returns the block's meta and bloom filter,
    /// and the sink, which holds the whole data file.
    pub fn finish_into_sink(mut self, created_at_unix_nano: u64) -> Result<(SealedBlock, W)> {
        let block = self.block_id;
        let perr = |source| Error::Parquet { block, source };
        if self.pending_rows() > 0 {
            self.write_rows()?;
        }
        self.writer.flush().map_err(perr)?;
        let row_groups = self.writer.flushed_row_groups().len() as u32;
        let sink = self.writer.into_inner().map_err(perr)?;
        let data_size = sink.written;
        let footer_size = footer_len(&sink.tail).ok_or_else(|| Error::Corrupt {
            block,
            message: "parquet footer missing".into(),
        })?;
        let bloom = TraceBloom::build(self.ids.iter()).to_bytes();
        let total_spans = self.total_spans;
        let meta = BlockMeta {
            encoding: ENCODING_V1.to_string(),
            block_id: block,
            tenant_id: self.tenant,
            start_time_unix_nano: if total_spans == 0 { 0 } else { self.min_start },
            end_time_unix_nano: self.max_end,
            total_traces: self.ids.len() as u64,
            total_spans,
            row_groups,
            data_size,
            footer_size,
            bloom_size: bloom.len() as u64,
            compaction_level: 0,
            created_at_unix_nano,
            replaces: Vec::new(),
            retention_filter: None,
        };
        let sealed = SealedBlock {
            meta,
            bloom: Bytes::from(bloom),
            tags: None,
        };
        Ok((sealed, sink.inner))
    }
}

/// Counts what the Parquet writer writes and keeps its last 8 bytes (the footer's length and
/// `PAR1`), whatever the sink.
struct CountingSink<W> {
    inner: W,
    written: u64,
    tail: [u8; 8],
}

impl<W: Write> Write for CountingSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let wrote = &buf[..n];
        self.written += n as u64;
        if wrote.len() >= 8 {
            self.tail.copy_from_slice(&wrote[wrote.len() - 8..]);
        } else {
            self.tail.rotate_left(wrote.len());
            self.tail[8 - wrote.len()..].copy_from_slice(wrote);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[derive(Default)]
struct RowBuilder {
    len: usize,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_index: Int32Builder,
    parent_span_id: Vec<Option<Vec<u8>>>,
    nested_left: Int32Builder,
    nested_right: Int32Builder,
    name: StringBuilder,
    kind: Int8Builder,
    start: Int64Builder,
    duration: Int64Builder,
    status_code: Int8Builder,
    status_message: StringBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    service: StringBuilder,
    resource: BinaryBuilder,
    scope: BinaryBuilder,
    attr_lengths: Vec<usize>,
    attr_key: StringBuilder,
    attr_str: StringBuilder,
    attr_int: Int64Builder,
    attr_dbl: Float64Builder,
    attr_bool: BooleanBuilder,
    attr_raw: BinaryBuilder,
    extras: BinaryBuilder,
    /// Reused per trace: the encoded headers of its resources and scopes, and a span's extras.
    headers: Vec<u8>,
    resource_headers: Vec<std::ops::Range<usize>>,
    scope_headers: Vec<std::ops::Range<usize>>,
    scratch: Vec<u8>,
}

impl RowBuilder {
    /// Adds the spans `order` (indices into `trace.spans`) of a trace as rows, in that order.
    fn push_trace(&mut self, id: &TraceId, trace: &WireTrace<'_>, order: &[usize]) {
        // Each resource's and scope's header, encoded once per trace.
        let concat = |into: &mut Vec<u8>, raw: &[&[u8]]| {
            let from = into.len();
            raw.iter().for_each(|f| into.extend_from_slice(f));
            from..into.len()
        };
        self.headers.clear();
        self.resource_headers.clear();
        self.scope_headers.clear();
        for r in &trace.resources {
            let range = concat(&mut self.headers, trace.raw(&r.header));
            self.resource_headers.push(range);
        }
        for sc in &trace.scopes {
            let range = concat(&mut self.headers, trace.raw(&sc.header));
            self.scope_headers.push(range);
        }
        // The first span with an id is the one children point to.
        let index: HashMap<&[u8], usize> = order
            .iter()
            .enumerate()
            .rev()
            .map(|(row, &i)| (trace.spans[i].span.span_id, row))
            .collect();
        let parents: Vec<Option<usize>> = order
            .iter()
            .enumerate()
            .map(|(row, &i)| {
                index
                    .get(trace.spans[i].span.parent_span_id)
                    .copied()
                    .filter(|p| *p != row)
            })
            .collect();
        let (left, right) = legato_model::span::nested_set(&parents);
        for (row, &i) in order.iter().enumerate() {
            let w = &trace.spans[i];
            let span = &w.span;
            let scope = &trace.scopes[w.scope];
            let resource = &trace.resources[scope.resource];
            self.len += 1;
            self.trace_id.extend_from_slice(&id.0);
            self.span_id.extend_from_slice(&fixed::<8>(span.span_id));
            self.parent_index.append_value(parents[row].map_or(-1, |p| p as i32));
            let orphan_parent = parents[row].is_none() && !span.parent_span_id.is_empty();
            self.parent_span_id
                .push(orphan_parent.then(|| fixed::<8>(span.parent_span_id).to_vec()));
            self.nested_left.append_value(left[row]);
            self.nested_right.append_value(right[row]);
            self.name.append_value(span.name);
            self.kind.append_value(span.kind as i8);
            self.start.append_value(span.start_unix_nano as i64);
            self.duration
                .append_value(span.end_unix_nano.wrapping_sub(span.start_unix_nano) as i64);
            self.status_code.append_value(span.status_code as i8);
            self.status_message
                .append_option((!span.status_message.is_empty()).then_some(span.status_message));
            self.trace_state
                .append_option((!w.trace_state.is_empty()).then_some(w.trace_state));
            self.flags.append_value(w.flags);
            self.service.append_value(resource.service_name);
            self.resource
                .append_value(&self.headers[self.resource_headers[scope.resource].clone()]);
            self.scope
                .append_value(&self.headers[self.scope_headers[w.scope].clone()]);
            let attrs = trace.attrs(&w.attrs);
            self.attr_lengths.push(attrs.len());
            for (key, value, raw) in attrs.iter() {
                self.push_attr(key, value, raw);
            }
            if w.has_extras {
                self.scratch.clear();
                trace
                    .raw(&w.extras)
                    .iter()
                    .for_each(|f| self.scratch.extend_from_slice(f));
                self.extras.append_value(&self.scratch);
            } else {
                self.extras.append_null();
            }
        }
    }

    fn push_attr(&mut self, key: &str, value: AnyRef<'_>, raw: &[u8]) {
        self.attr_key.append_value(key);
        let (s, i, d, b) = match value {
            AnyRef::Str(s) => (Some(s), None, None, None),
            AnyRef::Int(i) => (None, Some(i), None, None),
            AnyRef::Double(d) => (None, None, Some(d), None),
            AnyRef::Bool(b) => (None, None, None, Some(b)),
            AnyRef::Other => (None, None, None, None),
        };
        self.attr_str.append_option(s);
        self.attr_int.append_option(i);
        self.attr_dbl.append_option(d);
        self.attr_bool.append_option(b);
        match value {
            AnyRef::Other => self.attr_raw.append_value(raw),
            _ => self.attr_raw.append_null(),
        }
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let fixed_array = |bytes: &[u8], width: i32| -> Result<ArrayRef> {
            let mut b = FixedSizeBinaryBuilder::with_capacity(bytes.len() / width as usize, width);
            for chunk in bytes.chunks(width as usize) {
                b.append_value(chunk)?;
            }
            Ok(Arc::new(b.finish()))
        };
        let mut parent_ids = FixedSizeBinaryBuilder::with_capacity(self.len, 8);
        for p in &self.parent_span_id {
            match p {
                Some(bytes) => parent_ids.append_value(bytes)?,
                None => parent_ids.append_null(),
            }
        }
        let attrs_struct = StructArray::try_new(
            attr_fields(),
            vec![
                Arc::new(self.attr_key.finish()) as ArrayRef,
                Arc::new(self.attr_str.finish()),
                Arc::new(self.attr_int.finish()),
                Arc::new(self.attr_dbl.finish()),
                Arc::new(self.attr_bool.finish()),
                Arc::new(self.attr_raw.finish()),
            ],
            None,
        )?;
        let attrs = ListArray::try_new(
            attr_item_field(),
            OffsetBuffer::from_lengths(self.attr_lengths.iter().copied()),
            Arc::new(attrs_struct),
            None,
        )?;
        let columns: Vec<ArrayRef> = vec![
            fixed_array(&self.trace_id, 16)?,
            fixed_array(&self.span_id, 8)?,
            Arc::new(self.parent_index.finish()),
            Arc::new(parent_ids.finish()),
            Arc::new(self.nested_left.finish()),
            Arc::new(self.nested_right.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.resource.finish()),
            Arc::new(self.scope.finish()),
            Arc::new(attrs),
            Arc::new(self.extras.finish()),
        ];
        debug_assert!(columns.iter().all(|c| c.len() == self.len));
        RecordBatch::try_new(schema::schema_v1(), columns).map_err(Error::from)
    }
}

/// Left-pads or truncates an id to N bytes (ids are validated at ingest; this keeps the
/// fixed-width column well-formed whatever happens).
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = bytes.len().min(N);
    out[N - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    out
}

fn writer_properties(block: BlockId, groups: RowGroups) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(3).map_err(|source| Error::Parquet { block, source })?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        // Row groups are cut by `write_rows`; the writer cuts only a trace of more spans.
        .set_max_row_group_row_count(Some(4 * groups.spans))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_dictionary_page_size_limit(groups.dictionary_page_bytes)
        // Page statistics only where a reader uses them: `trace_id`, to find a trace's pages.
        // Every other column's page min/max went into the page index unread: 58.5 -> 56.3
        // B/span of demo data (`legato-bench encode --data demo`), and less footer to fetch and
        // decode for every block opened. Page locations (the offset index) stay for every
        // column, so lookups still fetch only the pages they need.
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_column_statistics_enabled(ColumnPath::from(schema::TRACE_ID), EnabledStatistics::Page)
        // Events and links are nearly all distinct: a dictionary is built and abandoned for
        // nothing (`legato-bench encode --data demo`: 59.1 -> 58.8 B/span without it).
        .set_column_dictionary_enabled(ColumnPath::from(schema::EXTRAS), false)
        .set_column_dictionary_enabled(ColumnPath::from(schema::SPAN_ID), false)
        // Durations are nearly all distinct; delta-packed they are ~2 B per span smaller than
        // dictionary-then-plain (`legato-bench encode --data demo`: 59.1 -> 56.8 B/span).
        .set_column_dictionary_enabled(ColumnPath::from(schema::DURATION), false)
        .set_column_encoding(ColumnPath::from(schema::DURATION), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from(schema::PARENT_SPAN_ID), false)
        .set_column_dictionary_enabled(ColumnPath::from(schema::START), false)
        .set_column_encoding(ColumnPath::from(schema::START), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from(schema::NESTED_LEFT), false)
        .set_column_encoding(ColumnPath::from(schema::NESTED_LEFT), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from(schema::NESTED_RIGHT), false)
        .set_column_encoding(ColumnPath::from(schema::NESTED_RIGHT), Encoding::DELTA_BINARY_PACKED)
        .build())
}

/// Footer metadata length plus the 8-byte tail (length and `PAR1`), from that tail.
fn footer_len(tail: &[u8; 8]) -> Option<u64> {
    if &tail[4..] != b"PAR1" {
        return None;
    }
    let len = u32::from_le_bytes(tail[..4].try_into().ok()?);
    Some(u64::from(len) + 8)
}
