//! The metrics generator: sees every accepted span before sampling (the distributor's
//! `SpanObserver` hook), keeps span-metric series with Tempo's names and labels in a
//! per-tenant registry bounded by `max_active_series`, and remote-writes them to Prometheus
//! every `collection_interval` from a bounded queue with backoff, never blocking ingest.
//!
//! Every collection also goes to the series [`history`] in the bucket, which [`promql`]
//! evaluates for Legato's own `/prometheus` API. Not yet: the `metrics-generator` role of
//! microservices mode (routing by trace id, so both halves of a call meet).

pub mod config;
pub mod history;
pub mod metrics;
pub mod promql;
pub mod registry;
pub mod remote_write;
pub mod servicegraphs;
pub mod spanmetrics;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use legato_model::TenantId;
use legato_proto::push::{SpanObserver, TraceSegment};
use legato_proto::span_wire::{ResourceRef, SpanRef};
use legato_proto::wire::ReadSpans;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

pub use config::GeneratorConfig;
use metrics::{GeneratorMetrics, ResultLabels, TenantLabels};
use registry::{Labels, Registry};

/// The processors Legato builds (Tempo's names).
pub const SPAN_METRICS: &str = "span-metrics";
pub const SERVICE_GRAPHS: &str = "service-graphs";

/// Which processors run for a tenant (`overrides.*.metrics_generator.processors`).
pub type ProcessorsLookup = Arc<dyn Fn(&TenantId) -> Vec<String> + Send + Sync>;

/// Remote-write bodies waiting to be sent, per endpoint; past this the oldest is dropped.
const MAX_QUEUED: usize = 64;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A tenant's series and the service-graph half edges waiting for their other half.
#[derive(Default)]
struct TenantState {
    registry: Registry,
    pending: servicegraphs::Pending,
    /// The label set being built for a span, kept to reuse its strings.
    scratch: Labels,
}

pub struct Generator {
    cfg: GeneratorConfig,
    span_metrics: spanmetrics::SpanMetrics,
    service_graphs: servicegraphs::ServiceGraphs,
    processors: ProcessorsLookup,
    tenants: Mutex<HashMap<TenantId, TenantState>>,
    external: Labels,
    metrics: GeneratorMetrics,
    history: Option<Arc<history::History>>,
}

