//! Property: a TraceQL query gives the same answer on a trace whether it is evaluated from
//! live OTLP data or after the trace went through a block (Parquet write, scan, rebuild).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;

use legato_model::span::TraceData;
use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::common::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::span_view::trace_data;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status, span};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{BlockReader, ObjectStore, ScanOptions, TraceInput, encode_block, write_block};
use legato_traceql::eval::Plan;
use proptest::prelude::*;

const QUERIES: &[&str] = &[
    "{ }",
    r#"{ resource.service.name = "svc-1" }"#,
    "{ status = error }",
    "{ duration > 5ms }",
    "{ kind = server } >> { status = error }",
    "{ kind = server } > { kind = client }",
    "{ } ~ { status = error }",
    r#"{ span.http.status_code >= 400 || span.flag = true }"#,
    r#"{ .route =~ "/api/.*" && span.ratio > 0.5 }"#,
    r#"{ event:name = "exception" }"#,
    "{ trace:rootService = \"svc-0\" && span:childCount > 0 }",
    "{ } | count() > 3",
    "{ } | by(resource.service.name) | avg(duration) > 2ms",
    r#"{ name = "op-0" } !>> { }"#,
    r#"{ name = "op-1" } &<< { }"#,
    "{ span.http.status_code = 500 }",
    r#"{ name =~ "op-[01]" && kind = client }"#,
    r#"{ span.route = "/health" } >> { }"#,
    r#"{ resource.service.name =~ "svc-[12]" && duration >= 10ms }"#,
    "{ span.ratio < 0.3 } && { span.flag = false }",
    r#"{ resource.service.name != "svc-0" } | count() > 1"#,
    r#"{ resource.k8s.namespace.name = "canary" }"#,
    r#"{ resource.k8s.namespace.name =~ "can.*" && status = error }"#,
    "{ resource.pod.index >= 1 }",
    "{ resource.pod.index > 0.5 && kind = server }",
    r#"{ resource.k8s.namespace.name = "nope" } >> { }"#,
    r#"{ span.missing = "x" || name = "op-0" }"#,
    r#"{ span.missing = "x" && name = "op-0" }"#,
    r#"{ name = "nope" }"#,
    r#"{ span.http.status_code < 300 && resource.pod.index = 2 }"#,
    "({ } | avg(span.ratio) > 0.5) && { kind = server }",
    // Counts a trace's rows can rule out (`ScanOptions::min_rows`).
    r#"{ resource.service.name = "svc-1" && kind = server } | count() > 1"#,
    "{ span.http.status_code >= 200 } | count() >= 3",
    "{ } | 2 < count()",
    r#"{ name =~ "op-.*" } | count() = 2 | by(resource.service.name)"#,
    "{ status = error } | count() > 0.5",
    "{ duration > 2ms } | count() > 1 | { kind = client }",
];

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

prop_compose! {
    fn arb_span(max_index: usize)(
        parent in proptest::option::of(0..max_index.max(1)),
        service in 0..3usize,
        name in 0..4usize,
        kind in 0..6i32,
        status in 0..3i32,
        start in 0u64..1_000_000_000,
        duration in 0u64..20_000_000,
        code in proptest::option::of(prop_oneof![Just(200i64), Just(404), Just(500)]),
        flag in proptest::option::of(any::<bool>()),
        ratio in proptest::option::of(0.0f64..1.0),
        route in proptest::option::of(prop_oneof![Just("/api/cart"), Just("/health")]),
        event in any::<bool>(),
    ) -> (usize, Option<usize>, Span) {
        let mut attributes = Vec::new();
        if let Some(c) = code { attributes.push(kv("http.status_code", Value::IntValue(c))); }
        if let Some(f) = flag { attributes.push(kv("flag", Value::BoolValue(f))); }
        if let Some(r) = ratio { attributes.push(kv("ratio", Value::DoubleValue(r))); }
        if let Some(r) = route { attributes.push(kv("route", Value::StringValue(r.into()))); }
        let span = Span {
            name: format!("op-{name}"),
            kind,
            start_time_unix_nano: 1_700_000_000_000_000_000 + start,
            end_time_unix_nano: 1_700_000_000_000_000_000 + start + duration,
            attributes,
            events: if event { vec![span::Event { name: "exception".into(), time_unix_nano: 1_700_000_000_000_000_000 + start, ..Default::default() }] } else { vec![] },
            status: Some(Status { code: status, message: String::new() }),
            ..Default::default()
        };
        (service, parent, span)
    }
}

