//! Tail-sampling policies decide as the Collector's documentation says (issue 12), and the
//! Collector's own example configuration is accepted as pasted.
#![allow(clippy::unwrap_used)]

use legato_ingester::tail::{Decision, Policy, TailSampler, TailSamplingConfig, TraceView, config::PolicyConfig};
use legato_proto::common::{AnyValue, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// One span of a test trace.
struct S {
    id: u8,
    start_ms: u64,
    dur_ms: u64,
    status: i32,
    attrs: Vec<KeyValue>,
    trace_state: &'static str,
    flags: u32,
}

fn s(id: u8, start_ms: u64, dur_ms: u64) -> S {
    S {
        id,
        start_ms,
        dur_ms,
        status: 0,
        attrs: Vec::new(),
        trace_state: "",
        flags: 0,
    }
}

/// A trace of `spans` in service `svc` (resource attribute `team` = `team`).
fn trace(trace_id: u8, team: &str, spans: Vec<S>) -> (legato_model::span::TraceData, Vec<ResourceSpans>) {
    let id = [trace_id; 16];
    let batches = vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", Value::StringValue("svc".into())),
                kv("team", Value::StringValue(team.into())),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: spans
                .into_iter()
                .map(|x| Span {
                    trace_id: id.to_vec(),
                    span_id: vec![x.id; 8],
                    name: format!("op-{}", x.id),
                    start_time_unix_nano: 1_000_000_000_000 + x.start_ms * 1_000_000,
                    end_time_unix_nano: 1_000_000_000_000 + (x.start_ms + x.dur_ms) * 1_000_000,
                    status: Some(Status {
                        code: x.status,
                        ..Default::default()
                    }),
                    attributes: x.attrs,
                    trace_state: x.trace_state.into(),
                    flags: x.flags,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }];
    (legato_proto::span_view::trace_data(id, &batches), batches)
}

fn policy(yaml: &str) -> Policy {
    let cfg: PolicyConfig = serde_yaml::from_str(yaml).unwrap();
    Policy::compile(&cfg, "policies[0]", 0).unwrap()
}

fn eval_at(p: &Policy, t: &(legato_model::span::TraceData, Vec<ResourceSpans>), now_ns: u64) -> Decision {
    p.evaluate(&TraceView {
        data: &t.0,
        batches: &t.1,
        bytes: 1000,
        now_ns,
    })
}

fn view(t: &(legato_model::span::TraceData, Vec<ResourceSpans>)) -> TraceView<'_> {
    TraceView {
        data: &t.0,
        batches: &t.1,
        bytes: 10,
        now_ns: 0,
    }
}

fn eval(p: &Policy, t: &(legato_model::span::TraceData, Vec<ResourceSpans>)) -> Decision {
    eval_at(p, t, 0)
}

use Decision::*;

