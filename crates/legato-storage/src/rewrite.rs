//! Reads every trace of a block at full fidelity in trace-id order: what the compactor needs
//! to rewrite blocks. Streams one Parquet batch at a time and hands out one trace at a time as
//! it is asked for (a compaction merges many inputs at once: each holds one small batch and
//! one trace): as its rows (`TraceRows`, which a block writer copies as they are) or converted
//! to OTLP. A trace that straddles batches is carried over until its last row is read.
#![allow(deprecated)] // ParquetObjectReader, as in reader.rs.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use legato_model::{BlockId, TraceId};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStream};

use crate::reader::{BlockReader, column, guarded, guarded_sync, rows_to_otlp};
use crate::{BlockMeta, ENCODING_V1, Error, Result, TraceInput, schema};

/// Rows per decoded batch (a compaction holds one per input block).
const BATCH_ROWS: usize = 2048;

/// One trace of a stored block as its rows: `start..end` of `batch`, whose schema is
/// `schema::schema_v1()`. Its rows are as the block writer wrote them (spans once each, by
/// start time, parents and nested-set bounds relative to the trace), so a writer can copy
/// them into another block unchanged (`BlockWriter::push_rows`).
#[derive(Debug, Clone)]
pub struct TraceRows {
    pub block: BlockId,
    pub id: TraceId,
    pub batch: Arc<RecordBatch>,
    pub start: usize,
    pub end: usize,
}

impl TraceRows {
    /// The trace as OTLP batches.
    pub fn to_input(&self) -> Result<TraceInput> {
        guarded_sync(self.block, || {
            let rows: Vec<usize> = (self.start..self.end).collect();
            let batches = rows_to_otlp(self.block, &self.batch, &self.id, &rows)?;
            Ok(TraceInput { id: self.id, batches })
        })
    }
}

struct State {
    block: BlockId,
    batches: ParquetRecordBatchStream<ParquetObjectReader>,
    /// Rows of the last trace of the previous batch, which may continue in the next one.
    carry: Option<RecordBatch>,
    /// The batch being read and the row ranges of its complete traces not yet returned.
    batch: Option<Arc<RecordBatch>>,
    ready: VecDeque<(usize, usize)>,
    done: bool,
}

impl BlockReader {
    /// Every trace of the block, in ascending trace-id order, each once with all its spans
    /// (resources, scopes, attributes, events and links as stored). A panic while decoding a
    /// damaged block (inside `parquet`, found by fuzzing) is an `Error::Corrupt`, as in the
    /// other reads (`guarded`).
    pub async fn trace_stream(&self, meta: &BlockMeta) -> Result<BoxStream<'static, Result<TraceInput>>> {
        let rows = self.trace_rows(meta).await?;
        Ok(rows.map(|r| r.and_then(|r| r.to_input())).boxed())
    }

    /// Every trace of the block as its rows, in ascending trace-id order, each once.
    pub async fn trace_rows(&self, meta: &BlockMeta) -> Result<BoxStream<'static, Result<TraceRows>>> {
        guarded(meta.block_id, self.trace_rows_unguarded(meta)).await
    }

    async fn trace_rows_unguarded(&self, meta: &BlockMeta) -> Result<BoxStream<'static, Result<TraceRows>>> {
        if meta.encoding != ENCODING_V1 {
            return Err(Error::UnknownEncoding {
                block: meta.block_id,
                encoding: meta.encoding.clone(),
            });
        }
        let block = meta.block_id;
        let (reader, footer) = self.open(meta).await?;
        let batches = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, footer)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|source| Error::Parquet { block, source })?;
        let state = State {
            block,
            batches,
            carry: None,
            batch: None,
            ready: VecDeque::new(),
            done: false,
        };
        Ok(futures::stream::try_unfold(state, move |st| guarded(block, next_trace(st))).boxed())
    }
}

async fn next_trace(mut st: State) -> Result<Option<(TraceRows, State)>> {
    loop {
        if let (Some((start, end)), Some(batch)) = (st.ready.front().copied(), st.batch.as_ref()) {
            let ids = column(batch, schema::TRACE_ID, st.block)?.as_fixed_size_binary();
            let id = ids.value(start).try_into().map(TraceId).map_err(|_| Error::Corrupt {
                block: st.block,
                message: "trace id is not 16 bytes".into(),
            })?;
            let trace = TraceRows {
                block: st.block,
                id,
                batch: batch.clone(),
                start,
                end,
            };
            st.ready.pop_front();
            return Ok(Some((trace, st)));
        }
        if st.done {
            return Ok(None);
        }
        let block = st.block;
        match st
            .batches
            .try_next()
            .await
            .map_err(|source| Error::Parquet { block, source })?
        {
            Some(batch) => {
                let batch = match st.carry.take() {
                    Some(carry) => arrow_select::concat::concat_batches(&schema::schema_v1(), [&carry, &batch])?,
                    None => batch,
                };
                st.carry = split_traces(block, &batch, &mut st.ready)?;
                st.batch = Some(Arc::new(batch));
            }
            None => {
                st.done = true;
                if let Some(carry) = st.carry.take() {
                    let n = carry.num_rows();
                    if n > 0 {
                        st.ready.push_back((0, n));
                        st.batch = Some(Arc::new(carry));
                    }
                }
            }
        }
    }
}

/// Lists the row ranges of every complete trace of `batch` and returns the rows of the last
/// one, which may continue in the next batch.
fn split_traces(
    block: BlockId,
    batch: &RecordBatch,
    out: &mut VecDeque<(usize, usize)>,
) -> Result<Option<RecordBatch>> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(None);
    }
    let ids = column(batch, schema::TRACE_ID, block)?.as_fixed_size_binary();
    let mut start = 0;
    for i in 1..n {
        if ids.value(i) != ids.value(start) {
            out.push_back((start, i));
            start = i;
        }
    }
    Ok(Some(batch.slice(start, n - start)))
}
