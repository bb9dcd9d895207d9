//! Full scans of a block for search: rows → `legato_model::span::TraceData`, one trace at a
//! time, in trace-id order. Resources and scopes are decoded once per distinct value.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::BooleanArray;
use arrow_array::cast::AsArray;
use arrow_array::types::{BinaryType, ByteArrayType, Float64Type, Int8Type, Int32Type, Int64Type, Utf8Type};
use arrow_array::{Array, GenericByteArray, RecordBatch};
use futures::StreamExt;
use legato_model::span::{AttrValue, EventData, LinkData, SpanData, SpanOrigin, TraceData};
use legato_proto::common::AnyValue;
use legato_proto::span_view::{attr_value, attrs};
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter, RowSelection, RowSelector,
};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::schema::types::SchemaDescPtr;
use prost::Message;

use crate::prefilter::{ScanOptions, row_bits};
use crate::reader::{BlockFile, BlockReader, column, trace_id_range};
use crate::schema;
use crate::{BlockMeta, ENCODING_V1, Error, Result};

/// A binary or string column read plain or as a dictionary: a row's value either way.
pub enum ByteColumn<'a, T: ByteArrayType> {
    Plain(&'a GenericByteArray<T>),
    Dictionary(&'a arrow_array::DictionaryArray<Int32Type>, &'a GenericByteArray<T>),
}

pub(crate) type BinaryColumn<'a> = ByteColumn<'a, BinaryType>;
pub type StrColumn<'a> = ByteColumn<'a, Utf8Type>;

impl<'a, T: ByteArrayType> ByteColumn<'a, T> {
    /// `None` when the column has another type.
    pub fn new(array: &'a dyn Array) -> Option<Self> {
        if let Some(plain) = array.as_bytes_opt::<T>() {
            return Some(Self::Plain(plain));
        }
        let dict = array.as_dictionary_opt::<Int32Type>()?;
        Some(Self::Dictionary(dict, dict.values().as_bytes_opt::<T>()?))
    }

    pub(crate) fn is_valid(&self, row: usize) -> bool {
        match self {
            Self::Plain(a) => a.is_valid(row),
            Self::Dictionary(d, _) => d.is_valid(row),
        }
    }

    pub fn value(&self, row: usize) -> &'a T::Native {
        match self {
            Self::Plain(a) => a.value(row),
            Self::Dictionary(d, values) => values.value(d.keys().value(row) as usize),
        }
    }

    /// The row's dictionary index, when read as a dictionary.
    pub fn key(&self, row: usize) -> Option<i32> {
        match self {
            Self::Plain(_) => None,
            Self::Dictionary(d, _) => Some(d.keys().value(row)),
        }
    }
}

/// A string column of `batch` (plain or a dictionary); a corrupt-block error when it is
/// missing or of another type.
fn str_column<'a>(batch: &'a RecordBatch, name: &str, block: legato_model::BlockId) -> Result<StrColumn<'a>> {
    StrColumn::new(column(batch, name, block)?).ok_or_else(|| Error::Corrupt {
        block,
        message: format!("column {name} is not a string column"),
    })
}

/// The columns of the `attrs` list's entries. A predicate read (`predicate_attr_leaves`)
/// has the keys and only the value leaves its tests need; the others are `None`.
pub(crate) struct AttrColumns<'a> {
    pub(crate) offsets: &'a [i32],
    pub(crate) keys: StrColumn<'a>,
    pub(crate) strs: Option<StrColumn<'a>>,
    pub(crate) ints: Option<&'a arrow_array::Int64Array>,
    pub(crate) dbls: Option<&'a arrow_array::Float64Array>,
    pub(crate) bools: Option<&'a arrow_array::BooleanArray>,
    pub(crate) raws: Option<&'a arrow_array::BinaryArray>,
}

