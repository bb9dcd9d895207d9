//! Every accepted corpus query plans and runs on a small trace without panicking, and the
//! evaluator agrees with hand-written answers on a fixed trace.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;

use legato_model::span::{AttrValue, EventData, SpanData, SpanOrigin, TraceData};
use legato_traceql::eval::Plan;
use legato_traceql::parse;

/// frontend GET /cart (server, 120 ms) → cart GetCart (client, 40 ms, error) → redis GET (client, 5 ms)
///                                     → cart HGET (internal, 2 ms, http.status_code=500)
fn trace() -> TraceData {
    let origin = |svc: &str| {
        Arc::new(SpanOrigin {
            service_name: svc.into(),
            resource: vec![("service.name".into(), AttrValue::Str(svc.into()))],
            scope_name: "lib".into(),
            ..Default::default()
        })
    };
    let span = |id: u8, parent: Option<u8>, name: &str, kind: i32, start: u64, dur_ms: u64, svc: &str| SpanData {
        span_id: [id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind,
        start_unix_nano: start,
        end_unix_nano: start + dur_ms * 1_000_000,
        origin: origin(svc),
        ..Default::default()
    };
    let mut spans = vec![
        span(1, None, "GET /cart", 2, 1_000, 120, "frontend"),
        span(2, Some(1), "GetCart", 3, 2_000, 40, "cart"),
        span(3, Some(2), "GET", 3, 3_000, 5, "redis"),
        span(4, Some(1), "HGET", 1, 4_000, 2, "cart"),
    ];
    spans[1].status_code = 2;
    spans[1].events.push(EventData {
        name: "exception".into(),
        time_unix_nano: 2_500,
        attrs: vec![],
    });
    spans[3].attrs.push(("http.status_code".into(), AttrValue::Int(500)));
    spans[0].attrs.push((
        "tags".into(),
        AttrValue::Array(vec![AttrValue::Str("a".into()), AttrValue::Str("b".into())]),
    ));
    let mut t = TraceData {
        trace_id: [9; 16],
        spans,
    };
    t.link_tree();
    t
}

fn matched(q: &str) -> Vec<String> {
    let plan = Plan::new(parse(q).unwrap_or_else(|e| panic!("{q}: {e}"))).unwrap();
    let t = trace();
    let mut names: Vec<String> = plan
        .eval(&t)
        .iter()
        .flat_map(|s| s.spans.iter().map(|&i| t.spans[i].name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn hand_written_answers() {
    let cases: &[(&str, &[&str])] = &[
        ("{ }", &["GET", "GET /cart", "GetCart", "HGET"]),
        ("{ status = error }", &["GetCart"]),
        ("{ duration > 30ms }", &["GET /cart", "GetCart"]),
        (r#"{ resource.service.name = "cart" && kind = client }"#, &["GetCart"]),
        ("{ span.http.status_code >= 500 }", &["HGET"]),
        (r#"{ name = "GET /cart" } > { }"#, &["GetCart", "HGET"]),
        (r#"{ name = "GET /cart" } >> { kind = client }"#, &["GET", "GetCart"]),
        (r#"{ name = "GET" } << { }"#, &["GET /cart", "GetCart"]),
        (r#"{ name = "GET" } < { }"#, &["GetCart"]),
        (r#"{ name = "GetCart" } ~ { }"#, &["HGET"]),
        (
            r#"{ name = "GetCart" } !~ { kind = internal || kind = client }"#,
            &["GET", "GetCart"],
        ),
        (
            r#"{ name = "GET /cart" } &> { status = error }"#,
            &["GET /cart", "GetCart"],
        ),
        (r#"{ name = "GET /cart" } !> { }"#, &["GET", "GET /cart"]),
        (r#"{ event:name = "exception" }"#, &["GetCart"]),
        (r#"{ span.tags = "b" }"#, &["GET /cart"]),
        (r#"{ span.tags != "b" && kind = server }"#, &[]),
        (r#"{ .missing = nil && kind = server }"#, &["GET /cart"]),
        (r#"{ name =~ "G.*" && name !~ ".*Cart" }"#, &["GET", "GET /cart"]),
        (
            r#"{ trace:rootService = "frontend" && duration < 10ms }"#,
            &["GET", "HGET"],
        ),
        ("{ traceDuration > 100ms && kind = internal }", &["HGET"]),
        ("{ duration * 2 > 70ms }", &["GET /cart", "GetCart"]),
        ("{ span:childCount = 2 }", &["GET /cart"]),
        (
            r#"{ resource.service.name = "cart" } | count() = 2"#,
            &["GetCart", "HGET"],
        ),
        (r#"{ resource.service.name = "cart" } | count() > 2"#, &[]),
        ("{ } | max(duration) > 100ms", &["GET", "GET /cart", "GetCart", "HGET"]),
        (r#"{ } | by(resource.service.name) | count() > 1"#, &["GetCart", "HGET"]),
        (
            r#"({ status = error } | count() > 0) && { kind = server }"#,
            &["GET /cart", "GetCart"],
        ),
        (r#"{ status = error } || { name = "nothing" }"#, &["GetCart"]),
        (r#"{ status = error } && { name = "nothing" }"#, &[]),
    ];
    for (q, want) in cases {
        assert_eq!(
            matched(q),
            want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{q}"
        );
    }
}

#[test]
fn every_accepted_corpus_query_plans_and_runs() {
    let corpus = include_str!("../corpus/accepted.txt");
    let t = trace();
    let mut planned = 0;
    for line in corpus
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut query = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        query.metrics = None;
        let plan = Plan::new(query).unwrap_or_else(|e| panic!("{line}: {e}"));
        let _ = plan.eval(&t);
        planned += 1;
    }
    assert!(planned > 300, "{planned}");
}

/// A metrics query evaluated in parts (one ingester's traces here, a block shard's there) and
/// merged through `MetricsPartial`'s JSON, as the query frontend does, gives the answer of
/// one evaluator that saw everything.
#[test]
fn metrics_parts_merge_to_the_whole_answer() {
    use legato_traceql::metrics::{MetricsEval, MetricsPartial};
    // Six traces at different times with the fixture's shape, ids and services varied.
    let traces: Vec<TraceData> = (0..6u8)
        .map(|i| {
            let mut t = trace();
            t.trace_id = [i + 1; 16];
            for s in &mut t.spans {
                s.start_unix_nano += u64::from(i) * 3_000_000_000;
                s.end_unix_nano += u64::from(i) * 3_000_000_000 + u64::from(i) * 7_000_000;
            }
            t
        })
        .collect();
    let queries = [
        "{ } | rate() by (resource.service.name)",
        "{ } | count_over_time()",
        "{ status = error } | count_over_time() by (name)",
        "{ } | sum_over_time(duration) by (kind)",
        "{ } | avg_over_time(duration)",
        "{ } | min_over_time(duration) by (resource.service.name)",
        "{ } | max_over_time(duration)",
        "{ } | quantile_over_time(duration, .5, .9, .99) by (resource.service.name)",
        "{ } | histogram_over_time(duration)",
        "{ } | count_over_time() by (name) | topk(2)",
    ];
    for q in queries {
        let query = parse(q).unwrap();
        let stage = query.metrics.clone().unwrap();
        let plan = Arc::new(Plan::new(query).unwrap());
        let new = || MetricsEval::new(plan.clone(), stage.clone(), 0, 20_000_000_000, 2_000_000_000, 100);
        let mut whole = new();
        traces.iter().for_each(|t| whole.observe(t));
        let mut merged = new();
        for part in traces.chunks(4) {
            let mut e = new();
            part.iter().for_each(|t| e.observe(t));
            let json = serde_json::to_vec(&e.into_partial()).unwrap();
            merged.merge(serde_json::from_slice::<MetricsPartial>(&json).unwrap());
        }
        let (whole, merged) = (whole.finish(), merged.finish());
        assert!(!whole.is_empty(), "{q}");
        // Sums may differ in the last bit: floating-point addition in another order.
        assert_eq!(merged.len(), whole.len(), "{q}");
        for (m, w) in merged.iter().zip(&whole) {
            assert_eq!((&m.labels, &m.exemplars), (&w.labels, &w.exemplars), "{q}");
            assert_eq!(m.samples.len(), w.samples.len(), "{q}: {m:?} vs {w:?}");
            for ((mt, mv), (wt, wv)) in m.samples.iter().zip(&w.samples) {
                assert!(
                    mt == wt && (mv - wv).abs() <= 1e-9 * wv.abs().max(1.0),
                    "{q}: {m:?} vs {w:?}"
                );
            }
        }
    }
}
