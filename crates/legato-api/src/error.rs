use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use legato_distributor::DistributorError;
use legato_proto::push::PushError;

/// Every error a handler returns; each knows its HTTP status and gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no org id")]
    NoOrgId,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body too large: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Distributor(#[from] DistributorError),
    #[error("{0}")]
    Internal(String),
    #[error("not ready: the write-ahead log is still being replayed")]
    NotReady,
    #[error("query timed out after {after:?} ({key})")]
    Timeout { after: Duration, key: &'static str },
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error(
        "too many concurrent queries for tenant {tenant}: limit {limit} (query_frontend.max_concurrent_queries_per_tenant); retry later"
    )]
    TooManyQueries { tenant: String, limit: usize },
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Tempo's v1 trace-by-id answer (422) for a trace over `max_bytes_per_trace`.
    #[error("trace exceeds max size (max bytes: {max})")]
    TraceTooLarge { max: u64 },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NoOrgId => StatusCode::UNAUTHORIZED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Distributor(DistributorError::Invalid(_)) => StatusCode::BAD_REQUEST,
            Self::Distributor(DistributorError::RateLimited { .. }) => StatusCode::TOO_MANY_REQUESTS,
            Self::Distributor(DistributorError::Push(PushError::Overloaded { .. })) => StatusCode::TOO_MANY_REQUESTS,
            Self::Distributor(DistributorError::Push(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::TooManyQueries { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TraceTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Self::BadRequest(_) | Self::UnsupportedMediaType(_) => tonic::Code::InvalidArgument,
            Self::NoOrgId => tonic::Code::Unauthenticated,
            Self::TooLarge { .. } => tonic::Code::ResourceExhausted,
            Self::Distributor(DistributorError::Invalid(_)) => tonic::Code::InvalidArgument,
            Self::Distributor(DistributorError::RateLimited { .. }) => tonic::Code::ResourceExhausted,
            Self::Distributor(DistributorError::Push(PushError::Overloaded { .. })) => tonic::Code::ResourceExhausted,
            Self::Distributor(DistributorError::Push(_)) => tonic::Code::Unavailable,
            Self::Internal(_) => tonic::Code::Internal,
            Self::NotReady => tonic::Code::Unavailable,
            Self::Timeout { .. } => tonic::Code::DeadlineExceeded,
            Self::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Self::TooManyQueries { .. } => tonic::Code::ResourceExhausted,
            Self::Forbidden(_) => tonic::Code::PermissionDenied,
            Self::TraceTooLarge { .. } => tonic::Code::FailedPrecondition,
        }
    }

    /// How long a client should wait before retrying, for retryable errors.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Distributor(DistributorError::Invalid(_)) => None,
            Self::Distributor(e) => Some(e.retry_after()),
            Self::NotReady | Self::TooManyQueries { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}

/// Query API errors are plain text, as in Tempo.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), self.to_string()).into_response();
        if matches!(self, Self::Unauthenticated(_)) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"legato\", Basic realm=\"legato\""),
            );
        }
        if let Some(after) = self.retry_after()
            && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
