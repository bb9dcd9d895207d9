//! Parser unit tests: the trees produced for valid queries. Errors are in `tests_errors.rs`.

#![allow(clippy::unwrap_used)]

use crate::ast::*;
use crate::parse;

pub(super) fn q(query: &str) -> Query {
    match parse(query) {
        Ok(q) => q,
        Err(e) => panic!("{query:?} should parse: {e}"),
    }
}

/// The field expression of a query that is a single filter.
pub(super) fn filter(query: &str) -> FieldExpr {
    let parsed = q(query);
    assert!(
        parsed.pipeline.stages.is_empty() && parsed.metrics.is_none(),
        "{query}: {parsed:?}"
    );
    match parsed.pipeline.head {
        SpansetExpr::Filter(f) => f,
        other => panic!("{query}: not a single filter: {other:?}"),
    }
}

pub(super) fn attr(scope: AttributeScope, name: &str) -> FieldExpr {
    FieldExpr::Attribute(Attribute {
        scope,
        parent: false,
        name: name.to_string(),
    })
}

pub(super) fn dot(name: &str) -> FieldExpr {
    attr(AttributeScope::Unscoped, name)
}

pub(super) fn int(i: i64) -> FieldExpr {
    FieldExpr::Static(Static::Int(i))
}

pub(super) fn b(e: FieldExpr) -> Box<FieldExpr> {
    Box::new(e)
}

pub(super) fn cmp(op: CmpOp, lhs: FieldExpr, rhs: FieldExpr) -> FieldExpr {
    FieldExpr::Compare {
        op,
        lhs: b(lhs),
        rhs: b(rhs),
    }
}

pub(super) fn eq(lhs: FieldExpr, rhs: FieldExpr) -> FieldExpr {
    cmp(CmpOp::Eq, lhs, rhs)
}

pub(super) fn arith(op: ArithOp, lhs: FieldExpr, rhs: FieldExpr) -> FieldExpr {
    FieldExpr::Arith {
        op,
        lhs: b(lhs),
        rhs: b(rhs),
    }
}

pub(super) fn all() -> SpansetExpr {
    SpansetExpr::Filter(FieldExpr::Static(Static::Bool(true)))
}

pub(super) fn f(e: FieldExpr) -> SpansetExpr {
    SpansetExpr::Filter(e)
}

#[test]
fn empty_filter_matches_everything() {
    for query in ["{}", "{ }", "  {\n}\t"] {
        assert_eq!(
            q(query),
            Query {
                pipeline: Pipeline {
                    head: all(),
                    stages: vec![]
                },
                metrics: None,
                hints: vec![]
            }
        );
    }
}

#[test]
fn logical_operators_share_one_level_left_assoc() {
    let (a, bb, c) = (dot("a"), dot("b"), dot("c"));
    let or_ab = FieldExpr::Or(b(a.clone()), b(bb.clone()));
    assert_eq!(filter("{ .a || .b && .c }"), FieldExpr::And(b(or_ab), b(c.clone())));
    let and_ab = FieldExpr::And(b(a.clone()), b(bb.clone()));
    assert_eq!(filter("{ .a && .b || .c }"), FieldExpr::Or(b(and_ab), b(c.clone())));
    let and_bc = FieldExpr::And(b(bb), b(c));
    assert_eq!(filter("{ .a || (.b && .c) }"), FieldExpr::Or(b(a), b(and_bc)));
}