impl<'a> AttrColumns<'a> {
    /// `None` when the column does not have the schema's shape.
    pub(crate) fn new(array: &'a dyn Array) -> Option<Self> {
        let list = array.as_list_opt::<i32>()?;
        let entries = list.values().as_struct_opt()?;
        let col = |name: &str| entries.column_by_name(name).map(|c| c.as_ref());
        // A leaf that is there must have its type; one that is not was not read.
        fn typed<'b, T>(c: Option<&'b dyn Array>, cast: impl Fn(&'b dyn Array) -> Option<T>) -> Option<Option<T>> {
            match c {
                Some(c) => cast(c).map(Some),
                None => Some(None),
            }
        }
        Some(Self {
            offsets: list.value_offsets(),
            keys: StrColumn::new(col("key")?)?,
            strs: typed(col("str"), StrColumn::new)?,
            ints: typed(col("int"), |c: &'a dyn Array| c.as_primitive_opt::<Int64Type>())?,
            dbls: typed(col("dbl"), |c: &'a dyn Array| c.as_primitive_opt::<Float64Type>())?,
            bools: typed(col("bool"), |c: &'a dyn Array| c.as_boolean_opt())?,
            raws: typed(col("raw"), |c: &'a dyn Array| c.as_binary_opt::<i32>())?,
        })
    }

    /// The entry range of a row.
    pub(crate) fn entries(&self, row: usize) -> std::ops::Range<usize> {
        self.offsets[row] as usize..self.offsets[row + 1] as usize
    }
}

/// Accumulates the rows of the trace being read.
#[derive(Default)]
struct Assembler {
    current: Option<TraceData>,
    /// Parent row offsets within the current trace, resolved when the trace is complete.
    parents: Vec<i32>,
    origins: HashMap<Vec<u8>, HashMap<Vec<u8>, Arc<SpanOrigin>>>,
}

impl Assembler {
    fn finish(&mut self) -> Option<TraceData> {
        let mut trace = self.current.take()?;
        for (i, p) in std::mem::take(&mut self.parents).into_iter().enumerate() {
            if p >= 0 && (p as usize) < trace.spans.len() && p as usize != i {
                let parent_id = trace.spans[p as usize].span_id;
                let span = &mut trace.spans[i];
                span.parent = Some(p as usize);
                span.parent_span_id = parent_id.to_vec();
            }
        }
        Some(trace)
    }

    /// An origin carrying only the service name (when resources are not decoded), kept
    /// under the empty resource.
    fn service_origin(&mut self, service: &str) -> Arc<SpanOrigin> {
        let by_service = self.origins.entry(Vec::new()).or_default();
        if let Some(o) = by_service.get(service.as_bytes()) {
            return o.clone();
        }
        let origin = Arc::new(SpanOrigin {
            service_name: service.to_string(),
            resource: vec![("service.name".to_string(), AttrValue::Str(service.to_string()))],
            ..Default::default()
        });
        by_service.insert(service.as_bytes().to_vec(), origin.clone());
        origin
    }

    fn origin(&mut self, block: legato_model::BlockId, resource: &[u8], scope: &[u8]) -> Result<Arc<SpanOrigin>> {
        if let Some(o) = self.origins.get(resource).and_then(|scopes| scopes.get(scope)) {
            return Ok(o.clone());
        }
        let corrupt = |e: prost::DecodeError| Error::Corrupt {
            block,
            message: e.to_string(),
        };
        let rs = ResourceSpans::decode(resource).map_err(corrupt)?;
        let ss = ScopeSpans::decode(scope).map_err(corrupt)?;
        let resource_attrs = rs.resource.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default();
        let service_name = resource_attrs
            .iter()
            .find(|(k, _)| k == "service.name")
            .and_then(|(_, v)| {
                if let AttrValue::Str(s) = v {
                    Some(s.clone())
                } else {
                    None
                }
            })
            .unwrap_or_default();
        let instrumentation = ss.scope.unwrap_or_default();
        let origin = Arc::new(SpanOrigin {
            service_name,
            resource: resource_attrs,
            scope_name: instrumentation.name,
            scope_version: instrumentation.version,
            scope_attrs: attrs(&instrumentation.attributes),
        });
        self.origins
            .entry(resource.to_vec())
            .or_default()
            .insert(scope.to_vec(), origin.clone());
        Ok(origin)
    }
}

impl BlockReader {
    /// Calls `visit` with every trace of the block, in trace-id order, decoding every column.
    /// `visit` returns false to stop early. Returns the number of bytes read.
    pub async fn scan_traces(&self, meta: &BlockMeta, visit: impl FnMut(TraceData) -> bool + Send) -> Result<u64> {
        self.scan_traces_with(meta, &ScanOptions::full(), visit).await
    }

    /// Like `scan_traces`, but reads only the columns `options` needs and skips traces that
    /// cannot meet its required row predicates.
    pub async fn scan_traces_with(
        &self,
        meta: &BlockMeta,
        options: &ScanOptions,
        visit: impl FnMut(TraceData) -> bool + Send,
    ) -> Result<u64> {
        crate::reader::guarded(meta.block_id, self.scan_traces_unguarded(meta, options, visit)).await
    }

    async fn scan_traces_unguarded(
        &self,
        meta: &BlockMeta,
        options: &ScanOptions,
        mut visit: impl FnMut(TraceData) -> bool + Send,
    ) -> Result<u64> {
        let perr = |source| Error::Parquet {
            block: meta.block_id,
            source,
        };
        let columns = options.columns();
        let (builder, schema_descr) = self.stream_builder(meta, &columns).await?;
        // Of the attribute entries, the predicate reads only the keys and the value leaves
        // the tests need.
        let predicate_leaves = (!options.required.is_empty() || options.min_rows > 1).then(|| {
            let predicate_columns = options.predicate_columns();
            let attr_leaves = options.predicate_attr_leaves();
            let leaves: Vec<usize> = schema_descr
                .columns()
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    let parts = c.path().parts();
                    match parts.first().map(String::as_str) {
                        Some(schema::ATTRS) => parts.last().is_some_and(|l| attr_leaves.contains(&l.as_str())),
                        Some(root) => predicate_columns.contains(&root),
                        None => false,
                    }
                })
                .map(|(i, _)| i)
                .collect();
            ProjectionMask::leaves(&schema_descr, leaves)
        });
        let windows = scan_windows(builder.metadata().row_groups());
        // The first window takes this builder, later ones a new one each.
        let mut first = Some(builder);
        // The last trace id the predicate kept, across windows.
        let last_kept: Arc<parking_lot::Mutex<Option<Vec<u8>>>> = Arc::default();
        let mut asm = Assembler::default();
        for (row_groups, selection) in windows {
            let mut builder = match first.take() {
                Some(builder) => builder,
                None => self.stream_builder(meta, &columns).await?.0,
            };
            builder = builder.with_row_groups(row_groups);
            if let Some(selection) = selection {
                builder = builder.with_row_selection(selection);
            }
            if let Some(mask) = &predicate_leaves {
                // Decode the predicate columns first; the other columns are decoded only for
                // rows of traces that can still match.
                let (required, min_rows) = (options.required.clone(), options.min_rows);
                let last_kept = last_kept.clone();
                let predicate = ArrowPredicateFn::new(mask.clone(), move |batch: RecordBatch| {
                    let bits = row_bits(&batch, &required);
                    let Some(ids) = batch.column_by_name(schema::TRACE_ID) else {
                        return Ok(BooleanArray::from(vec![true; batch.num_rows()]));
                    };
                    let ids = ids.as_fixed_size_binary();
                    let mut last = last_kept.lock();
                    let keep = rows_to_keep(ids, &bits, required.len(), min_rows, last.as_deref());
                    if !ids.is_empty() {
                        *last = Some(ids.value(ids.len() - 1).to_vec());
                    }
                    Ok(BooleanArray::from(keep))
                });
                builder = builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
            }
            let mut stream = builder.build().map_err(perr)?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(perr)?;
                if !add_rows(meta.block_id, &batch, options, &mut asm, &mut visit)? {
                    return Ok(meta.data_size);
                }
            }
        }
        if let Some(t) = asm.finish() {
            visit(t);
        }
        Ok(meta.data_size)
    }
}

/// Rows a search reads first. Row groups of compacted blocks are larger
/// (`RowGroups::COMPACTED`), which suits full scans, but a search that stops at its limit
/// would fetch and decode a whole group's pages before its first answer. So it reads this
/// many rows of the first group (fetching only their pages, by the page index), and the rest
/// only when it goes on. (Windows of this size throughout made a full scan take twice as
/// long: each costs a new decoder per column.)
const FIRST_WINDOW_ROWS: usize = 8192;

/// The streams of a search scan, in order: row groups and a row selection within them. When
/// the first group is larger than 1.5 windows: its first `FIRST_WINDOW_ROWS` rows, the rest of
/// it, then every other group; otherwise every group in one stream.
fn scan_windows(groups: &[parquet::file::metadata::RowGroupMetaData]) -> Vec<(Vec<usize>, Option<RowSelection>)> {
    let all: Vec<usize> = (0..groups.len()).collect();
    let Some(first) = groups.first() else { return Vec::new() };
    let rows = first.num_rows().max(0) as usize;
    if rows <= FIRST_WINDOW_ROWS + FIRST_WINDOW_ROWS / 2 {
        return vec![(all, None)];
    }
    let head = RowSelection::from(vec![
        RowSelector::select(FIRST_WINDOW_ROWS),
        RowSelector::skip(rows - FIRST_WINDOW_ROWS),
    ]);
    let rest = RowSelection::from(vec![
        RowSelector::skip(FIRST_WINDOW_ROWS),
        RowSelector::select(rows - FIRST_WINDOW_ROWS),
    ]);
    let mut out = vec![(vec![0], Some(head)), (vec![0], Some(rest))];
    if all.len() > 1 {
        out.push((all[1..].to_vec(), None));
    }
    out
}

impl BlockReader {
    /// Streams the block's rows as Arrow batches of `columns` only (in the scan schema:
    /// resource, scope, attribute keys and strings as dictionaries), in trace-id order, for
    /// callers that aggregate columns without rebuilding traces. `visit` returns false to
    /// stop. Returns the number of bytes read.
    /// `row_groups` reads only those (a part from `column_parts`); `None` reads them all.
    pub async fn scan_columns(
        &self,
        meta: &BlockMeta,
        columns: &[&str],
        row_groups: Option<&[usize]>,
        mut visit: impl FnMut(&RecordBatch) -> bool + Send,
    ) -> Result<u64> {
        crate::reader::guarded(meta.block_id, async {
            let perr = |source| Error::Parquet {
                block: meta.block_id,
                source,
            };
            let (mut builder, _) = self.stream_builder(meta, columns).await?;
            if let Some(groups) = row_groups {
                builder = builder.with_row_groups(groups.to_vec());
            }
            let mut stream = builder.build().map_err(perr)?;
            while let Some(batch) = stream.next().await {
                if !visit(&batch.map_err(perr)?) {
                    break;
                }
            }
            Ok(meta.data_size)
        })
        .await
    }

