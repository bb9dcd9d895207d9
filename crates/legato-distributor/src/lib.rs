//! The distributor: validates OTLP exports, applies per-tenant rate limits, groups spans by
//! trace and hands them to a `PushSink` (the in-process ingester in single-binary mode, the
//! ring-and-replicas client in a cluster). It reports every refused span back to the client,
//! and cuts attributes over `max_attribute_bytes` (Tempo's limit) before anyone sees them.
//!
//! It does not decode HTTP or gRPC (the api crate does) nor store anything.

mod limiter;
pub mod metrics;
pub mod sampling;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use legato_model::{Clock, TenantId};
use legato_proto::push::{PushError, PushOutcome, PushRequest, PushSink, RejectReason, Rejection};
use legato_proto::wire::{self, ReadSpans, Split, WireError};
use serde::{Deserialize, Serialize};

pub use limiter::RateLimiter;
use metrics::{DistributorMetrics, ReasonLabels, ScopeLabels, TenantLabels};

/// Per-tenant ingestion limits (`overrides.defaults.ingestion`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestionLimits {
    pub rate_limit_bytes: u64,
    pub burst_size_bytes: u64,
    pub max_traces_per_user: usize,
    /// Tempo's override of `distributor.max_attribute_bytes` when greater than 0; resolved per
    /// tenant into the distributor's [`AttributeLimitLookup`] by whoever builds it.
    pub max_attribute_bytes: usize,
}

impl Default for IngestionLimits {
    fn default() -> Self {
        Self {
            rate_limit_bytes: 30_000_000,
            burst_size_bytes: 30_000_000,
            max_traces_per_user: 0,
            max_attribute_bytes: 0,
        }
    }
}

/// Bytes an attribute key or string value of a tenant may have (0 = no limit).
pub type AttributeLimitLookup = Arc<dyn Fn(&TenantId) -> usize + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum DistributorError {
    #[error(
        "RATE_LIMITED: ingestion rate limit (local: {rate} bytes/s, burst: {burst} bytes) exceeded while adding {size} bytes for user {tenant}; reduce the send rate or raise overrides.defaults.ingestion.rate_limit_bytes"
    )]
    RateLimited {
        rate: u64,
        burst: u64,
        size: u64,
        tenant: String,
        retry_after: Duration,
    },
    #[error(transparent)]
    Invalid(#[from] WireError),
    #[error(transparent)]
    Push(#[from] PushError),
}

/// An OTLP trace export as received, still encoded.
#[derive(Clone, Copy)]
pub enum Export<'a> {
    /// An encoded `ExportTraceServiceRequest` (OTLP/HTTP protobuf, or JSON re-encoded).
    Request(&'a [u8]),
    /// Its encoded `ResourceSpans` (OTLP/gRPC, see `legato_proto::otlp_raw`).
    ResourceSpans(&'a [Bytes]),
}

impl DistributorError {
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            Self::Invalid(_) => Duration::ZERO,
            Self::Push(e) => e.retry_after(),
        }
    }
}

pub struct Distributor {
    sink: Arc<dyn PushSink>,
    limits: IngestionLimits,
    limiter: RateLimiter,
    metrics: DistributorMetrics,
    sampling: Option<sampling::SamplingLookup>,
    observer: Option<Arc<dyn sampling::SpanObserver>>,
    /// `max_attribute_bytes` per tenant; 0 = no limit.
    max_attribute_bytes: AttributeLimitLookup,
}

impl Distributor {
    pub fn new(
        sink: Arc<dyn PushSink>,
        limits: IngestionLimits,
        clock: Arc<dyn Clock>,
        metrics: DistributorMetrics,
    ) -> Self {
        Self {
            sink,
            limits,
            limiter: RateLimiter::new(clock),
            metrics,
            sampling: None,
            observer: None,
            max_attribute_bytes: Arc::new(|_| 0),
        }
    }

    /// Cuts attribute keys and string values longer than `max` bytes (0 = no limit), as
    /// Tempo's `max_attribute_bytes` does, counting each cut.
    pub fn with_max_attribute_bytes(self, max: usize) -> Self {
        self.with_max_attribute_bytes_per_tenant(Arc::new(move |_| max))
    }

