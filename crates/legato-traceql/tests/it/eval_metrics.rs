//! `compare()` and arithmetic between metrics queries against hand-computed series, and the
//! frontend path: parts evaluated apart, sent as `MetricsPartial` JSON and merged, give the
//! answer of one evaluator that saw everything.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;

use legato_model::span::{AttrValue, SpanOrigin, TraceData};
use legato_traceql::eval::{metrics_fields, reads_every_attribute};
use legato_traceql::metrics::{MetricsEval, MetricsPartial, Series};
use legato_traceql::parse;
use legato_traceql::value::Value;

use crate::support;

use support::{S, samples};

/// Spans: (id, parent, name, service, kind, error, http.method, start in seconds).
type SpanSpec<'a> = (u8, Option<u8>, &'a str, &'a str, i32, bool, Option<&'a str>, u64);

fn trace(id: u8, specs: &[SpanSpec<'_>]) -> TraceData {
    let spans = specs
        .iter()
        .map(|&(sid, parent, name, svc, kind, error, method, start)| {
            let mut span = support::span(sid, parent, name, svc, start * S, start * S + 5_000_000);
            span.kind = kind;
            span.status_code = if error { 2 } else { 0 };
            span.attrs = method
                .map(|m| vec![("http.method".to_string(), AttrValue::Str(m.into()))])
                .unwrap_or_default();
            span.origin = Arc::new(SpanOrigin {
                scope_name: "lib".into(),
                ..(*span.origin).clone()
            });
            span
        })
        .collect();
    support::trace(id, spans)
}

/// Three traces over (0, 20 s] in two 10 s steps, reported at 10 s and 20 s; the third
/// starts after the range.
///
/// step 0: GET /cart (frontend, server, GET) → GetCart (cart, client, error, GET)
/// step 1: GET /cart (frontend, server, GET) → GetCart (cart, client, error, POST)
///                                           → HGET (cart, internal)
fn traces() -> Vec<TraceData> {
    vec![
        trace(
            1,
            &[
                (1, None, "GET /cart", "frontend", 2, false, Some("GET"), 1),
                (2, Some(1), "GetCart", "cart", 3, true, Some("GET"), 2),
            ],
        ),
        trace(
            2,
            &[
                (3, None, "GET /cart", "frontend", 2, false, Some("GET"), 11),
                (4, Some(3), "GetCart", "cart", 3, true, Some("POST"), 12),
                (5, Some(3), "HGET", "cart", 1, false, None, 13),
            ],
        ),
        trace(3, &[(6, None, "late", "frontend", 2, true, Some("GET"), 25)]),
    ]
}

fn eval(q: &str) -> MetricsEval {
    support::evaluator(q, 0, 20 * S, 10 * S)
}

fn run(q: &str) -> Vec<Series> {
    let mut e = eval(q);
    traces().iter().for_each(|t| e.observe(t));
    e.finish()
}

fn str_labels(labels: &[(&str, &str)]) -> Vec<(String, Value)> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
        .collect()
}

