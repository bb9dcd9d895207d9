//! Evaluates a parsed query over one trace at a time. The same code runs on live data, WAL
//! data and blocks: all of them are turned into `legato_model::span::TraceData` first.

use std::collections::HashMap;

use legato_model::span::{AttrValue, SpanData, TraceData};
use regex::Regex;

use crate::ast::{
    AggregateOp, ArithOp, Attribute, AttributeScope, FieldExpr, Intrinsic, MetricsOp, MetricsStage, Pipeline, Query,
    ScalarExpr, SpansetExpr, Stage, Static, StructuralMode, StructuralOp,
};
use crate::value::Value;

/// Spans of one trace selected by a query, with pipeline outputs (`by`, aggregates).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spanset {
    /// Indices into `TraceData::spans`, in trace order.
    pub spans: Vec<usize>,
    pub attrs: Vec<(String, Value)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("invalid regular expression {pattern:?}: {message}")]
    Regex { pattern: String, message: String },
    #[error("{0}")]
    Unsupported(String),
}

/// A query ready to run: regexes compiled, output fields worked out.
#[derive(Debug)]
pub struct Plan {
    pub query: Query,
    regexes: HashMap<String, Regex>,
    /// Fields shown on returned spans: those the filters reference, then `select()`ed ones.
    outputs: Vec<(String, FieldExpr)>,
    /// Whether the span name is shown on returned spans.
    pub shows_name: bool,
}

impl Plan {
    pub fn new(query: Query) -> Result<Self, PlanError> {
        Self::build(query, &HashMap::new())
    }

    /// A plan for another pipeline of the same query (a side of metrics arithmetic, the
    /// selection of `compare()`), sharing the regexes compiled here. The parser has checked
    /// every regex, so compiling the others cannot fail; if one still did, it would match
    /// nothing, as a regex missing from a plan does.
    pub(crate) fn sub(&self, pipeline: Pipeline) -> Self {
        let query = Query {
            pipeline,
            metrics: None,
            hints: self.query.hints.clone(),
        };
        Self::build(query.clone(), &self.regexes).unwrap_or_else(|_| Self {
            query,
            regexes: self.regexes.clone(),
            outputs: Vec::new(),
            shows_name: false,
        })
    }

    fn build(query: Query, compiled: &HashMap<String, Regex>) -> Result<Self, PlanError> {
        let mut regexes = HashMap::new();
        let mut outputs: Vec<(String, FieldExpr)> = Vec::new();
        let mut shows_name = false;
        let mut visit = |e: &FieldExpr| -> Result<(), PlanError> {
            match e {
                FieldExpr::Regex { pattern, .. } if !regexes.contains_key(pattern) => {
                    let re = match compiled.get(pattern) {
                        Some(re) => re.clone(),
                        None => Regex::new(&format!("^(?:{pattern})$")).map_err(|err| PlanError::Regex {
                            pattern: pattern.clone(),
                            message: err.to_string(),
                        })?,
                    };
                    regexes.insert(pattern.clone(), re);
                }
                FieldExpr::Intrinsic(Intrinsic::Name) => shows_name = true,
                _ => {}
            }
            if let Some(key) = output_key(e)
                && !outputs.iter().any(|(k, _)| *k == key)
            {
                outputs.push((key, e.clone()));
            }
            Ok(())
        };
        walk_pipeline(&query.pipeline, &mut visit)?;
        Ok(Self {
            query,
            regexes,
            outputs,
            shows_name,
        })
    }

    /// Whether the query asked for the most recent traces first.
    pub fn most_recent(&self) -> bool {
        self.query
            .hints
            .iter()
            .any(|(k, v)| k == "most_recent" && matches!(v, Static::Bool(true)))
    }

    /// Runs the pipeline on one trace; empty when the trace does not match.
    pub fn eval(&self, trace: &TraceData) -> Vec<Spanset> {
        let ctx = TraceCtx::new(trace);
        let all = Spanset {
            spans: (0..trace.spans.len()).collect(),
            attrs: Vec::new(),
        };
        self.pipeline(&ctx, &self.query.pipeline, vec![all])
    }

