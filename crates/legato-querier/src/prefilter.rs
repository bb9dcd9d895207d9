//! From a TraceQL query to storage scan options: the columns it needs and row predicates every
//! matching trace must meet. The predicates are necessary conditions only (a superset of the
//! matches); the evaluator still decides. `tests/live_vs_blocks.rs` checks the two agree.

use legato_storage::{Cmp, RowPredicate, ScanOptions, StrTest, ValueTest};
use legato_traceql::ast::{
    AttributeScope, CmpOp, FieldExpr, Intrinsic, Kind, MetricsStage, Pipeline, Query, SpansetExpr, Stage, Static,
    Status, StructuralMode,
};
use legato_traceql::eval::{all_fields, metrics_fields, reads_every_attribute};

pub fn scan_options(query: &Query, extra_fields: &[FieldExpr]) -> ScanOptions {
    let mut options = ScanOptions::default();
    for f in all_fields(query).iter().chain(extra_fields) {
        match f {
            FieldExpr::Attribute(a) => {
                if a.parent {
                    options.attrs = true;
                    options.resource = true;
                }
                match a.scope {
                    AttributeScope::Span => options.attrs = true,
                    AttributeScope::Resource => options.resource |= a.name != "service.name",
                    AttributeScope::Instrumentation => options.resource = true,
                    AttributeScope::Event | AttributeScope::Link => options.extras = true,
                    AttributeScope::Unscoped => {
                        options.attrs = true;
                        options.resource = true;
                        options.extras = true;
                    }
                }
            }
            FieldExpr::Intrinsic(i) => match i {
                Intrinsic::EventName
                | Intrinsic::EventTimeSinceStart
                | Intrinsic::LinkTraceId
                | Intrinsic::LinkSpanId => options.extras = true,
                Intrinsic::InstrumentationName | Intrinsic::InstrumentationVersion => options.resource = true,
                _ => {}
            },
            _ => {}
        }
    }
    options.required = required(&query.pipeline);
    options
}

/// Scan options of a metrics query: its pipeline's, plus every field its metrics stage reads
/// (both sides of arithmetic, `compare()`'s selection), plus every span, resource and scope
/// attribute for `compare()`, which compares them all.
pub fn metrics_scan_options(query: &Query, stage: &MetricsStage) -> ScanOptions {
    let mut options = scan_options(query, &metrics_fields(stage));
    if reads_every_attribute(stage) {
        options.attrs = true;
        options.resource = true;
    }
    options
}

fn required(p: &Pipeline) -> Vec<RowPredicate> {
    let mut out = needs(&p.head);
    for stage in &p.stages {
        if let Stage::Spanset(e) = stage {
            out.extend(needs(e));
        }
    }
    out
}

fn needs(e: &SpansetExpr) -> Vec<RowPredicate> {
    match e {
        SpansetExpr::Filter(f) => {
            let mut conjuncts = Vec::new();
            split_and(f, &mut conjuncts);
            conjuncts.into_iter().filter_map(predicate).collect()
        }
        SpansetExpr::And(a, b) => [needs(a), needs(b)].concat(),
        SpansetExpr::Or(..) => Vec::new(),
        SpansetExpr::Structural {
            mode: StructuralMode::Not,
            rhs,
            ..
        } => needs(rhs),
        SpansetExpr::Structural { lhs, rhs, .. } => [needs(lhs), needs(rhs)].concat(),
        SpansetExpr::Pipeline(p) => required(p),
    }
}

fn split_and<'a>(f: &'a FieldExpr, out: &mut Vec<&'a FieldExpr>) {
    match f {
        FieldExpr::And(a, b) => {
            split_and(a, out);
            split_and(b, out);
        }
        other => out.push(other),
    }
}

fn cmp(op: CmpOp) -> Cmp {
    match op {
        CmpOp::Eq => Cmp::Eq,
        CmpOp::Neq => Cmp::Neq,
        CmpOp::Lt => Cmp::Lt,
        CmpOp::Lte => Cmp::Lte,
        CmpOp::Gt => Cmp::Gt,
        CmpOp::Gte => Cmp::Gte,
    }
}