fn cmp_series(meta: &str, attr: &str, value: Value) -> Vec<(String, Value)> {
    vec![("__meta_type".into(), Value::Str(meta.into())), (attr.into(), value)]
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

#[test]
fn compare_counts_every_attribute_per_group_and_step() {
    let out = run("{ } | compare({ status = error }, 2)");
    let at = |meta: &str, attr: &str, v: Value| samples(&out, &cmp_series(meta, attr, v));
    // Baseline: GET /cart at 1 s and 11 s, HGET at 13 s; zeros are reported.
    assert_eq!(
        at("baseline", "name", s("GET /cart")),
        vec![(10_000, 1.0), (20_000, 1.0)]
    );
    assert_eq!(at("baseline", "name", s("HGET")), vec![(10_000, 0.0), (20_000, 1.0)]);
    assert_eq!(
        at("baseline_total", "name", s("nil")),
        vec![(10_000, 1.0), (20_000, 2.0)]
    );
    assert_eq!(
        at("baseline", "resource.service.name", s("cart")),
        vec![(10_000, 0.0), (20_000, 1.0)]
    );
    assert_eq!(
        at("baseline", "kind", Value::Kind(1)),
        vec![(10_000, 0.0), (20_000, 1.0)]
    );
    assert_eq!(
        at("baseline", "rootServiceName", s("frontend")),
        vec![(10_000, 1.0), (20_000, 2.0)]
    );
    // HGET has no http.method: the total counts only the spans that have it.
    assert_eq!(
        at("baseline_total", "span.http.method", s("nil")),
        vec![(10_000, 1.0), (20_000, 1.0)]
    );
    // Selection: the two GetCart spans.
    assert_eq!(
        at("selection", "status", Value::Status(2)),
        vec![(10_000, 1.0), (20_000, 1.0)]
    );
    assert_eq!(
        at("selection", "span.http.method", s("GET")),
        vec![(10_000, 1.0), (20_000, 0.0)]
    );
    assert_eq!(
        at("selection", "span.http.method", s("POST")),
        vec![(10_000, 0.0), (20_000, 1.0)]
    );
    assert_eq!(
        at("selection", "span:childCount", Value::Int(0)),
        vec![(10_000, 1.0), (20_000, 1.0)]
    );
    assert_eq!(
        at("selection", "rootName", s("GET /cart")),
        vec![(10_000, 1.0), (20_000, 1.0)]
    );
    assert_eq!(
        at("selection", "instrumentation:name", s("lib")),
        vec![(10_000, 1.0), (20_000, 1.0)]
    );

    // The baseline's span:childCount has three values (1, 2, 0), one each: more than
    // topN = 2, so the two first in value order are kept. Tempo's
    // `{__meta_error="__too_many_values__"}` series has no samples, so it is not in the answer.
    let child_counts: Vec<&Value> = out
        .iter()
        .filter(|x| x.labels[0].1 == s("baseline") && x.labels[1].0 == "span:childCount")
        .map(|x| &x.labels[1].1)
        .collect();
    assert_eq!(child_counts, vec![&Value::Int(0), &Value::Int(1)]);
    assert!(out.iter().all(|x| x.labels[0].0 != "__meta_error"));
    assert!(out.iter().all(|x| !x.samples.is_empty()));

    // Which attributes are compared: trace-level, resource, instrumentation, span
    // intrinsics (not duration, ids or nested-set numbers) and span attributes.
    let mut attrs: Vec<&str> = out
        .iter()
        .filter(|x| x.labels[0].1 == s("baseline_total"))
        .map(|x| x.labels[1].0.as_str())
        .collect();
    attrs.sort_unstable();
    assert_eq!(
        attrs,
        vec![
            "instrumentation:name",
            "instrumentation:version",
            "kind",
            "name",
            "resource.service.name",
            "rootName",
            "rootServiceName",
            "span.http.method",
            "span:childCount",
            "status",
            "statusMessage",
        ]
    );
}

#[test]
fn compare_selection_window_is_open_at_start_and_closed_at_end() {
    // Window (2 s, 12 s]: GetCart at 2 s is outside (baseline), GetCart at 12 s inside.
    let out = run(&format!(
        "{{ }} | compare({{ status = error }}, 10, {}, {})",
        2 * S,
        12 * S
    ));
    let at = |meta: &str| samples(&out, &cmp_series(meta, "name", s("GetCart")));
    assert_eq!(at("baseline"), vec![(10_000, 1.0), (20_000, 0.0)]);
    assert_eq!(at("selection"), vec![(10_000, 0.0), (20_000, 1.0)]);
    // The outer filter still decides which spans count at all.
    let out = run(r#"{ resource.service.name = "cart" } | compare({ status = error })"#);
    assert_eq!(
        samples(&out, &cmp_series("baseline_total", "name", s("nil"))),
        vec![(10_000, 0.0), (20_000, 1.0)]
    );
    assert!(out.iter().all(|x| x.labels[0].0 != "__meta_error"));
}

#[test]
fn arithmetic_matches_series_on_labels() {
    // Errors per service over spans per service: only cart has errors, so only cart pairs.
    let out = run(
        "({ status = error } | count_over_time() by (resource.service.name)) / ({ } | count_over_time() by (resource.service.name))",
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].labels, str_labels(&[("resource.service.name", "cart")]));
    assert_eq!(out[0].samples, vec![(10_000, 1.0), (20_000, 0.5)]);

    // An ungrouped side applies to every series of the other.
    let out = run("({ status = error } | count_over_time()) / ({ } | count_over_time() by (resource.service.name))");
    assert_eq!(out.len(), 2);
    assert_eq!(
        samples(&out, &str_labels(&[("resource.service.name", "frontend")])),
        vec![(10_000, 1.0), (20_000, 1.0)]
    );
    assert_eq!(
        samples(&out, &str_labels(&[("resource.service.name", "cart")])),
        vec![(10_000, 1.0), (20_000, 0.5)]
    );

    // Both ungrouped: the names combine.
    let out = run("({ } | count_over_time()) + ({ } | rate())");
    assert_eq!(out[0].labels, str_labels(&[("__name__", "(count_over_time + rate)")]));
    assert_eq!(out[0].samples, vec![(10_000, 2.2), (20_000, 3.3)]);
}

#[test]
fn arithmetic_counts_steps_without_spans_as_zero_and_drops_division_by_zero() {
    // HGET only in step 1: 0 / 2 at step 0 is a point (Tempo's count series are 0 there).
    let out = run(r#"({ name = "HGET" } | count_over_time()) / ({ } | count_over_time())"#);
    assert_eq!(out[0].samples, vec![(10_000, 0.0), (20_000, 1.0 / 3.0)]);
    // 2 / 0 at step 0 is no point.
    let out = run(r#"({ } | count_over_time()) / ({ name = "HGET" } | count_over_time())"#);
    assert_eq!(out[0].samples, vec![(20_000, 3.0)]);
    // Alone too, a count is 0 at a step without spans, and stays a point through arithmetic.
    let out = run(r#"({ name = "HGET" } | count_over_time()) * 100"#);
    assert_eq!(out[0].samples, vec![(10_000, 0.0), (20_000, 100.0)]);
}

#[test]
fn arithmetic_with_numbers_and_second_stages() {
    let out = run("({ } | count_over_time()) * 100");
    assert_eq!(out[0].labels, str_labels(&[("__name__", "count_over_time")]));
    assert_eq!(out[0].samples, vec![(10_000, 200.0), (20_000, 300.0)]);
    // 1 - errors / all = [1 - 1/2, 1 - 1/3].
    let out = run("1 - ({ status = error } | count_over_time()) / ({ } | count_over_time())");
    assert_eq!(out[0].samples, vec![(10_000, 0.5), (20_000, 1.0 - 1.0 / 3.0)]);
    // A comparison after the expression applies to its result.
    let out = run("1 - ({ status = error } | count_over_time()) / ({ } | count_over_time()) > 0.6");
    assert_eq!(out[0].samples, vec![(20_000, 1.0 - 1.0 / 3.0)]);
    // topk inside a side's parentheses applies to that side: the busiest service per step
    // (cart wins step 1; step 0 is a tie, kept in label order: cart).
    let out = run("({ } | count_over_time() by (resource.service.name) | topk(1)) * 10");
    assert_eq!(
        samples(&out, &str_labels(&[("resource.service.name", "cart")])),
        vec![(10_000, 10.0), (20_000, 20.0)]
    );
    assert_eq!(out.len(), 1);
}

/// `q` over all traces in one evaluator, and over two parts merged through JSON.
fn whole_and_merged(q: &str) -> (Vec<Series>, Vec<Series>) {
    let traces = traces();
    let mut whole = eval(q);
    traces.iter().for_each(|t| whole.observe(t));
    let mut merged = eval(q);
    for part in [&traces[..1], &traces[1..]] {
        let mut e = eval(q);
        part.iter().for_each(|t| e.observe(t));
        let json = serde_json::to_vec(&e.into_partial()).unwrap();
        merged.merge(serde_json::from_slice::<MetricsPartial>(&json).unwrap());
    }
    (whole.finish(), merged.finish())
}

#[test]
fn compare_and_arithmetic_parts_merge_to_the_whole_answer() {
    for q in [
        "{ } | compare({ status = error }, 2)",
        "{ } | compare({ status = error })",
        r#"{ kind != internal } | compare({ span.http.method = "GET" }, 10, 1000000000, 12000000000)"#,
        "({ status = error } | count_over_time() by (resource.service.name)) / ({ } | count_over_time() by (resource.service.name))",
        "({ status = error } | rate()) / ({ } | rate() by (resource.service.name)) * 100 > 60",
        r#"(({ name = "HGET" } | count_over_time()) + ({ } | count_over_time() | topk(1))) * 2"#,
    ] {
        let (whole, merged) = whole_and_merged(q);
        assert!(!whole.is_empty(), "{q}");
        assert_eq!(merged, whole, "{q}");
    }
}

#[test]
fn a_part_keeps_only_its_top_values() {
    // As a Tempo job does: with topN = 1 a part sends one value per attribute and group (the
    // baseline has two span names), and the totals of all.
    let mut e = eval("{ } | compare({ status = error }, 1)");
    traces().iter().for_each(|t| e.observe(t));
    let part = e.into_partial().compare.unwrap();
    let names = part.baseline.iter().find(|a| a.name == "name").unwrap();
    assert_eq!(names.values.len(), 1);
    assert_eq!(names.values[0].0, s("GET /cart"));
    assert_eq!(names.total, vec![(0, 1.0), (1, 2.0)]);
}

#[test]
fn column_projection_sees_every_field_of_the_new_query_kinds() {
    let stage = |q: &str| parse(q).unwrap().metrics.unwrap();
    let binary = stage(
        "({ span.a = 1 } | sum_over_time(span.bytes) by (resource.r)) / ({ span.b = 1 } | avg(span.c) > 1 | rate())",
    );
    let fields: Vec<String> = metrics_fields(&binary).iter().map(|f| format!("{f:?}")).collect();
    for name in ["\"a\"", "\"bytes\"", "\"r\"", "\"b\"", "\"c\""] {
        assert!(
            fields.iter().any(|f| f.contains(name)),
            "{name} missing from {fields:?}"
        );
    }
    assert!(!reads_every_attribute(&binary));
    let compare = stage("{ } | compare({ span.x = 1 })");
    assert!(reads_every_attribute(&compare));
    assert_eq!(metrics_fields(&compare).len(), 1);
}

#[test]
fn nil_checks_and_child_count_filter_metrics_queries() {
    // HGET is the only span without http.method.
    assert_eq!(
        run("{ span.http.method = nil } | count_over_time()")[0].samples,
        vec![(10_000, 0.0), (20_000, 1.0)]
    );
    assert_eq!(
        run("{ span.http.method != nil } | count_over_time()")[0].samples,
        vec![(10_000, 2.0), (20_000, 2.0)]
    );
    // Leaves: GetCart twice, HGET once; the second GET /cart has two children.
    let out = run("{ span:childCount = 0 } | count_over_time() by (name)");
    assert_eq!(
        samples(&out, &str_labels(&[("name", "GetCart")])),
        vec![(10_000, 1.0), (20_000, 1.0)]
    );
    assert_eq!(
        samples(&out, &str_labels(&[("name", "HGET")])),
        vec![(10_000, 0.0), (20_000, 1.0)]
    );
    assert_eq!(
        run("{ span:childCount > 1 } | count_over_time()")[0].samples,
        vec![(10_000, 0.0), (20_000, 1.0)]
    );
}

#[test]
fn compare_stops_taking_new_attributes_at_the_series_limit_and_says_so() {
    let q = "{ } | compare({ status = error })";
    // Two series per attribute and group: a limit of 6 keeps three.
    let mut e = eval(q).with_max_series(6);
    traces().iter().for_each(|t| e.observe(t));
    assert!(e.truncated());
    let part = e.into_partial();
    assert!(part.truncated);
    let kept = part.compare.as_ref().map(|c| c.baseline.len() + c.selection.len());
    assert_eq!(kept, Some(3));
    let mut frontend = eval(q);
    frontend.merge(part);
    assert!(frontend.truncated());
}

/// Issue 14: `compare()` exemplars as Tempo places them (`MetricsCompare.observeExemplar` and
/// `result`, the frontend's `BaselineAggregator` and `attachExemplars`): one span per trace
/// (here the one `exemplar_rank` ranks first), labelled with every attribute of the span, on
/// the total of each attribute it has in its group, valued at that total in its step; one set
/// over the answer takes at most two copies per 1/50 of the range and `exemplars` in all.
#[test]
fn compare_exemplars_are_on_the_totals_valued_at_their_step() {
    use legato_traceql::metrics::exemplar_rank;
    // The pick: GetCart (span 2) in trace 1, GetCart (span 4) in trace 2, as their ids rank
    // first; both in the selection of `status = error`.
    assert!(exemplar_rank([2; 8]) < exemplar_rank([1; 8]));
    assert!(exemplar_rank([4; 8]) < exemplar_rank([3; 8]).min(exemplar_rank([5; 8])));
    let run_with = |q: &str, exemplars: usize| {
        let mut e = support::evaluator_with_exemplars(q, 0, 20 * S, 10 * S, exemplars);
        traces().iter().for_each(|t| e.observe(t));
        e.finish()
    };
    // (attribute of the total, trace, span, timestamp ms, value) of every copy.
    let copies = |out: &[Series], meta: &str| -> Vec<(String, u8, u8, i64, f64)> {
        let mut all: Vec<(String, u8, u8, i64, f64)> = out
            .iter()
            .filter(|x| x.labels[0].1 == s(meta))
            .flat_map(|x| {
                x.exemplars.iter().map(|e| {
                    (
                        x.labels[1].0.clone(),
                        e.trace_id[0],
                        e.span_id[0],
                        e.timestamp_ms,
                        e.value,
                    )
                })
            })
            .collect();
        all.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
        all
    };
    let q = "{ } | compare({ status = error }, 2)";
    let out = run_with(q, 100);
    // 100 exemplars over (0, 20 s]: buckets of 400 ms, two copies each. Each span's copies
    // share its start, so two of its totals carry it, the first in label order. The value is
    // the selection's total in the step: one span with the attribute in each.
    let at = |attr: &str, trace: u8, span: u8, ms: i64| (attr.to_string(), trace, span, ms, 1.0);
    assert_eq!(
        copies(&out, "selection_total"),
        vec![
            at("instrumentation:name", 1, 2, 2_000),
            at("instrumentation:version", 1, 2, 2_000),
            at("instrumentation:name", 2, 4, 12_000),
            at("instrumentation:version", 2, 4, 12_000),
        ]
    );
    assert_eq!(copies(&out, "baseline_total"), vec![]);
    // Only totals carry exemplars.
    for series in &out {
        let meta = &series.labels[0].1;
        let on_total = *meta == s("baseline_total") || *meta == s("selection_total");
        assert!(series.exemplars.is_empty() || on_total, "{:?}", series.labels);
    }
    // Every attribute of the span, as Tempo's select-all fetch returns them: trace:id, the
    // attributes compare() counts, duration and traceDuration; not span:id.
    let first = &out.iter().find(|x| !x.exemplars.is_empty()).unwrap().exemplars[0];
    let labels = first.labels();
    let trace_id = format!("1{}", "01".repeat(15));
    assert_eq!(
        labels,
        vec![
            ("trace:id".to_string(), s(&trace_id)),
            ("rootServiceName".to_string(), s("frontend")),
            ("rootName".to_string(), s("GET /cart")),
            ("resource.service.name".to_string(), s("cart")),
            ("instrumentation:name".to_string(), s("lib")),
            ("instrumentation:version".to_string(), s("")),
            ("name".to_string(), s("GetCart")),
            ("status".to_string(), Value::Status(2)),
            ("statusMessage".to_string(), s("")),
            ("kind".to_string(), Value::Kind(3)),
            ("span:childCount".to_string(), Value::Int(0)),
            ("span.http.method".to_string(), s("GET")),
            ("duration".to_string(), Value::Duration(5_000_000)),
            ("traceDuration".to_string(), Value::Duration(1_005_000_000)),
        ]
    );
    // In the baseline, valued at the baseline's total in the step: GET /cart and GetCart
    // (trace 1's exemplar, GET, not the selected POST) both have the instrumentation name.
    let out = run_with(r#"{ } | compare({ span.http.method = "POST" }, 2)"#, 100);
    assert_eq!(
        copies(&out, "baseline_total"),
        vec![
            ("instrumentation:name".to_string(), 1, 2, 2_000, 2.0),
            ("instrumentation:version".to_string(), 1, 2, 2_000, 2.0),
        ]
    );
    assert_eq!(copies(&out, "selection_total").len(), 2);
    // The limit counts copies: 5 is two buckets of 10 s, two in each; 1 is one; 0 none.
    let count = |n: usize| run_with(q, n).iter().map(|x| x.exemplars.len()).sum::<usize>();
    assert_eq!(count(5), 4);
    assert_eq!(count(1), 1);
    assert_eq!(count(0), 0);
}