#[test]
fn leaf_policies_decide_as_documented() {
    // Latency: earliest start to latest end, lower bound inclusive, optional upper bound.
    let slow = trace(1, "a", vec![s(1, 0, 100), s(2, 500, 100)]);
    let quick = trace(2, "a", vec![s(1, 0, 100)]);
    let p = policy("{name: l, type: latency, latency: {threshold_ms: 500}}");
    assert_eq!((eval(&p, &slow), eval(&p, &quick)), (Sampled, NotSampled));
    let p = policy("{name: l, type: latency, latency: {threshold_ms: 50, upper_threshold_ms: 200}}");
    assert_eq!((eval(&p, &slow), eval(&p, &quick)), (NotSampled, Sampled));

    // Status codes: any span with one of them.
    let mut failing = s(2, 10, 5);
    failing.status = 2;
    let error = trace(3, "a", vec![s(1, 0, 100), failing]);
    let p = policy("{name: e, type: status_code, status_code: {status_codes: [ERROR]}}");
    assert_eq!((eval(&p, &error), eval(&p, &quick)), (Sampled, NotSampled));

    // Attributes of spans or of their resource.
    let mut tagged = s(1, 0, 1);
    tagged.attrs = vec![
        kv("http.status_code", Value::IntValue(503)),
        kv("url.path", Value::StringValue("/health".into())),
        kv("debug", Value::BoolValue(true)),
    ];
    let rich = trace(4, "payments", vec![tagged]);
    let p = policy(
        "{name: n, type: numeric_attribute, numeric_attribute: {key: http.status_code, min_value: 500, max_value: 599}}",
    );
    assert_eq!((eval(&p, &rich), eval(&p, &quick)), (Sampled, NotSampled));
    let p = policy(
        "{name: n, type: numeric_attribute, numeric_attribute: {key: http.status_code, min_value: 500, invert_match: true}}",
    );
    assert_eq!((eval(&p, &rich), eval(&p, &quick)), (InvertNotSampled, InvertSampled));
    let p = policy("{name: t, type: string_attribute, string_attribute: {key: team, values: [payments]}}");
    assert_eq!((eval(&p, &rich), eval(&p, &quick)), (Sampled, NotSampled));
    let p = policy(
        r"{name: r, type: string_attribute, string_attribute: {key: url.path, values: [\/health, \/metrics], enabled_regex_matching: true}}",
    );
    assert_eq!((eval(&p, &rich), eval(&p, &quick)), (Sampled, NotSampled));
    let p = policy("{name: b, type: boolean_attribute, boolean_attribute: {key: debug, value: true}}");
    assert_eq!((eval(&p, &rich), eval(&p, &quick)), (Sampled, NotSampled));

    // Span count, inclusive.
    let p = policy("{name: c, type: span_count, span_count: {min_spans: 2, max_spans: 2}}");
    assert_eq!((eval(&p, &slow), eval(&p, &quick)), (Sampled, NotSampled));

    // Trace state and the sampled flag.
    let mut stated = s(1, 0, 1);
    stated.trace_state = "vendor=x,key3=value2";
    stated.flags = 0x101;
    let stated = trace(5, "a", vec![stated]);
    let p = policy("{name: ts, type: trace_state, trace_state: {key: key3, values: [value1, value2]}}");
    assert_eq!((eval(&p, &stated), eval(&p, &quick)), (Sampled, NotSampled));
    let p = policy("{name: f, type: trace_flags}");
    assert_eq!((eval(&p, &stated), eval(&p, &quick)), (Sampled, NotSampled));

    // TraceQL, Legato's own.
    let p = policy(
        r#"{name: q, type: traceql, traceql: {query: '{ resource.team = "payments" && span.http.status_code >= 500 }'}}"#,
    );
    assert_eq!((eval(&p, &rich), eval(&p, &quick)), (Sampled, NotSampled));
}

#[test]
fn probabilistic_policy_agrees_with_trace_id_ratio_sampling() {
    let p = policy("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 25}}");
    let mut kept = 0;
    for i in 0..2000u32 {
        let mut t = trace(1, "a", vec![s(1, 0, 1)]);
        let mut id = [0u8; 16];
        id[8..12].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
        id[12..].copy_from_slice(&i.to_be_bytes());
        t.0.trace_id = id;
        let want = legato_model::ratio_keeps(&id, 0.25);
        assert_eq!(eval(&p, &t) == Sampled, want);
        kept += usize::from(want);
    }
    assert!((400..600).contains(&kept), "{kept}");
}

