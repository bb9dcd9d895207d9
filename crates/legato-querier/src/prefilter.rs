//! From a TraceQL query to storage scan options: the columns it needs and row predicates every
//! matching trace must meet. The predicates are necessary conditions only (a superset of the
//! matches); the evaluator still decides. `tests/it/live_vs_blocks.rs` checks the two agree.

use legato_storage::{Cmp, RowPredicate, ScanOptions, StrTest, ValueTest};
use legato_traceql::ast::{
    AggregateOp, AttributeScope, CmpOp, FieldExpr, Intrinsic, Kind, MetricsStage, Pipeline, Query, ScalarExpr,
    SpansetExpr, Stage, Static, Status, StructuralMode,
};
use legato_traceql::eval::{all_fields, metrics_fields, reads_every_attribute};
use legato_traceql::tags::{TagSummary, TagValue};

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
    options.min_rows = min_rows(&query.pipeline);
    options
}

/// For `{ filter } | count() > N` (or `>=`, or `N < count()`): the spans each trace must
/// have that meet every predicate of the filter, as `ScanOptions::min_rows`. 0 for any other
/// shape. The predicates must all come from that one filter (no later spanset stage adds
/// some), since one span meets them all at once; stages after the count only narrow further.
fn min_rows(p: &Pipeline) -> usize {
    let SpansetExpr::Filter(_) = &p.head else {
        return 0;
    };
    if p.stages.iter().any(|s| matches!(s, Stage::Spanset(_))) {
        return 0;
    }
    let Some(Stage::ScalarFilter { op, lhs, rhs }) = p.stages.first() else {
        return 0;
    };
    let count = |e: &ScalarExpr| {
        matches!(
            e,
            ScalarExpr::Aggregate {
                op: AggregateOp::Count,
                ..
            }
        )
    };
    let number = |e: &ScalarExpr| match e {
        ScalarExpr::Static(Static::Int(i)) => Some(*i as f64),
        ScalarExpr::Static(Static::Float(f)) => Some(*f),
        _ => None,
    };
    // As `count() op n`.
    let (op, n) = match (count(lhs), count(rhs)) {
        (true, false) => (*op, number(rhs)),
        (false, true) => (
            match op {
                CmpOp::Lt => CmpOp::Gt,
                CmpOp::Lte => CmpOp::Gte,
                CmpOp::Gt => CmpOp::Lt,
                CmpOp::Gte => CmpOp::Lte,
                other => *other,
            },
            number(lhs),
        ),
        _ => return 0,
    };
    let Some(n) = n.filter(|n| n.is_finite() && *n >= 0.0) else {
        return 0;
    };
    // The least whole count the comparison admits.
    let least = match op {
        CmpOp::Gt => n.floor() + 1.0,
        CmpOp::Gte | CmpOp::Eq => n.ceil(),
        _ => return 0,
    };
    least.min(u32::MAX as f64) as usize
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

pub(crate) fn split_and<'a>(f: &'a FieldExpr, out: &mut Vec<&'a FieldExpr>) {
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
pub(crate) fn predicate(f: &FieldExpr) -> Option<RowPredicate> {
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

/// Whether a block whose tag summary (`tags.json`) is `summary` may hold a span meeting
/// `pred`. False only when the summary lists every value the key has in the block (not
/// truncated) and none passes the test, or when no span of the block has the key: then the
/// block cannot hold a matching trace and is not read. Conservative everywhere else.
pub fn summary_admits(summary: &TagSummary, pred: &RowPredicate) -> bool {
    let (scope, key, test) = match pred {
        RowPredicate::SpanAttr { key, test } => ("span", key.as_str(), test),
        RowPredicate::ResourceAttr { key, test } => ("resource", key.as_str(), test),
        // Both have a column of their own; a span without them still has a value there.
        RowPredicate::ServiceName(t) => {
            return values_admit(summary, "resource", "service.name", &|v| str_admits(t, v)).unwrap_or(true);
        }
        RowPredicate::Name(t) => {
            return values_admit(summary, "intrinsic", "name", &|v| str_admits(t, v)).unwrap_or(true);
        }
        RowPredicate::Status(..) | RowPredicate::Kind(..) | RowPredicate::DurationNanos(..) => return true,
    };
    match summary.scopes.get(scope).and_then(|tags| tags.get(key)) {
        // No span (or resource) of the block has the key: a row predicate needs it.
        None => false,
        Some(_) => values_admit(summary, scope, key, &|v| value_admits(test, v)).unwrap_or(true),
    }
}

/// `Some(any value passes)` when the key's values are all known, `None` when they are not.
fn values_admit(summary: &TagSummary, scope: &str, key: &str, admits: &dyn Fn(&TagValue) -> bool) -> Option<bool> {
    let set = summary.scopes.get(scope)?.get(key)?;
    if set.truncated {
        return None;
    }
    Some(set.values.iter().any(admits))
}

fn str_admits(test: &StrTest, v: &TagValue) -> bool {
    v.type_name != "string" || test.test(&v.value)
}

/// Whether a summarised value may pass `test`, as `row_bits` would test the stored value.
fn value_admits(test: &ValueTest, v: &TagValue) -> bool {
    let (mut s, mut i, mut d, mut b) = (None, None, None, None);
    match v.type_name {
        "string" => s = Some(v.value.as_str()),
        "int" => i = v.value.parse().ok(),
        "float" => d = v.value.parse().ok(),
        "bool" => b = v.value.parse().ok(),
        _ => return true,
    }
    // A number that does not read back is not ruled out.
    if (v.type_name == "int" && i.is_none()) || (v.type_name == "float" && d.is_none()) {
        return true;
    }
    test.test(s, i, d, b, false)
}

/// A prefilter for held (ingester) traces from a scan's required predicates: reads the
/// encoded segments in place and accepts a trace only when every predicate is met by one of
/// its spans (with `min_rows` above 1: by each of that many spans), as block scans decide per
/// row (`legato_storage::prefilter::row_bits`). `None` when there is nothing to test.
pub fn recent_prefilter(options: &ScanOptions) -> Option<legato_proto::push::RecentPrefilter> {
    let (required, min_rows) = (options.required.clone(), options.min_rows);
    if (required.is_empty() && min_rows <= 1) || required.len() > 64 {
        return None;
    }
    let all = if required.len() == 64 {
        u64::MAX
    } else {
        (1u64 << required.len()) - 1
    };
    Some(std::sync::Arc::new(move |segments: &[bytes::Bytes]| {
        let mut met = 0u64;
        // Spans meeting every predicate (counted only for `min_rows`).
        let mut whole = 0usize;
        for segment in segments {
            let walked = legato_proto::span_wire::for_each_span(segment, |resource, span| {
                if min_rows > 1 {
                    if required.iter().all(|p| span_meets(p, resource, span)) {
                        whole += 1;
                    }
                    return;
                }
                for (i, p) in required.iter().enumerate() {
                    if met & (1 << i) == 0 && span_meets(p, resource, span) {
                        met |= 1 << i;
                    }
                }
            });
            // Unreadable here: let the decoder and evaluator see it.
            if walked.is_err() {
                return true;
            }
            if (min_rows > 1 && whole >= min_rows) || (min_rows <= 1 && met == all) {
                return true;
            }
        }
        false
    }))
}

fn span_meets(
    pred: &RowPredicate,
    resource: &legato_proto::span_wire::ResourceRef<'_>,
    span: &legato_proto::span_wire::SpanRef<'_>,
) -> bool {
    use legato_proto::span_wire::AnyRef;
    let any_passes = |mut values: Box<dyn Iterator<Item = AnyRef<'_>> + '_>, test: &ValueTest| {
        values.any(|v| match v {
            AnyRef::Str(s) => test.test(Some(s), None, None, None, false),
            AnyRef::Int(i) => test.test(None, Some(i), None, None, false),
            AnyRef::Double(d) => test.test(None, None, Some(d), None, false),
            AnyRef::Bool(b) => test.test(None, None, None, Some(b), false),
            // Arrays, maps and bytes: the evaluator decides.
            AnyRef::Other => true,
        })
    };
    match pred {
        RowPredicate::ServiceName(t) => t.test(resource.service_name),
        RowPredicate::Name(t) => t.test(span.name),
        RowPredicate::Status(op, code) => op.test(span.status_code as i8, *code),
        RowPredicate::Kind(op, kind) => op.test(span.kind as i8, *kind),
        RowPredicate::DurationNanos(op, nanos) => {
            // As stored: end - start, negative clamped to zero.
            let d = (span.end_unix_nano.wrapping_sub(span.start_unix_nano) as i64).max(0);
            op.test(d, *nanos)
        }
        RowPredicate::SpanAttr { key, test } => any_passes(Box::new(span.attributes.all(key)), test),
        RowPredicate::ResourceAttr { key, test } => any_passes(Box::new(resource.attributes.all(key)), test),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn min_rows_of(q: &str) -> usize {
        scan_options(&legato_traceql::parse(q).unwrap(), &[]).min_rows
    }

    #[test]
    fn a_count_bound_after_one_filter_becomes_the_rows_a_trace_needs() {
        for (q, rows) in [
            (r#"{ resource.service.name = "frontend" } | count() > 20"#, 21),
            ("{ } | count() >= 3", 3),
            ("{ } | 5 < count()", 6),
            ("{ } | 5 <= count()", 5),
            ("{ } | count() = 2", 2),
            ("{ } | count() > 2.5", 3),
            ("{ } | count() > 3 | by(name)", 4),
            // Shapes it does not bound.
            ("{ } | count() < 3", 0),
            ("{ } | count() != 3", 0),
            ("{ } | avg(duration) > 3ms", 0),
            ("{ } | by(name) | count() > 3", 0),
            ("{ } | count() > 3 | { kind = server }", 0),
            ("{ } && { kind = server } | count() > 3", 0),
            ("{ } | count() * 2 > 3", 0),
            ("{ kind = server }", 0),
        ] {
            assert_eq!(min_rows_of(q), rows, "{q}");
        }
    }
}