fn arb_trace() -> impl Strategy<Value = (TraceId, Vec<ResourceSpans>)> {
    (1usize..12)
        .prop_flat_map(|n| proptest::collection::vec(arb_span(n), n))
        .prop_map(|spans| {
            let id = TraceId([7; 16]);
            let mut batches: Vec<ResourceSpans> = (0..3)
                .map(|svc| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", Value::StringValue(format!("svc-{svc}"))),
                            kv(
                                "k8s.namespace.name",
                                Value::StringValue(if svc == 2 { "canary" } else { "prod" }.into()),
                            ),
                            kv("pod.index", Value::IntValue(svc as i64)),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "lib".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                })
                .collect();
            for (i, (svc, parent, mut span)) in spans.into_iter().enumerate() {
                span.trace_id = id.0.to_vec();
                span.span_id = vec![0, 0, 0, 0, 0, 0, 1, i as u8 + 1];
                // Parents only point backwards, so the tree has no cycles; index 0 is a root.
                span.parent_span_id = match parent.filter(|p| *p < i) {
                    Some(p) => vec![0, 0, 0, 0, 0, 0, 1, p as u8 + 1],
                    None => Vec::new(),
                };
                batches[svc].scope_spans[0].spans.push(span);
            }
            batches.retain(|b| !b.scope_spans[0].spans.is_empty());
            (id, batches)
        })
}

/// The trace after a block round trip, scanned with `options`; `None` when the scan skipped it.
fn through_block(id: TraceId, batches: Vec<ResourceSpans>, options: &ScanOptions) -> Option<TraceData> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let block = encode_block(
            &TenantId::single(),
            BlockId::random(),
            vec![TraceInput { id, batches }],
            0,
        )
        .unwrap();
        write_block(&store, &block).await.unwrap();
        let reader = BlockReader::new(store, StorageMetrics::default());
        let mut out = Vec::new();
        reader
            .scan_traces_with(&block.meta, options, |t| {
                out.push(t);
                true
            })
            .await
            .unwrap();
        assert!(out.len() <= 1);
        out.pop()
    })
}

