//! Parser unit tests: `compare()`, arithmetic between metrics queries and with numbers,
//! constant folding, and their errors.

#![allow(clippy::unwrap_used)]

use super::tests::{all, attr, f, filter, q};
use crate::ast::*;
use crate::parse;

fn m(query: &str) -> MetricsStage {
    q(query)
        .metrics
        .unwrap_or_else(|| panic!("{query}: not a metrics query"))
}

#[track_caller]
fn assert_err(query: &str, col: usize, needle: &str) {
    let e = match parse(query) {
        Ok(parsed) => panic!("{query:?} should not parse, got {parsed:?}"),
        Err(e) => e,
    };
    assert_eq!((e.line, e.col), (1, col), "{query:?}: {e}");
    assert!(
        e.message.contains(needle),
        "{query:?}: message {:?} lacks {needle:?}",
        e.message
    );
}

fn arith(op: ArithOp, value: f64, scalar_on_left: bool) -> SecondStage {
    SecondStage::Arith {
        op,
        value,
        scalar_on_left,
    }
}

#[test]
fn compare_forms() {
    let c = m("{ } | compare({ status = error })");
    assert_eq!(c.op, MetricsOp::Compare);
    assert_eq!(
        c.compare,
        Some(Compare {
            selection: filter("{ status = error }"),
            top_n: 10,
            start_ns: 0,
            end_ns: 0,
        })
    );
    assert_eq!(m("{ } | compare({ status = error }, 3)").compare.unwrap().top_n, 3);
    let windowed = q(
        r#"{ resource.service.name = "a" } | compare({ duration > 1s }, 1000, 1700000000000000000, 1700000060000000000)"#,
    );
    assert_eq!(windowed.pipeline.head, f(filter(r#"{ resource.service.name = "a" }"#)));
    let c = windowed.metrics.unwrap().compare.unwrap();
    assert_eq!(
        (c.top_n, c.start_ns, c.end_ns),
        (1000, 1_700_000_000_000_000_000, 1_700_000_060_000_000_000)
    );
    // Zero for both is "no window", as in Tempo.
    assert_eq!(m("{ } | compare({ }, 5, 0, 0)").compare.unwrap().start_ns, 0);
    // Parenthesised alone, and with hints.
    assert_eq!(m("({ } | compare({ status = error }))").op, MetricsOp::Compare);
    assert_eq!(q("{ } | compare({ status = error }) with(sample=true)").hints.len(), 1);
}

#[test]
fn compare_errors() {
    assert_err(
        "{ } | compare()",
        15,
        "expected a spanset filter such as { status = error }",
    );
    assert_err(
        "{ } | compare(10)",
        15,
        "compare() needs the filter that picks the selection",
    );
    assert_err(
        "{ } | compare({ .a } && { .b })",
        22,
        "compare() takes a single spanset filter",
    );
    assert_err("{ } | compare({ .a }, 0)", 23, "must be an integer between 1 and 1000");
    assert_err(
        "{ } | compare({ .a }, 1001)",
        23,
        "must be an integer between 1 and 1000",
    );
    assert_err("{ } | compare({ .a }, -1)", 23, "expects a positive integer");
    assert_err("{ } | compare({ .a }, 2.5)", 23, "expects a positive integer");
    assert_err("{ } | compare({ .a }, 10, 5)", 28, "',' and an end timestamp");
    assert_err(
        "{ } | compare({ .a }, 10, 20, 10)",
        31,
        "end timestamp must be greater than start timestamp",
    );
    assert_err(
        "{ } | compare({ .a }, 10, 20, 20)",
        31,
        "end timestamp must be greater than start timestamp",
    );
    assert_err(
        "{ } | compare({ .a }, 10, 0, 10)",
        27,
        "timestamps must be positive integer unix nanoseconds",
    );
    assert_err(
        "{ } | compare({ .a }, 10, 1, 2, 3)",
        31,
        "',' or ')' to close 'compare('",
    );
    assert_err("{ } | compare({ .a }) by (name)", 23, "compare() takes no by(...)");
    assert_err(
        "{ } | compare({ .a }) | topk(5)",
        23,
        "compare() cannot be used with second stage functions",
    );
    assert_err(
        "{ } | compare({ .a }) > 1",
        23,
        "compare() cannot be used with second stage functions",
    );
    assert_err(
        "({ } | compare({ .a })) * 2",
        25,
        "compare() cannot be used with second stage functions",
    );
    assert_err(
        "({ } | rate()) / ({ } | compare({ .a }))",
        16,
        "compare() cannot be used with second stage functions",
    );
    assert_err(
        "{ } | compare({ 1 })",
        17,
        "a spanset filter must be a boolean expression",
    );
    assert_err("{ } | rate() | compare({ .a })", 16, "only one metrics function");
}

#[test]
fn arithmetic_between_metrics_queries() {
    let parsed = q("({ status = error } | rate() by (resource.service.name)) / ({ } | rate())");
    let stage = parsed.metrics.unwrap();
    assert_eq!(stage.op, MetricsOp::Binary);
    let b = stage.binary.unwrap();
    assert_eq!(b.op, ArithOp::Div);
    assert_eq!(b.lhs.pipeline.head, f(filter("{ status = error }")));
    assert_eq!(b.lhs.stage.op, MetricsOp::Rate);
    assert_eq!(b.lhs.stage.by, vec![attr(AttributeScope::Resource, "service.name")]);
    assert_eq!(b.rhs.pipeline.head, all());
    // The query's pipeline reads what either side reads.
    assert_eq!(
        parsed.pipeline.head,
        SpansetExpr::Or(Box::new(f(filter("{ status = error }"))), Box::new(all()))
    );
    // `* /` bind tighter than `+ -`, all left-associative.
    let stage = m("({ .a } | rate()) + ({ .b } | rate()) * ({ .c } | rate()) - ({ .d } | rate())");
    let top = stage.binary.unwrap();
    assert_eq!(top.op, ArithOp::Sub);
    let left = top.lhs.stage.binary.unwrap();
    assert_eq!(left.op, ArithOp::Add);
    assert_eq!(left.rhs.stage.binary.unwrap().op, ArithOp::Mul);
    // Second stages: inside the parentheses for a side, after the expression for the whole.
    let stage = m("({ } | rate() by (name) | topk(2)) + ({ } | rate()) > 10 | bottomk(1)");
    assert_eq!(
        stage.second_stage,
        vec![
            SecondStage::Filter {
                op: CmpOp::Gt,
                value: 10.0
            },
            SecondStage::BottomK(1)
        ]
    );
    assert_eq!(stage.binary.unwrap().lhs.stage.second_stage, vec![SecondStage::TopK(2)]);
    // Parentheses around arithmetic.
    assert_eq!(m("((({ } | rate()) + ({ } | rate())))").op, MetricsOp::Binary);
}

#[test]
fn arithmetic_with_numbers() {
    use ArithOp::*;
    let stages = |query: &str| m(query).second_stage;
    assert_eq!(stages("({ } | rate()) * 100"), vec![arith(Mul, 100.0, false)]);
    assert_eq!(stages("100 * ({ } | rate())"), vec![arith(Mul, 100.0, true)]);
    assert_eq!(stages("1 - ({ } | rate())"), vec![arith(Sub, 1.0, true)]);
    assert_eq!(stages("({ } | rate()) / -1.5"), vec![arith(Div, -1.5, false)]);
    // Constants fold as in Tempo: integers stay integers.
    assert_eq!(stages("({ } | rate()) + 100 / 3"), vec![arith(Add, 33.0, false)]);
    assert_eq!(stages("({ } | rate()) + 1 / 2.0"), vec![arith(Add, 0.5, false)]);
    assert_eq!(stages("(1 + 2) * ({ } | rate())"), vec![arith(Mul, 3.0, true)]);
    assert_eq!(stages("-(2 + 3) * ({ } | rate())"), vec![arith(Mul, -5.0, true)]);
    // Numbers bind by precedence: 5 + ((A) * 10); ((A) * 10) - 1.
    assert_eq!(
        stages("5 + ({ } | rate()) * 10"),
        vec![arith(Mul, 10.0, false), arith(Add, 5.0, true)]
    );
    assert_eq!(
        stages("({ } | rate()) * 10 - 1 > 5"),
        vec![
            arith(Mul, 10.0, false),
            arith(Sub, 1.0, false),
            SecondStage::Filter {
                op: CmpOp::Gt,
                value: 5.0
            }
        ]
    );
    // A filter inside the parentheses applies before the arithmetic.
    assert_eq!(
        stages("({ } | rate() > 6) * 100"),
        vec![
            SecondStage::Filter {
                op: CmpOp::Gt,
                value: 6.0
            },
            arith(Mul, 100.0, false)
        ]
    );
    // Comparisons take constant expressions too: 1 / 2 is the integer 0.
    assert_eq!(
        stages("({ } | rate()) > 1 / 2"),
        vec![SecondStage::Filter {
            op: CmpOp::Gt,
            value: 0.0
        }]
    );
    assert_eq!(
        stages("{ } | avg_over_time(duration) > -(1500ms)"),
        vec![SecondStage::Filter {
            op: CmpOp::Gt,
            value: -1.5
        }]
    );
    // A scalar-first pipeline is still a scalar filter.
    assert!(q("1 < count() | rate()").metrics.is_some());
    assert!(q("(count() + 1) > 2").metrics.is_none());
}

#[test]
fn arithmetic_errors() {
    assert_err(
        "{ } | rate() - 1",
        14,
        "arithmetic needs metrics queries in parentheses",
    );
    assert_err(
        "{ } | rate() * ({ } | rate())",
        14,
        "arithmetic needs metrics queries in parentheses",
    );
    assert_err(
        "({ } | rate()) > 1 + ({ } | rate())",
        22,
        "expected a number or duration after '>'",
    );
    assert_err(
        "({ } | rate()) | topk(1) * 2",
        26,
        "arithmetic needs metrics queries in parentheses",
    );
    // A metrics query and a spanset filter, on either side.
    assert_err("({ } | rate()) + { }", 18, "found a spanset filter");
    assert_err("({ } | rate()) + ({ } | count() > 1)", 18, "found a spanset");
    assert_err(
        "{ } + ({ } | rate())",
        5,
        "arithmetic needs metrics queries in parentheses",
    );
    assert_err("1 + { } | rate()", 5, "found a spanset filter");
    // What Tempo's metrics arithmetic does not have.
    assert_err("({ } | rate()) % 2", 16, "'%' is not supported in metrics arithmetic");
    assert_err("({ } | rate()) ^ ({ } | rate())", 16, "'^' is not supported");
    assert_err("-({ } | rate())", 1, "a metrics query cannot be negated");
    assert_err("({ } | rate()) * 1s", 18, "a duration cannot be used in arithmetic");
    assert_err("({ } | rate()) > 1s * 2", 18, "a duration cannot be used in arithmetic");
    assert_err("({ } | rate()) + 1 / 0", 20, "division by zero");
    assert_err("1 + 2 { }", 7, "expected an arithmetic operator and a metrics query");
    assert_err("1 + 2", 6, "expected a comparison such as '> 3' after '1 + 2'");
    assert_err("2 * (1 + ({ } | rate())", 24, "')' to close the '(' at line 1, col 5");
    let many = vec!["({ } | rate())"; 33].join(" + ");
    assert!(parse(&many).unwrap_err().message.contains("at most 32 metrics queries"));
    assert!(parse(&vec!["({ } | rate())"; 32].join(" + ")).is_ok());
}

#[test]
fn sampling_hints_parse() {
    for hint in [
        "sample=true",
        "sample=0.1",
        "span_sample=0.1",
        "trace_sample=0.1",
        "sample=false",
    ] {
        let parsed = q(&format!("{{ }} | rate() with({hint})"));
        assert_eq!(parsed.hints.len(), 1, "{hint}");
        let parsed = q(&format!("{{ }} with({hint})"));
        assert_eq!(parsed.hints.len(), 1, "{hint}");
    }
}