    /// Attributes to show on a returned span, keyed by unscoped name.
    pub fn span_attributes(&self, trace: &TraceData, span: usize) -> Vec<(String, AttrValue)> {
        let ctx = TraceCtx::new(trace);
        self.outputs
            .iter()
            .filter_map(|(key, e)| self.field(&ctx, span, e).to_attr().map(|v| (key.clone(), v)))
            .collect()
    }

    /// A field's value on one span (for `by(...)` labels and measured fields of metrics).
    pub fn field_value(&self, trace: &TraceData, span: usize, e: &FieldExpr) -> Value {
        self.field(&TraceCtx::new(trace), span, e)
    }

    fn pipeline(&self, ctx: &TraceCtx<'_>, p: &Pipeline, input: Vec<Spanset>) -> Vec<Spanset> {
        let mut sets: Vec<Spanset> = input.iter().flat_map(|ss| self.spanset(ctx, &p.head, ss)).collect();
        for stage in &p.stages {
            if sets.is_empty() {
                break;
            }
            sets = match stage {
                Stage::Spanset(e) => sets.iter().flat_map(|ss| self.spanset(ctx, e, ss)).collect(),
                Stage::ScalarFilter { op, lhs, rhs } => sets
                    .into_iter()
                    .filter(|ss| {
                        let (l, r) = (self.scalar(ctx, lhs, ss), self.scalar(ctx, rhs, ss));
                        l.compare(*op, &r)
                    })
                    .collect(),
                Stage::By(fields) => self.group_by(ctx, fields, sets),
                Stage::Select(_) => sets,
                Stage::Coalesce => {
                    let mut spans: Vec<usize> = sets.iter().flat_map(|s| s.spans.iter().copied()).collect();
                    spans.sort_unstable();
                    spans.dedup();
                    vec![Spanset {
                        spans,
                        attrs: Vec::new(),
                    }]
                }
            };
        }
        sets.retain(|s| !s.spans.is_empty());
        sets
    }