/// Names of matched spans per spanset, comparable across the two paths (span order differs).
fn answer(plan: &Plan, trace: &TraceData) -> Vec<Vec<[u8; 8]>> {
    let mut sets: Vec<Vec<[u8; 8]>> = plan
        .eval(trace)
        .iter()
        .map(|s| {
            let mut ids: Vec<[u8; 8]> = s.spans.iter().map(|&i| trace.spans[i].span_id).collect();
            ids.sort();
            ids
        })
        .collect();
    sets.sort();
    sets
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn live_and_block_answers_agree((id, batches) in arb_trace()) {
        let live = trace_data(id.0, &batches);
        let stored = through_block(id, batches.clone(), &ScanOptions::full()).unwrap();
        prop_assert_eq!(live.spans.len(), stored.spans.len());
        for q in QUERIES {
            let plan = Plan::new(legato_traceql::parse(q).unwrap()).unwrap();
            prop_assert_eq!(answer(&plan, &live), answer(&plan, &stored), "{}", q);
            // With the query's own projection and row predicates: same answer, or skipped
            // only when nothing matches.
            let options = legato_querier::scan_options(&plan.query, &[]);
            let pruned = through_block(id, batches.clone(), &options);
            let pruned_answer = pruned.map(|t| answer(&plan, &t)).unwrap_or_default();
            prop_assert_eq!(answer(&plan, &live), pruned_answer, "pruned: {}", q);
            // A block whose tag summary rules a required predicate out is not read at all:
            // only right when the trace has no match.
            let mut summary = legato_traceql::tags::TagSummary::default();
            summary.add_trace(&live, None);
            if !options.required.iter().all(|p| legato_querier::prefilter::summary_admits(&summary, p)) {
                prop_assert!(answer(&plan, &live).is_empty(), "block pruned by its tag summary: {}", q);
            }
            // Held by an ingester, the trace is skipped before decoding only when it has no
            // match; and a name no span has always skips it.
            if let Some(prefilter) = legato_querier::prefilter::recent_prefilter(&options) {
                let encoded = prost::Message::encode_to_vec(&legato_proto::tempopb::Trace { resource_spans: batches.clone() });
                let accepted = prefilter(&[bytes::Bytes::from(encoded)]);
                if !accepted {
                    prop_assert!(answer(&plan, &live).is_empty(), "held trace skipped by the prefilter: {}", q);
                }
                prop_assert!(!(*q == r#"{ name = "nope" }"# && accepted), "{}", q);
            }
        }
    }
}

/// Exemplars kept by the metrics evaluators below, so the series compared carry them (the
/// `compare()` totals' and each quantile's own) and both paths must pick the same.
const EXEMPLARS: usize = 100;

/// Metrics queries whose metrics stage reads fields the query's pipeline does not name:
/// compare() reads every attribute, arithmetic each side's pipeline and fields.
const METRICS_QUERIES: &[&str] = &[
    "{ } | compare({ status = error })",
    r#"{ kind = server } | compare({ span.http.status_code >= 500 }, 3)"#,
    r#"({ resource.k8s.namespace.name = "canary" } | count_over_time() by (span.route)) / ({ } | count_over_time() by (span.route))"#,
    "({ span.flag = true } | sum_over_time(span.ratio)) + ({ resource.pod.index > 0 } | count_over_time())",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// The projection `metrics_scan_options` picks keeps every column such a query reads: the
    /// series from a pruned block scan are those of the live trace.
    #[test]
    fn metrics_from_pruned_blocks_agree_with_live((id, batches) in arb_trace()) {
        use legato_traceql::metrics::MetricsEval;
        let live = trace_data(id.0, &batches);
        for q in METRICS_QUERIES {
            let mut query = legato_traceql::parse(q).unwrap();
            let stage = query.metrics.take().unwrap();
            let plan = Arc::new(Plan::new(query).unwrap());
            let range = (1_700_000_000_000_000_000, 1_700_000_002_000_000_000, 1_000_000_000);
            let run = |trace: Option<&TraceData>| {
                let mut e = MetricsEval::new(plan.clone(), stage.clone(), range.0, range.1, range.2, EXEMPLARS);
                if let Some(t) = trace {
                    e.observe(t);
                }
                e.finish()
            };
            let options = legato_querier::metrics_scan_options(&plan.query, &stage);
            let pruned = through_block(id, batches.clone(), &options);
            prop_assert_eq!(run(Some(&live)), run(pruned.as_ref()), "{}", q);
        }
    }
}

/// Metrics queries `ColumnMetrics` counts from block columns, and one it must leave to the
/// evaluator.
const COLUMN_METRICS: &[&str] = &[
    "{ } | rate()",
    "{ } | count_over_time() by (resource.service.name)",
    "{ status = error } | count_over_time() by (name, kind)",
    r#"{ resource.service.name = "svc-1" && duration > 5ms } | rate() by (status)"#,
    r#"{ name =~ "op-[01]" && kind != server } | count_over_time() by (resource.service.name, name)"#,
    r#"{ duration <= 3ms && status != ok } | rate() by (kind) | topk(2)"#,
    "{ kind = server } | quantile_over_time(duration, .5, .9, .99) by (resource.service.name)",
    r#"{ name != "op-0" } | histogram_over_time(duration) by (status)"#,
    "{ } | quantile_over_time(duration, .75)",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Counting from columns gives the evaluator's series, step by step.
    #[test]
    fn metrics_counted_from_columns_agree_with_the_evaluator((id, batches) in arb_trace()) {
        use legato_querier::metrics_columns::{ColumnCounter, ColumnMetrics};
        use legato_traceql::metrics::MetricsEval;
        let live = trace_data(id.0, &batches);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let block = encode_block(&TenantId::single(), BlockId::random(), vec![TraceInput { id, batches: batches.clone() }], 0).unwrap();
        rt.block_on(write_block(&store, &block)).unwrap();
        let reader = BlockReader::new(store, StorageMetrics::default());
        let range = (1_700_000_000_000_000_000, 1_700_000_002_000_000_000, 250_000_000);
        for q in COLUMN_METRICS {
            let mut query = legato_traceql::parse(q).unwrap();
            let stage = query.metrics.take().unwrap();
            let columns = ColumnMetrics::plan(&query, &stage);
            prop_assert!(columns.is_some(), "{} is counted from columns", q);
            let columns = columns.unwrap();
            let plan = Arc::new(Plan::new(query).unwrap());
            let mut slow = MetricsEval::new(plan.clone(), stage.clone(), range.0, range.1, range.2, EXEMPLARS);
            slow.observe(&live);
            let mut fast = MetricsEval::new(plan.clone(), stage.clone(), range.0, range.1, range.2, EXEMPLARS);
            let (step_of, steps) = fast.stepper();
            let mut counter = ColumnCounter::new(&columns, step_of.as_ref(), steps, fast.exemplar_buckets());
            let mut all = |_: &([u8; 16], u64)| true;
            rt.block_on(reader.scan_columns(&block.meta, &columns.columns(), None, |b| counter.batch(b, &mut all).is_some())).unwrap();
            for (labels, spans, exemplars) in counter.finish(&mut all) {
                fast.add_spans(labels, &spans, &exemplars);
            }
            let sorted = |mut s: Vec<legato_traceql::metrics::Series>| {
                s.sort_by(|a, b| format!("{:?}", a.labels).cmp(&format!("{:?}", b.labels)));
                s
            };
            prop_assert_eq!(sorted(slow.finish()), sorted(fast.finish()), "{}", q);
        }
        // Conditions on attributes, and other functions, stay with the evaluator.
        for q in ["{ span.http.status_code = 500 } | rate()", "{ } | avg_over_time(duration)", "{ } | rate() by (span.route)", "{ } | quantile_over_time(span.ratio, .5)"] {
            let mut query = legato_traceql::parse(q).unwrap();
            let stage = query.metrics.take().unwrap();
            prop_assert!(ColumnMetrics::plan(&query, &stage).is_none(), "{}", q);
        }
    }
}
