//! Probabilistic sampling per tenant (issue 12): the OpenTelemetry SDK sends every trace
//! (always-on); Legato at 50% keeps exactly the traces the SDK's own `TraceIdRatioBased(0.5)`
//! sampler would have kept, acknowledges the rest and counts them.
#![allow(clippy::unwrap_used)]

use integration_tests::{Legato, Ports, config_yaml, get_text, span_count_v2};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probabilistic_sampling_agrees_with_the_sdks_ratio_sampler() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let extra = "overrides:\n  defaults:\n    sampling:\n      probabilistic:\n        sampling_percentage: 50\n";
    let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, extra));

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(legato.otlp_grpc_url())
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("sampling-test");
    let mut ids = Vec::new();
    for i in 0..120 {
        tracer.in_span(format!("request-{i}"), |cx| {
            ids.push(cx.span().span_context().trace_id());
            let _child = tracer.start("child");
        });
    }
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();

    let ratio = Sampler::TraceIdRatioBased(0.5);
    let client = reqwest::Client::new();
    let (mut kept, mut dropped) = (0, 0);
    for id in &ids {
        let sdk_keeps = ratio
            .should_sample(None, *id, "x", &SpanKind::Internal, &[], &[])
            .decision
            == SamplingDecision::RecordAndSample;
        let spans = span_count_v2(&client, &legato, &id.to_bytes()).await;
        assert_eq!(
            spans,
            if sdk_keeps { 2 } else { 0 },
            "trace {id}: SDK keeps {sdk_keeps}"
        );
        if sdk_keeps {
            kept += 1;
        } else {
            dropped += 1;
        }
    }
    assert!(kept > 30 && dropped > 30, "kept {kept}, dropped {dropped}");
    let metrics = get_text(&client, &legato.url("/metrics")).await;
    let line = format!(
        "legato_distributor_spans_sampled_out_total{{tenant=\"single-tenant\"}} {}",
        dropped * 2
    );
    assert!(metrics.contains(&line), "want {line}");
}