    /// As `with_max_attribute_bytes`, with each tenant's limit from `lookup`.
    pub fn with_max_attribute_bytes_per_tenant(mut self, lookup: AttributeLimitLookup) -> Self {
        self.max_attribute_bytes = lookup;
        self
    }

    /// Samples each tenant's traces at the ratio `lookup` gives (`None` = keep all).
    pub fn with_sampling(mut self, lookup: sampling::SamplingLookup) -> Self {
        self.sampling = Some(lookup);
        self
    }

    /// Shows every accepted span to `observer` before sampling.
    pub fn with_observer(mut self, observer: Arc<dyn sampling::SpanObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Whether an export now would surely be refused for back-pressure (the receivers answer
    /// it before reading the body).
    pub fn backpressure(&self) -> Option<DistributorError> {
        self.sink.backpressure().map(DistributorError::Push)
    }

    /// Accepts an OTLP export of `wire_bytes` bytes for `tenant`. On success every span not
    /// listed in the outcome is durable. A malformed export is refused whole.
    pub async fn push(
        &self,
        tenant: &TenantId,
        export: Export<'_>,
        wire_bytes: usize,
    ) -> Result<PushOutcome, DistributorError> {
        let labels = TenantLabels {
            tenant: tenant.to_string(),
        };
        self.metrics
            .bytes_received
            .get_or_create(&labels)
            .inc_by(wire_bytes as u64);
        // Checks every field and groups spans by trace, leaving out spans with invalid ids;
        // for an observer that reads spans (the metrics generator), keeps what it reads.
        let reading = self.observer.as_ref().is_some_and(|o| o.reads_spans(tenant));
        let rewritten: Vec<Bytes>;
        let max_attribute_bytes = (self.max_attribute_bytes)(tenant);
        let (mut split, mut read) = walk(export, reading, max_attribute_bytes)?;
        if split.attributes_over_limit {
            // Rare: only now is the export rewritten, then walked again.
            let max = max_attribute_bytes;
            let (parts, truncated) = match export {
                Export::Request(body) => wire::truncate_attributes(&wire::request_resource_spans(body)?, max)?,
                Export::ResourceSpans(parts) => wire::truncate_attributes(parts, max)?,
            };
            self.count_truncated(tenant, &truncated, max);
            rewritten = parts;
            (split, read) = walk(Export::ResourceSpans(&rewritten), reading, 0)?;
        }
        let total_spans = split.spans;
        self.metrics.spans_received.get_or_create(&labels).inc_by(total_spans);
        let size = wire_bytes as u64;
        if !self
            .limiter
            .allow(tenant, size, self.limits.rate_limit_bytes, self.limits.burst_size_bytes)
        {
            self.count_rejected(tenant, RejectReason::RateLimited, total_spans);
            return Err(DistributorError::RateLimited {
                rate: self.limits.rate_limit_bytes,
                burst: self.limits.burst_size_bytes,
                size,
                tenant: tenant.to_string(),
                retry_after: Duration::from_secs(5),
            });
        }
        let (mut traces, mut rejected) = (split.traces, split.rejected);
        match (&self.observer, read) {
            (Some(observer), Some(read)) => observer.observe_read(tenant, &read),
            (Some(observer), None) => observer.observe(tenant, &traces),
            (None, _) => {}
        }
        if let Some(ratio) = self.sampling.as_ref().and_then(|lookup| lookup(tenant)) {
            let before: u64 = traces.iter().map(|t| u64::from(t.spans)).sum();
            traces.retain(|t| sampling::keep(&t.id, ratio));
            let kept: u64 = traces.iter().map(|t| u64::from(t.spans)).sum();
            self.metrics
                .spans_sampled_out
                .get_or_create(&labels)
                .inc_by(before - kept);
        }
        let mut outcome = if traces.is_empty() {
            PushOutcome::default()
        } else {
            match self
                .sink
                .push(PushRequest {
                    tenant: tenant.to_string(),
                    traces,
                })
                .await
            {
                Ok(outcome) => outcome,
                Err(e) => {
                    let labels = ReasonLabels {
                        tenant: tenant.to_string(),
                        reason: "unavailable".into(),
                    };
                    self.metrics.push_failures.get_or_create(&labels).inc();
                    return Err(e.into());
                }
            }
        };
        rejected.append(&mut outcome.rejected);
        for r in &rejected {
            self.count_rejected(tenant, r.reason, r.spans);
        }
        Ok(PushOutcome { rejected })
    }

    fn count_truncated(&self, tenant: &TenantId, truncated: &wire::Truncated, max_attribute_bytes: usize) {
        tracing::debug!(%tenant, truncated = truncated.total(), max_attribute_bytes,
            "attribute keys or values cut to max_attribute_bytes");
        for (scope, count) in truncated.by_scope() {
            if count > 0 {
                let labels = ScopeLabels {
                    tenant: tenant.to_string(),
                    scope: scope.into(),
                };
                self.metrics.attributes_truncated.get_or_create(&labels).inc_by(count);
            }
        }
    }

    fn count_rejected(&self, tenant: &TenantId, reason: RejectReason, spans: u64) {
        let labels = ReasonLabels {
            tenant: tenant.to_string(),
            reason: reason.as_str().into(),
        };
        self.metrics.spans_rejected.get_or_create(&labels).inc_by(spans);
    }
}

/// Walks an export (see `legato_proto::wire`), keeping what an observer reads when `reading`.
fn walk(
    export: Export<'_>,
    reading: bool,
    max_attribute_bytes: usize,
) -> Result<(Split, Option<ReadSpans<'_>>), WireError> {
    let max = max_attribute_bytes;
    Ok(match (export, reading) {
        (Export::Request(body), false) => (wire::split_request(body, max)?, None),
        (Export::ResourceSpans(parts), false) => (wire::split_resource_spans(parts, max)?, None),
        (Export::Request(body), true) => {
            let (split, read) = wire::split_request_reading(body, max)?;
            (split, Some(read))
        }
        (Export::ResourceSpans(parts), true) => {
            let (split, read) = wire::split_resource_spans_reading(parts, max)?;
            (split, Some(read))
        }
    })
}

/// Formats refused spans for OTLP `partial_success.error_message`.
pub fn describe_rejections(rejected: &[Rejection]) -> (i64, String) {
    let spans: u64 = rejected.iter().map(|r| r.spans).sum();
    let message = rejected
        .iter()
        .map(|r| format!("{} span(s) rejected ({}): {}", r.spans, r.reason.as_str(), r.message))
        .collect::<Vec<_>>()
        .join("; ");
    (spans as i64, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use legato_model::ManualClock;
    use legato_proto::collector::ExportTraceServiceRequest;
    use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
    use parking_lot::Mutex;
    use prost::Message;

    #[derive(Default)]
    struct Capture(Mutex<Vec<PushRequest>>);

    #[async_trait::async_trait]
    impl PushSink for Capture {
        async fn push(&self, request: PushRequest) -> Result<PushOutcome, PushError> {
            self.0.lock().push(request);
            Ok(PushOutcome::default())
        }
    }

    /// A distributor with default limits, time 0, that pushes into `sink`.
    fn capturing(sink: &Arc<Capture>, metrics: &DistributorMetrics) -> Distributor {
        Distributor::new(
            sink.clone(),
            IngestionLimits::default(),
            Arc::new(ManualClock::new(0)),
            metrics.clone(),
        )
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn one_span(id: u8) -> Vec<u8> {
        request(vec![span(vec![1; 16], vec![id; 8])]).encode_to_vec()
    }

    fn span(trace: Vec<u8>, id: Vec<u8>) -> Span {
        Span {
            trace_id: trace,
            span_id: id,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn bad_ids_are_reported_and_the_rest_is_pushed() {
        let sink = Arc::new(Capture::default());
        let d = capturing(&sink, &DistributorMetrics::default());
        let req = request(vec![
            span(vec![1; 16], vec![1; 8]),
            span(vec![0; 16], vec![2; 8]),
            span(vec![1; 8], vec![3; 8]),
            span(vec![2; 16], vec![0; 8]),
            span(vec![2; 16], vec![4; 8]),
        ]);
        let outcome = d
            .push(&TenantId::single(), Export::Request(&req.encode_to_vec()), 100)
            .await
            .unwrap();
        let (count, message) = describe_rejections(&outcome.rejected);
        assert_eq!(count, 3);
        assert!(
            message.contains("invalid_trace_id") && message.contains("invalid_span_id"),
            "{message}"
        );
        let pushed = sink.0.lock();
        assert_eq!(pushed[0].traces.len(), 2);
    }

    #[tokio::test]
    async fn rate_limit_refuses_with_retry() {
        let sink = Arc::new(Capture::default());
        let limits = IngestionLimits {
            rate_limit_bytes: 100,
            burst_size_bytes: 100,
            ..IngestionLimits::default()
        };
        let d = Distributor::new(
            sink,
            limits,
            Arc::new(ManualClock::new(0)),
            DistributorMetrics::default(),
        );
        let ok = d.push(&TenantId::single(), Export::Request(&one_span(1)), 80).await;
        assert!(ok.is_ok());
        let refused = d.push(&TenantId::single(), Export::Request(&one_span(2)), 80).await;
        assert!(matches!(refused, Err(DistributorError::RateLimited { .. })));
    }

    /// Counts the spans it is shown, per tenant.
    #[derive(Default)]
    struct Observed(Mutex<u64>);

    impl sampling::SpanObserver for Observed {
        fn observe(&self, _tenant: &TenantId, traces: &[legato_proto::push::TraceSegment]) {
            *self.0.lock() += traces.iter().map(|t| u64::from(t.spans)).sum::<u64>();
        }
    }

    /// Issue 12: sampled-out spans are acknowledged and counted, the kept traces are those
    /// OpenTelemetry's ratio sampler keeps, and the observer (the metrics generator's hook)
    /// sees every span before sampling drops any.
    #[tokio::test]
    async fn sampling_keeps_traces_by_id_after_the_observer_saw_everything() {
        let sink = Arc::new(Capture::default());
        let observed = Arc::new(Observed::default());
        let metrics = DistributorMetrics::default();
        let d = capturing(&sink, &metrics)
            .with_sampling(Arc::new(|_: &TenantId| Some(0.25)))
            .with_observer(observed.clone());
        let spans: Vec<Span> = (0..400u32)
            .map(|i| {
                let mut trace = vec![7u8; 16];
                trace[8..12].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                span(trace, vec![1; 8])
            })
            .collect();
        let ids: Vec<Vec<u8>> = spans.iter().map(|s| s.trace_id.clone()).collect();
        let outcome = d
            .push(
                &TenantId::single(),
                Export::Request(&request(spans).encode_to_vec()),
                100,
            )
            .await
            .unwrap();
        assert!(outcome.rejected.is_empty(), "sampled-out spans are not refusals");
        assert_eq!(*observed.0.lock(), 400);
        let mut pushed: Vec<Vec<u8>> = sink
            .0
            .lock()
            .iter()
            .flat_map(|r| r.traces.iter().map(|t| t.id.to_vec()))
            .collect();
        let mut expected: Vec<Vec<u8>> = ids.into_iter().filter(|id| sampling::keep(id, 0.25)).collect();
        pushed.sort();
        expected.sort();
        assert_eq!(pushed, expected);
        assert!((60..140).contains(&pushed.len()), "{}", pushed.len());
        let labels = TenantLabels {
            tenant: TenantId::single().to_string(),
        };
        assert_eq!(
            metrics.spans_sampled_out.get_or_create(&labels).get(),
            400 - pushed.len() as u64
        );
    }

    /// Reads each span's `note` attribute as the walk read it.
    #[derive(Default)]
    struct Notes(Mutex<Vec<String>>);

    impl sampling::SpanObserver for Notes {
        fn observe(&self, _tenant: &TenantId, _traces: &[legato_proto::push::TraceSegment]) {}

        fn reads_spans(&self, _tenant: &TenantId) -> bool {
            true
        }

        fn observe_read(&self, _tenant: &TenantId, spans: &ReadSpans<'_>) {
            spans.for_each(|_, _, span| {
                if let Some(legato_proto::span_wire::AnyRef::Str(note)) = span.attributes.get("note") {
                    self.0.lock().push(note.to_string());
                }
            });
        }
    }

    /// Tempo's `max_attribute_bytes`: a long attribute is cut, not refused, before the sink
    /// and the observer see the span, and each cut is counted by where it was; both export
    /// shapes (HTTP's request, gRPC's resource spans) alike.
    #[tokio::test]
    async fn attributes_over_max_attribute_bytes_are_cut_and_counted() {
        use legato_proto::common::{AnyValue, KeyValue, any_value};

        let string = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        };
        let mut long = span(vec![1; 16], vec![1; 8]);
        long.attributes = vec![string("note", &"é".repeat(40)), string(&"k".repeat(100), "v")];
        long.events = vec![legato_proto::trace::span::Event {
            attributes: vec![string("e", &"x".repeat(65))],
            ..Default::default()
        }];
        let req = request(vec![long]);
        let parts: Vec<Bytes> = req.resource_spans.iter().map(|rs| rs.encode_to_vec().into()).collect();
        let body = req.encode_to_vec();
        for export in [Export::Request(&body), Export::ResourceSpans(&parts)] {
            let sink = Arc::new(Capture::default());
            let notes = Arc::new(Notes::default());
            let metrics = DistributorMetrics::default();
            let d = capturing(&sink, &metrics)
                .with_observer(notes.clone())
                .with_max_attribute_bytes(64);
            let outcome = d.push(&TenantId::single(), export, 100).await.unwrap();
            assert!(outcome.rejected.is_empty(), "cut, not refused");

            let pushed = sink.0.lock();
            let trace = legato_proto::tempopb::Trace::decode(pushed[0].traces[0].data.as_ref()).unwrap();
            let stored = &trace.resource_spans[0].scope_spans[0].spans[0];
            assert_eq!(
                stored.attributes[0],
                string("note", &"é".repeat(32)),
                "64 bytes, 32 characters"
            );
            assert_eq!(stored.attributes[1], string(&"k".repeat(64), "v"));
            assert_eq!(stored.events[0].attributes[0], string("e", &"x".repeat(64)));
            assert_eq!(*notes.0.lock(), ["é".repeat(32)], "the observer reads the cut value");
            let count = |scope: &str| {
                let labels = ScopeLabels {
                    tenant: TenantId::single().to_string(),
                    scope: scope.into(),
                };
                metrics.attributes_truncated.get_or_create(&labels).get()
            };
            assert_eq!((count("span"), count("event"), count("resource")), (2, 1, 0));
        }

        // 0 is no limit.
        let sink = Arc::new(Capture::default());
        let metrics = DistributorMetrics::default();
        let d = capturing(&sink, &metrics);
        d.push(&TenantId::single(), Export::Request(&body), 100).await.unwrap();
        let trace = legato_proto::tempopb::Trace::decode(sink.0.lock()[0].traces[0].data.as_ref()).unwrap();
        assert_eq!(trace.resource_spans, req.resource_spans);
    }

    /// Each tenant's own `max_attribute_bytes` (Tempo's per-tenant override).
    #[tokio::test]
    async fn max_attribute_bytes_is_looked_up_per_tenant() {
        use legato_proto::common::{AnyValue, KeyValue, any_value};

        let mut long = span(vec![1; 16], vec![1; 8]);
        long.attributes = vec![KeyValue {
            key: "note".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("x".repeat(100))),
            }),
            ..Default::default()
        }];
        let body = request(vec![long]).encode_to_vec();
        let sink = Arc::new(Capture::default());
        let metrics = DistributorMetrics::default();
        let d = capturing(&sink, &metrics).with_max_attribute_bytes_per_tenant(Arc::new(|tenant: &TenantId| {
            if tenant.as_str() == "small" { 10 } else { 50 }
        }));
        for tenant in ["small", "large"] {
            let tenant = TenantId::new(tenant).unwrap();
            d.push(&tenant, Export::Request(&body), 100).await.unwrap();
        }
        let value_len = |push: usize| {
            let trace = legato_proto::tempopb::Trace::decode(sink.0.lock()[push].traces[0].data.as_ref()).unwrap();
            let value = trace.resource_spans[0].scope_spans[0].spans[0].attributes[0]
                .value
                .clone();
            match value.and_then(|v| v.value) {
                Some(any_value::Value::StringValue(s)) => s.len(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!((value_len(0), value_len(1)), (10, 50));
    }
}
