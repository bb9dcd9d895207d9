//! `{ outer } | compare({ selection }, topN, start, end)`, as Tempo computes it
//! (`pkg/traceql/engine_metrics_compare.go`; see docs/traceql.md for the rules):
//!
//! * every span the outer pipeline matches is in the selection when the selection filter
//!   matches it and, with a window, `start < span start <= end`; otherwise in the baseline;
//! * each of its attributes (trace-level root name and service, resource, instrumentation,
//!   span intrinsics and span attributes) counts once per step for its value, and once in
//!   the attribute's total;
//! * per attribute and group, the `topN` values with the most spans over the whole range are
//!   reported, as `{__meta_type="baseline"|"selection", <attr>=<value>}`, with the totals as
//!   `{__meta_type="baseline_total"|"selection_total", <attr>="nil"}`. Tempo also builds
//!   `{__meta_error="__too_many_values__", <attr>="nil"}` for an attribute with more than
//!   `topN` values, a series without samples, which its `ToProto` drops before any client
//!   (or its own frontend) sees it; so there is none here.
//!
//! Like a Tempo job, a part sent to the frontend (`into_partial`) keeps only the top `topN`
//! values of each attribute; the frontend adds parts up and takes the top values again.
//!
//! Exemplars, as Tempo places them (`MetricsCompare.observeExemplar` and `result`, the
//! frontend's `BaselineAggregator` and `attachExemplars`): one span per trace (of those the
//! outer pipeline matches in the range, the one `exemplar_rank` ranks first; Tempo's job
//! picks one at random) is kept for its group
//! (baseline or selection) while the group's exemplar set takes it. It carries every attribute
//! of the span as its labels, as Tempo's `span.AllAttributes()` after a select-all fetch: the
//! attributes counted here, plus `trace:id`, `duration` and `traceDuration` (see
//! `exemplar_attributes`). When finished, it goes to the total of every attribute it has in its
//! group (`baseline_total` or `selection_total`), valued at that total in its step (NaN until
//! `to_series` fills it, as Tempo's frontend does). One set over the whole answer then takes at
//! most `exemplars` of these copies, two per 1/50 of the range.

use std::collections::HashMap;

use legato_model::span::{AttrValue, TraceData};

use super::exemplars::ExemplarBuckets;
use super::stages::Dense;
use super::{Exemplar, Grid, exemplar_rank, trace_id_label};
use crate::ast::{Compare, Intrinsic};
use crate::eval::{Plan, TraceCtx};
use crate::value::Value;

const GROUPS: [&str; 2] = ["baseline", "selection"];

/// What one part of the data counted for `compare()` (see `MetricsPartial`).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComparePartial {
    pub baseline: Vec<CompareAttr>,
    pub selection: Vec<CompareAttr>,
    /// Exemplars of each group, with their attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_exemplars: Vec<Exemplar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selection_exemplars: Vec<Exemplar>,
}

/// One attribute of one group: its total and its top values, as (step, count) of the steps
/// with spans.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompareAttr {
    pub name: String,
    pub total: Vec<(u32, f64)>,
    pub values: Vec<(Value, Vec<(u32, f64)>)>,
}

/// The counts of `compare()`.
pub(crate) struct CompareAcc {
    selection: Plan,
    top_n: usize,
    /// `(start, end]` in unix nanoseconds.
    window: Option<(u64, u64)>,
    groups: [Group; 2],
    budget: Budget,
    pub max_series: usize,
    pub truncated: bool,
    /// Exemplars of each group, and the sets that take them.
    exemplars: [Vec<Exemplar>; 2],
    exemplar_buckets: [ExemplarBuckets; 2],
}

/// Attributes counted so far, against the series limit (each counts twice, for its values
/// and its total, as in Tempo's count of compare's series).
#[derive(Default)]
struct Budget {
    attributes: usize,
}

#[derive(Default)]
struct Group {
    /// By attribute label: `span.http.method`, `resource.service.name`, `name`, ...
    attrs: HashMap<String, Attr>,
}

/// Counts per step of one attribute in one group.
struct Attr {
    total: Vec<f64>,
    /// String values (most of them), looked up without allocating.
    strings: HashMap<String, Vec<f64>>,
    /// Values of other types, by their debug form.
    others: HashMap<String, (Value, Vec<f64>)>,
}