#[test]
fn comparison_binds_tighter_than_logic_and_looser_than_arithmetic() {
    let expected = FieldExpr::And(
        b(eq(
            dot("a"),
            arith(ArithOp::Add, int(1), arith(ArithOp::Mul, int(2), int(3))),
        )),
        b(cmp(CmpOp::Gt, dot("b"), int(0))),
    );
    assert_eq!(filter("{ .a = 1 + 2 * 3 && .b > 0 }"), expected);
    assert_eq!(
        filter("{ (.a + 1) * 2 = 4 }"),
        eq(
            arith(ArithOp::Mul, arith(ArithOp::Add, dot("a"), int(1)), int(2)),
            int(4)
        )
    );
    assert_eq!(
        filter("{ .a - 1 - 2 = 0 }"),
        eq(
            arith(ArithOp::Sub, arith(ArithOp::Sub, dot("a"), int(1)), int(2)),
            int(0)
        )
    );
    assert_eq!(
        filter("{ .a / 2 % 3 = 0 }"),
        eq(
            arith(ArithOp::Mod, arith(ArithOp::Div, dot("a"), int(2)), int(3)),
            int(0)
        )
    );
}

#[test]
fn power_is_right_associative_and_unary_minus_binds_tightest() {
    assert_eq!(
        filter("{ 2 ^ 3 ^ 2 = .a }"),
        eq(
            arith(ArithOp::Pow, int(2), arith(ArithOp::Pow, int(3), int(2))),
            dot("a")
        )
    );
    assert_eq!(
        filter("{ -2 ^ 2 = .a }"),
        eq(arith(ArithOp::Pow, int(-2), int(2)), dot("a"))
    );
    assert_eq!(
        filter("{ -.a ^ 2 = 4 }"),
        eq(arith(ArithOp::Pow, FieldExpr::Negate(b(dot("a"))), int(2)), int(4))
    );
    assert_eq!(
        filter("{ 2 * 3 ^ 2 = .a }"),
        eq(
            arith(ArithOp::Mul, int(2), arith(ArithOp::Pow, int(3), int(2))),
            dot("a")
        )
    );
    assert_eq!(
        filter("{ -(.a + 1) < 0 }"),
        cmp(
            CmpOp::Lt,
            FieldExpr::Negate(b(arith(ArithOp::Add, dot("a"), int(1)))),
            int(0)
        )
    );
    assert_eq!(
        filter("{ .a - -1 = 0 }"),
        eq(arith(ArithOp::Sub, dot("a"), int(-1)), int(0))
    );
}

#[test]
fn not_sits_between_additive_and_multiplicative() {
    // `!` takes `* / % ^` into its operand but not `+`, `=` or `&&`.
    assert_eq!(
        filter("{ !.a && .b }"),
        FieldExpr::And(b(FieldExpr::Not(b(dot("a")))), b(dot("b")))
    );
    assert_eq!(
        filter("{ !.a = true }"),
        eq(FieldExpr::Not(b(dot("a"))), FieldExpr::Static(Static::Bool(true)))
    );
    assert_eq!(filter("{ !(.a = 1) }"), FieldExpr::Not(b(eq(dot("a"), int(1)))));
    assert_eq!(filter("{ !!.a }"), FieldExpr::Not(b(FieldExpr::Not(b(dot("a"))))));
}

