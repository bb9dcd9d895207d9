//! Running one job: a k-way merge of the inputs' traces (each input streams its traces in id
//! order), spans deduplicated by (span id, kind) as the block writer does, written as one
//! block at level max(inputs)+1 that `replaces` the inputs. A trace only one input holds (most
//! of them) is copied as its stored rows; one in several is decoded and merged. The output's
//! data file is uploaded while it is encoded, in parts, so memory does not grow with the block.

use std::sync::Arc;

use bytes::Bytes;
use legato_model::{BlockId, TraceId};
use legato_storage::{
    BlockMeta, BlockReader, ObjectStore, SealedBlock, TraceInput, TraceRows, seal_streamed, start_block_upload,
};
use legato_traceql::tags::TagSummary;
use tokio::sync::mpsc;

use crate::plan::Job;
use crate::{Error, Result};

/// Traces buffered per input between the reading task and the merge.
const CHANNEL_TRACES: usize = 64;

type TraceRx = mpsc::Receiver<legato_storage::Result<TraceRows>>;

/// The block a job writes and how.
pub(crate) struct Output {
    pub id: BlockId,
    /// Its creation time.
    pub now_nanos: u64,
    /// Its data file is uploaded in parts of this size as it is encoded.
    pub part_size: usize,
    /// The nice value of the thread that merges and encodes it.
    pub nice: i32,
}

/// Reads and merges the inputs of `job` into block `output`, whose data file is uploaded in
/// parts as it is encoded. The block is not committed: no bloom filter, tags or
/// meta.json yet.
pub(crate) async fn merge_job(
    reader: &BlockReader,
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    output: Output,
) -> Result<SealedBlock> {
    let (mut sealed, _) = rewrite(reader, store, job, output, None).await?;
    sealed.meta.compaction_level = job.blocks.iter().map(|b| b.compaction_level).max().unwrap_or(0) + 1;
    // Blocks that retention by policy rewrote alike stay marked as such once merged.
    let filters: std::collections::HashSet<&Option<String>> = job.blocks.iter().map(|b| &b.retention_filter).collect();
    if filters.len() == 1 {
        sealed.meta.retention_filter = job.blocks[0].retention_filter.clone();
    }
    sealed.tags = merged_tags(reader, &job.blocks).await;
    Ok(sealed)
}

/// Which traces a rewrite keeps (retention by policy).
pub(crate) type Keep = Arc<dyn Fn(&legato_model::span::TraceData) -> bool + Send + Sync>;

/// Rewrites one block keeping only the traces `keep` accepts, at the same compaction level,
/// as a block that `replaces` it. Returns the sealed output (not committed) and how many
/// traces it holds; its tags are those of the kept traces.
pub(crate) async fn filter_block(
    reader: &BlockReader,
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    output: Output,
    keep: Keep,
) -> Result<(SealedBlock, u64)> {
    let (mut sealed, tags) = rewrite(reader, store, job, output, Some(keep)).await?;
    sealed.meta.compaction_level = job.blocks.iter().map(|b| b.compaction_level).max().unwrap_or(0);
    sealed.tags = tags.map(|t| Bytes::from(t.to_json()));
    let traces = sealed.meta.total_traces;
    Ok((sealed, traces))
}