/// Now, in Unix milliseconds (the generator's and its history's clock).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Generator {
    pub fn new(cfg: GeneratorConfig, processors: ProcessorsLookup, metrics: GeneratorMetrics) -> Self {
        let registry = &cfg.registry;
        let span_metrics = spanmetrics::SpanMetrics::new(
            cfg.processor.span_metrics.clone(),
            registry.max_label_name_length,
            registry.max_label_value_length,
        );
        // Every series carries the generator's host (so several generators never write the
        // same series) and the external labels, which win over processor labels.
        let mut external: Labels = vec![("__metrics_gen_instance".into(), hostname())];
        external.extend(registry.external_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self {
            span_metrics,
            service_graphs: servicegraphs::ServiceGraphs::new(cfg.processor.service_graphs.clone()),
            processors,
            tenants: Mutex::default(),
            external,
            metrics,
            history: None,
            cfg,
        }
    }

    /// Keeps every collection in `history` too (what `/prometheus` answers from).
    pub fn with_history(mut self, history: Arc<history::History>) -> Self {
        self.history = Some(history);
        self
    }

    /// Adds one collection to the history and writes its finished minutes (all, at shutdown).
    async fn keep_history(&self, collected: &[(TenantId, remote_write::WriteRequest)], now: i64, all: bool) {
        let Some(history) = &self.history else {
            return;
        };
        for (tenant, request) in collected {
            history.record(tenant, now, &request.timeseries);
        }
        let stats = history.flush(now, all).await;
        for (result, n) in [
            ("ok", stats.files_written),
            ("error", stats.write_errors),
            ("dropped", stats.minutes_dropped),
        ] {
            if n > 0 {
                self.metrics
                    .history_writes
                    .get_or_create(&ResultLabels { result: result.into() })
                    .inc_by(n);
            }
        }
    }

    /// Collects every tenant's series as remote-write requests (one per tenant).
    pub fn collect(&self, exemplars: bool) -> Vec<(TenantId, remote_write::WriteRequest)> {
        let now = now_ms();
        let stale_before = now - self.cfg.registry.stale_duration.as_millis() as i64;
        let max_active = self.cfg.registry.max_active_series;
        let mut tenants = self.tenants.lock();
        tenants
            .iter_mut()
            .map(|(tenant, state)| {
                let labels = TenantLabels {
                    tenant: tenant.to_string(),
                };
                // Half edges past `wait` become virtual-node edges (or are forgotten).
                let (dropped, expired) = (state.pending.dropped, state.pending.expired);
                self.service_graphs
                    .expire(&mut state.pending, &mut state.registry, max_active, now);
                self.metrics
                    .service_graph_expired
                    .get_or_create(&labels)
                    .inc_by(state.pending.expired - expired);
                self.metrics
                    .service_graph_dropped
                    .get_or_create(&labels)
                    .inc_by(state.pending.dropped - dropped);
                state.pending.dropped = 0;
                state.pending.expired = 0;
                let registry = &mut state.registry;
                registry.drop_stale(stale_before);
                self.metrics
                    .active_series
                    .get_or_create(&labels)
                    .set(registry.active() as i64);
                let request = remote_write::WriteRequest {
                    timeseries: registry.collect(now, &self.external, exemplars),
                };
                (tenant.clone(), request)
            })
            .filter(|(_, r)| !r.timeseries.is_empty())
            .collect()
    }

    /// Collects and remote-writes every `collection_interval` until cancelled.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        if self.cfg.storage.remote_write.is_empty() && self.history.is_none() {
            return;
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        let endpoints = self.cfg.storage.remote_write.clone();
        let mut queues: Vec<VecDeque<(TenantId, Vec<u8>)>> = vec![VecDeque::new(); endpoints.len()];
        let mut backoff: Vec<(Duration, Instant)> = vec![(Duration::ZERO, Instant::now()); endpoints.len()];
        let mut tick = tokio::time::interval(self.cfg.registry.collection_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    // What was counted since the last collection is kept for the next start.
                    let collected = self.collect(false);
                    self.keep_history(&collected, now_ms(), true).await;
                    return;
                }
                _ = tick.tick() => {}
            }
            // Collected once per interval (a series' first 0 sample goes to every endpoint).
            let collected = self.collect(true);
            self.keep_history(&collected, now_ms(), false).await;
            for (i, endpoint) in endpoints.iter().enumerate() {
                for (tenant, request) in &collected {
                    let mut request = request.clone();
                    if !endpoint.send_exemplars {
                        request.timeseries.iter_mut().for_each(|t| t.exemplars.clear());
                    }
                    let Ok(body) = remote_write::encode(&request) else {
                        continue;
                    };
                    if queues[i].len() >= MAX_QUEUED {
                        queues[i].pop_front();
                        self.count("dropped_queue_full");
                    }
                    queues[i].push_back((tenant.clone(), body));
                }
                self.metrics
                    .queue_length
                    .set(queues.iter().map(VecDeque::len).sum::<usize>() as i64);
                if Instant::now() < backoff[i].1 {
                    continue;
                }
                while let Some((tenant, body)) = queues[i].front().cloned() {
                    match remote_write::send(&client, endpoint, &tenant, body).await {
                        Ok(()) => {
                            queues[i].pop_front();
                            backoff[i].0 = Duration::ZERO;
                            self.count("ok");
                        }
                        Err((false, e)) => {
                            queues[i].pop_front();
                            self.count("dropped_rejected");
                            tracing::warn!(url = %endpoint.url, error = %e, "remote write refused; dropping the request");
                        }
                        Err((true, e)) => {
                            let next = (backoff[i].0 * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                            backoff[i] = (next, Instant::now() + next);
                            self.count("retry");
                            tracing::warn!(url = %endpoint.url, error = %e, retry_in = ?next, "remote write failed; will retry");
                            break;
                        }
                    }
                }
                self.metrics
                    .queue_length
                    .set(queues.iter().map(VecDeque::len).sum::<usize>() as i64);
            }
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .remote_write_requests
            .get_or_create(&ResultLabels { result: result.into() })
            .inc();
    }
}