#[test]
fn all_comparison_and_regex_operators() {
    for (text, op) in [
        ("=", CmpOp::Eq),
        ("!=", CmpOp::Neq),
        ("<", CmpOp::Lt),
        ("<=", CmpOp::Lte),
        (">", CmpOp::Gt),
        (">=", CmpOp::Gte),
    ] {
        assert_eq!(
            filter(&format!("{{ .a {text} 1 }}")),
            cmp(op, dot("a"), int(1)),
            "{text}"
        );
        assert_eq!(
            filter(&format!("{{.a{text}1}}")),
            cmp(op, dot("a"), int(1)),
            "{text} without spaces"
        );
    }
    assert_eq!(
        filter(r#"{ .a =~ "x.*" }"#),
        FieldExpr::Regex {
            negated: false,
            lhs: b(dot("a")),
            pattern: "x.*".into()
        }
    );
    assert_eq!(
        filter(r#"{ name !~ `\d+` && .b = 1 }"#),
        FieldExpr::And(
            b(FieldExpr::Regex {
                negated: true,
                lhs: b(FieldExpr::Intrinsic(Intrinsic::Name)),
                pattern: r"\d+".into()
            }),
            b(eq(dot("b"), int(1)))
        )
    );
    // Patterns are stored as written; anchoring is the evaluator's job.
    assert_eq!(
        filter(r#"{ .a =~ "^GET" }"#),
        FieldExpr::Regex {
            negated: false,
            lhs: b(dot("a")),
            pattern: "^GET".into()
        }
    );
}

#[test]
fn attribute_scopes() {
    use AttributeScope::*;
    let cases = [
        ("span.foo", Span, false, "foo"),
        ("resource.service.name", Resource, false, "service.name"),
        (".foo", Unscoped, false, "foo"),
        (".http.status_code", Unscoped, false, "http.status_code"),
        ("event.exception.message", Event, false, "exception.message"),
        ("link.ref", Link, false, "ref"),
        ("instrumentation.scope.name", Instrumentation, false, "scope.name"),
        ("parent.foo", Unscoped, true, "foo"),
        ("parent.span.foo", Span, true, "foo"),
        ("parent.resource.service.name", Resource, true, "service.name"),
        ("span.http.user-agent", Span, false, "http.user-agent"),
        ("span.a:b/c*d", Span, false, "a:b/c*d"),
        ("span.status", Span, false, "status"),
        ("span.1x", Span, false, "1x"),
    ];
    for (text, scope, parent, name) in cases {
        let expected = FieldExpr::Attribute(Attribute {
            scope,
            parent,
            name: name.into(),
        });
        assert_eq!(filter(&format!("{{ {text} = 1 }}")), eq(expected, int(1)), "{text}");
    }
}

#[test]
fn quoted_attribute_segments() {
    let cases = [
        (r#"span."name with spaces""#, "name with spaces"),
        (r#"span.a."b c""#, "a.b c"),
        (r#"span.a."b c".d"#, "a.b c.d"),
        (r#"span."a"."b""#, "a.b"),
        (r#"."foo bar""#, "foo bar"),
        (r#"resource."x=y""#, "x=y"),
        (r#"span."with \"quotes\"""#, r#"with "quotes""#),
        (r#"span."back\\slash""#, r"back\slash"),
        (r#"span."{}()!<>&|~^,""#, "{}()!<>&|~^,"),
    ];
    for (text, name) in cases {
        let got = filter(&format!("{{ {text} = 1 }}"));
        let FieldExpr::Compare { lhs, .. } = got else {
            panic!("{text}")
        };
        let FieldExpr::Attribute(a) = *lhs else {
            panic!("{text}")
        };
        assert_eq!(a.name, name, "{text}");
    }
}

#[test]
fn every_intrinsic_in_scoped_and_legacy_form() {
    use Intrinsic::*;
    let cases: &[(&str, Option<&str>, Intrinsic, &str)] = &[
        ("span:name", Some("name"), Name, r#""x""#),
        ("span:status", Some("status"), Status, "error"),
        ("span:statusMessage", Some("statusMessage"), StatusMessage, r#""x""#),
        ("span:kind", Some("kind"), Kind, "server"),
        ("span:duration", Some("duration"), Duration, "1s"),
        ("span:id", None, SpanId, r#""ab""#),
        ("span:parentID", None, ParentId, r#""ab""#),
        ("span:childCount", None, ChildCount, "2"),
        ("trace:duration", Some("traceDuration"), TraceDuration, "1s"),
        ("trace:rootName", Some("rootName"), RootName, r#""x""#),
        ("trace:rootService", Some("rootServiceName"), RootService, r#""x""#),
        ("trace:id", None, TraceId, r#""ab""#),
        ("event:name", None, EventName, r#""x""#),
        ("event:timeSinceStart", None, EventTimeSinceStart, "1s"),
        ("link:traceID", None, LinkTraceId, r#""ab""#),
        ("link:spanID", None, LinkSpanId, r#""ab""#),
        ("instrumentation:name", None, InstrumentationName, r#""x""#),
        ("instrumentation:version", None, InstrumentationVersion, r#""x""#),
        ("nestedSetLeft", None, NestedSetLeft, "1"),
        ("nestedSetRight", None, NestedSetRight, "1"),
        ("nestedSetParent", None, NestedSetParent, "-1"),
    ];
    for (scoped, legacy, intrinsic, value) in cases {
        for text in std::iter::once(scoped).chain(legacy.iter()) {
            let got = filter(&format!("{{ {text} = {value} }}"));
            let FieldExpr::Compare { lhs, .. } = got else {
                panic!("{text}")
            };
            assert_eq!(*lhs, FieldExpr::Intrinsic(*intrinsic), "{text}");
        }
    }
}

#[test]
fn literals() {
    let lit = |text: &str| -> Static {
        let FieldExpr::Compare { rhs, .. } = filter(&format!("{{ .a = {text} }}")) else {
            panic!("{text}")
        };
        match *rhs {
            FieldExpr::Static(s) => s,
            other => panic!("{text}: {other:?}"),
        }
    };
    assert_eq!(lit(r#""plain""#), Static::String("plain".into()));
    assert_eq!(lit(r#""""#), Static::String(String::new()));
    assert_eq!(
        lit(r#""q\"q\\ \t\n\r\a\b\f\v""#),
        Static::String("q\"q\\ \t\n\r\x07\x08\x0c\x0b".into())
    );
    assert_eq!(lit(r#""\x41\101\u00e9\U0001F600""#), Static::String("AAé😀".into()));
    assert_eq!(lit("`raw \\d \"x\"`"), Static::String(r#"raw \d "x""#.into()));
    assert_eq!(lit("`multi\nline`"), Static::String("multi\nline".into()));
    assert_eq!(lit("0"), Static::Int(0));
    assert_eq!(lit("42"), Static::Int(42));
    assert_eq!(lit("-42"), Static::Int(-42));
    assert_eq!(lit("- 42"), Static::Int(-42));
    assert_eq!(lit("9223372036854775807"), Static::Int(i64::MAX));
    assert_eq!(lit("minInt"), Static::Int(i64::MIN));
    assert_eq!(lit("maxInt"), Static::Int(i64::MAX));
    assert_eq!(lit("1.5"), Static::Float(1.5));
    assert_eq!(lit(".5"), Static::Float(0.5));
    assert_eq!(lit("-.5"), Static::Float(-0.5));
    assert_eq!(lit("1e9"), Static::Float(1e9));
    assert_eq!(lit("1.5e-3"), Static::Float(1.5e-3));
    assert_eq!(lit("2E+2"), Static::Float(200.0));
    assert_eq!(lit("true"), Static::Bool(true));
    assert_eq!(lit("false"), Static::Bool(false));
    assert_eq!(lit("nil"), Static::Nil);
    assert_eq!(lit("ok"), Static::Status(Status::Ok));
    assert_eq!(lit("error"), Static::Status(Status::Error));
    assert_eq!(lit("unset"), Static::Status(Status::Unset));
    for (text, kind) in [
        ("unspecified", Kind::Unspecified),
        ("internal", Kind::Internal),
        ("server", Kind::Server),
        ("client", Kind::Client),
        ("producer", Kind::Producer),
        ("consumer", Kind::Consumer),
    ] {
        assert_eq!(lit(text), Static::Kind(kind));
    }
}

#[test]
fn durations() {
    let dur = |text: &str| -> i64 {
        let FieldExpr::Compare { rhs, .. } = filter(&format!("{{ duration > {text} }}")) else {
            panic!("{text}")
        };
        match *rhs {
            FieldExpr::Static(Static::Duration(ns)) => ns,
            other => panic!("{text}: {other:?}"),
        }
    };
    assert_eq!(dur("1ns"), 1);
    assert_eq!(dur("1us"), 1_000);
    assert_eq!(dur("1µs"), 1_000);
    assert_eq!(dur("1μs"), 1_000);
    assert_eq!(dur("100ms"), 100_000_000);
    assert_eq!(dur("1s"), 1_000_000_000);
    assert_eq!(dur("1.5s"), 1_500_000_000);
    assert_eq!(dur("0.5ms"), 500_000);
    assert_eq!(dur(".5s"), 500_000_000);
    assert_eq!(dur("2m"), 120_000_000_000);
    assert_eq!(dur("1h"), 3_600_000_000_000);
    assert_eq!(dur("1h30m"), 5_400_000_000_000);
    assert_eq!(dur("1m30.5s"), 90_500_000_000);
    assert_eq!(dur("1d"), 86_400_000_000_000);
    assert_eq!(dur("1w"), 7 * 86_400_000_000_000);
    assert_eq!(dur("1y"), 365 * 86_400_000_000_000);
    assert_eq!(dur("-1.5s"), -1_500_000_000);
    assert_eq!(dur("-(1s)"), -1_000_000_000);
}

#[test]
fn structural_operators_all_fifteen() {
    use StructuralMode::*;
    use StructuralOp::*;
    let cases = [
        (">", Child, Normal),
        ("<", Parent, Normal),
        (">>", Descendant, Normal),
        ("<<", Ancestor, Normal),
        ("~", Sibling, Normal),
        ("!>", Child, Not),
        ("!<", Parent, Not),
        ("!>>", Descendant, Not),
        ("!<<", Ancestor, Not),
        ("!~", Sibling, Not),
        ("&>", Child, Union),
        ("&<", Parent, Union),
        ("&>>", Descendant, Union),
        ("&<<", Ancestor, Union),
        ("&~", Sibling, Union),
    ];
    for (text, op, mode) in cases {
        let lhs = Box::new(f(eq(dot("a"), int(1))));
        let rhs = Box::new(f(eq(dot("b"), int(2))));
        let expected = SpansetExpr::Structural { op, mode, lhs, rhs };
        assert_eq!(
            q(&format!("{{ .a = 1 }} {text} {{ .b = 2 }}")).pipeline.head,
            expected,
            "{text}"
        );
        assert_eq!(
            q(&format!("{{.a=1}}{text}{{.b=2}}")).pipeline.head.clone(),
            expected.clone(),
            "{text} tight"
        );
    }
}

#[test]
fn spanset_operator_precedence() {
    let (a, bb, c) = (f(dot("a")), f(dot("b")), f(dot("c")));
    let bx = |e: &SpansetExpr| Box::new(e.clone());
    let child = |l: SpansetExpr, r: SpansetExpr| SpansetExpr::Structural {
        op: StructuralOp::Child,
        mode: StructuralMode::Normal,
        lhs: Box::new(l),
        rhs: Box::new(r),
    };
    // Structural operators bind tighter than && and ||.
    assert_eq!(
        q("{ .a } && { .b } > { .c }").pipeline.head,
        SpansetExpr::And(bx(&a), Box::new(child(bb.clone(), c.clone())))
    );
    assert_eq!(
        q("{ .a } > { .b } || { .c }").pipeline.head,
        SpansetExpr::Or(Box::new(child(a.clone(), bb.clone())), bx(&c))
    );
    // Same level: left-associative.
    assert_eq!(
        q("{ .a } || { .b } && { .c }").pipeline.head,
        SpansetExpr::And(Box::new(SpansetExpr::Or(bx(&a), bx(&bb))), bx(&c))
    );
    assert_eq!(
        q("{ .a } > { .b } > { .c }").pipeline.head,
        child(child(a.clone(), bb.clone()), c.clone())
    );
    assert_eq!(
        q("({ .a } || { .b }) > { .c }").pipeline.head,
        child(SpansetExpr::Or(bx(&a), bx(&bb)), c)
    );
}