    fn group_by(&self, ctx: &TraceCtx<'_>, fields: &[FieldExpr], sets: Vec<Spanset>) -> Vec<Spanset> {
        let label = format!("by({})", fields.iter().map(field_label).collect::<Vec<_>>().join(", "));
        let mut out = Vec::new();
        for ss in sets {
            let mut groups: Vec<(Vec<Value>, Vec<usize>)> = Vec::new();
            for &span in &ss.spans {
                let key: Vec<Value> = fields.iter().map(|f| self.field(ctx, span, f)).collect();
                if key.iter().all(Value::is_nil) {
                    continue;
                }
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, spans)) => spans.push(span),
                    None => groups.push((key, vec![span])),
                }
            }
            for (key, spans) in groups {
                let mut attrs = ss.attrs.clone();
                let value = if key.len() == 1 {
                    key.into_iter().next().unwrap_or(Value::Nil)
                } else {
                    Value::Many(key)
                };
                attrs.push((label.clone(), value));
                out.push(Spanset { spans, attrs });
            }
        }
        out
    }

    fn spanset(&self, ctx: &TraceCtx<'_>, e: &SpansetExpr, input: &Spanset) -> Vec<Spanset> {
        match e {
            SpansetExpr::Filter(f) => {
                let spans: Vec<usize> = input
                    .spans
                    .iter()
                    .copied()
                    .filter(|&s| self.field(ctx, s, f).truthy())
                    .collect();
                if spans.is_empty() {
                    Vec::new()
                } else {
                    vec![Spanset {
                        spans,
                        attrs: input.attrs.clone(),
                    }]
                }
            }
            SpansetExpr::And(a, b) => {
                let (l, r) = (self.spanset(ctx, a, input), self.spanset(ctx, b, input));
                if l.is_empty() || r.is_empty() {
                    return Vec::new();
                }
                vec![union(input, l.iter().chain(&r))]
            }
            SpansetExpr::Or(a, b) => {
                let (l, r) = (self.spanset(ctx, a, input), self.spanset(ctx, b, input));
                if l.is_empty() && r.is_empty() {
                    return Vec::new();
                }
                vec![union(input, l.iter().chain(&r))]
            }
            SpansetExpr::Structural { op, mode, lhs, rhs } => {
                let l = union(input, self.spanset(ctx, lhs, input).iter());
                let r = union(input, self.spanset(ctx, rhs, input).iter());
                let spans = structural(ctx.trace, *op, *mode, &l.spans, &r.spans);
                if spans.is_empty() {
                    Vec::new()
                } else {
                    vec![Spanset {
                        spans,
                        attrs: input.attrs.clone(),
                    }]
                }
            }
            SpansetExpr::Pipeline(p) => self.pipeline(ctx, p, vec![input.clone()]),
        }
    }

    fn scalar(&self, ctx: &TraceCtx<'_>, e: &ScalarExpr, ss: &Spanset) -> Value {
        match e {
            ScalarExpr::Static(s) => Value::from_static(s),
            ScalarExpr::Aggregate {
                op: AggregateOp::Count, ..
            } => Value::Int(ss.spans.len() as i64),
            ScalarExpr::Aggregate { op, field } => {
                let Some(field) = field else { return Value::Nil };
                let values: Vec<Value> = ss
                    .spans
                    .iter()
                    .map(|&s| self.field(ctx, s, field))
                    .filter(|v| v.as_f64().is_some())
                    .collect();
                if values.is_empty() {
                    return Value::Nil;
                }
                let is_duration = values.iter().all(|v| matches!(v, Value::Duration(_)));
                let nums: Vec<f64> = values.iter().filter_map(Value::as_f64).collect();
                let result = match op {
                    AggregateOp::Sum => nums.iter().sum(),
                    AggregateOp::Avg => nums.iter().sum::<f64>() / nums.len() as f64,
                    AggregateOp::Min => nums.iter().copied().fold(f64::INFINITY, f64::min),
                    AggregateOp::Max => nums.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    AggregateOp::Count => nums.len() as f64,
                };
                if is_duration {
                    Value::Duration(result as i64)
                } else {
                    Value::Float(result)
                }
            }
            ScalarExpr::Binary { op, lhs, rhs } => arith(*op, &self.scalar(ctx, lhs, ss), &self.scalar(ctx, rhs, ss)),
        }
    }

    fn field(&self, ctx: &TraceCtx<'_>, span: usize, e: &FieldExpr) -> Value {
        match e {
            FieldExpr::Static(s) => Value::from_static(s),
            FieldExpr::Attribute(a) => attribute(ctx.trace, span, a),
            FieldExpr::Intrinsic(i) => ctx.intrinsic(span, *i),
            FieldExpr::Negate(inner) => match self.field(ctx, span, inner) {
                Value::Int(i) => Value::Int(-i),
                Value::Float(f) => Value::Float(-f),
                Value::Duration(d) => Value::Duration(-d),
                _ => Value::Nil,
            },
            FieldExpr::Not(inner) => match self.field(ctx, span, inner) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Nil,
            },
            FieldExpr::Arith { op, lhs, rhs } => arith(*op, &self.field(ctx, span, lhs), &self.field(ctx, span, rhs)),
            FieldExpr::Compare { op, lhs, rhs } => {
                Value::Bool(self.field(ctx, span, lhs).compare(*op, &self.field(ctx, span, rhs)))
            }
            FieldExpr::Regex { negated, lhs, pattern } => {
                let Some(re) = self.regexes.get(pattern) else {
                    return Value::Bool(false);
                };
                let value = self.field(ctx, span, lhs);
                let matches = |v: &Value| matches!(v, Value::Str(s) if re.is_match(s));
                let any = match &value {
                    Value::Many(items) => items.iter().any(matches),
                    v => matches(v),
                };
                if value.is_nil() {
                    return Value::Bool(false);
                }
                Value::Bool(any != *negated)
            }
            FieldExpr::And(a, b) => Value::Bool(self.field(ctx, span, a).truthy() && self.field(ctx, span, b).truthy()),
            FieldExpr::Or(a, b) => Value::Bool(self.field(ctx, span, a).truthy() || self.field(ctx, span, b).truthy()),
        }
    }
}

