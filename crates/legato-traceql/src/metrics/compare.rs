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
//! Exemplars, as Tempo places them (`MetricsCompare.result` and the frontend's
//! `attachExemplars`): only the `*_total` series carry them. A span picked as an exemplar goes
//! to the total of every attribute it has in its group (`baseline_total` or
//! `selection_total`), and its value is that total at the exemplar's step (the number of
//! spans of the group with the attribute then); Tempo leaves it NaN until the frontend fills
//! it in the same way. At most one exemplar per trace per series, and `max_exemplars` over all
//! series, copies included.

use std::collections::HashMap;

use legato_model::span::{AttrValue, TraceData};

use super::stages::Dense;
use super::{Exemplar, Grid};
use crate::ast::{Compare, Intrinsic};
use crate::eval::{Plan, TraceCtx};
use crate::value::Value;

const GROUPS: [&str; 2] = ["baseline", "selection"];

/// What one part of the data counted for `compare()` (see `MetricsPartial`).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComparePartial {
    pub baseline: Vec<CompareAttr>,
    pub selection: Vec<CompareAttr>,
}

/// One attribute of one group: its total and its top values, as (step, count) of the steps
/// with spans.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompareAttr {
    pub name: String,
    pub total: Vec<(u32, f64)>,
    pub values: Vec<(Value, Vec<(u32, f64)>)>,
    /// Exemplars of the total (their values are filled in by `finish_dense`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemplars: Vec<Exemplar>,
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
    max_exemplars: usize,
    /// Exemplars kept, over all totals.
    exemplar_count: usize,
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
    /// Exemplars of the total.
    exemplars: Vec<Exemplar>,
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
            exemplars: Vec::new(),
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

    /// Adds `e` unless the total has an exemplar of its trace already.
    fn keep_exemplar(&mut self, e: &Exemplar) -> bool {
        if self.exemplars.iter().any(|x| x.trace_id == e.trace_id) {
            return false;
        }
        self.exemplars.push(e.clone());
        true
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

impl CompareAcc {
    pub fn new(c: &Compare, selection: Plan, max_exemplars: usize) -> Self {
        Self {
            selection,
            top_n: c.top_n.max(1) as usize,
            window: (c.start_ns > 0 && c.end_ns > 0).then_some((c.start_ns, c.end_ns)),
            groups: [Group::default(), Group::default()],
            budget: Budget::default(),
            max_series: 0,
            truncated: false,
            max_exemplars,
            exemplar_count: 0,
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

    /// Counts one span's value of an attribute, and keeps `exemplar` for the attribute's
    /// total while exemplars are wanted.
    fn count(&mut self, group: usize, name: &str, v: Val<'_>, step: usize, steps: usize, exemplar: Option<&Exemplar>) {
        let wanted = self.exemplar_count < self.max_exemplars;
        let Some(attr) = self.attr(group, name, steps) else {
            return;
        };
        attr.add(v, step, 1.0);
        if let Some(e) = exemplar.filter(|_| wanted)
            && attr.keep_exemplar(e)
        {
            self.exemplar_count += 1;
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
        let mut buf = String::new();
        for &i in spans {
            let s = &trace.spans[i];
            let Some(step) = grid.step_of(s.start_unix_nano) else {
                continue;
            };
            let in_window = self
                .window
                .is_none_or(|(start, end)| s.start_unix_nano > start && s.start_unix_nano <= end);
            let g = usize::from(selected[i] && in_window);
            let exemplar = (self.exemplar_count < self.max_exemplars).then_some(Exemplar {
                trace_id: trace.trace_id,
                span_id: s.span_id,
                timestamp_ms: (s.start_unix_nano / 1_000_000) as i64,
                value: 0.0,
            });
            let ex = exemplar.as_ref();
            for (name, v) in &trace_level {
                let v = match v {
                    Value::Str(s) => Val::Str(s),
                    other => Val::Other(other.clone()),
                };
                self.count(g, name, v, step, steps, ex);
            }
            for (k, v) in &s.origin.resource {
                scoped(&mut buf, "resource", k);
                self.count(g, &buf, attr_val(v), step, steps, ex);
            }
            self.count(
                g,
                "instrumentation:name",
                Val::Str(&s.origin.scope_name),
                step,
                steps,
                ex,
            );
            self.count(
                g,
                "instrumentation:version",
                Val::Str(&s.origin.scope_version),
                step,
                steps,
                ex,
            );
            for (k, v) in &s.origin.scope_attrs {
                scoped(&mut buf, "instrumentation", k);
                self.count(g, &buf, attr_val(v), step, steps, ex);
            }
            self.count(g, "name", Val::Str(&s.name), step, steps, ex);
            self.count(g, "status", Val::Other(Value::Status(s.status_code)), step, steps, ex);
            self.count(g, "statusMessage", Val::Str(&s.status_message), step, steps, ex);
            self.count(g, "kind", Val::Other(Value::Kind(s.kind)), step, steps, ex);
            let children = ctx.intrinsic(i, Intrinsic::ChildCount);
            self.count(g, "span:childCount", Val::Other(children), step, steps, ex);
            for (k, v) in &s.attrs {
                scoped(&mut buf, "span", k);
                self.count(g, &buf, attr_val(v), step, steps, ex);
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
                    exemplars: attr.exemplars.clone(),
                });
            }
            attrs.sort_by(|a, b| a.name.cmp(&b.name));
            groups.push(attrs);
        }
        let selection = groups.pop().unwrap_or_default();
        let baseline = groups.pop().unwrap_or_default();
        ComparePartial { baseline, selection }
    }

    /// Adds another part's counts (Tempo's frontend combiner).
    pub fn merge(&mut self, part: ComparePartial, steps: usize) {
        for (g, attrs) in [(0, part.baseline), (1, part.selection)] {
            for a in attrs {
                let room = self.max_exemplars.saturating_sub(self.exemplar_count);
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
                let mut kept = 0;
                for e in &a.exemplars {
                    if kept < room && attr.keep_exemplar(e) {
                        kept += 1;
                    }
                }
                self.exemplar_count += kept;
            }
        }
    }

    /// The series of the top values and the totals, one value per step (0 without spans);
    /// the totals carry the exemplars, each valued at the total of its step.
    pub fn finish_dense(self, grid: &Grid) -> Vec<Dense> {
        let mut out = Vec::new();
        for (group, meta) in self.groups.iter().zip(GROUPS) {
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
                    exemplars: total_exemplars(attr, grid),
                });
            }
        }
        out
    }
}

/// The exemplars of a total, each valued at the total of the step its start (in whole
/// milliseconds, as Tempo maps it) falls in; one outside the range is dropped, as Tempo drops
/// it.
fn total_exemplars(attr: &Attr, grid: &Grid) -> Vec<Exemplar> {
    attr.exemplars
        .iter()
        .filter_map(|e| {
            let step = grid.step_of(u64::try_from(e.timestamp_ms).ok()?.saturating_mul(1_000_000))?;
            let value = *attr.total.get(step)?;
            Some(Exemplar { value, ..e.clone() })
        })
        .collect()
}
