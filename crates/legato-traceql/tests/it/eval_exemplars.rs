//! Exemplars of metrics range queries as current Tempo answers them (3.x main at `ad33aa8`):
//! which value each function gives them, which series carry them, how many are kept and
//! where in the range, against hand-computed expectations.

use legato_model::span::{AttrValue, TraceData};
use legato_traceql::metrics::{MetricsPartial, Series};
use legato_traceql::value::Value;

use crate::support::{self, MS, S};

/// A trace `id` of one span per (start ms, duration ns), span ids `id * 10 + n` (wrapping), each with
/// `span.v` = its duration in ns as an int.
fn trace(id: u8, spans: &[(u64, u64)]) -> TraceData {
    let spans = spans
        .iter()
        .enumerate()
        .map(|(n, &(start_ms, dur))| {
            let mut s = support::span(
                id.wrapping_mul(10).wrapping_add(n as u8),
                None,
                "op",
                "svc",
                start_ms * MS,
                start_ms * MS + dur,
            );
            s.attrs = vec![("v".into(), AttrValue::Int(dur as i64))];
            s
        })
        .collect();
    support::trace(id, spans)
}

fn run(q: &str, traces: &[TraceData], exemplars: usize) -> Vec<Series> {
    let mut e = support::evaluator_with_exemplars(q, 0, 20 * S, 10 * S, exemplars);
    traces.iter().for_each(|t| e.observe(t));
    e.finish()
}

/// (trace, timestamp ms, value) of a series' exemplars.
fn exemplars(out: &[Series], labels: &[(&str, Value)]) -> Vec<(u8, i64, f64)> {
    let labels: Vec<(String, Value)> = labels.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let series = out
        .iter()
        .find(|s| s.labels == labels)
        .unwrap_or_else(|| panic!("{labels:?} in {out:?}"));
    series
        .exemplars
        .iter()
        .map(|e| (e.trace_id[0], e.timestamp_ms, e.value))
        .collect()
}

fn name(f: &str) -> Vec<(&'static str, Value)> {
    vec![("__name__", Value::Str(f.into()))]
}

/// Three one-span traces in the first 10 s step, one in the second.
fn four() -> Vec<TraceData> {
    vec![
        trace(1, &[(1_000, 1_000)]),
        trace(2, &[(3_000, 3_000)]),
        trace(3, &[(5_000, 1_000)]),
        trace(4, &[(15_000, 5_000)]),
    ]
}

/// `rate()` and `count_over_time()` exemplars are valued at their step's sample (Tempo's job
/// sends NaN, `exemplarNaN` in `ast_metrics.go`, and its frontend's `attachExemplars` fills
/// it in); before, Legato gave them 1.
#[test]
fn counting_exemplars_take_their_steps_sample() {
    let out = run("{ } | rate()", &four(), 100);
    // 3 spans in 10 s, then 1.
    let want = vec![(1, 1_000, 0.3), (2, 3_000, 0.3), (3, 5_000, 0.3), (4, 15_000, 0.1)];
    assert_eq!(exemplars(&out, &name("rate")), want);
    let out = run("{ } | count_over_time()", &four(), 100);
    let want = vec![(1, 1_000, 3.0), (2, 3_000, 3.0), (3, 5_000, 3.0), (4, 15_000, 1.0)];
    assert_eq!(exemplars(&out, &name("count_over_time")), want);
    // After arithmetic with a number, the value of the sample it gave (Tempo fills NaN after
    // the second stages).
    let out = run("({ } | count_over_time()) * 10", &four(), 100);
    assert_eq!(exemplars(&out, &name("count_over_time"))[3], (4, 15_000, 10.0));
}

/// `sum/avg/min/max_over_time` exemplars carry the span's own value (`exemplarFnFor`).
#[test]
fn measured_exemplars_carry_the_spans_value() {
    for f in ["sum_over_time", "avg_over_time", "min_over_time", "max_over_time"] {
        let out = run(&format!("{{ }} | {f}(span.v)"), &four(), 100);
        let want = vec![
            (1, 1_000, 1000.0),
            (2, 3_000, 3000.0),
            (3, 5_000, 1000.0),
            (4, 15_000, 5000.0),
        ];
        assert_eq!(exemplars(&out, &name(f)), want, "{f}");
    }
    let out = run("{ } | max_over_time(duration)", &four(), 100);
    assert_eq!(exemplars(&out, &name("max_over_time"))[3], (4, 15_000, 5e-6));
}

/// `histogram_over_time` exemplars are on the `__bucket` series of their span's bucket,
/// valued at that bucket's count in their step (Tempo groups the exemplar like the span and
/// fills its NaN in); before, histograms had none.
#[test]
fn histogram_exemplars_are_on_their_buckets_series() {
    let out = run("{ } | histogram_over_time(duration)", &four(), 100);
    let bucket = |ns: f64| {
        let mut labels = name("histogram_over_time");
        labels.push(("__bucket", Value::Float(ns / 1e9)));
        labels
    };
    // 1000 ns spans (traces 1 and 3) → bucket 1024; 3000 → 4096; 5000 → 8192.
    assert_eq!(exemplars(&out, &bucket(1024.0)), vec![(1, 1_000, 2.0), (3, 5_000, 2.0)]);
    assert_eq!(exemplars(&out, &bucket(4096.0)), vec![(2, 3_000, 1.0)]);
    assert_eq!(exemplars(&out, &bucket(8192.0)), vec![(4, 15_000, 1.0)]);
}