fn union<'a>(input: &Spanset, sets: impl Iterator<Item = &'a Spanset>) -> Spanset {
    let mut spans: Vec<usize> = sets.flat_map(|s| s.spans.iter().copied()).collect();
    spans.sort_unstable();
    spans.dedup();
    Spanset {
        spans,
        attrs: input.attrs.clone(),
    }
}

fn related(trace: &TraceData, op: StructuralOp, l: usize, r: usize) -> bool {
    let (ls, rs) = (&trace.spans[l], &trace.spans[r]);
    match op {
        StructuralOp::Child => rs.parent == Some(l),
        StructuralOp::Parent => ls.parent == Some(r),
        StructuralOp::Descendant => ls.nested_left < rs.nested_left && rs.nested_right < ls.nested_right,
        StructuralOp::Ancestor => rs.nested_left < ls.nested_left && ls.nested_right < rs.nested_right,
        StructuralOp::Sibling => l != r && ls.parent.is_some() && ls.parent == rs.parent,
    }
}

fn structural(trace: &TraceData, op: StructuralOp, mode: StructuralMode, lhs: &[usize], rhs: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for &r in rhs {
        let hit = lhs.iter().any(|&l| related(trace, op, l, r));
        if hit != matches!(mode, StructuralMode::Not) {
            out.push(r);
        }
    }
    if mode == StructuralMode::Union && !out.is_empty() {
        out.extend(
            lhs.iter()
                .copied()
                .filter(|&l| rhs.iter().any(|&r| related(trace, op, l, r))),
        );
        out.sort_unstable();
        out.dedup();
    }
    out
}

fn arith(op: ArithOp, a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => match op {
            ArithOp::Add => Value::Int(x.wrapping_add(*y)),
            ArithOp::Sub => Value::Int(x.wrapping_sub(*y)),
            ArithOp::Mul => Value::Int(x.wrapping_mul(*y)),
            ArithOp::Div if *y != 0 => Value::Int(x / y),
            ArithOp::Mod if *y != 0 => Value::Int(x % y),
            ArithOp::Pow => Value::Float((*x as f64).powf(*y as f64)),
            _ => Value::Nil,
        },
        (Value::Duration(x), Value::Duration(y)) if matches!(op, ArithOp::Add | ArithOp::Sub) => {
            Value::Duration(if op == ArithOp::Add { x + y } else { x - y })
        }
        _ => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return Value::Nil;
            };
            let v = match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div => x / y,
                ArithOp::Mod => x % y,
                ArithOp::Pow => x.powf(y),
            };
            if v.is_finite() { Value::Float(v) } else { Value::Nil }
        }
    }
}

fn lookup(attrs: &[(String, AttrValue)], name: &str) -> Option<Value> {
    attrs.iter().find(|(k, _)| k == name).map(|(_, v)| Value::from_attr(v))
}