#[test]
fn rate_limits_count_spans_per_second() {
    let p = policy("{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 3}}");
    let two = trace(1, "a", vec![s(1, 0, 1), s(2, 0, 1)]);
    let second = 5_000_000_000;
    assert_eq!(eval_at(&p, &two, second), Sampled);
    assert_eq!(eval_at(&p, &two, second + 1), NotSampled, "4 spans in one second");
    assert_eq!(eval_at(&p, &two, second + 1_000_000_000), Sampled, "a new second");

    // bytes_limiting: a bucket of 2000 bytes, refilled at 1000 bytes/s; traces of 1000 bytes.
    let p = policy("{name: b, type: bytes_limiting, bytes_limiting: {bytes_per_second: 1000}}");
    let decisions: Vec<Decision> = [0, 1, 2, 500_000_000, 1_500_000_000]
        .iter()
        .map(|at| eval_at(&p, &two, second + at))
        .collect();
    assert_eq!(decisions, [Sampled, Sampled, NotSampled, NotSampled, Sampled]);

    // composite: the first policy that samples, within its share of the total.
    let p = policy(
        "{name: c, type: composite, composite: {max_total_spans_per_second: 4, policy_order: [errors, rest],
          composite_sub_policy: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}},
                                 {name: rest, type: always_sample}],
          rate_allocation: [{policy: errors, percent: 50}]}}",
    );
    let mut failing = s(1, 0, 1);
    failing.status = 2;
    let error = trace(2, "a", vec![failing, s(2, 0, 1)]);
    assert_eq!(eval_at(&p, &error, second), Sampled, "errors: 2 of 2");
    assert_eq!(eval_at(&p, &error, second), Sampled, "errors full, rest: 2 of 2");
    assert_eq!(eval_at(&p, &error, second), NotSampled, "both full");
}

#[test]
fn drops_and_inverted_matches_win_over_samples() {
    let yaml = |policies: &str| -> TailSamplingConfig {
        serde_yaml::from_str(&format!("decision_wait: 1s\npolicies: {policies}")).unwrap()
    };
    let mut health = s(1, 0, 1);
    health.attrs = vec![kv("url.path", Value::StringValue("/health".into()))];
    let health = trace(1, "a", vec![health]);
    let other = trace(2, "a", vec![s(1, 0, 1)]);
    let sampler = TailSampler::new(
        &yaml(
            "[{name: all, type: always_sample},
              {name: no-health, type: drop, drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: url.path, values: [/health]}}]}}]",
        ),
        "tail_sampling",
    )
    .unwrap();
    assert!(!sampler.decide(&view(&health)).keep);
    assert!(sampler.decide(&view(&other)).keep);
    // The decisions are remembered for late spans.
    assert_eq!(sampler.decided(&[1; 16]), Some(false));
    assert_eq!(sampler.decided(&[2; 16]), Some(true));
    assert_eq!(sampler.decided(&[3; 16]), None);

    // An inverted match drops; an inverted non-match samples only if no policy said no.
    let sampler = TailSampler::new(
        &yaml(
            "[{name: not-health, type: string_attribute, string_attribute: {key: url.path, values: [/health], invert_match: true}},
              {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]",
        ),
        "tail_sampling",
    )
    .unwrap();
    assert!(!sampler.decide(&view(&health)).keep);
    assert!(!sampler.decide(&view(&other)).keep, "errors said not sampled");
    // and: every sub-policy samples.
    let sampler = TailSampler::new(
        &yaml(
            "[{name: both, type: and, and: {and_sub_policy: [{name: a, type: always_sample},
               {name: h, type: string_attribute, string_attribute: {key: url.path, values: [/health]}}]}}]",
        ),
        "tail_sampling",
    )
    .unwrap();
    let verdict = sampler.decide(&view(&health));
    assert!(verdict.keep);
    assert_eq!(verdict.policies, vec![("both".to_string(), Sampled)]);
    assert!(!sampler.decide(&view(&other)).keep);
}

#[test]
fn the_collectors_example_configuration_is_accepted_as_pasted() {
    let text = include_str!("../data/collector_tail_sampling.yaml");
    let cfg: TailSamplingConfig = serde_yaml::from_str(text).unwrap();
    assert_eq!(cfg.policies.len(), 16);
    assert_eq!(cfg.decision_cache.sampled_cache_size, Some(100_000));
    // Every policy compiles, the OTTL one translated to TraceQL.
    TailSampler::new(&cfg, "overrides.defaults.sampling.tail_sampling").unwrap();
}

