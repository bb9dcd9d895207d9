//! `quantile_over_time` and `histogram_over_time` give Tempo's numbers: power-of-two buckets
//! (`Log2Bucketize`), the rank rounded up and exponential interpolation inside a bucket
//! (`Log2Quantile`), both in Tempo's `pkg/traceql/engine_metrics.go`. Expected values are
//! Tempo's own test cases, worked by hand.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use legato_model::span::{AttrValue, TraceData};
use legato_traceql::metrics::{MetricsEval, MetricsPartial, Series};
use legato_traceql::value::Value;

use crate::support;

use support::S;

/// One trace per span: (span.foo, start in ns, duration in ns).
fn traces(specs: &[(&str, u64, u64)]) -> Vec<TraceData> {
    specs
        .iter()
        .enumerate()
        .map(|(i, &(group, start, duration))| {
            let id = i as u8 + 1;
            let mut span = support::span(id, None, "op", "svc", start, start + duration);
            span.attrs = vec![("foo".to_string(), AttrValue::Str(group.into()))];
            support::trace(id, vec![span])
        })
        .collect()
}

fn eval(q: &str, start: u64, end: u64, step: u64) -> MetricsEval {
    support::evaluator(q, start, end, step)
}

fn run(q: &str, spans: &[(&str, u64, u64)], start: u64, end: u64, step: u64) -> Vec<Series> {
    let mut e = eval(q, start, end, step);
    traces(spans).iter().for_each(|t| e.observe(t));
    e.finish()
}

/// The values of the series with these labels, one per step.
#[track_caller]
fn values(series: &[Series], labels: &[(&str, Value)]) -> Vec<f64> {
    let labels: Vec<(String, Value)> = labels.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let found = series.iter().find(|s| s.labels == labels);
    let found = found.unwrap_or_else(|| panic!("no series {labels:?} in {series:#?}"));
    found.samples.iter().map(|(_, v)| *v).collect()
}

#[track_caller]
fn assert_close(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() <= e.abs() * 1e-12, "{actual:?} vs {expected:?}");
    }
}

/// Tempo's TestQuantileOverTime: `(0, 3 s]` in 1 s steps; durations in ns.
const QUANTILE_OVER_TIME: &[(&str, u64, u64)] = &[
    // (0, 1 s]
    ("bar", S, 128),
    ("bar", S, 256),
    ("bar", S, 512),
    // (1 s, 2 s]
    ("bar", 2 * S, 256),
    ("bar", 2 * S, 256),
    ("bar", 2 * S, 256),
    ("bar", 2 * S, 256),
    // (2 s, 3 s]
    ("baz", 3 * S, 512),
    ("baz", 3 * S, 512),
    ("baz", 3 * S, 512),
];

#[test]
fn tempo_quantile_over_time() {
    let out = run(
        "{ } | quantile_over_time(duration, 0, 0.5, 1) by (span.foo)",
        QUANTILE_OVER_TIME,
        0,
        3 * S,
        S,
    );
    let series = |foo: &str, p: f64| values(&out, &[("span.foo", Value::Str(foo.into())), ("p", Value::Float(p))]);
    let ns = |v: f64| v / 1e9;
    // Reading ⌈q·n⌉ samples (at least 1). {128, 256, 512}: p0 reads 1 = all of bucket 128;
    // p50 reads ⌈1.5⌉ = 2, to the end of bucket 256; p100 ends at 512. Four spans of 256 ns:
    // p0 reads 1 of 4, 2^(7 + 1/4) ns from half the bound; p50 reads 2 of 4, 2^(7 + 1/2).
    // Three of 512: p0 → 2^(8 + 1/3), p50 reads ⌈1.5⌉ = 2 → 2^(8 + 2/3). 0 at empty steps.
    assert_close(&series("bar", 0.0), &[ns(128.0), ns(2f64.powf(7.25)), 0.0]);
    assert_close(&series("bar", 0.5), &[ns(256.0), ns(2f64.powf(7.5)), 0.0]);
    assert_close(&series("bar", 1.0), &[ns(512.0), ns(256.0), 0.0]);
    assert_close(&series("baz", 0.0), &[0.0, 0.0, ns(2f64.powf(8.0 + 1.0 / 3.0))]);
    assert_close(&series("baz", 0.5), &[0.0, 0.0, ns(2f64.powf(8.0 + 2.0 / 3.0))]);
    assert_close(&series("baz", 1.0), &[0.0, 0.0, ns(512.0)]);
}

#[test]
fn interpolation_is_exponential_from_the_previous_bucket() {
    // 50 spans in (512, 1024] ns and 50 in (1024, 2048]: p75 reads 75, half of the upper
    // bucket → 2^10.5 ns ≈ 1448 ns (linear interpolation at rank q·n gave 1536).
    let mut spans = vec![("bar", S, 1000); 50];
    spans.extend(vec![("bar", S, 2000); 50]);
    let out = run("{ } | quantile_over_time(duration, .75)", &spans, 0, S, S);
    let p75 = values(
        &out,
        &[
            ("__name__", Value::Str("quantile_over_time".into())),
            ("p", Value::Float(0.75)),
        ],
    );
    assert_close(&p75, &[2f64.powf(10.5) / 1e9]);
}

#[test]
fn p50_of_three_server_spans_is_the_bound_of_the_second() {
    // integration-tests/tests/it/search.rs: 50, 150, 300 ms are in buckets 2^26, 2^28 and 2^29 ns;
    // p50 reads ⌈1.5⌉ = 2 samples, which end exactly with bucket 2^28: 0.268435456 s.
    let ms = 1_000_000;
    let spans = [("a", S, 50 * ms), ("a", S, 150 * ms), ("a", S, 300 * ms)];
    let out = run("{ } | quantile_over_time(duration, .5)", &spans, 0, S, S);
    let p50 = values(
        &out,
        &[
            ("__name__", Value::Str("quantile_over_time".into())),
            ("p", Value::Float(0.5)),
        ],
    );
    assert_eq!(p50, vec![0.268_435_456]);
}