fn attribute(trace: &TraceData, span: usize, a: &Attribute) -> Value {
    let Some(mut s) = trace.spans.get(span) else {
        return Value::Nil;
    };
    if a.parent {
        match s.parent.and_then(|p| trace.spans.get(p)) {
            Some(p) => s = p,
            None => return Value::Nil,
        }
    }
    let from_events = |s: &SpanData| Value::Many(s.events.iter().filter_map(|e| lookup(&e.attrs, &a.name)).collect());
    let from_links = |s: &SpanData| Value::Many(s.links.iter().filter_map(|l| lookup(&l.attrs, &a.name)).collect());
    match a.scope {
        AttributeScope::Span => lookup(&s.attrs, &a.name).unwrap_or(Value::Nil),
        AttributeScope::Resource => lookup(&s.origin.resource, &a.name).unwrap_or(Value::Nil),
        AttributeScope::Instrumentation => lookup(&s.origin.scope_attrs, &a.name).unwrap_or(Value::Nil),
        AttributeScope::Event => from_events(s),
        AttributeScope::Link => from_links(s),
        AttributeScope::Unscoped => lookup(&s.attrs, &a.name)
            .or_else(|| lookup(&s.origin.resource, &a.name))
            .or_else(|| Some(from_links(s)).filter(|v| !v.is_nil()))
            .or_else(|| Some(from_events(s)).filter(|v| !v.is_nil()))
            .unwrap_or(Value::Nil),
    }
}

/// Per-trace values computed once.
pub(crate) struct TraceCtx<'a> {
    pub(crate) trace: &'a TraceData,
    root: Option<usize>,
    duration: i64,
    children: Vec<i64>,
}

