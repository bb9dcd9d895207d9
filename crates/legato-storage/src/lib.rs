//! The block format and everything that touches object storage: the Parquet span schema
//! (encoding `legato-v1`), the block writer and reader, bloom filters over trace ids, block
//! metadata, typed object paths, the in-memory blocklist, and the `ObjectStore` built from
//! config. It knows nothing about HTTP, gRPC, the WAL or TraceQL.
//!
//! Object layout, under the configured prefix:
//! `<tenant>/<block id>/data.parquet`, `<tenant>/<block id>/bloom`,
//! `<tenant>/<block id>/tags.json`, and `<tenant>/<block id>/meta.json`, which is written
//! last and makes the block visible. Compaction adds `<tenant>/<block id>/meta.compacted.json`
//! (the block is hidden, and deleted later) and `<tenant>/index.json.gz` (the tenant index).
//! Planning and running compactions is the compactor crate's business, not this one's.

mod azure;
mod blocklist;
mod bloom;
mod client;
mod compacted;
mod config;
mod error;
pub mod fault;
mod gcs;
mod inspect;
mod instrumented;
mod listing;
mod meta;
pub mod metrics;
mod paths;
mod prefilter;
mod reader;
mod rewrite;
mod scan;
pub mod schema;
mod tenant_index;
mod upload;
mod writer;

pub use azure::{AzureConfig, DEFAULT_AZURE_BUFFER_SIZE, DEFAULT_AZURE_ENDPOINT_SUFFIX};
pub use blocklist::{Blocklist, DEFAULT_STALE_TENANT_INDEX, PollStats};
pub use bloom::TraceBloom;
pub use client::ClientConfig;
pub use compacted::{delete_block, read_compacted_marker, write_compacted_marker};
pub use config::humantime_serde_compat as config_durations;
pub use config::{S3Config, StorageBackend, TraceStorageConfig, build_object_store};
pub use error::{Error, Result};
pub use gcs::{DEFAULT_GCS_CHUNK_BUFFER_SIZE, GcsConfig};
pub use inspect::{BlockLayout, ColumnLayout, RowGroupLayout, Verification};
pub use instrumented::{InstrumentedStore, OpLabels, RequestCounters, instrument};
pub use listing::{TenantListing, list_tenant, read_block_meta};
pub use meta::{BlockMeta, CompactedBlockMeta, ENCODING_V1};
pub use object_store::{self, ObjectStore};
pub use paths::{BlockPaths, tenant_dir, tenant_index_path};
pub use prefilter::{Cmp, RowPredicate, ScanOptions, StrTest, ValueTest, row_bits};
pub use reader::BlockReader;
pub use rewrite::TraceRows;
pub use scan::{ByteColumn, StrColumn};
pub use tenant_index::{TenantIndex, read_tenant_index, write_tenant_index};
pub use upload::{
    DEFAULT_PART_SIZE, DataUpload, PARTS_IN_FLIGHT, PartSink, commit_block, seal_streamed, start_block_upload,
    write_block,
};
pub use writer::{BlockWriter, RowGroups, SealedBlock, TraceInput, WrittenBlock, encode_block};
