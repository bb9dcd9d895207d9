//! Parser unit tests: pipelines, scalar filters, metrics, hints and layout.

#![allow(clippy::unwrap_used)]

use super::tests::{all, attr, dot, f, q};
use crate::ast::*;

#[test]
fn pipelines_and_scalar_filters() {
    let parsed = q(
        "{ .a } | count() > 3 | avg(duration) >= 20ms | by(resource.service.name) | select(span.x, name) | coalesce() | { .b }",
    );
    let stages = parsed.pipeline.stages;
    assert_eq!(stages.len(), 6);
    assert_eq!(
        stages[0],
        Stage::ScalarFilter {
            op: CmpOp::Gt,
            lhs: ScalarExpr::Aggregate {
                op: AggregateOp::Count,
                field: None
            },
            rhs: ScalarExpr::Static(Static::Int(3)),
        }
    );
    assert_eq!(
        stages[1],
        Stage::ScalarFilter {
            op: CmpOp::Gte,
            lhs: ScalarExpr::Aggregate {
                op: AggregateOp::Avg,
                field: Some(FieldExpr::Intrinsic(Intrinsic::Duration))
            },
            rhs: ScalarExpr::Static(Static::Duration(20_000_000)),
        }
    );
    assert_eq!(
        stages[2],
        Stage::By(vec![attr(AttributeScope::Resource, "service.name")])
    );
    assert_eq!(
        stages[3],
        Stage::Select(vec![
            attr(AttributeScope::Span, "x"),
            FieldExpr::Intrinsic(Intrinsic::Name)
        ])
    );
    assert_eq!(stages[4], Stage::Coalesce);
    assert_eq!(stages[5], Stage::Spanset(f(dot("b"))));

    let agg = |op, field| ScalarExpr::Aggregate { op, field };
    for (text, op) in [
        ("min", AggregateOp::Min),
        ("max", AggregateOp::Max),
        ("sum", AggregateOp::Sum),
        ("avg", AggregateOp::Avg),
    ] {
        let stage = &q(&format!("{{ }} | {text}(span.x) < 1.5")).pipeline.stages[0];
        let expected = Stage::ScalarFilter {
            op: CmpOp::Lt,
            lhs: agg(op, Some(attr(AttributeScope::Span, "x"))),
            rhs: ScalarExpr::Static(Static::Float(1.5)),
        };
        assert_eq!(stage, &expected);
    }
    // Arithmetic between aggregates and statics, with precedence.
    let stage = &q("{ } | count() * 2 + 1 > sum(span.x) ^ 2").pipeline.stages[0];
    let bx = Box::new;
    let lhs = ScalarExpr::Binary {
        op: ArithOp::Add,
        lhs: bx(ScalarExpr::Binary {
            op: ArithOp::Mul,
            lhs: bx(agg(AggregateOp::Count, None)),
            rhs: bx(ScalarExpr::Static(Static::Int(2))),
        }),
        rhs: bx(ScalarExpr::Static(Static::Int(1))),
    };
    let rhs = ScalarExpr::Binary {
        op: ArithOp::Pow,
        lhs: bx(agg(AggregateOp::Sum, Some(attr(AttributeScope::Span, "x")))),
        rhs: bx(ScalarExpr::Static(Static::Int(2))),
    };
    assert_eq!(
        stage,
        &Stage::ScalarFilter {
            op: CmpOp::Gt,
            lhs,
            rhs
        }
    );
    // A static on the left.
    let stage = &q("{ } | 2 < count()").pipeline.stages[0];
    assert!(matches!(
        stage,
        Stage::ScalarFilter {
            op: CmpOp::Lt,
            lhs: ScalarExpr::Static(Static::Int(2)),
            ..
        }
    ));
}

#[test]
fn parenthesised_pipelines_combine_with_spanset_operators() {
    let parsed = q("({ .a } | count() > 1) && { .b }");
    let SpansetExpr::And(lhs, rhs) = parsed.pipeline.head else {
        panic!()
    };
    let SpansetExpr::Pipeline(inner) = *lhs else {
        panic!("{lhs:?}")
    };
    assert_eq!(inner.head, f(dot("a")));
    assert_eq!(inner.stages.len(), 1);
    assert_eq!(*rhs, f(dot("b")));
    // Parentheses without stages are just grouping.
    assert_eq!(q("(({ .a }))").pipeline.head, f(dot("a")));
    // Queries may start with a scalar filter, by() or select(): the head is then `{ }`.
    for query in ["count() > 2 | { .a }", "by(.a) | { .a }", "select(.a)"] {
        assert_eq!(q(query).pipeline.head, all(), "{query}");
    }
}