/// Merges the inputs of `job` into block `output` (only the traces `keep` accepts, when
/// given, with their tag summary), on a thread of its own at `output.nice`.
async fn rewrite(
    reader: &BlockReader,
    store: &Arc<dyn ObjectStore>,
    job: &Job,
    output: Output,
    keep: Option<Keep>,
) -> Result<(SealedBlock, Option<TagSummary>)> {
    let mut inputs: Vec<TraceRx> = Vec::with_capacity(job.blocks.len());
    for meta in &job.blocks {
        let mut stream = reader.trace_rows(meta).await?;
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
    let replaces: Vec<BlockId> = job.blocks.iter().map(|b| b.block_id).collect();
    let Output {
        id,
        now_nanos,
        part_size,
        nice,
    } = output;
    let (mut writer, upload) = start_block_upload(store, &tenant, id, part_size)?;
    let mut tags = keep.as_ref().map(|_| TagSummary::default());
    let (done, merged) = tokio::sync::oneshot::channel();
    let merge_thread = move || -> (legato_storage::Result<SealedBlock>, Option<TagSummary>) {
        lower_priority(nice);
        let pushed = merge(inputs, |copies| {
            // A trace only one input holds is copied as its rows, unless retention looks at it.
            if let ([only], None) = (copies.as_slice(), &keep) {
                return writer.push_rows(only).map_err(Error::from);
            }
            let mut trace = TraceInput {
                id: copies[0].id,
                batches: Vec::new(),
            };
            for copy in &copies {
                trace.batches.extend(copy.to_input()?.batches);
            }
            if let Some(keep) = &keep {
                let data = legato_proto::span_view::trace_data(trace.id.0, &trace.batches);
                if !keep(&data) {
                    return Ok(());
                }
                if let Some(tags) = tags.as_mut() {
                    tags.add_trace(&data, None);
                }
            }
            writer.push(&trace).map_err(Error::from)
        });
        let sealed = match pushed {
            Ok(()) => seal_streamed(writer, now_nanos),
            // An input that failed to read: report it, not the encoder's state.
            Err(Error::Storage(e)) => Err(e),
            Err(other) => Err(legato_storage::Error::Join(other.to_string())),
        };
        (sealed, tags)
    };
    // A thread of its own rather than the blocking pool, whose threads also run queries'
    // scans: its priority is lowered for good.
    let started = std::thread::Builder::new().name("compaction".into()).spawn(move || {
        let _ = done.send(merge_thread());
    });
    // Either way the upload is concluded (aborted on an error).
    let (encoded, tags) = match (started, merged.await) {
        (Ok(_), Ok((sealed, tags))) => (sealed, tags),
        (Err(e), _) => (
            Err(legato_storage::Error::Join(format!(
                "starting the compaction thread: {e}"
            ))),
            None,
        ),
        (Ok(_), Err(_)) => (
            Err(legato_storage::Error::Join("the compaction thread panicked".into())),
            None,
        ),
    };
    let mut sealed = upload.conclude(encoded).await?;
    sealed.meta.replaces = replaces;
    Ok((sealed, tags))
}

/// Lowers the calling thread's priority to `nice` (Linux; elsewhere, and at 0, nothing). A
/// failure only leaves the priority as it was.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
            tracing::warn!(error = %e, nice, "could not lower the compaction thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Pulls from every input in trace-id order and hands each trace once to `push`, with its
/// rows in every input that holds it. Runs on the job's compaction thread (it blocks).
fn merge(mut inputs: Vec<TraceRx>, mut push: impl FnMut(Vec<TraceRows>) -> Result<()>) -> Result<()> {
    let next = |rx: &mut TraceRx| -> Result<Option<TraceRows>> { rx.blocking_recv().transpose().map_err(Error::from) };
    let mut heads: Vec<Option<TraceRows>> = Vec::with_capacity(inputs.len());
    for rx in &mut inputs {
        heads.push(next(rx)?);
    }
    loop {
        let Some(id): Option<TraceId> = heads.iter().flatten().map(|t| t.id).min() else {
            return Ok(());
        };
        let mut copies = Vec::with_capacity(1);
        for (head, rx) in heads.iter_mut().zip(&mut inputs) {
            if head.as_ref().is_some_and(|t| t.id == id) {
                copies.extend(head.take());
                *head = next(rx)?;
            }
        }
        push(copies)?;
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

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_compaction_thread_runs_at_its_nice_value() {
        let nice = |n: i32| {
            std::thread::spawn(move || {
                super::lower_priority(n);
                rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
            })
            .join()
            .unwrap()
        };
        let base = rustix::process::getpriority_process(None).unwrap();
        assert_eq!(nice(7), 7.max(base));
        assert_eq!(nice(0), base, "0 leaves the priority as it is");
    }
}