/// A value filter keeps an exemplar only if its own value passes (Tempo's `MetricsFilter`),
/// so those of counting functions, valued only at the end, all go; and an exemplar at a step
/// left without a sample is not answered (`SeriesSet.ToProto`).
#[test]
fn filters_drop_exemplars_as_tempo_does() {
    let out = run("{ } | count_over_time() > 0", &four(), 100);
    assert_eq!(exemplars(&out, &name("count_over_time")), vec![]);
    // The first step sums to 5000, the second to 5000: both pass, and so do the spans
    // valued over 2000.
    let out = run("{ } | sum_over_time(span.v) > 2000", &four(), 100);
    assert_eq!(
        exemplars(&out, &name("sum_over_time")),
        vec![(2, 3_000, 3000.0), (4, 15_000, 5000.0)]
    );
    // topk keeps one series per step: in the first, `other` (two spans) over `op` (one),
    // whose exemplar there goes; in the second, a tie at 0, `op` (first in label order).
    let mut traces = vec![
        trace(1, &[(1_000, 10)]),
        trace(2, &[(2_000, 10)]),
        trace(3, &[(3_000, 10)]),
    ];
    traces[1..].iter_mut().for_each(|t| t.spans[0].name = "other".into());
    let out = run("{ } | count_over_time() by (name) | topk(1)", &traces, 100);
    let by_name = |n: &str| vec![("name", Value::Str(n.into()))];
    assert_eq!(
        exemplars(&out, &by_name("other")),
        vec![(2, 2_000, 2.0), (3, 3_000, 2.0)]
    );
    assert_eq!(exemplars(&out, &by_name("op")), vec![]);
}

/// One exemplar per trace, whatever the number of its spans (Tempo's job picks one span of
/// each trace); before, Legato kept one per trace and series.
#[test]
fn one_exemplar_per_trace() {
    let t = trace(1, &[(1_000, 10), (2_000, 10), (3_000, 10)]);
    let mut split = t.clone();
    split.spans[1].name = "b".into();
    split.spans[2].name = "c".into();
    let out = run("{ } | count_over_time() by (name)", &[split], 100);
    let total: usize = out.iter().map(|s| s.exemplars.len()).sum();
    assert_eq!(total, 1, "{out:?}");
}

/// Tempo spreads exemplars over the range: the limit `n` cuts it into `n / 2` buckets of two
/// each, over all series together (`newExemplarBucketSet`, `SimpleAggregator`); before, Legato
/// kept the first ones it met.
#[test]
fn exemplars_are_spread_over_the_range() {
    // 40 one-span traces, all in the first second, then one at 15 s.
    let mut traces: Vec<TraceData> = (1..=40).map(|i| trace(i, &[(u64::from(i) * 10, 10)])).collect();
    traces.push(trace(41, &[(15_000, 10)]));
    // 10 exemplars over 20 s: five 4 s buckets. The first takes two of the early ones, the
    // fourth the late one.
    let out = run("{ } | count_over_time()", &traces, 10);
    assert_eq!(
        exemplars(&out, &name("count_over_time")),
        vec![(1, 10, 40.0), (2, 20, 40.0), (41, 15_000, 1.0)]
    );
    // Over all series together: three series with a span each in one bucket keep two.
    let mut grouped: Vec<TraceData> = (1..=3).map(|i| trace(i, &[(u64::from(i) * 10, 10)])).collect();
    for (t, n) in grouped.iter_mut().zip(["a", "b", "c"]) {
        t.spans[0].name = n.into();
    }
    let out = run("{ } | count_over_time() by (name)", &grouped, 10);
    let total: usize = out.iter().map(|s| s.exemplars.len()).sum();
    assert_eq!(total, 2);
    // 100 one-span traces evenly over the range, two per 400 ms: the 100 exemplars asked
    // for keep them all; 4 keep two per 10 s, the first two of each half.
    let many: Vec<TraceData> = (1..=100).map(|i| trace(i, &[(u64::from(i) * 200 - 100, 10)])).collect();
    let out = run("{ } | count_over_time()", &many, 100);
    assert_eq!(exemplars(&out, &name("count_over_time")).len(), 100);
    let out = run("{ } | count_over_time()", &many, 4);
    let kept: Vec<u8> = exemplars(&out, &name("count_over_time")).iter().map(|e| e.0).collect();
    assert_eq!(kept, vec![1, 2, 51, 52]);
}

/// Parts sent as JSON keep exemplars without a value yet (NaN, which JSON has no number for)
/// and the frontend's merge values them as one evaluator does.
#[test]
fn parts_carry_unvalued_exemplars() {
    let q = "{ } | rate()";
    let mut merged = support::evaluator_with_exemplars(q, 0, 20 * S, 10 * S, 100);
    for t in four() {
        let mut e = support::evaluator_with_exemplars(q, 0, 20 * S, 10 * S, 100);
        e.observe(&t);
        let json = serde_json::to_vec(&e.into_partial()).unwrap();
        merged.merge(serde_json::from_slice::<MetricsPartial>(&json).unwrap());
    }
    assert_eq!(merged.finish(), run(q, &four(), 100));
}
