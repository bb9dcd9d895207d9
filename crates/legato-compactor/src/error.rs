use legato_model::{BlockId, TenantId};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a compaction cycle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] legato_storage::Error),
    #[error("compactor config: {0}")]
    Config(String),
    #[error("tenant {tenant}: input block {block} was compacted by someone else during the job")]
    InputGone { tenant: TenantId, block: BlockId },
    #[error("background task failed: {0}")]
    Join(String),
}

impl Error {
    /// Whether the next cycle may succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_retryable(),
            Self::Config(_) => false,
            Self::InputGone { .. } | Self::Join(_) => true,
        }
    }
}
