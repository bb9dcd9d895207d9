//! The push path between distributor and ingesters: messages (also the WAL record format)
//! and the `PushSink` trait that decides where a batch goes. A ring-and-replicas sink, an
//! in-process sink and, later, a log-backed sink all implement it.

use std::time::Duration;

use bytes::Bytes;

/// One trace's spans in a push: `data` is an encoded `tempopb.Trace`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceSegment {
    #[prost(bytes = "bytes", tag = "1")]
    pub id: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
    #[prost(uint32, tag = "3")]
    pub spans: u32,
}

/// A tenant's traces, grouped by trace id. Also the WAL record payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(message, repeated, tag = "2")]
    pub traces: Vec<TraceSegment>,
}

/// Why spans were refused. Names follow Tempo's `discarded_spans_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    InvalidTraceId,
    InvalidSpanId,
    LiveTracesExceeded,
    TraceTooLarge,
    RateLimited,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidTraceId => "invalid_trace_id",
            Self::InvalidSpanId => "invalid_span_id",
            Self::LiveTracesExceeded => "live_traces_exceeded",
            Self::TraceTooLarge => "trace_too_large",
            Self::RateLimited => "rate_limited",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::InvalidTraceId,
            Self::InvalidSpanId,
            Self::LiveTracesExceeded,
            Self::TraceTooLarge,
            Self::RateLimited,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// Spans refused for one reason, with a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub spans: u64,
    pub message: String,
}

/// What became of an acknowledged push: everything not listed here is durable.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    pub rejected: Vec<Rejection>,
}

/// A push that was not accepted at all. Every variant is safe to retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    #[error("ingester is over its memory limit ({buffered} bytes held, {limit_key} is {limit}); retry later")]
    Overloaded {
        buffered: u64,
        limit: u64,
        /// The configuration key of the limit reached.
        limit_key: &'static str,
        retry_after: Duration,
    },
    #[error("write-ahead log failed: {0}")]
    Wal(String),
    #[error("ingester is not ready: {0}")]
    Unavailable(String),
}

impl PushError {
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Overloaded { retry_after, .. } => *retry_after,
            _ => Duration::from_secs(1),
        }
    }
}

#[async_trait::async_trait]
pub trait PushSink: Send + Sync + 'static {
    async fn push(&self, request: PushRequest) -> Result<PushOutcome, PushError>;

    /// A push now would surely be refused for back-pressure: receivers answer it before
    /// reading and walking the export, so a retry storm costs little. `None` = try the push.
    fn backpressure(&self) -> Option<PushError> {
        None
    }
}

/// Recent traces held outside blocks (ingesters), asked by the querier for trace-by-id.
#[async_trait::async_trait]
pub trait RecentTraces: Send + Sync + 'static {
    async fn find_trace(
        &self,
        tenant: &legato_model::TenantId,
        id: &legato_model::TraceId,
    ) -> Vec<crate::trace::ResourceSpans>;

    /// A summary of the tag names and values held for `tenant` (of the spans the TraceQL
    /// `filter` matches, when given), in the `tags.json` format blocks carry (see
    /// `legato_traceql::tags::TagSummary::to_json`). `Ok(None)` when the source keeps none
    /// (callers then scan it); `Err` names what could not be read, so an answer without it
    /// is never silently smaller.
    async fn recent_tag_summary(
        &self,
        _tenant: &legato_model::TenantId,
        _filter: Option<&str>,
    ) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }

    /// Calls `visit` with each trace held for `tenant` until it returns false, where the
    /// traces are held and a few at a time (never the whole set in one list). `Err` names a
    /// part of the data that could not be read: the caller answers partial or fails, never
    /// silently smaller.
    async fn scan_recent(&self, _tenant: &legato_model::TenantId, _visit: RecentVisitor) -> Result<(), String> {
        Ok(())
    }

    /// `scan_recent`, visiting only traces whose encoded segments `prefilter` accepts (a
    /// necessary condition of a match, tested before decoding). Sources that cannot test
    /// the encoded form visit every trace.
    async fn scan_recent_filtered(
        &self,
        tenant: &legato_model::TenantId,
        prefilter: Option<RecentPrefilter>,
        visit: RecentVisitor,
    ) -> Result<(), String> {
        let _ = prefilter;
        self.scan_recent(tenant, visit).await
    }
}

/// Sees every accepted span of an export before sampling drops any: where the metrics
/// generator (service graphs, span metrics) attaches, so it counts all traffic.
pub trait SpanObserver: Send + Sync + 'static {
    fn observe(&self, tenant: &legato_model::TenantId, traces: &[TraceSegment]);

    /// Whether this observer reads the fields of `tenant`'s spans and would rather have them
    /// as the distributor's walk read them ([`SpanObserver::observe_read`]) than walk each
    /// trace again.
    fn reads_spans(&self, _tenant: &legato_model::TenantId) -> bool {
        false
    }

    /// The export's accepted spans as the distributor's walk read them; called instead of
    /// `observe` when `reads_spans` said so.
    fn observe_read(&self, _tenant: &legato_model::TenantId, _spans: &crate::wire::ReadSpans<'_>) {}
}

/// Receives recent traces one at a time, with the bytes they take where they are held
/// (encoded); returns false to stop.
pub type RecentVisitor = std::sync::Arc<dyn Fn(legato_model::span::TraceData, u64) -> bool + Send + Sync>;

/// Tests a held trace's encoded `tempopb.Trace` segments; false = it cannot match, skip it.
pub type RecentPrefilter = std::sync::Arc<dyn Fn(&[bytes::Bytes]) -> bool + Send + Sync>;