/// Calls its argument with each span to count: trace id, resource, span.
type SpanVisit<'v> = &'v mut dyn FnMut(&[u8; 16], &ResourceRef<'_>, &SpanRef<'_>);

impl Generator {
    /// Which of span metrics and service graphs `tenant` has on.
    fn processors_on(&self, tenant: &TenantId) -> (bool, bool) {
        let processors = (self.processors)(tenant);
        (
            processors.iter().any(|p| p == SPAN_METRICS),
            processors.iter().any(|p| p == SERVICE_GRAPHS),
        )
    }

    /// Counts `spans` spans of `tenant`, which `each` shows one by one. Runs on the push
    /// path: a few map updates per span, never IO.
    fn count_spans(&self, tenant: &TenantId, spans: u64, each: impl FnOnce(SpanVisit<'_>)) {
        let (span_metrics, service_graphs) = self.processors_on(tenant);
        if !span_metrics && !service_graphs {
            return;
        }
        let now = now_ms();
        let max_active = self.cfg.registry.max_active_series;
        let mut filtered = 0u64;
        let mut tenants = self.tenants.lock();
        let state = tenants.entry(tenant.clone()).or_default();
        let refused_before = state.registry.refused;
        let TenantState {
            registry,
            pending,
            scratch,
        } = &mut *state;
        each(&mut |id, resource, span| {
            let exemplar = Some(*id).filter(|id| *id != [0; 16]);
            if span_metrics
                && !self
                    .span_metrics
                    .observe(registry, scratch, resource, span, exemplar, max_active, now)
            {
                filtered += 1;
            }
            if service_graphs {
                self.service_graphs
                    .observe(pending, registry, *id, resource, span, max_active, now);
            }
        });
        let refused = state.registry.refused - refused_before;
        drop(tenants);
        let labels = TenantLabels {
            tenant: tenant.to_string(),
        };
        self.metrics.spans_observed.get_or_create(&labels).inc_by(spans);
        if filtered > 0 {
            self.metrics
                .span_metrics_filtered
                .get_or_create(&labels)
                .inc_by(filtered);
        }
        if refused > 0 {
            self.metrics.series_refused.get_or_create(&labels).inc_by(refused);
        }
    }
}

impl SpanObserver for Generator {
    /// Counts the spans of encoded traces (forwarded by a distributor in microservices
    /// mode), reading the few fields each processor needs in place: no decode, and no
    /// allocation for a span of a series that exists.
    fn observe(&self, tenant: &TenantId, traces: &[TraceSegment]) {
        let spans = traces.iter().map(|seg| u64::from(seg.spans)).sum();
        self.count_spans(tenant, spans, |visit| {
            for seg in traces {
                let Ok(id) = <[u8; 16]>::try_from(seg.id.as_ref()) else {
                    continue;
                };
                let walked = legato_proto::span_wire::for_each_span(&seg.data, |resource, span| {
                    visit(&id, resource, span);
                });
                if let Err(e) = walked {
                    tracing::debug!(error = %e, "metrics generator skipped an undecodable trace");
                }
            }
        });
    }

    fn reads_spans(&self, tenant: &TenantId) -> bool {
        self.processors_on(tenant) != (false, false)
    }

