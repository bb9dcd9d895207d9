//! The block format and everything that touches object storage: the Parquet span schema
//! (encoding `legato-v1`), the block writer and reader, bloom filters over trace ids, block
//! metadata, typed object paths, the in-memory blocklist, and the `ObjectStore` built from
//! config. It knows nothing about HTTP, gRPC, the WAL or TraceQL.
//!
//! Object layout, under the configured prefix:
//! `<tenant>/<block id>/data.parquet`, `<tenant>/<block id>/bloom`, and
//! `<tenant>/<block id>/meta.json`, which is written last and makes the block visible.

mod blocklist;
mod bloom;
mod config;
mod error;
mod meta;
pub mod metrics;
mod paths;
mod prefilter;
mod reader;
mod scan;
mod schema;
mod writer;

pub use blocklist::Blocklist;
pub use bloom::TraceBloom;
pub use config::humantime_serde_compat as config_durations;
pub use config::{S3Config, StorageBackend, TraceStorageConfig, build_object_store};
pub use error::{Error, Result};
pub use meta::{BlockMeta, ENCODING_V1};
pub use object_store::{self, ObjectStore};
pub use paths::BlockPaths;
pub use prefilter::{Cmp, RowPredicate, ScanOptions, StrTest, ValueTest};
pub use reader::BlockReader;
pub use writer::{BlockWriter, TraceInput, WrittenBlock, encode_block, write_block};
