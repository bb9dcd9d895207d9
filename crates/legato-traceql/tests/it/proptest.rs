//! Property tests: the parser never panics, and generated filter trees survive a print/parse
//! round trip (printed with the fewest parentheses the precedence rules allow).

#![allow(clippy::unwrap_used)]

use legato_traceql::ast::*;
use proptest::prelude::*;

/// Fragments that make random strings look like TraceQL, so the parser gets past the first token.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "|",
    "&&",
    "||",
    "!",
    "=",
    "!=",
    "=~",
    "!~",
    "<",
    "<=",
    ">",
    ">=",
    ">>",
    "<<",
    "~",
    "&>",
    "!>>",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    ",",
    ".",
    "span.",
    "resource.",
    "parent.",
    ".a",
    "span.x",
    "\"",
    "\"s\"",
    "`r`",
    "\\",
    "1",
    "-1",
    "1.5",
    ".5",
    "1e9",
    "10ms",
    "1h30m",
    "µs",
    "true",
    "nil",
    "error",
    "server",
    "name",
    "duration",
    "span:name",
    "trace:id",
    "span:",
    "count()",
    "count",
    "avg(",
    "sum(duration)",
    "by(",
    "select(",
    "coalesce()",
    "rate()",
    "quantile_over_time(duration, .9)",
    "topk(5)",
    "bottomk(",
    "compare(",
    "with(",
    "most_recent=true",
    " ",
    "\n",
    "\t",
    "é",
    "'",
];

fn traceql_like() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|parts| parts.concat())
}

fn check_no_panic(input: &str) {
    if let Err(e) = legato_traceql::parse(input) {
        assert!(e.line >= 1 && e.col >= 1, "{input:?}: {e}");
        assert!(e.line <= input.lines().count().max(1) + 1, "{input:?}: {e}");
        assert!(!e.message.is_empty());
    }
}

// ----- generators for well-typed filters -----------------------------------------------------

fn attribute() -> impl Strategy<Value = FieldExpr> {
    let scope = prop::sample::select(vec![
        AttributeScope::Unscoped,
        AttributeScope::Span,
        AttributeScope::Resource,
        AttributeScope::Event,
        AttributeScope::Link,
        AttributeScope::Instrumentation,
    ]);
    let name = prop_oneof![
        "[a-z][a-z0-9_]{0,5}(\\.[a-z][a-z0-9_-]{0,5}){0,2}",
        "[a-z \"\\\\=.{}]{1,8}", // printed quoted
    ];
    (scope, any::<bool>(), name)
        .prop_filter(
            "parent.span. / parent.resource. would change the scope",
            |(scope, parent, name)| {
                !(*parent
                    && *scope == AttributeScope::Unscoped
                    && (name.starts_with("span.") || name.starts_with("resource.")))
            },
        )
        .prop_map(|(scope, parent, name)| {
            let parent = parent
                && matches!(
                    scope,
                    AttributeScope::Unscoped | AttributeScope::Span | AttributeScope::Resource
                );
            FieldExpr::Attribute(Attribute { scope, parent, name })
        })
}

fn num_leaf() -> impl Strategy<Value = FieldExpr> {
    prop_oneof![
        (i64::MIN + 1..=i64::MAX).prop_map(|i| FieldExpr::Static(Static::Int(i))),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| FieldExpr::Static(Static::Float(f))),
        (-(1i64 << 60)..(1i64 << 60)).prop_map(|d| FieldExpr::Static(Static::Duration(d))),
        Just(FieldExpr::Intrinsic(Intrinsic::Duration)),
        Just(FieldExpr::Intrinsic(Intrinsic::ChildCount)),
        attribute(),
    ]
}

fn num_expr() -> impl Strategy<Value = FieldExpr> {
    num_leaf().prop_recursive(4, 24, 2, |inner| {
        let op = prop::sample::select(vec![
            ArithOp::Add,
            ArithOp::Sub,
            ArithOp::Mul,
            ArithOp::Div,
            ArithOp::Mod,
            ArithOp::Pow,
        ]);
        prop_oneof![
            (op, inner.clone(), inner.clone()).prop_map(|(op, l, r)| FieldExpr::Arith {
                op,
                lhs: Box::new(l),
                rhs: Box::new(r)
            }),
            inner.prop_filter_map("negated literals are folded", |e| match e {
                FieldExpr::Static(_) => None,
                e => Some(FieldExpr::Negate(Box::new(e))),
            }),
        ]
    })
}