    /// Counts the spans the distributor's walk read (single-binary mode): no second walk.
    fn observe_read(&self, tenant: &TenantId, spans: &ReadSpans<'_>) {
        self.count_spans(tenant, spans.len() as u64, |visit| spans.for_each(visit));
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "legato".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servicegraphs::tests::kv;
    use legato_proto::collector::ExportTraceServiceRequest;
    use legato_proto::common::KeyValue;
    use legato_proto::resource::Resource;
    use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    /// Calls between services, a database call and errors, over interleaved traces and
    /// resources, plus a span with an invalid trace id.
    fn export() -> Vec<u8> {
        let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("k8s.pod.name", "pod-1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        };
        let span = |trace: u8, id: u8, parent: u8, kind: i32, error: bool, attrs: Vec<KeyValue>| Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 { Vec::new() } else { vec![parent; 8] },
            name: format!("op-{kind}"),
            kind,
            start_time_unix_nano: 1_000_000,
            end_time_unix_nano: 1_000_000 + u64::from(id) * 7_000_000,
            attributes: attrs,
            status: Some(Status {
                code: if error { 2 } else { 0 },
                message: if error { "boom".into() } else { String::new() },
            }),
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                resource(
                    "frontend",
                    vec![
                        span(1, 1, 0, 2, false, vec![]),
                        span(1, 2, 1, 3, false, vec![kv("http.method", "GET")]),
                        span(2, 1, 0, 2, false, vec![]),
                        span(2, 2, 1, 3, true, vec![]),
                        span(0, 9, 0, 3, false, vec![]),
                    ],
                ),
                resource(
                    "checkout",
                    vec![
                        span(2, 3, 2, 2, true, vec![]),
                        span(1, 3, 2, 2, false, vec![]),
                        span(
                            1,
                            4,
                            3,
                            3,
                            false,
                            vec![kv("db.system", "postgresql"), kv("db.name", "orders")],
                        ),
                    ],
                ),
            ],
        };
        request.encode_to_vec()
    }

    fn generator() -> Generator {
        let processors: ProcessorsLookup = Arc::new(|_: &TenantId| vec![SPAN_METRICS.into(), SERVICE_GRAPHS.into()]);
        Generator::new(GeneratorConfig::default(), processors, GeneratorMetrics::default())
    }

    /// Series as comparable text: labels, sample values and how many exemplars (collection
    /// timestamps differ, and which trace an exemplar names depends on span order).
    fn series(generator: &Generator) -> Vec<String> {
        let mut out: Vec<String> = generator
            .collect(true)
            .into_iter()
            .flat_map(|(_, request)| request.timeseries)
            .map(|t| {
                let labels: Vec<String> = t.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect();
                let values: Vec<f64> = t.samples.iter().map(|s| s.value).collect();
                format!("{labels:?} {values:?} {}", t.exemplars.len())
            })
            .collect();
        out.sort();
        out
    }

    /// Issue 11: in single-binary mode the generator counts the spans the distributor's walk
    /// read; the series are exactly those it makes from the encoded traces.
    #[test]
    fn spans_read_by_the_distributor_make_the_same_series_as_the_segments() {
        let tenant = TenantId::single();
        let body = export();
        let from_segments = generator();
        assert!(from_segments.reads_spans(&tenant));
        let split = legato_proto::wire::split_request(&body, 0).unwrap();
        from_segments.observe(&tenant, &split.traces);
        let from_walk = generator();
        let (_, read) = legato_proto::wire::split_request_reading(&body, 0).unwrap();
        assert_eq!(read.len(), 7, "the span with an invalid trace id is not read");
        from_walk.observe_read(&tenant, &read);
        let expected = series(&from_segments);
        assert!(
            expected.iter().any(|s| s.contains("traces_service_graph_request_total")
                && s.contains("client=frontend")
                && s.contains("server=checkout")),
            "{expected:#?}"
        );
        assert!(
            expected
                .iter()
                .any(|s| s.contains("server=postgresql") || s.contains("server=orders")),
            "{expected:#?}"
        );
        let got = series(&from_walk);
        let missing: Vec<&String> = expected.iter().filter(|s| !got.contains(s)).collect();
        let extra: Vec<&String> = got.iter().filter(|s| !expected.contains(s)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "missing {missing:#?}\nextra {extra:#?}"
        );
    }
}
