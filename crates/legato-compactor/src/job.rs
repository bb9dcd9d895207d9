//! Running one job: a k-way merge of the inputs' traces (each input streams its traces in id
//! order), spans deduplicated by (span id, kind) as the block writer does, written as one
//! block at level max(inputs)+1 that `replaces` the inputs. The output's data file is
//! uploaded while it is encoded, in parts, so memory does not grow with the block.

use std::sync::Arc;

use bytes::Bytes;
use legato_model::{BlockId, TraceId};
use legato_storage::{BlockMeta, BlockReader, ObjectStore, SealedBlock, TraceInput, seal_streamed, start_block_upload};
use legato_traceql::tags::TagSummary;
use tokio::sync::mpsc;

use crate::plan::Job;
use crate::{Error, Result};

/// Traces buffered per input between the reading task and the merge.
const CHANNEL_TRACES: usize = 64;

type TraceRx = mpsc::Receiver<legato_storage::Result<TraceInput>>;

/// Reads and merges the inputs of `job` into block `output`, whose data file is uploaded in
/// parts of `part_size` as it is encoded. The block is not committed: no bloom filter, tags or
/// meta.json yet.
pub(crate) async fn merge_job(
    reader: &BlockReader,
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    output: BlockId,
    now_nanos: u64,
    part_size: usize,
) -> Result<SealedBlock> {
    let mut inputs: Vec<TraceRx> = Vec::with_capacity(job.blocks.len());
    for meta in &job.blocks {
        let mut stream = reader.trace_stream(meta).await?;
        let (tx, rx) = mpsc::channel(CHANNEL_TRACES);
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        inputs.push(rx);
    }
    let tenant = job.tenant.clone();
    let level = job.blocks.iter().map(|b| b.compaction_level).max().unwrap_or(0) + 1;
    let replaces: Vec<BlockId> = job.blocks.iter().map(|b| b.block_id).collect();
    let (mut writer, upload) = start_block_upload(store, &tenant, output, part_size)?;
    let encoded = tokio::task::spawn_blocking(move || -> legato_storage::Result<SealedBlock> {
        let pushed = merge(inputs, |trace| writer.push(&trace).map_err(Error::from));
        match pushed {
            Ok(()) => seal_streamed(writer, now_nanos),
            // An input that failed to read: report it, not the encoder's state.
            Err(Error::Storage(e)) => Err(e),
            Err(other) => Err(legato_storage::Error::Join(other.to_string())),
        }
    })
    .await
    .map_err(|e| legato_storage::Error::Join(e.to_string()))
    .and_then(|sealed| sealed);
    let mut sealed = upload.conclude(encoded).await?;
    sealed.meta.compaction_level = level;
    sealed.meta.replaces = replaces;
    sealed.tags = merged_tags(reader, &job.blocks).await;
    Ok(sealed)
}

/// Pulls from every input in trace-id order and hands each trace once to `push`, with the
/// batches of every input that holds it. Runs on a blocking thread.
fn merge(mut inputs: Vec<TraceRx>, mut push: impl FnMut(TraceInput) -> Result<()>) -> Result<()> {
    let next = |rx: &mut TraceRx| -> Result<Option<TraceInput>> { rx.blocking_recv().transpose().map_err(Error::from) };
    let mut heads: Vec<Option<TraceInput>> = Vec::with_capacity(inputs.len());
    for rx in &mut inputs {
        heads.push(next(rx)?);
    }
    loop {
        let Some(id): Option<TraceId> = heads.iter().flatten().map(|t| t.id).min() else {
            return Ok(());
        };
        let mut merged = TraceInput {
            id,
            batches: Vec::new(),
        };
        for (head, rx) in heads.iter_mut().zip(&mut inputs) {
            if head.as_ref().is_some_and(|t| t.id == id) {
                if let Some(trace) = head.take() {
                    merged.batches.extend(trace.batches);
                }
                *head = next(rx)?;
            }
        }
        push(merged)?;
    }
}

/// The union of the inputs' tag summaries, when every input has one (a merged block holds
/// exactly the tags of its inputs). Without one, queriers scan the output once instead.
async fn merged_tags(reader: &BlockReader, inputs: &[Arc<BlockMeta>]) -> Option<Bytes> {
    let mut summary = TagSummary::default();
    for meta in inputs {
        let stored = reader.read_tags(meta).await.ok().flatten()?;
        summary.merge(&TagSummary::from_json(&stored)?);
    }
    Some(Bytes::from(summary.to_json()))
}