/// A value being counted.
enum Val<'a> {
    Str(&'a str),
    Other(Value),
}

impl Attr {
    fn new(steps: usize) -> Self {
        Self {
            total: vec![0.0; steps],
            strings: HashMap::new(),
            others: HashMap::new(),
        }
    }

    fn add(&mut self, v: Val<'_>, step: usize, n: f64) {
        let steps = self.total.len();
        self.total[step] += n;
        let counts = match v {
            Val::Str(s) => match self.strings.get_mut(s) {
                Some(c) => c,
                None => self.strings.entry(s.to_string()).or_insert_with(|| vec![0.0; steps]),
            },
            Val::Other(v) => {
                &mut self
                    .others
                    .entry(format!("{v:?}"))
                    .or_insert_with(|| (v, vec![0.0; steps]))
                    .1
            }
        };
        counts[step] += n;
    }

    /// The `n` values with the most spans (ties: in value order).
    fn top(&self, n: usize) -> Vec<(Value, &Vec<f64>)> {
        let mut all: Vec<(f64, String, Value, &Vec<f64>)> = self
            .strings
            .iter()
            .map(|(s, c)| {
                let v = Value::Str(s.clone());
                (c.iter().sum(), format!("{v:?}"), v, c)
            })
            .chain(
                self.others
                    .iter()
                    .map(|(k, (v, c))| (c.iter().sum(), k.clone(), v.clone(), c)),
            )
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        all.into_iter().take(n).map(|(_, _, v, c)| (v, c)).collect()
    }
}

fn sparse(counts: &[f64]) -> Vec<(u32, f64)> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 0.0)
        .map(|(i, n)| (i as u32, *n))
        .collect()
}

/// `scope.name`, quoted as Tempo prints attribute names that are not plain identifiers.
fn scoped(buf: &mut String, scope: &str, name: &str) {
    buf.clear();
    buf.push_str(scope);
    buf.push('.');
    let plain = !name.chars().any(|c| c.is_whitespace() || "{}()=~!<>&|^,\"".contains(c));
    if plain {
        buf.push_str(name);
        return;
    }
    buf.push('"');
    for c in name.chars() {
        if c == '\\' || c == '"' {
            buf.push('\\');
        }
        buf.push(c);
    }
    buf.push('"');
}

fn attr_val(v: &AttrValue) -> Val<'_> {
    match v {
        AttrValue::Str(s) => Val::Str(s),
        other => Val::Other(Value::from_attr(other)),
    }
}

impl Val<'_> {
    fn to_value(&self) -> Value {
        match self {
            Val::Str(s) => Value::Str((*s).to_string()),
            Val::Other(v) => v.clone(),
        }
    }
}

/// Calls `f` with the name and value of each attribute of span `i` that `compare()` counts:
/// trace-level root name and service (`trace_level`), resource, instrumentation, span
/// intrinsics and span attributes, named as Tempo names them.
fn each_attribute(trace_level: &[(&str, Value)], ctx: &TraceCtx<'_>, i: usize, mut f: impl FnMut(&str, Val<'_>)) {
    let s = &ctx.trace.spans[i];
    let mut buf = String::new();
    for (name, v) in trace_level {
        let v = match v {
            Value::Str(s) => Val::Str(s),
            other => Val::Other(other.clone()),
        };
        f(name, v);
    }
    for (k, v) in &s.origin.resource {
        scoped(&mut buf, "resource", k);
        f(&buf, attr_val(v));
    }
    f("instrumentation:name", Val::Str(&s.origin.scope_name));
    f("instrumentation:version", Val::Str(&s.origin.scope_version));
    for (k, v) in &s.origin.scope_attrs {
        scoped(&mut buf, "instrumentation", k);
        f(&buf, attr_val(v));
    }
    f("name", Val::Str(&s.name));
    f("status", Val::Other(Value::Status(s.status_code)));
    f("statusMessage", Val::Str(&s.status_message));
    f("kind", Val::Other(Value::Kind(s.kind)));
    f("span:childCount", Val::Other(ctx.intrinsic(i, Intrinsic::ChildCount)));
    for (k, v) in &s.attrs {
        scoped(&mut buf, "span", k);
        f(&buf, attr_val(v));
    }
}