    /// The block's row groups cut into at most `parts` runs of consecutive groups with about
    /// as many rows each, for threads to read side by side. A run starts only where a new
    /// trace starts (the previous group's last trace id is below the next group's first, by
    /// their statistics), so every trace is whole in one run: in a block, a trace id is still
    /// in one run only.
    pub async fn column_parts(&self, meta: &BlockMeta, parts: usize) -> Result<Vec<Vec<usize>>> {
        let (_, footer) = self.open(meta).await?;
        Ok(split_row_groups(footer.metadata().row_groups(), parts))
    }

    /// A batch stream over the block's `columns` in the scan schema: resources and scopes,
    /// attribute keys and string values come as the dictionaries Parquet stores (a row is an
    /// index into a few distinct values, not a copy of their bytes, and predicates test each
    /// value once). Also the file's schema, for finer projections.
    async fn stream_builder(
        &self,
        meta: &BlockMeta,
        columns: &[&str],
    ) -> Result<(ParquetRecordBatchStreamBuilder<BlockFile>, SchemaDescPtr)> {
        if meta.encoding != ENCODING_V1 {
            return Err(Error::UnknownEncoding {
                block: meta.block_id,
                encoding: meta.encoding.clone(),
            });
        }
        let perr = |source| Error::Parquet {
            block: meta.block_id,
            source,
        };
        let (reader, footer) = self.open(meta).await?;
        let roots: Vec<usize> = schema::schema_v1()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| columns.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let schema_descr = footer.metadata().file_metadata().schema_descr_ptr();
        let mask = ProjectionMask::roots(&schema_descr, roots);
        let footer = ArrowReaderMetadata::try_new(
            footer.metadata().clone(),
            ArrowReaderOptions::new().with_schema(schema::schema_v1_dictionaries()),
        )
        .map_err(perr)?;
        let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, footer)
            .with_batch_size(8192)
            .with_projection(mask);
        Ok((builder, schema_descr))
    }
}