fn str_expr() -> impl Strategy<Value = FieldExpr> {
    prop_oneof![
        "[ -~\n\t]{0,8}".prop_map(|s| FieldExpr::Static(Static::String(s))),
        Just(FieldExpr::Intrinsic(Intrinsic::Name)),
        attribute(),
    ]
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Neq,
        CmpOp::Lt,
        CmpOp::Lte,
        CmpOp::Gt,
        CmpOp::Gte,
    ])
}

fn bool_expr() -> impl Strategy<Value = FieldExpr> {
    let compare = |op, l, r| FieldExpr::Compare {
        op,
        lhs: Box::new(l),
        rhs: Box::new(r),
    };
    let leaf = prop_oneof![
        (cmp_op(), num_expr(), num_expr()).prop_map(move |(op, l, r)| compare(op, l, r)),
        (cmp_op(), str_expr(), str_expr()).prop_map(move |(op, l, r)| compare(op, l, r)),
        (
            any::<bool>(),
            str_expr(),
            prop::sample::select(vec!["a.*", "foo|bar", "[0-9]+", "(?i)x", "", "\\d"])
        )
            .prop_map(|(negated, lhs, p)| FieldExpr::Regex {
                negated,
                lhs: Box::new(lhs),
                pattern: p.into()
            }),
        attribute(),
        any::<bool>().prop_map(|b| FieldExpr::Static(Static::Bool(b))),
        Just(compare(
            CmpOp::Eq,
            FieldExpr::Intrinsic(Intrinsic::Status),
            FieldExpr::Static(Static::Status(Status::Error))
        )),
        Just(compare(
            CmpOp::Neq,
            FieldExpr::Intrinsic(Intrinsic::Kind),
            FieldExpr::Static(Static::Kind(Kind::Client))
        )),
        Just(compare(CmpOp::Eq, attribute_x(), FieldExpr::Static(Static::Nil))),
    ];
    leaf.prop_recursive(4, 32, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| FieldExpr::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| FieldExpr::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|e| FieldExpr::Not(Box::new(e))),
        ]
    })
}

fn attribute_x() -> FieldExpr {
    FieldExpr::Attribute(Attribute {
        scope: AttributeScope::Span,
        parent: false,
        name: "x".into(),
    })
}

// ----- printer -------------------------------------------------------------------------------

