use legato_model::BlockId;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object store error on {path}: {source}")]
    ObjectStore { path: String, source: object_store::Error },
    #[error("parquet error in block {block}: {source}")]
    Parquet {
        block: BlockId,
        source: parquet::errors::ParquetError,
    },
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("block {block}: {message}")]
    Corrupt { block: BlockId, message: String },
    #[error("block {block} has encoding {encoding:?} which this build cannot read")]
    UnknownEncoding { block: BlockId, encoding: String },
    #[error("storage config: {0}")]
    Config(String),
    #[error("background task failed: {0}")]
    Join(String),
    /// Reading the input of a block (for example an ingester's spilled segments) failed.
    #[error("{0}")]
    Input(String),
}

impl Error {
    pub fn store(path: impl std::fmt::Display, source: object_store::Error) -> Self {
        Self::ObjectStore {
            path: path.to_string(),
            source,
        }
    }

    /// Whether retrying the operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::ObjectStore { .. } | Self::Join(_))
    }
}
