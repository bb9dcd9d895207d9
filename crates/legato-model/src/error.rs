use thiserror::Error;

/// Why an id could not be parsed. Messages follow Tempo's wording so clients see familiar text.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdError {
    #[error("trace IDs can only contain hex characters: invalid character '{ch}' at position {pos}")]
    NonHex { ch: char, pos: usize },
    #[error("trace IDs can't be larger than 128 bits")]
    TooLong,
    #[error("trace ID is empty")]
    Empty,
    #[error("trace ids must be 128 bit, received {bits} bits")]
    TraceIdLength { bits: usize },
    #[error("trace ids must not be all zero")]
    TraceIdZero,
    #[error("span ids must be 64 bit and not all zero, received {bits} bits")]
    SpanIdInvalid { bits: usize },
    #[error("invalid tenant id {0:?}: {1}")]
    Tenant(String, &'static str),
}
