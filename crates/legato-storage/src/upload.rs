//! Uploading blocks. A block in memory ([`WrittenBlock`], the ingester's) goes up object by
//! object. The compactor's blocks are streamed instead: [`start_block_upload`] gives a
//! [`BlockWriter`] whose data file is cut into parts of `part_size` bytes, each uploaded (as a
//! multipart upload) while the next one is encoded, so memory holds a few parts whatever the
//! size of the block. Either way bloom filter and tags follow the data file and `meta.json`
//! comes last: it is the commit point.
//!
//! Memory of a streamed upload: the part being filled, one part handed over, and at most
//! [`PARTS_IN_FLIGHT`] parts being uploaded, so about `(2 + PARTS_IN_FLIGHT) * part_size`.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use legato_model::{BlockId, TenantId};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{BlockMeta, BlockPaths, BlockWriter, Error, Result, RowGroups, SealedBlock, WrittenBlock};

/// Part size when none is configured: S3 needs at least 5 MiB per part (but the last) and at
/// most 10,000 parts, so 16 MiB parts allow data files up to 156 GiB.
pub const DEFAULT_PART_SIZE: usize = 16 << 20;

/// Parts of one data file uploaded at once.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Uploads a block: data, bloom, then meta.json (the commit point).
pub async fn write_block(store: &Arc<dyn ObjectStore>, block: &WrittenBlock) -> Result<()> {
    let paths = BlockPaths::new(&block.meta.tenant_id, block.meta.block_id);
    put(store, paths.data(), block.data.clone()).await?;
    write_sealed(store, &block.meta, &block.bloom, block.tags.as_ref()).await
}

/// Commits a block whose data file is uploaded: bloom, tags, then meta.json (the commit point).
pub async fn commit_block(store: &Arc<dyn ObjectStore>, block: &SealedBlock) -> Result<()> {
    write_sealed(store, &block.meta, &block.bloom, block.tags.as_ref()).await
}

async fn write_sealed(
    store: &Arc<dyn ObjectStore>,
    meta: &BlockMeta,
    bloom: &Bytes,
    tags: Option<&Bytes>,
) -> Result<()> {
    let paths = BlockPaths::new(&meta.tenant_id, meta.block_id);
    put(store, paths.bloom(), bloom.clone()).await?;
    if let Some(tags) = tags {
        put(store, paths.tags(), tags.clone()).await?;
    }
    let json = serde_json::to_vec(meta).map_err(|e| Error::Config(e.to_string()))?;
    put(store, paths.meta(), Bytes::from(json)).await
}

async fn put(store: &Arc<dyn ObjectStore>, path: object_store::path::Path, bytes: Bytes) -> Result<()> {
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(|e| Error::store(&path, e))
}

/// Receives the data file of a block being encoded elsewhere, part by part. Parts are
/// `part_size` bytes but the last; a data file smaller than one part is uploaded with one PUT.
pub struct PartSink {
    buf: Vec<u8>,
    part_size: usize,
    tx: mpsc::Sender<Bytes>,
}

impl PartSink {
    /// Hands over the last part and closes the stream.
    fn close(mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(self.part_size));
        self.tx
            .blocking_send(Bytes::from(part))
            .map_err(|_| std::io::Error::other("the upload of the data file stopped"))
    }
}

impl Write for PartSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(self.part_size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.part_size {
            self.send()?;
        }
        Ok(n)
    }

    /// Parts are sent when full: a flush must not cut a short part in the middle of the file.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The upload side of a streamed data file; see [`start_block_upload`].
pub struct DataUpload {
    path: Path,
    pump: JoinHandle<(BufWriter, object_store::Result<()>)>,
}

/// Starts streaming the data file of `block`: push traces into the returned writer on a
/// blocking thread and end with [`seal_streamed`]; then hand the outcome to
/// [`DataUpload::conclude`]. `part_size` must suit the store (S3: at least 5 MiB).
pub fn start_block_upload(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: BlockId,
    part_size: usize,
) -> Result<(BlockWriter<PartSink>, DataUpload)> {
    let part_size = part_size.max(1);
    let path = BlockPaths::new(tenant, block).data();
    let (tx, mut rx) = mpsc::channel::<Bytes>(1);
    let mut out =
        BufWriter::with_capacity(store.clone(), path.clone(), part_size).with_max_concurrency(PARTS_IN_FLIGHT);
    let pump = tokio::spawn(async move {
        while let Some(part) = rx.recv().await {
            if let Err(e) = out.put(part).await {
                // Dropping the receiver makes the encoder's next part fail.
                return (out, Err(e));
            }
        }
        (out, Ok(()))
    });
    let sink = PartSink {
        buf: Vec::with_capacity(part_size),
        part_size,
        tx,
    };
    let writer = BlockWriter::with_sink(tenant, block, sink, RowGroups::COMPACTED)?;
    Ok((writer, DataUpload { path, pump }))
}

/// Finishes encoding a streamed block: the last row group, the footer and the last part.
/// Blocking: call it where the traces were pushed.
pub fn seal_streamed(writer: BlockWriter<PartSink>, created_at_unix_nano: u64) -> Result<SealedBlock> {
    let block = writer.block_id();
    let (sealed, sink) = writer.finish_into_sink(created_at_unix_nano)?;
    sink.close().map_err(|e| Error::Corrupt {
        block,
        message: format!("streaming the data file: {e}"),
    })?;
    Ok(sealed)
}

impl DataUpload {
    /// Ends the upload once encoding is over: completes it if `encoded` is a success (the data
    /// file exists afterwards), else aborts it. When a failed part is what stopped the
    /// encoding, the error returned is the store's, which says what failed and whether a retry
    /// can help, not the encoder's "the upload stopped".
    pub async fn conclude<T>(self, encoded: Result<T>) -> Result<T> {
        let (mut out, pumped) = self.pump.await.map_err(|e| Error::Join(e.to_string()))?;
        let outcome = match (encoded, pumped) {
            (Ok(value), Ok(())) => Ok(value),
            (_, Err(store)) => Err(Error::store(&self.path, store)),
            (Err(encoding), Ok(())) => Err(encoding),
        };
        let value = match outcome {
            Ok(value) => value,
            Err(e) => {
                abort(&mut out, &self.path).await;
                return Err(e);
            }
        };
        out.shutdown().await.map_err(|e| {
            let source = object_store::Error::Generic {
                store: "upload",
                source: Box::new(e),
            };
            Error::store(&self.path, source)
        })?;
        Ok(value)
    }
}

async fn abort(out: &mut BufWriter, path: &Path) {
    if let Err(e) = out.abort().await {
        tracing::warn!(%path, error = %e, "aborting a multipart upload failed; the bucket's lifecycle rule removes it");
    }
}