impl<'a> TraceCtx<'a> {
    pub(crate) fn new(trace: &'a TraceData) -> Self {
        let root = trace
            .spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.parent_span_id.is_empty())
            .min_by_key(|(_, s)| s.start_unix_nano)
            .map(|(i, _)| i);
        let duration = trace.end_unix_nano().saturating_sub(trace.start_unix_nano()) as i64;
        let mut children = vec![0i64; trace.spans.len()];
        for s in &trace.spans {
            if let Some(p) = s.parent {
                children[p] += 1;
            }
        }
        Self {
            trace,
            root,
            duration,
            children,
        }
    }

    pub(crate) fn intrinsic(&self, span: usize, i: Intrinsic) -> Value {
        let Some(s) = self.trace.spans.get(span) else {
            return Value::Nil;
        };
        let root = self.root.map(|r| &self.trace.spans[r]);
        match i {
            Intrinsic::Name => Value::Str(s.name.clone()),
            Intrinsic::Status => Value::Status(s.status_code),
            Intrinsic::StatusMessage => Value::Str(s.status_message.clone()),
            Intrinsic::Kind => Value::Kind(s.kind),
            Intrinsic::Duration => Value::Duration(s.duration_nanos() as i64),
            Intrinsic::SpanId => Value::Str(hex(&s.span_id)),
            Intrinsic::ParentId => Value::Str(hex(&s.parent_span_id)),
            Intrinsic::ChildCount => Value::Int(self.children[span]),
            Intrinsic::TraceDuration => Value::Duration(self.duration),
            Intrinsic::RootName => root.map_or(Value::Nil, |r| Value::Str(r.name.clone())),
            Intrinsic::RootService => root.map_or(Value::Nil, |r| Value::Str(r.origin.service_name.clone())),
            Intrinsic::TraceId => Value::Str(hex(&self.trace.trace_id)),
            Intrinsic::EventName => Value::Many(s.events.iter().map(|e| Value::Str(e.name.clone())).collect()),
            Intrinsic::EventTimeSinceStart => Value::Many(
                s.events
                    .iter()
                    .map(|e| Value::Duration(e.time_unix_nano.saturating_sub(s.start_unix_nano) as i64))
                    .collect(),
            ),
            Intrinsic::LinkTraceId => Value::Many(s.links.iter().map(|l| Value::Str(hex(&l.trace_id))).collect()),
            Intrinsic::LinkSpanId => Value::Many(s.links.iter().map(|l| Value::Str(hex(&l.span_id))).collect()),
            Intrinsic::InstrumentationName => Value::Str(s.origin.scope_name.clone()),
            Intrinsic::InstrumentationVersion => Value::Str(s.origin.scope_version.clone()),
            Intrinsic::NestedSetLeft => Value::Int(i64::from(s.nested_left)),
            Intrinsic::NestedSetRight => Value::Int(i64::from(s.nested_right)),
            Intrinsic::NestedSetParent => {
                Value::Int(s.parent.map_or(-1, |p| i64::from(self.trace.spans[p].nested_left)))
            }
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key a referenced field is shown under on returned spans, if it is shown at all.
fn output_key(e: &FieldExpr) -> Option<String> {
    match e {
        FieldExpr::Attribute(a) => Some(a.name.clone()),
        FieldExpr::Intrinsic(Intrinsic::Status) => Some("status".into()),
        FieldExpr::Intrinsic(Intrinsic::Kind) => Some("kind".into()),
        FieldExpr::Intrinsic(Intrinsic::StatusMessage) => Some("statusMessage".into()),
        _ => None,
    }
}

/// A readable label for a field (used in `by(...)` spanset attributes).
pub fn field_label(e: &FieldExpr) -> String {
    match e {
        FieldExpr::Attribute(a) => {
            let scope = match a.scope {
                AttributeScope::Unscoped => "",
                AttributeScope::Span => "span",
                AttributeScope::Resource => "resource",
                AttributeScope::Event => "event",
                AttributeScope::Link => "link",
                AttributeScope::Instrumentation => "instrumentation",
            };
            let parent = if a.parent { "parent." } else { "" };
            format!("{parent}{scope}.{}", a.name)
        }
        FieldExpr::Intrinsic(i) => format!("{i:?}").to_lowercase(),
        other => format!("{other:?}"),
    }
}

fn walk_field(e: &FieldExpr, f: &mut impl FnMut(&FieldExpr) -> Result<(), PlanError>) -> Result<(), PlanError> {
    f(e)?;
    match e {
        FieldExpr::Negate(x) | FieldExpr::Not(x) => walk_field(x, f),
        FieldExpr::Regex { lhs, .. } => walk_field(lhs, f),
        FieldExpr::Arith { lhs, rhs, .. } | FieldExpr::Compare { lhs, rhs, .. } => {
            walk_field(lhs, f)?;
            walk_field(rhs, f)
        }
        FieldExpr::And(a, b) | FieldExpr::Or(a, b) => {
            walk_field(a, f)?;
            walk_field(b, f)
        }
        FieldExpr::Static(_) | FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_) => Ok(()),
    }
}

fn walk_spanset(e: &SpansetExpr, f: &mut impl FnMut(&FieldExpr) -> Result<(), PlanError>) -> Result<(), PlanError> {
    match e {
        SpansetExpr::Filter(x) => walk_field(x, f),
        SpansetExpr::And(a, b) | SpansetExpr::Or(a, b) => {
            walk_spanset(a, f)?;
            walk_spanset(b, f)
        }
        SpansetExpr::Structural { lhs, rhs, .. } => {
            walk_spanset(lhs, f)?;
            walk_spanset(rhs, f)
        }
        SpansetExpr::Pipeline(p) => walk_pipeline(p, f),
    }
}

fn walk_pipeline(p: &Pipeline, f: &mut impl FnMut(&FieldExpr) -> Result<(), PlanError>) -> Result<(), PlanError> {
    walk_spanset(&p.head, f)?;
    for stage in &p.stages {
        match stage {
            Stage::Spanset(e) => walk_spanset(e, f)?,
            Stage::Select(fields) => {
                for x in fields {
                    walk_field(x, f)?;
                }
            }
            Stage::ScalarFilter { .. } | Stage::By(_) | Stage::Coalesce => {}
        }
    }
    Ok(())
}

/// Every attribute and intrinsic a query reads (for column projection and tag filtering).
pub fn referenced_fields(query: &Query) -> Vec<FieldExpr> {
    let mut out: Vec<FieldExpr> = Vec::new();
    let mut visit = |e: &FieldExpr| -> Result<(), PlanError> {
        if matches!(e, FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_)) && !out.contains(e) {
            out.push(e.clone());
        }
        Ok(())
    };
    let _ = walk_pipeline(&query.pipeline, &mut visit);
    out
}

