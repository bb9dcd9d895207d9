//! Helpers of the metrics evaluation tests: spans and traces built by hand, an evaluator for a
//! query, and the samples of one series.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use legato_model::span::{AttrValue, SpanData, SpanOrigin, TraceData};
use legato_traceql::eval::Plan;
use legato_traceql::metrics::{MetricsEval, Series};
use legato_traceql::parse;
use legato_traceql::value::Value;

pub const S: u64 = 1_000_000_000;
pub const MS: u64 = 1_000_000;

/// A span of service `svc` (a resource with only `service.name`) from `start` to `end` (ns),
/// of kind server and status unset; `parent` and `id` fill all eight bytes of the ids.
pub fn span(id: u8, parent: Option<u8>, name: &str, svc: &str, start: u64, end: u64) -> SpanData {
    SpanData {
        span_id: [id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind: 2,
        start_unix_nano: start,
        end_unix_nano: end,
        origin: Arc::new(SpanOrigin {
            service_name: svc.into(),
            resource: vec![("service.name".into(), AttrValue::Str(svc.into()))],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A trace of `spans`, its tree linked.
pub fn trace(id: u8, spans: Vec<SpanData>) -> TraceData {
    let mut t = TraceData {
        trace_id: [id; 16],
        spans,
    };
    t.link_tree();
    t
}

/// An evaluator of the metrics query `q` over (start, end] in steps of `step` (ns), keeping
/// up to 10 exemplars.
pub fn evaluator(q: &str, start: u64, end: u64, step: u64) -> MetricsEval {
    evaluator_with_exemplars(q, start, end, step, 10)
}

/// `evaluator`, keeping up to `exemplars` exemplars.
pub fn evaluator_with_exemplars(q: &str, start: u64, end: u64, step: u64, exemplars: usize) -> MetricsEval {
    let query = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    let stage = query.metrics.clone().unwrap();
    let plan = Arc::new(Plan::new(query).unwrap());
    MetricsEval::new(plan, stage, start, end, step, exemplars)
}

/// The samples of the series with exactly these labels.
#[track_caller]
pub fn samples(series: &[Series], labels: &[(String, Value)]) -> Vec<(i64, f64)> {
    match series.iter().find(|s| s.labels == labels) {
        Some(s) => s.samples.clone(),
        None => panic!(
            "no series {labels:?} in {:#?}",
            series.iter().map(|s| &s.labels).collect::<Vec<_>>()
        ),
    }
}
