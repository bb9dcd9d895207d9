//! Tail sampling in the ingester (issue 12), with the OpenTelemetry SDK sending and the
//! Collector's policy schema: errors, slow requests and 5% of the rest are kept whole
//! (including spans that arrive in later exports and after the decision), span metrics count
//! every span before sampling, and a kill -9 during `decision_wait` loses no trace the
//! policy keeps.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use integration_tests::{Legato, Ports, config_yaml, get_text, span_count_v2};
use opentelemetry::trace::{Span as _, SpanContext, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer as SdkTracer};

/// The policy of the issue, as a Collector user writes it.
fn tail_policy(decision_wait: &str) -> String {
    format!(
        "overrides:
  defaults:
    metrics_generator:
      processors: [span-metrics]
    sampling:
      tail_sampling:
        decision_wait: {decision_wait}
        num_traces: 50000
        policies:
          - name: errors
            type: status_code
            status_code: {{status_codes: [ERROR]}}
          - name: slow
            type: latency
            latency: {{threshold_ms: 500}}
          - name: rest
            type: probabilistic
            probabilistic: {{sampling_percentage: 5}}
"
    )
}

fn provider(legato: &Legato) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(legato.otlp_grpc_url())
        .build()
        .unwrap();
    SdkTracerProvider::builder().with_batch_exporter(exporter).build()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Error,
    Slow,
    Normal,
}

/// A span of `ms` milliseconds under `parent` (a new trace when `None`), ended now.
fn span(tracer: &SdkTracer, parent: Option<&SpanContext>, name: &str, ms: u64, error: bool) -> SpanContext {
    let start = SystemTime::now() - Duration::from_millis(ms);
    let cx = match parent {
        Some(p) => Context::new().with_remote_span_context(p.clone()),
        None => Context::new(),
    };
    let mut span = tracer.build_with_context(tracer.span_builder(name.to_string()).with_start_time(start), &cx);
    span.set_attribute(KeyValue::new("test.kind", name.to_string()));
    if error {
        span.set_status(Status::error("boom"));
    }
    let sc = span.span_context().clone();
    span.end_with_timestamp(start + Duration::from_millis(ms));
    sc
}