/// `column_parts` over row-group metadata (column 0 is `trace_id`).
fn split_row_groups(groups: &[parquet::file::metadata::RowGroupMetaData], parts: usize) -> Vec<Vec<usize>> {
    let total: i64 = groups.iter().map(|g| g.num_rows()).sum();
    let target = total / parts.max(1) as i64;
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut rows = 0i64;
    for (i, group) in groups.iter().enumerate() {
        let clean = i > 0
            && match (trace_id_range(&groups[i - 1]), trace_id_range(group)) {
                (Some((_, last)), Some((first, _))) => last < first,
                _ => false,
            };
        if clean && rows >= target && out.len() + 1 < parts {
            out.push(std::mem::take(&mut current));
            rows = 0;
        }
        current.push(i);
        rows += group.num_rows();
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Which rows to rebuild: rows of traces where every required predicate is met by some row
/// (with `min_rows` above 1: by each of at least that many rows). The batch's last trace may
/// continue in the next batch, so it is always kept, and so is a trace continuing the one
/// being assembled.
fn rows_to_keep(
    trace_ids: &arrow_array::FixedSizeBinaryArray,
    bits: &[u64],
    required: usize,
    min_rows: usize,
    current: Option<&[u8]>,
) -> Vec<bool> {
    let n = trace_ids.len();
    let mut keep = vec![true; n];
    if required == 0 && min_rows <= 1 {
        return keep;
    }
    let all = if required >= 64 {
        u64::MAX
    } else {
        (1u64 << required) - 1
    };
    let mut start = 0;
    while start < n {
        let id = trace_ids.value(start);
        let mut end = start + 1;
        while end < n && trace_ids.value(end) == id {
            end += 1;
        }
        let continues = start == 0 && current == Some(id);
        let last = end == n;
        let met = if min_rows > 1 {
            end - start >= min_rows && bits[start..end].iter().filter(|b| *b & all == all).count() >= min_rows
        } else {
            bits[start..end].iter().fold(0u64, |acc, b| acc | b) & all == all
        };
        if !(continues || last || met) {
            keep[start..end].iter_mut().for_each(|k| *k = false);
        }
        start = end;
    }
    keep
}

fn add_rows(
    block: legato_model::BlockId,
    batch: &RecordBatch,
    options: &ScanOptions,
    asm: &mut Assembler,
    visit: &mut impl FnMut(TraceData) -> bool,
) -> Result<bool> {
    let corrupt = |message: String| Error::Corrupt { block, message };
    let trace_ids = column(batch, schema::TRACE_ID, block)?.as_fixed_size_binary();
    let span_ids = column(batch, schema::SPAN_ID, block)?.as_fixed_size_binary();
    let parent_index = column(batch, schema::PARENT_INDEX, block)?.as_primitive::<Int32Type>();
    let parent_ids = column(batch, schema::PARENT_SPAN_ID, block)?.as_fixed_size_binary();
    let lefts = column(batch, schema::NESTED_LEFT, block)?.as_primitive::<Int32Type>();
    let rights = column(batch, schema::NESTED_RIGHT, block)?.as_primitive::<Int32Type>();
    let names = str_column(batch, schema::NAME, block)?;
    let kinds = column(batch, schema::KIND, block)?.as_primitive::<Int8Type>();
    let starts = column(batch, schema::START, block)?.as_primitive::<Int64Type>();
    let durations = column(batch, schema::DURATION, block)?.as_primitive::<Int64Type>();
    let codes = column(batch, schema::STATUS_CODE, block)?.as_primitive::<Int8Type>();
    let messages = column(batch, schema::STATUS_MESSAGE, block)?.as_string::<i32>();
    let services = str_column(batch, schema::SERVICE_NAME, block)?;
    // Columns a query may not need are absent from the batch.
    let resources = options
        .resource
        .then(|| batch.column_by_name(schema::RESOURCE))
        .flatten()
        .and_then(|c| BinaryColumn::new(c.as_ref()));
    let scopes = options
        .resource
        .then(|| batch.column_by_name(schema::SCOPE))
        .flatten()
        .and_then(|c| BinaryColumn::new(c.as_ref()));
    let extras = options
        .extras
        .then(|| batch.column_by_name(schema::EXTRAS))
        .flatten()
        .map(|c| c.as_binary::<i32>());
    let attr_lists = match options.attrs.then(|| batch.column_by_name(schema::ATTRS)).flatten() {
        Some(c) => Some(AttrColumns::new(c.as_ref()).ok_or_else(|| corrupt("attrs column has another shape".into()))?),
        None => None,
    };

    let bits = row_bits(batch, &options.required);
    let current = asm.current.as_ref().map(|t| t.trace_id);
    let keep = rows_to_keep(
        trace_ids,
        &bits,
        options.required.len(),
        options.min_rows,
        current.as_ref().map(|c| c.as_slice()),
    );

    let mut batch_origins: HashMap<(i32, i32), Arc<SpanOrigin>> = HashMap::new();
    // Without resources: the origin of each service name, by its dictionary key.
    let mut batch_services: HashMap<i32, Arc<SpanOrigin>> = HashMap::new();
    for (row, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
        let trace_id: [u8; 16] = trace_ids
            .value(row)
            .try_into()
            .map_err(|_| corrupt("bad trace id width".into()))?;
        if asm.current.as_ref().is_none_or(|t| t.trace_id != trace_id) {
            if let Some(done) = asm.finish()
                && !visit(done)
            {
                return Ok(false);
            }
            asm.current = Some(TraceData {
                trace_id,
                spans: Vec::new(),
            });
        }
        let span_attrs = match &attr_lists {
            Some(list) => decode_attrs(list, row, &corrupt)?,
            None => Vec::new(),
        };
        let (mut events, mut links) = (Vec::new(), Vec::new());
        if let Some(extras) = extras
            && extras.is_valid(row)
        {
            let e = Span::decode(extras.value(row)).map_err(|e| corrupt(e.to_string()))?;
            events = e
                .events
                .iter()
                .map(|ev| EventData {
                    name: ev.name.clone(),
                    time_unix_nano: ev.time_unix_nano,
                    attrs: attrs(&ev.attributes),
                })
                .collect();
            links = e
                .links
                .iter()
                .map(|l| LinkData {
                    trace_id: l.trace_id.clone(),
                    span_id: l.span_id.clone(),
                    attrs: attrs(&l.attributes),
                })
                .collect();
        }
        let origin = match (&resources, &scopes) {
            (Some(r), Some(s)) => match (r.key(row), s.key(row)) {
                // Rows of a batch share a few dictionary entries: look each pair up once.
                (Some(rk), Some(sk)) => match batch_origins.get(&(rk, sk)) {
                    Some(o) => o.clone(),
                    None => {
                        let o = asm.origin(block, r.value(row), s.value(row))?;
                        batch_origins.insert((rk, sk), o.clone());
                        o
                    }
                },
                _ => asm.origin(block, r.value(row), s.value(row))?,
            },
            _ => match services.key(row) {
                // As resources: a batch's rows share a few names, each looked up once (a
                // lookup by name per row was 30% of rebuilding traces).
                Some(k) => batch_services
                    .entry(k)
                    .or_insert_with(|| asm.service_origin(services.value(row)))
                    .clone(),
                None => asm.service_origin(services.value(row)),
            },
        };
        let start = starts.value(row) as u64;
        let span = SpanData {
            span_id: span_ids
                .value(row)
                .try_into()
                .map_err(|_| corrupt("bad span id width".into()))?,
            parent_span_id: if parent_ids.is_valid(row) {
                parent_ids.value(row).to_vec()
            } else {
                Vec::new()
            },
            parent: None,
            nested_left: lefts.value(row),
            nested_right: rights.value(row),
            name: names.value(row).to_string(),
            kind: i32::from(kinds.value(row)),
            status_code: i32::from(codes.value(row)),
            status_message: if messages.is_valid(row) {
                messages.value(row).to_string()
            } else {
                String::new()
            },
            start_unix_nano: start,
            end_unix_nano: start.wrapping_add(durations.value(row) as u64),
            attrs: span_attrs,
            events,
            links,
            origin,
        };
        asm.parents.push(parent_index.value(row));
        if let Some(t) = asm.current.as_mut() {
            t.spans.push(span);
        }
    }
    Ok(true)
}

fn decode_attrs(
    a: &AttrColumns<'_>,
    row: usize,
    corrupt: &impl Fn(String) -> Error,
) -> Result<Vec<(String, AttrValue)>> {
    let missing = || corrupt("attrs entries lack a value column".into());
    let (strs, ints, dbls, bools, raws) = (
        a.strs.as_ref().ok_or_else(missing)?,
        a.ints.ok_or_else(missing)?,
        a.dbls.ok_or_else(missing)?,
        a.bools.ok_or_else(missing)?,
        a.raws.ok_or_else(missing)?,
    );
    let entries = a.entries(row);
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let value = if strs.is_valid(e) {
            AttrValue::Str(strs.value(e).to_string())
        } else if !ints.is_null(e) {
            AttrValue::Int(ints.value(e))
        } else if !dbls.is_null(e) {
            AttrValue::Float(dbls.value(e))
        } else if !bools.is_null(e) {
            AttrValue::Bool(bools.value(e))
        } else {
            let any = AnyValue::decode(raws.value(e)).map_err(|err| corrupt(err.to_string()))?;
            match attr_value(&any) {
                Some(v) => v,
                None => continue,
            }
        };
        out.push((a.keys.value(e).to_string(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::FixedSizeBinaryArray;
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    /// Row groups of `per_group` rows over trace ids given by their first byte.
    fn groups_of(ids: &[u8], per_group: usize) -> Vec<parquet::file::metadata::RowGroupMetaData> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "trace_id",
            DataType::FixedSizeBinary(16),
            false,
        )]));
        let column = FixedSizeBinaryArray::try_from_iter(ids.iter().map(|b| [*b; 16])).unwrap();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(column)]).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(per_group))
            .build();
        let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.flush().unwrap();
        writer.flushed_row_groups().to_vec()
    }

    #[test]
    fn parts_start_only_where_a_trace_starts() {
        // Groups of 2 rows: [1 1] [1 2] [3 4] [4 4] [5 6]. Trace 1 and trace 4 cross a group
        // boundary, so parts may only start at groups 2 ([3 4]) and 4 ([5 6]).
        let groups = groups_of(&[1, 1, 1, 2, 3, 4, 4, 4, 5, 6], 2);
        assert_eq!(groups.len(), 5);
        assert_eq!(split_row_groups(&groups, 1), vec![vec![0, 1, 2, 3, 4]]);
        // Half the rows is 5: the first clean start at or past it is group 4.
        assert_eq!(split_row_groups(&groups, 2), vec![vec![0, 1, 2, 3], vec![4]]);
        assert_eq!(split_row_groups(&groups, 5), vec![vec![0, 1], vec![2, 3], vec![4]]);
        // Distinct ids: every boundary is clean.
        let clean = groups_of(&[1, 2, 3, 4, 5, 6, 7, 8], 2);
        assert_eq!(split_row_groups(&clean, 4), vec![vec![0], vec![1], vec![2], vec![3]]);
        assert_eq!(split_row_groups(&clean, 2), vec![vec![0, 1], vec![2, 3]]);
    }
}