fn level(e: &FieldExpr) -> u8 {
    match e {
        FieldExpr::And(..) | FieldExpr::Or(..) => 1,
        FieldExpr::Compare { .. } | FieldExpr::Regex { .. } => 2,
        FieldExpr::Arith {
            op: ArithOp::Add | ArithOp::Sub,
            ..
        } => 3,
        FieldExpr::Not(_) => 4,
        FieldExpr::Arith {
            op: ArithOp::Mul | ArithOp::Div | ArithOp::Mod,
            ..
        } => 5,
        FieldExpr::Arith { op: ArithOp::Pow, .. } => 6,
        FieldExpr::Negate(_) => 7,
        FieldExpr::Static(_) | FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_) => 9,
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn print(e: &FieldExpr, min: u8) -> String {
    let text = match e {
        FieldExpr::Static(s) => match s {
            Static::Nil => "nil".into(),
            Static::Bool(b) => b.to_string(),
            Static::Int(i) => i.to_string(),
            Static::Float(f) => format!("{f:?}"),
            Static::String(s) => quote(s),
            Static::Duration(d) => format!("{d}ns"),
            Static::Status(s) => format!("{s:?}").to_lowercase(),
            Static::Kind(k) => format!("{k:?}").to_lowercase(),
        },
        FieldExpr::Attribute(a) => {
            let prefix = match a.scope {
                AttributeScope::Unscoped => "",
                AttributeScope::Span => "span",
                AttributeScope::Resource => "resource",
                AttributeScope::Event => "event",
                AttributeScope::Link => "link",
                AttributeScope::Instrumentation => "instrumentation",
            };
            let parent = if a.parent {
                if prefix.is_empty() { "parent" } else { "parent." }
            } else {
                ""
            };
            let simple = a.name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            let name = if simple { a.name.clone() } else { quote(&a.name) };
            format!("{parent}{prefix}.{name}")
        }
        FieldExpr::Intrinsic(i) => match i {
            Intrinsic::Duration => "duration".into(),
            Intrinsic::ChildCount => "span:childCount".into(),
            Intrinsic::Name => "span:name".into(),
            Intrinsic::Status => "status".into(),
            Intrinsic::Kind => "span:kind".into(),
            other => panic!("printer does not know {other:?}"),
        },
        FieldExpr::Negate(x) => format!("-{}", print(x, 8)),
        FieldExpr::Not(x) => format!("!{}", print(x, 5)),
        FieldExpr::Arith { op, lhs, rhs } => {
            let (sym, l) = match op {
                ArithOp::Add => ("+", 3),
                ArithOp::Sub => ("-", 3),
                ArithOp::Mul => ("*", 5),
                ArithOp::Div => ("/", 5),
                ArithOp::Mod => ("%", 5),
                ArithOp::Pow => ("^", 6),
            };
            let (lmin, rmin) = if *op == ArithOp::Pow { (l + 1, l) } else { (l, l + 1) };
            format!("{} {sym} {}", print(lhs, lmin), print(rhs, rmin))
        }
        FieldExpr::Compare { op, lhs, rhs } => {
            let sym = match op {
                CmpOp::Eq => "=",
                CmpOp::Neq => "!=",
                CmpOp::Lt => "<",
                CmpOp::Lte => "<=",
                CmpOp::Gt => ">",
                CmpOp::Gte => ">=",
            };
            format!("{} {sym} {}", print(lhs, 2), print(rhs, 3))
        }
        FieldExpr::Regex { negated, lhs, pattern } => {
            format!(
                "{} {} {}",
                print(lhs, 2),
                if *negated { "!~" } else { "=~" },
                quote(pattern)
            )
        }
        FieldExpr::And(l, r) => format!("{} && {}", print(l, 1), print(r, 2)),
        FieldExpr::Or(l, r) => format!("{} || {}", print(l, 1), print(r, 2)),
    };
    if level(e) < min { format!("({text})") } else { text }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_strings(input in any::<String>()) {
        check_no_panic(&input);
    }

    #[test]
    fn never_panics_on_traceql_like_strings(input in traceql_like()) {
        check_no_panic(&input);
    }

    #[test]
    fn filters_round_trip(expr in bool_expr()) {
        let text = format!("{{ {} }}", print(&expr, 0));
        let parsed = legato_traceql::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
        prop_assert_eq!(parsed.pipeline.head, SpansetExpr::Filter(expr), "{}", text);
    }

    #[test]
    fn spanset_chains_round_trip(exprs in prop::collection::vec(bool_expr(), 1..5), ops in prop::collection::vec(0usize..17, 4)) {
        const OPS: [&str; 17] = ["&&", "||", ">", "<", ">>", "<<", "~", "!>", "!<", "!>>", "!<<", "!~", "&>", "&<", "&>>", "&<<", "&~"];
        let mut text = format!("{{ {} }}", print(&exprs[0], 0));
        for (i, e) in exprs.iter().enumerate().skip(1) {
            text = format!("({text}) {} {{ {} }}", OPS[ops[i - 1]], print(e, 0));
        }
        let parsed = legato_traceql::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
        // Count the filters in the tree: every generated filter must be there, in order.
        fn filters(e: &SpansetExpr, out: &mut Vec<FieldExpr>) {
            match e {
                SpansetExpr::Filter(f) => out.push(f.clone()),
                SpansetExpr::And(l, r) | SpansetExpr::Or(l, r) | SpansetExpr::Structural { lhs: l, rhs: r, .. } => {
                    filters(l, out);
                    filters(r, out);
                }
                SpansetExpr::Pipeline(p) => filters(&p.head, out),
            }
        }
        let mut found = Vec::new();
        filters(&parsed.pipeline.head, &mut found);
        prop_assert_eq!(found, exprs, "{}", text);
    }
}
