//! Steps without spans and series without samples, as Tempo answers them
//! (`pkg/traceql/engine_metrics.go`, `ast_metrics.go`, `engine_metrics_average.go`): the
//! counting functions report 0 at every step of a series, the others leave such steps out;
//! second stages see those zeros; a series left without samples is not in the answer. Steps
//! are closed at the right and reported at their end, as Tempo's since 2.9: the sample at
//! `t` counts spans starting in `(t - step, t]`. Expected samples are computed by hand from
//! the spans below.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use legato_model::span::{AttrValue, TraceData};
use legato_traceql::metrics::{MetricsEval, MetricsPartial, Series};
use legato_traceql::value::Value;

use crate::support;

use support::{MS, S, samples};

/// A span: (id, parent, service, start in seconds, duration in ms, error, span.bytes).
type SpanSpec<'a> = (u8, Option<u8>, &'a str, u64, u64, bool, Option<i64>);

fn trace(id: u8, specs: &[SpanSpec<'_>]) -> TraceData {
    let spans = specs
        .iter()
        .map(|&(sid, parent, svc, start, dur_ms, error, bytes)| {
            let mut span = support::span(
                sid,
                parent,
                &format!("op-{svc}"),
                svc,
                start * S,
                start * S + dur_ms * MS,
            );
            span.status_code = if error { 2 } else { 0 };
            span.attrs = bytes
                .map(|b| vec![("bytes".to_string(), AttrValue::Int(b))])
                .unwrap_or_default();
            span
        })
        .collect();
    support::trace(id, spans)
}

/// Ten 10 s steps over (0, 100 s], reported at their ends (10 s … 100 s); spans in steps 1, 4
/// and 7 only.
///
/// step 1: api 12 s 100 ms bytes 10; db 15 s 300 ms bytes 30
/// step 4: api 45 s 200 ms bytes 20
/// step 7: api 71 s 100 ms bytes 5;  db 73 s 500 ms error, no bytes
/// after the range: api 105 s
fn traces() -> Vec<TraceData> {
    vec![
        trace(
            1,
            &[
                (1, None, "api", 12, 100, false, Some(10)),
                (2, Some(1), "db", 15, 300, false, Some(30)),
            ],
        ),
        trace(2, &[(3, None, "api", 45, 200, false, Some(20))]),
        trace(
            3,
            &[
                (4, None, "api", 71, 100, false, Some(5)),
                (5, Some(4), "db", 73, 500, true, None),
            ],
        ),
        trace(4, &[(6, None, "api", 105, 100, false, Some(1))]),
    ]
}

fn eval_over(q: &str, start_s: u64, end_s: u64, step_s: u64) -> MetricsEval {
    support::evaluator(q, start_s * S, end_s * S, step_s * S)
}

fn run_over(q: &str, start_s: u64, end_s: u64, step_s: u64) -> Vec<Series> {
    let mut e = eval_over(q, start_s, end_s, step_s);
    traces().iter().for_each(|t| e.observe(t));
    e.finish()
}

fn run(q: &str) -> Vec<Series> {
    run_over(q, 0, 100, 10)
}

/// One value per step of (0, 100 s], at the steps' timestamps.
fn every_step(values: [f64; 10]) -> Vec<(i64, f64)> {
    (0..10).map(|i| ((i + 1) * 10_000, values[i as usize])).collect()
}

fn by_service(svc: &str) -> Vec<(String, Value)> {
    vec![("resource.service.name".into(), Value::Str(svc.into()))]
}

fn name(n: &str) -> Vec<(String, Value)> {
    vec![("__name__".into(), Value::Str(n.into()))]
}

#[test]
fn counting_functions_report_zero_at_every_step_without_spans() {
    let out = run("{ } | rate()");
    assert_eq!(out.len(), 1);
    assert_eq!(
        samples(&out, &name("rate")),
        every_step([0.0, 0.2, 0.0, 0.0, 0.1, 0.0, 0.0, 0.2, 0.0, 0.0])
    );

    // Grouped: each series has every step, 0 where its own spans are missing.
    let out = run("{ } | count_over_time() by (resource.service.name)");
    assert_eq!(out.len(), 2);
    assert_eq!(
        samples(&out, &by_service("api")),
        every_step([0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    );
    assert_eq!(
        samples(&out, &by_service("db")),
        every_step([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    );

    // Buckets: 100 ms ≤ 2^27 ns, 200 ms ≤ 2^28 ns, 300 and 500 ms ≤ 2^29 ns.
    let out = run("{ } | histogram_over_time(duration)");
    let bucket = |upper_ns: f64| {
        vec![
            ("__name__".to_string(), Value::Str("histogram_over_time".into())),
            ("__bucket".to_string(), Value::Float(upper_ns / 1e9)),
        ]
    };
    assert_eq!(out.len(), 3);
    assert_eq!(
        samples(&out, &bucket(2f64.powi(27))),
        every_step([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    );
    assert_eq!(
        samples(&out, &bucket(2f64.powi(28))),
        every_step([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    );
    assert_eq!(
        samples(&out, &bucket(2f64.powi(29))),
        every_step([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    );

    // Quantiles: Tempo's frontend builds them from bucket counts and reports 0 at a step
    // without any (p = 1 of one span is its bucket's upper bound).
    let out = run("{ } | quantile_over_time(duration, 1) by (resource.service.name)");
    let mut api_p = by_service("api");
    api_p.push(("p".into(), Value::Float(1.0)));
    let (b27, b28) = (2f64.powi(27) / 1e9, 2f64.powi(28) / 1e9);
    assert_eq!(
        samples(&out, &api_p),
        every_step([0.0, b27, 0.0, 0.0, b28, 0.0, 0.0, b27, 0.0, 0.0])
    );
}

#[test]
fn value_functions_leave_out_steps_without_values() {
    let out = run("{ } | sum_over_time(span.bytes) by (resource.service.name)");
    assert_eq!(
        samples(&out, &by_service("api")),
        vec![(20_000, 10.0), (50_000, 20.0), (80_000, 5.0)]
    );
    // db at 73 s has no span.bytes: no value at step 7.
    assert_eq!(samples(&out, &by_service("db")), vec![(20_000, 30.0)]);

    let out = run("{ } | avg_over_time(duration)");
    assert_eq!(
        samples(&out, &name("avg_over_time")),
        vec![(20_000, 0.2), (50_000, 0.2), (80_000, 0.3)]
    );
    let out = run("{ } | min_over_time(span.bytes)");
    assert_eq!(
        samples(&out, &name("min_over_time")),
        vec![(20_000, 10.0), (50_000, 20.0), (80_000, 5.0)]
    );
    let out = run("{ } | max_over_time(duration)");
    assert_eq!(
        samples(&out, &name("max_over_time")),
        vec![(20_000, 0.3), (50_000, 0.2), (80_000, 0.5)]
    );
}

#[test]
fn topk_and_bottomk_see_the_zeros_and_break_ties_as_tempo() {
    // api and db tie at every step but 4 (1-1 at steps 1 and 7, 0-0 at quiet steps). Tempo
    // breaks ties with the labels: topk keeps the first (api), bottomk the last (db).
    let out = run("{ } | count_over_time() by (resource.service.name) | topk(1)");
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        samples(&out, &by_service("api")),
        every_step([0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    );
    let out = run("{ } | count_over_time() by (resource.service.name) | bottomk(1)");
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        samples(&out, &by_service("db")),
        every_step([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    );
    // With values only where spans are, a quiet step has nothing to rank.
    let out = run("{ } | max_over_time(duration) by (resource.service.name) | bottomk(1)");
    assert_eq!(
        samples(&out, &by_service("api")),
        vec![(20_000, 0.1), (50_000, 0.2), (80_000, 0.1)]
    );
    assert_eq!(out.len(), 1, "{out:?}");
}

#[test]
fn comparisons_keep_or_drop_zeros_and_drop_series_left_empty() {
    let out = run("{ } | count_over_time() by (resource.service.name) > 0");
    assert_eq!(
        samples(&out, &by_service("api")),
        vec![(20_000, 1.0), (50_000, 1.0), (80_000, 1.0)]
    );
    assert_eq!(samples(&out, &by_service("db")), vec![(20_000, 1.0), (80_000, 1.0)]);
    // A zero passes `< 1`.
    let out = run("{ } | count_over_time() by (resource.service.name) < 1");
    let quiet = |busy: &[i64]| -> Vec<(i64, f64)> {
        (0..10)
            .filter(|i| !busy.contains(i))
            .map(|i| ((i + 1) * 10_000, 0.0))
            .collect()
    };
    assert_eq!(samples(&out, &by_service("api")), quiet(&[1, 4, 7]));
    assert_eq!(samples(&out, &by_service("db")), quiet(&[1, 7]));
    // Every point removed: the series are gone, not reported without samples.
    assert!(run("{ } | count_over_time() by (resource.service.name) > 10").is_empty());
    assert!(run("{ } | rate() > 10").is_empty());
}

#[test]
fn a_query_matching_nothing() {
    // Tempo's ungrouped rate and count_over_time always have their series: all zeros.
    let out = run(r#"{ resource.service.name = "web" } | rate()"#);
    assert_eq!(samples(&out, &name("rate")), every_step([0.0; 10]));
    let out = run(r#"{ resource.service.name = "web" } | count_over_time()"#);
    assert_eq!(samples(&out, &name("count_over_time")), every_step([0.0; 10]));
    // Grouped series, bucket series and value functions only exist with spans.
    for q in [
        r#"{ resource.service.name = "web" } | rate() by (name)"#,
        r#"{ resource.service.name = "web" } | histogram_over_time(duration)"#,
        r#"{ resource.service.name = "web" } | quantile_over_time(duration, .9)"#,
        r#"{ resource.service.name = "web" } | sum_over_time(duration)"#,
        "{ status = error } | max_over_time(span.bytes)",
    ] {
        assert!(run(q).is_empty(), "{q}: {:?}", run(q));
    }
}

#[test]
fn instant_queries_over_a_range_without_spans() {
    // An instant query is one step over the whole range: here (20 s, 40 s], no spans.
    let instant = |q: &str| run_over(q, 20, 40, 20);
    assert_eq!(instant("{ } | rate()"), vec![zero_series("rate", 40_000)]);
    assert_eq!(
        instant("{ } | count_over_time()"),
        vec![zero_series("count_over_time", 40_000)]
    );
    assert!(instant("{ } | rate() by (resource.service.name)").is_empty());
    assert!(instant("{ } | min_over_time(duration)").is_empty());
    assert!(instant("{ } | quantile_over_time(duration, .5)").is_empty());
    // Over the whole range: 5 spans in 100 s.
    assert_eq!(
        samples(&run_over("{ } | rate()", 0, 100, 100), &name("rate")),
        vec![(100_000, 0.05)]
    );
}

fn zero_series(function: &str, at_ms: i64) -> Series {
    Series {
        labels: name(function),
        samples: vec![(at_ms, 0.0)],
        exemplars: Vec::new(),
    }
}

#[test]
fn parts_merged_give_the_zeros_of_one_evaluator() {
    let traces = traces();
    for q in [
        "{ } | rate()",
        "{ } | count_over_time() by (resource.service.name)",
        "{ } | histogram_over_time(duration)",
        "{ } | quantile_over_time(duration, 1) by (resource.service.name)",
        "{ } | sum_over_time(span.bytes) by (resource.service.name)",
        "{ } | count_over_time() by (resource.service.name) | bottomk(1)",
        "{ } | count_over_time() by (resource.service.name) < 1",
        r#"{ resource.service.name = "web" } | rate()"#,
        "({ status = error } | count_over_time()) / ({ } | count_over_time())",
    ] {
        let mut whole = eval_over(q, 0, 100, 10);
        traces.iter().for_each(|t| whole.observe(t));
        // Three parts, one of which saw no span at all.
        let mut merged = eval_over(q, 0, 100, 10);
        for part in [&traces[..1], &traces[1..], &traces[..0]] {
            let mut e = eval_over(q, 0, 100, 10);
            part.iter().for_each(|t| e.observe(t));
            let json = serde_json::to_vec(&e.into_partial()).unwrap();
            merged.merge(serde_json::from_slice::<MetricsPartial>(&json).unwrap());
        }
        let whole = whole.finish();
        assert!(!whole.is_empty(), "{q}");
        assert_eq!(merged.finish(), whole, "{q}");
    }
}

#[test]
fn arithmetic_sees_the_same_zeros() {
    // Errors over all spans: 0 / 2, 0 / 1, 1 / 2 at the busy steps; 0 / 0 is no point.
    let out = run("({ status = error } | count_over_time()) / ({ } | count_over_time())");
    assert_eq!(out[0].samples, vec![(20_000, 0.0), (50_000, 0.0), (80_000, 0.5)]);
    // The error count alone has all ten steps.
    let out = run("{ status = error } | count_over_time()");
    assert_eq!(
        out[0].samples,
        every_step([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    );
}

#[test]
fn a_step_holds_the_spans_up_to_its_timestamp() {
    // Spans at the range's start (left out), on step boundaries, and at the range's end.
    let edges = [trace(
        9,
        &[
            (1, None, "api", 0, 1, false, None),
            (2, Some(1), "api", 10, 1, false, None),
            (3, Some(1), "api", 11, 1, false, None),
            (4, Some(1), "api", 100, 1, false, None),
        ],
    )];
    let mut e = eval_over("{ } | count_over_time()", 0, 100, 10);
    edges.iter().for_each(|t| e.observe(t));
    assert_eq!(
        e.finish()[0].samples,
        every_step([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    );
}