impl CompareAcc {
    pub fn new(c: &Compare, selection: Plan, exemplar_buckets: ExemplarBuckets) -> Self {
        Self {
            selection,
            top_n: c.top_n.max(1) as usize,
            window: (c.start_ns > 0 && c.end_ns > 0).then_some((c.start_ns, c.end_ns)),
            groups: [Group::default(), Group::default()],
            budget: Budget::default(),
            max_series: 0,
            truncated: false,
            exemplars: [Vec::new(), Vec::new()],
            exemplar_buckets: [exemplar_buckets.fresh(), exemplar_buckets],
        }
    }

    /// The attribute of `group` named `name`, created if the series limit allows.
    fn attr<'a>(&'a mut self, group: usize, name: &str, steps: usize) -> Option<&'a mut Attr> {
        if !self.groups[group].attrs.contains_key(name) {
            if self.max_series > 0 && (self.budget.attributes + 1) * 2 > self.max_series {
                self.truncated = true;
                return None;
            }
            self.budget.attributes += 1;
            self.groups[group].attrs.insert(name.to_string(), Attr::new(steps));
        }
        self.groups[group].attrs.get_mut(name)
    }

    /// Counts one span's value of an attribute.
    fn count(&mut self, group: usize, name: &str, v: Val<'_>, step: usize, steps: usize) {
        if let Some(attr) = self.attr(group, name, steps) {
            attr.add(v, step, 1.0);
        }
    }

    /// Keeps `e` for `group` if it has none of its trace yet and its set takes it.
    fn offer(&mut self, group: usize, e: Exemplar) {
        let kept = &mut self.exemplars[group];
        if self.exemplar_buckets[group].full() || kept.iter().any(|x| x.trace_id == e.trace_id) {
            return;
        }
        if self.exemplar_buckets[group].admit(e.timestamp_ms) {
            kept.push(e);
        }
    }

    /// Counts the attributes of `spans` (matched by the outer pipeline) of one trace.
    pub fn observe(&mut self, grid: &Grid, trace: &TraceData, spans: &[usize]) {
        let Some(&first) = spans.first() else {
            return;
        };
        let mut selected = vec![false; trace.spans.len()];
        for set in self.selection.eval(trace) {
            for i in set.spans {
                selected[i] = true;
            }
        }
        let ctx = TraceCtx::new(trace);
        let trace_level: Vec<(&str, Value)> = [
            ("rootServiceName", Intrinsic::RootService),
            ("rootName", Intrinsic::RootName),
        ]
        .into_iter()
        .map(|(name, i)| (name, ctx.intrinsic(first, i)))
        .filter(|(_, v)| !v.is_nil())
        .collect();
        let steps = grid.steps;
        // The trace's exemplar span, as `MetricsEval::observe` picks it, and its group.
        let picked = spans
            .iter()
            .filter(|&&i| grid.step_of(trace.spans[i].start_unix_nano).is_some())
            .min_by_key(|&&i| exemplar_rank(trace.spans[i].span_id))
            .copied();
        for &i in spans {
            let s = &trace.spans[i];
            let Some(step) = grid.step_of(s.start_unix_nano) else {
                continue;
            };
            let in_window = self
                .window
                .is_none_or(|(start, end)| s.start_unix_nano > start && s.start_unix_nano <= end);
            let g = usize::from(selected[i] && in_window);
            let wanted = picked == Some(i) && !self.exemplar_buckets[g].full();
            let mut attributes = Vec::new();
            each_attribute(&trace_level, &ctx, i, |name, v| {
                if wanted {
                    attributes.push((name.to_string(), v.to_value()));
                }
                self.count(g, name, v, step, steps);
            });
            if wanted {
                let mut e = Exemplar::new(
                    trace.trace_id,
                    s.span_id,
                    (s.start_unix_nano / 1_000_000) as i64,
                    f64::NAN,
                );
                e.attributes = exemplar_attributes(&ctx, i, attributes);
                self.offer(g, e);
            }
        }
    }

    /// The top values of each attribute, as a Tempo job reports them.
    pub fn into_partial(self) -> ComparePartial {
        let top_n = self.top_n;
        let mut groups = Vec::new();
        for group in &self.groups {
            let mut attrs: Vec<CompareAttr> = Vec::new();
            for (name, attr) in &group.attrs {
                let top = attr.top(top_n);
                attrs.push(CompareAttr {
                    name: name.clone(),
                    total: sparse(&attr.total),
                    values: top.into_iter().map(|(v, c)| (v, sparse(c))).collect(),
                });
            }
            attrs.sort_by(|a, b| a.name.cmp(&b.name));
            groups.push(attrs);
        }
        let selection = groups.pop().unwrap_or_default();
        let baseline = groups.pop().unwrap_or_default();
        let [baseline_exemplars, selection_exemplars] = self.exemplars;
        ComparePartial {
            baseline,
            selection,
            baseline_exemplars,
            selection_exemplars,
        }
    }

    /// Adds another part's counts (Tempo's frontend combiner).
    pub fn merge(&mut self, part: ComparePartial, steps: usize) {
        for (g, exemplars) in [(0, part.baseline_exemplars), (1, part.selection_exemplars)] {
            exemplars.into_iter().for_each(|e| self.offer(g, e));
        }
        for (g, attrs) in [(0, part.baseline), (1, part.selection)] {
            for a in attrs {
                let Some(attr) = self.attr(g, &a.name, steps) else {
                    continue;
                };
                let add = |counts: &mut Vec<f64>, sparse: &[(u32, f64)]| {
                    for (i, n) in sparse {
                        if let Some(c) = counts.get_mut(*i as usize) {
                            *c += n;
                        }
                    }
                };
                add(&mut attr.total, &a.total);
                for (v, counts) in a.values {
                    let slot = match v {
                        Value::Str(s) => attr.strings.entry(s).or_insert_with(|| vec![0.0; steps]),
                        v => {
                            &mut attr
                                .others
                                .entry(format!("{v:?}"))
                                .or_insert_with(|| (v, vec![0.0; steps]))
                                .1
                        }
                    };
                    add(slot, &counts);
                }
            }
        }
    }

    /// The series of the top values and the totals, one value per step (0 without spans);
    /// each exemplar of a group is on the total of every attribute it has (its value is left
    /// NaN, for `to_series` to fill in with the total of its step).
    pub fn finish_dense(self) -> Vec<Dense> {
        let mut out = Vec::new();
        for ((group, meta), exemplars) in self.groups.iter().zip(GROUPS).zip(&self.exemplars) {
            for (name, attr) in &group.attrs {
                let meta_label = |t: &str| ("__meta_type".to_string(), Value::Str(t.to_string()));
                for (v, counts) in attr.top(self.top_n) {
                    out.push(Dense {
                        labels: vec![meta_label(meta), (name.clone(), v)],
                        values: counts.clone(),
                        exemplars: Vec::new(),
                    });
                }
                // Tempo's total carries the attribute with a nil value, which reaches the
                // client as the string "nil".
                out.push(Dense {
                    labels: vec![
                        meta_label(&format!("{meta}_total")),
                        (name.clone(), Value::Str("nil".into())),
                    ],
                    values: attr.total.clone(),
                    exemplars: exemplars
                        .iter()
                        .filter(|e| e.attributes.iter().any(|(n, _)| n == name))
                        .cloned()
                        .collect(),
                });
            }
        }
        out
    }
}

/// The labels of a `compare()` exemplar: `trace:id` and the counted `attributes` of span `i`,
/// then its `duration` and `traceDuration`, which Tempo's select-all fetch also returns (and
/// compare() does not count). Not `span:id`, nor the start time, nested-set numbers or
/// parent id, which that fetch leaves out.
fn exemplar_attributes(ctx: &TraceCtx<'_>, i: usize, attributes: Vec<(String, Value)>) -> Vec<(String, Value)> {
    let mut labels = Vec::with_capacity(attributes.len() + 3);
    labels.push(("trace:id".to_string(), Value::Str(trace_id_label(&ctx.trace.trace_id))));
    labels.extend(attributes);
    labels.push(("duration".to_string(), ctx.intrinsic(i, Intrinsic::Duration)));
    labels.push(("traceDuration".to_string(), ctx.intrinsic(i, Intrinsic::TraceDuration)));
    labels
}