fn anchored(pattern: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{pattern})$")).ok()
}

/// A single-span condition as a row predicate, when it maps onto a column.
fn predicate(f: &FieldExpr) -> Option<RowPredicate> {
    match f {
        FieldExpr::Compare { op, lhs, rhs } => {
            let FieldExpr::Static(value) = rhs.as_ref() else {
                return None;
            };
            match (lhs.as_ref(), value) {
                // `!=` also holds for a span without the attribute: no row predicate for it.
                (FieldExpr::Attribute(a), Static::String(s)) if is_service_name(a) && *op != CmpOp::Neq => {
                    Some(RowPredicate::ServiceName(StrTest::Cmp(cmp(*op), s.clone())))
                }
                (FieldExpr::Intrinsic(Intrinsic::Name), Static::String(s)) => {
                    Some(RowPredicate::Name(StrTest::Cmp(cmp(*op), s.clone())))
                }
                (FieldExpr::Intrinsic(Intrinsic::Status), Static::Status(st))
                    if matches!(op, CmpOp::Eq | CmpOp::Neq) =>
                {
                    let code = match st {
                        Status::Unset => 0,
                        Status::Ok => 1,
                        Status::Error => 2,
                    };
                    Some(RowPredicate::Status(cmp(*op), code))
                }
                (FieldExpr::Intrinsic(Intrinsic::Kind), Static::Kind(k)) if matches!(op, CmpOp::Eq | CmpOp::Neq) => {
                    let code = match k {
                        Kind::Unspecified => 0,
                        Kind::Internal => 1,
                        Kind::Server => 2,
                        Kind::Client => 3,
                        Kind::Producer => 4,
                        Kind::Consumer => 5,
                    };
                    Some(RowPredicate::Kind(cmp(*op), code))
                }
                (FieldExpr::Intrinsic(Intrinsic::Duration), Static::Duration(d)) => {
                    Some(RowPredicate::DurationNanos(cmp(*op), *d))
                }
                (FieldExpr::Attribute(a), v)
                    if matches!(a.scope, AttributeScope::Span | AttributeScope::Resource)
                        && !a.parent
                        && *op != CmpOp::Neq =>
                {
                    let test = match v {
                        Static::String(s) => ValueTest::Str(StrTest::Cmp(cmp(*op), s.clone())),
                        Static::Int(i) => ValueTest::Int(cmp(*op), *i),
                        Static::Float(x) => ValueTest::Float(cmp(*op), *x),
                        Static::Bool(b) => ValueTest::Bool(cmp(*op), *b),
                        _ => return None,
                    };
                    Some(attr_predicate(a, test))
                }
                _ => None,
            }
        }
        FieldExpr::Regex {
            negated: false,
            lhs,
            pattern,
        } => {
            let re = anchored(pattern)?;
            match lhs.as_ref() {
                FieldExpr::Attribute(a) if is_service_name(a) => {
                    Some(RowPredicate::ServiceName(StrTest::Regex { re, negated: false }))
                }
                FieldExpr::Intrinsic(Intrinsic::Name) => {
                    Some(RowPredicate::Name(StrTest::Regex { re, negated: false }))
                }
                FieldExpr::Attribute(a)
                    if matches!(a.scope, AttributeScope::Span | AttributeScope::Resource) && !a.parent =>
                {
                    Some(attr_predicate(a, ValueTest::Str(StrTest::Regex { re, negated: false })))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// A span or resource attribute condition.
fn attr_predicate(a: &legato_traceql::ast::Attribute, test: ValueTest) -> RowPredicate {
    let key = a.name.clone();
    match a.scope {
        AttributeScope::Resource => RowPredicate::ResourceAttr { key, test },
        _ => RowPredicate::SpanAttr { key, test },
    }
}

fn is_service_name(a: &legato_traceql::ast::Attribute) -> bool {
    a.scope == AttributeScope::Resource && !a.parent && a.name == "service.name"
}