/// What the policy keeps: errors, slow traces, and the traces TraceIdRatioBased(0.05) keeps.
fn kept(kind: Kind, root: &SpanContext) -> bool {
    kind != Kind::Normal || legato_model::ratio_keeps(&root.trace_id().to_bytes(), 0.05)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_slow_and_five_percent_are_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let legato = Legato::start(
        dir.path(),
        ports,
        &config_yaml(ports, dir.path(), None, &tail_policy("2s")),
    );
    let provider = provider(&legato);
    let tracer = provider.tracer("tail-sampling-test");

    // Export 1: every root span (20 errors-to-be, 20 slow, 400 normal).
    let kinds = [(Kind::Error, 20), (Kind::Slow, 20), (Kind::Normal, 400)];
    let mut traces: Vec<(Kind, SpanContext)> = Vec::new();
    for (kind, n) in kinds {
        for _ in 0..n {
            let ms = if kind == Kind::Slow { 600 } else { 20 };
            traces.push((kind, span(&tracer, None, "root", ms, false)));
        }
    }
    provider.force_flush().unwrap();
    // Export 2, within decision_wait: the children (the error is only in the child).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (kind, root) in &traces {
        span(&tracer, Some(root), "child", 5, *kind == Kind::Error);
    }
    provider.force_flush().unwrap();
    // Export 3, after the decision: a late span per trace follows its trace's decision.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    for (_, root) in &traces {
        span(&tracer, Some(root), "late", 1, false);
    }
    provider.force_flush().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let client = reqwest::Client::new();
    let mut kept_normal = 0;
    for (kind, root) in &traces {
        let spans = span_count_v2(&client, &legato, &root.trace_id().to_bytes()).await;
        let want = if kept(*kind, root) { 3 } else { 0 };
        assert_eq!(spans, want, "{kind:?} trace {}", root.trace_id());
        kept_normal += usize::from(*kind == Kind::Normal && want == 3);
    }
    // 5% of 400 normal traces: 20 expected; the binomial's standard deviation is 4.4, so
    // four of them either side bound an honest sampler.
    let sd = (400.0f64 * 0.05 * 0.95).sqrt();
    assert!(
        (kept_normal as f64 - 20.0).abs() <= 4.0 * sd,
        "kept {kept_normal} of 400"
    );

    // Span metrics saw every span (3 per trace) before sampling; the ingester counted its
    // decisions per policy and the late spans it dropped.
    let metrics = get_text(&client, &legato.url("/metrics")).await;
    let value = |series: &str| integration_tests::metric_value(&metrics, series);
    assert_eq!(
        value("legato_generator_spans_observed_total{tenant=\"single-tenant\"}"),
        (traces.len() * 3) as f64
    );
    let sampled = 40 + kept_normal;
    assert_eq!(
        value("legato_ingester_tail_sampling_traces_total{tenant=\"single-tenant\",decision=\"sampled\"}"),
        sampled as f64
    );
    assert_eq!(
        value("legato_ingester_tail_sampling_traces_total{tenant=\"single-tenant\",decision=\"not_sampled\"}"),
        (traces.len() - sampled) as f64
    );
    assert_eq!(
        value("legato_ingester_tail_sampling_late_spans_total{tenant=\"single-tenant\",decision=\"not_sampled\"}"),
        (traces.len() - sampled) as f64
    );
    assert_eq!(
        value(
            "legato_ingester_tail_sampling_policy_decisions_total{tenant=\"single-tenant\",policy=\"errors\",decision=\"sampled\"}"
        ),
        20.0
    );
    provider.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_decision_wait_loses_no_trace_the_policy_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let mut legato = Legato::start(
        dir.path(),
        ports,
        &config_yaml(ports, dir.path(), None, &tail_policy("3s")),
    );
    let provider = provider(&legato);
    let tracer = provider.tracer("tail-sampling-crash");
    let mut traces: Vec<(Kind, SpanContext)> = Vec::new();
    for i in 0..120 {
        let kind = match i % 6 {
            0 => Kind::Error,
            1 => Kind::Slow,
            _ => Kind::Normal,
        };
        let root = span(&tracer, None, "root", if kind == Kind::Slow { 700 } else { 10 }, false);
        span(&tracer, Some(&root), "child", 2, kind == Kind::Error);
        traces.push((kind, root));
    }
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();

    // Acknowledged, undecided: kill -9 in the middle of decision_wait, then replay.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    legato.kill9();
    legato.spawn();
    // Replayed traces are decided decision_wait after the replay.
    tokio::time::sleep(Duration::from_millis(4500)).await;

    let client = reqwest::Client::new();
    for (kind, root) in &traces {
        let spans = span_count_v2(&client, &legato, &root.trace_id().to_bytes()).await;
        let want = if kept(*kind, root) { 2 } else { 0 };
        assert_eq!(spans, want, "{kind:?} trace {} after kill -9", root.trace_id());
    }
}

/// Memory stays bounded by `num_traces`: past it the oldest undecided traces are decided
/// early (and counted), by the same policies, so error traces are still kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_num_traces_the_oldest_are_decided_early() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let extra = tail_policy("1h").replace("num_traces: 50000", "num_traces: 5");
    let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, &extra));
    let provider = provider(&legato);
    let tracer = provider.tracer("tail-sampling-bound");
    let mut traces = Vec::new();
    for i in 0..30 {
        let kind = if i % 3 == 0 { Kind::Error } else { Kind::Normal };
        let root = span(&tracer, None, "root", 5, false);
        span(&tracer, Some(&root), "child", 2, kind == Kind::Error);
        traces.push((kind, root));
    }
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
    // decision_wait is an hour: only the num_traces bound decides, within a few flush checks.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = reqwest::Client::new();
    let metrics = get_text(&client, &legato.url("/metrics")).await;
    let early = integration_tests::metric_value(
        &metrics,
        "legato_ingester_tail_sampling_early_decisions_total{tenant=\"single-tenant\",reason=\"num_traces\"}",
    );
    assert!(early >= 25.0, "30 traces, 5 may wait: {early} decided early\n{metrics}");
    for (kind, root) in traces.iter().filter(|(k, _)| *k == Kind::Error) {
        let spans = span_count_v2(&client, &legato, &root.trace_id().to_bytes()).await;
        assert_eq!(spans, 2, "{kind:?} trace {} decided early is kept", root.trace_id());
    }
}