#[test]
fn metrics_functions() {
    let m = |query: &str| q(query).metrics.unwrap();
    let rate = m("{ status = error } | rate()");
    assert_eq!(rate, MetricsStage::new(MetricsOp::Rate));
    assert_eq!(m("{ } | count_over_time()").op, MetricsOp::CountOverTime);
    for (name, op) in [
        ("sum_over_time", MetricsOp::SumOverTime),
        ("avg_over_time", MetricsOp::AvgOverTime),
        ("min_over_time", MetricsOp::MinOverTime),
        ("max_over_time", MetricsOp::MaxOverTime),
        ("histogram_over_time", MetricsOp::HistogramOverTime),
    ] {
        let stage = m(&format!(
            "{{ }} | {name}(span:duration) by (resource.service.name, span.x)"
        ));
        assert_eq!(stage.op, op);
        assert_eq!(stage.field, Some(FieldExpr::Intrinsic(Intrinsic::Duration)));
        assert_eq!(
            stage.by,
            vec![
                attr(AttributeScope::Resource, "service.name"),
                attr(AttributeScope::Span, "x")
            ]
        );
    }
    let qt = m("{ } | quantile_over_time(duration, .5, 0.9, 1) by(name)");
    assert_eq!(qt.op, MetricsOp::QuantileOverTime);
    assert_eq!(qt.quantiles, vec![0.5, 0.9, 1.0]);
    assert_eq!(qt.by, vec![FieldExpr::Intrinsic(Intrinsic::Name)]);
    // Stages before the metrics function stay in the pipeline.
    let parsed = q("{ .a } | select(.b) | rate()");
    assert_eq!(parsed.pipeline.stages, vec![Stage::Select(vec![dot("b")])]);
}

#[test]
fn metrics_second_stage() {
    let second = |query: &str| q(query).metrics.unwrap().second_stage;
    assert_eq!(second("{ } | rate() | topk(5)"), vec![SecondStage::TopK(5)]);
    assert_eq!(
        second("{ } | rate() by (name) | bottomk(3)"),
        vec![SecondStage::BottomK(3)]
    );
    assert_eq!(
        second("{ } | rate() > 10"),
        vec![SecondStage::Filter {
            op: CmpOp::Gt,
            value: 10.0
        }]
    );
    assert_eq!(
        second("{ } | rate() | >= 2.5"),
        vec![SecondStage::Filter {
            op: CmpOp::Gte,
            value: 2.5
        }]
    );
    assert_eq!(
        second("{ } | rate() != -3"),
        vec![SecondStage::Filter {
            op: CmpOp::Neq,
            value: -3.0
        }]
    );
    // Durations are compared in seconds.
    assert_eq!(
        second("{ } | max_over_time(duration) < 1500ms"),
        vec![SecondStage::Filter {
            op: CmpOp::Lt,
            value: 1.5
        }]
    );
    assert_eq!(
        second("{ } | rate() > 0 | topk(5) <= 10 | bottomk(2) = 1"),
        vec![
            SecondStage::Filter {
                op: CmpOp::Gt,
                value: 0.0
            },
            SecondStage::TopK(5),
            SecondStage::Filter {
                op: CmpOp::Lte,
                value: 10.0
            },
            SecondStage::BottomK(2),
            SecondStage::Filter {
                op: CmpOp::Eq,
                value: 1.0
            },
        ]
    );
    // A parenthesised metrics query is unwrapped.
    assert_eq!(q("({ .a } | rate()) > 10"), q("{ .a } | rate() > 10"));
    assert_eq!(
        q("(({ } | rate() | topk(2))) | bottomk(1)"),
        q("{ } | rate() | topk(2) | bottomk(1)")
    );
}

#[test]
fn hints() {
    assert_eq!(
        q("{ } with(most_recent=true)").hints,
        vec![("most_recent".to_string(), Static::Bool(true))]
    );
    let parsed =
        q("{ } | rate() by (name) | topk(3) with (sample=0.1, exemplars=10, span_sample=.5, job=\"x\", d=-1s)");
    assert_eq!(
        parsed.hints,
        vec![
            ("sample".to_string(), Static::Float(0.1)),
            ("exemplars".to_string(), Static::Int(10)),
            ("span_sample".to_string(), Static::Float(0.5)),
            ("job".to_string(), Static::String("x".into())),
            ("d".to_string(), Static::Duration(-1_000_000_000)),
        ]
    );
    assert_eq!(parsed.metrics.unwrap().second_stage, vec![SecondStage::TopK(3)]);
    assert_eq!(q("{ } with(a=1) with(b=ok)").hints.len(), 2);
}

#[test]
fn whitespace_and_newlines_anywhere() {
    let compact =
        q(r#"{resource.service.name="a"&&duration>1s}|count()>1|rate()by(name)|topk(2)with(most_recent=true)"#);
    let spread = q(
        "\n  {\n\tresource.service.name = \"a\"\r\n && duration\n>\n1s }\n|\ncount ( ) > 1 | rate ( )\nby ( name ) | topk ( 2 )\nwith ( most_recent = true )\n",
    );
    assert_eq!(compact, spread);
}