#[test]
fn ottl_conditions_are_translated_to_traceql() {
    use legato_ingester::tail::ottl::{Context, condition, query};
    let cases = [
        (
            r#"attributes["http.route"] == "/health""#,
            r#"span.http.route = "/health""#,
        ),
        (
            r#"resource.attributes["service.name"] != "cart""#,
            r#"resource.service.name != "cart""#,
        ),
        (
            r#"attributes["http.status_code"] >= 500 and kind == SPAN_KIND_SERVER"#,
            r#"(span.http.status_code >= 500 && kind = server)"#,
        ),
        (
            r#"status.code == STATUS_CODE_ERROR or not (name == "ping")"#,
            r#"(status = error || !((name = "ping")))"#,
        ),
        (
            r#"IsMatch(attributes["url.path"], "^/api")"#,
            r#"span.url.path =~ ".*(?:^/api).*""#,
        ),
        (r#"attributes["odd key"] == true"#, r#"span."odd key" = true"#),
    ];
    for (ottl, traceql) in cases {
        assert_eq!(condition(ottl, Context::Span).unwrap(), traceql, "{ottl}");
        legato_traceql::parse(&format!("{{ {traceql} }}")).unwrap_or_else(|e| panic!("{traceql}: {e}"));
    }
    assert_eq!(
        condition(r#"name == "exception""#, Context::SpanEvent).unwrap(),
        r#"event:name = "exception""#
    );
    let q = query(
        &[r#"attributes["a"] == "x""#.into()],
        &[r#"attributes["b"] == 1"#.into()],
    )
    .unwrap();
    assert_eq!(q, r#"{ span.a = "x" } || { event.b = 1 }"#);
    // What is outside the subset is named.
    let e = condition(r#"Len(attributes["a"]) > 3"#, Context::Span).unwrap_err();
    assert!(
        e.contains("expected a comparison") || e.contains("not supported"),
        "{e}"
    );
    let e = condition(r#"span.trace_id == "x""#, Context::Span).unwrap_err();
    assert!(e.contains("path span.trace_id is not supported"), "{e}");

    // The policy decides by the translated filter.
    let p = policy(
        r#"{name: o, type: ottl_condition, ottl_condition: {error_mode: ignore, span: ['attributes["team"] == "payments"', 'status.code == STATUS_CODE_ERROR']}}"#,
    );
    let mut failing = s(1, 0, 1);
    failing.status = 2;
    assert_eq!(eval(&p, &trace(1, "a", vec![failing])), Sampled);
    assert_eq!(eval(&p, &trace(2, "a", vec![s(1, 0, 1)])), NotSampled);
    // `team` is a resource attribute here, not a span attribute: OTTL's span context would
    // not match it either.
    assert_eq!(eval(&p, &trace(3, "payments", vec![s(1, 0, 1)])), NotSampled);
    let p = policy(
        r#"{name: o, type: ottl_condition, ottl_condition: {span: ['resource.attributes["team"] == "payments"']}}"#,
    );
    assert_eq!(eval(&p, &trace(3, "payments", vec![s(1, 0, 1)])), Sampled);
}

#[test]
fn bad_policies_are_named() {
    let err = |yaml: &str| -> String {
        match serde_yaml::from_str::<TailSamplingConfig>(yaml) {
            Err(e) => e.to_string(),
            Ok(cfg) => TailSampler::new(&cfg, "tail_sampling").err().unwrap(),
        }
    };
    let e = err("policies: [{name: x, type: sometimes}]");
    assert!(
        e.contains("tail_sampling.policies[0] (name \"x\"): unknown policy type \"sometimes\""),
        "{e}"
    );
    let e = err("policies: [{name: x, type: latency, latency: {threshold: 5}}]");
    assert!(e.contains("unknown field `threshold`"), "{e}");
    let e = err("policies: [{name: x, type: latency}]");
    assert!(e.contains("needs a `latency` block"), "{e}");
    let e = err("policies: [{name: x, type: status_code, status_code: {status_codes: [FAILED]}}]");
    assert!(e.contains("unknown status code \"FAILED\""), "{e}");
    let e = err("policies: [{name: x, type: traceql, traceql: {query: '{ span.a = }'}}]");
    assert!(e.contains("traceql.query"), "{e}");
    let e = err("decision_wait: 5s\npolicies: []");
    assert!(e.contains("at least one policy"), "{e}");
    let e = err("policies: [{name: x, type: always_sample}]\nsurprise: 1");
    assert!(e.contains("unknown field `surprise`"), "{e}");
}