#[test]
fn spans_under_two_nanoseconds_have_no_bucket() {
    // Tempo's bucketizeDuration refuses durations under 2 ns: such spans are in no histogram
    // or quantile, and a series made only of them does not exist.
    let spans = [("bar", S, 0), ("bar", S, 1), ("bar", S, 2), ("baz", S, 1)];
    let out = run("{ } | histogram_over_time(duration) by (span.foo)", &spans, 0, S, S);
    let bucket = |b: f64| [("span.foo", Value::Str("bar".into())), ("__bucket", Value::Float(b))];
    assert_eq!(values(&out, &bucket(2e-9)), vec![1.0]);
    assert_eq!(out.len(), 1, "{out:#?}");
    let out = run("{ } | quantile_over_time(duration, 0) by (span.foo)", &spans, 0, S, S);
    assert_eq!(out.len(), 1, "{out:#?}");
}

#[test]
fn parts_merged_give_the_quantiles_of_one_evaluator() {
    let q = "{ } | quantile_over_time(duration, 0, 0.5, 0.9, 1) by (span.foo)";
    let whole = run(q, QUANTILE_OVER_TIME, 0, 3 * S, S);
    let mut merged = eval(q, 0, 3 * S, S);
    for part in traces(QUANTILE_OVER_TIME).chunks(2) {
        let mut e = eval(q, 0, 3 * S, S);
        part.iter().for_each(|t| e.observe(t));
        let json = serde_json::to_vec(&e.into_partial()).unwrap();
        merged.merge(serde_json::from_slice::<MetricsPartial>(&json).unwrap());
    }
    // Samples only: which exemplars a part keeps is not the point here.
    let samples = |mut out: Vec<Series>| {
        out.sort_by_key(|s| format!("{:?}", s.labels));
        out.into_iter().map(|s| (s.labels, s.samples)).collect::<Vec<_>>()
    };
    assert_eq!(samples(whole), samples(merged.finish()));
}

/// Issue 14: a `quantile_over_time` exemplar goes to one quantile series of its group, the
/// one whose quantile over all series and steps together is closest to the exemplar's value
/// (Tempo's `HistogramAggregator.Results` and `assignExemplarToQuantile`); before, every
/// quantile series of the group carried every exemplar of the group.
#[test]
fn each_exemplar_goes_to_the_closest_overall_quantile() {
    // (0, 2 s] by 1 s: group a has four 1000 ns spans (bucket 2^10) in the first step,
    // group b one 100 µs span (bucket 2^17) in the second. All together {2^10: 4, 2^17: 1}:
    // p50 reads ⌈2.5⌉ = 3 of 5, 3/4 into bucket 2^10 from half its bound → 2^9.75 ns ≈ 861 ns;
    // p90 reads ⌈4.5⌉ = 5, ending exactly with bucket 2^17 → 131072 ns.
    // a's exemplars (1 µs): 0.14 µs from p50, 130 µs from p90 → p50.
    // b's exemplar (100 µs): 99.1 µs from p50, 31.1 µs from p90 → p90. Within b alone both
    // quantiles are 131072 ns (a tie, which would have given p50).
    // (a's spans start apart: ten exemplars over 2 s take two per 400 ms.)
    let spans = [
        ("a", S / 5, 1000),
        ("a", S / 2, 1000),
        ("a", 7 * S / 10, 1000),
        ("a", S, 1000),
        ("b", 2 * S, 100_000),
    ];
    let q = "{ } | quantile_over_time(duration, .5, .9) by (span.foo)";
    let exemplars = |out: &[Series], foo: &str, p: f64| -> Vec<(u8, f64)> {
        let labels = vec![
            ("span.foo".to_string(), Value::Str(foo.into())),
            ("p".to_string(), Value::Float(p)),
        ];
        let series = out.iter().find(|s| s.labels == labels).unwrap();
        let mut found: Vec<(u8, f64)> = series.exemplars.iter().map(|e| (e.trace_id[0], e.value)).collect();
        found.sort_by_key(|(id, _)| *id);
        found
    };
    let check = |out: &[Series]| {
        assert_eq!(
            exemplars(out, "a", 0.5),
            vec![(1, 1e-6), (2, 1e-6), (3, 1e-6), (4, 1e-6)]
        );
        assert_eq!(exemplars(out, "a", 0.9), vec![]);
        assert_eq!(exemplars(out, "b", 0.5), vec![]);
        assert_eq!(exemplars(out, "b", 0.9), vec![(5, 1e-4)]);
        // The samples are each group's own quantiles, as before.
        assert_close(
            &values(out, &[("span.foo", Value::Str("b".into())), ("p", Value::Float(0.5))]),
            &[0.0, 131_072e-9],
        );
    };
    check(&run(q, &spans, 0, 2 * S, S));
    // Parts merged (one trace each, as separate jobs) assign them the same way: the overall
    // quantiles are computed once everything is merged.
    let mut merged = eval(q, 0, 2 * S, S);
    for t in traces(&spans) {
        let mut e = eval(q, 0, 2 * S, S);
        e.observe(&t);
        let json = serde_json::to_vec(&e.into_partial()).unwrap();
        merged.merge(serde_json::from_slice::<MetricsPartial>(&json).unwrap());
    }
    check(&merged.finish());
}