/// Every field a query reads anywhere: filters, `by`, `select`, aggregates, metrics.
pub fn all_fields(query: &Query) -> Vec<FieldExpr> {
    let mut out: Vec<FieldExpr> = Vec::new();
    let mut add = |e: &FieldExpr| -> Result<(), PlanError> {
        if matches!(e, FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_)) && !out.contains(e) {
            out.push(e.clone());
        }
        Ok(())
    };
    fn pipeline(p: &Pipeline, add: &mut impl FnMut(&FieldExpr) -> Result<(), PlanError>) {
        spanset(&p.head, add);
        for stage in &p.stages {
            match stage {
                Stage::Spanset(e) => spanset(e, add),
                Stage::By(fields) | Stage::Select(fields) => {
                    for f in fields {
                        let _ = walk_field(f, add);
                    }
                }
                Stage::ScalarFilter { lhs, rhs, .. } => {
                    scalar(lhs, add);
                    scalar(rhs, add);
                }
                Stage::Coalesce => {}
            }
        }
    }
    // Unlike `walk_spanset`, nested pipelines count with their `by()` and aggregates:
    // `({ } | avg(span.x) > 1) && { ... }` reads span.x.
    fn spanset(e: &SpansetExpr, add: &mut impl FnMut(&FieldExpr) -> Result<(), PlanError>) {
        match e {
            SpansetExpr::Filter(x) => {
                let _ = walk_field(x, add);
            }
            SpansetExpr::And(a, b) | SpansetExpr::Or(a, b) => {
                spanset(a, add);
                spanset(b, add);
            }
            SpansetExpr::Structural { lhs, rhs, .. } => {
                spanset(lhs, add);
                spanset(rhs, add);
            }
            SpansetExpr::Pipeline(p) => pipeline(p, add),
        }
    }
    fn scalar(e: &ScalarExpr, add: &mut impl FnMut(&FieldExpr) -> Result<(), PlanError>) {
        match e {
            ScalarExpr::Aggregate { field: Some(f), .. } => {
                let _ = walk_field(f, add);
            }
            ScalarExpr::Binary { lhs, rhs, .. } => {
                scalar(lhs, add);
                scalar(rhs, add);
            }
            _ => {}
        }
    }
    pipeline(&query.pipeline, &mut add);
    if let Some(m) = &query.metrics {
        for f in metrics_fields(m) {
            let _ = walk_field(&f, &mut add);
        }
    }
    out
}

/// Every field a metrics stage reads besides its query's pipeline: the measured field and
/// `by(...)`, `compare()`'s selection filter, and for arithmetic every field of either side
/// (pipelines included). `compare()` also reads every attribute: see
/// [`reads_every_attribute`].
pub fn metrics_fields(stage: &MetricsStage) -> Vec<FieldExpr> {
    let mut out: Vec<FieldExpr> = Vec::new();
    let mut add = |e: &FieldExpr| -> Result<(), PlanError> {
        if matches!(e, FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_)) && !out.contains(e) {
            out.push(e.clone());
        }
        Ok(())
    };
    for f in stage.field.iter().chain(&stage.by) {
        let _ = walk_field(f, &mut add);
    }
    if let Some(c) = &stage.compare {
        let _ = walk_field(&c.selection, &mut add);
    }
    if let Some(b) = &stage.binary {
        for side in [&b.lhs, &b.rhs] {
            let query = Query {
                pipeline: side.pipeline.clone(),
                metrics: Some(side.stage.clone()),
                hints: Vec::new(),
            };
            for f in all_fields(&query) {
                let _ = add(&f);
            }
        }
    }
    out
}

/// Whether a metrics stage reads every span, resource and instrumentation attribute of the
/// spans it counts (`compare()`, alone or on a side of arithmetic), so that column
/// projection must keep them all.
pub fn reads_every_attribute(stage: &MetricsStage) -> bool {
    stage.op == MetricsOp::Compare
        || stage
            .binary
            .as_ref()
            .is_some_and(|b| reads_every_attribute(&b.lhs.stage) || reads_every_attribute(&b.rhs.stage))
}
