//! The PromQL subset Grafana's service map and RED table send to a Prometheus data source
//! (instant and range `rate`/`increase` over counters and histogram buckets;
//! `sum`/`avg`/`min`/`max`/`count`/`group`/`topk`/`bottomk` with `by`/`without`;
//! `histogram_quantile`; label matchers; `or`/`and`/`unless`; arithmetic and comparisons
//! with scalars and between vectors), evaluated over the generator's [`History`].
//! Parsing is `promql-parser`'s; anything else is refused naming the unsupported part.
//!
//! The history holds one increase per series and minute, so `rate(x[r])` at `t` is the sum
//! of the increases stamped in `(t - r, t]` divided by `r`: exact at minute resolution, with
//! none of Prometheus's extrapolation. A series is present at `t` while it had a point within
//! `presence` (the registry's `stale_duration`, as long as the generator keeps sending it)
//! before the range. A bare counter selector's value is its total over the points read
//! (the query range plus `presence` before it): counters restart at every restart anyway,
//! so only `rate`/`increase` of them carry meaning.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use legato_model::TenantId;
use promql_parser::label::{Matcher, Matchers};
use promql_parser::parser::{AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, VectorSelector};
use serde_json::{Value as Json, json};

use crate::history::{History, Points, SeriesLabels};

/// A `match[]` series selector.
pub type Selector = VectorSelector;

/// Why a query was refused or failed, as Prometheus's API names it.
#[derive(Debug, Clone, PartialEq)]
pub enum PromError {
    /// 400 `bad_data`: unparsable or unsupported query, bad parameters.
    BadData(String),
    /// 503 `unavailable`: the history could not be read.
    Unavailable(String),
}

impl std::fmt::Display for PromError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadData(m) | Self::Unavailable(m) => f.write_str(m),
        }
    }
}

fn bad(msg: impl Into<String>) -> PromError {
    PromError::BadData(msg.into())
}

/// Settings of an evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long after its last point a series is still present (ms).
    pub presence_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            presence_ms: 15 * 60_000,
        }
    }
}

/// An evaluated value at one time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<(SeriesLabels, f64)>),
}

/// One series read for a selector, with running sums for range lookups.
struct Loaded {
    labels: SeriesLabels,
    points: Points,
    /// `cum[i]` = sum of `points[..i]`.
    cum: Vec<f64>,
}

impl Loaded {
    fn new(labels: SeriesLabels, points: Points) -> Self {
        let mut cum = Vec::with_capacity(points.len() + 1);
        cum.push(0.0);
        for (_, v) in &points {
            cum.push(cum.last().copied().unwrap_or(0.0) + v);
        }
        Self { labels, points, cum }
    }

    /// Sum of the points stamped in `(from, to]`.
    fn sum(&self, from: i64, to: i64) -> f64 {
        let a = self.points.partition_point(|(t, _)| *t <= from);
        let b = self.points.partition_point(|(t, _)| *t <= to);
        self.cum[b.max(a)] - self.cum[a]
    }

    /// Whether a point lies in `(from, to]`.
    fn any(&self, from: i64, to: i64) -> bool {
        let a = self.points.partition_point(|(t, _)| *t <= from);
        self.points.get(a).is_some_and(|(t, _)| *t <= to)
    }
}

/// The selectors of a query, read once for all evaluation times.
struct Data {
    by_selector: HashMap<String, Arc<Vec<Loaded>>>,
    settings: Settings,
}

fn selector_key(vs: &VectorSelector) -> String {
    vs.to_string()
}

/// Parses and checks a query: everything it uses is supported.
pub fn parse(text: &str) -> Result<Expr, PromError> {
    let expr = promql_parser::parser::parse(text).map_err(|e| bad(format!("invalid parameter \"query\": {e}")))?;
    check(&expr)?;
    Ok(expr)
}

const FUNCTIONS: &[&str] = &["rate", "increase", "histogram_quantile", "vector", "abs", "scalar"];
const AGGREGATIONS: &[&str] = &["sum", "avg", "min", "max", "count", "group", "topk", "bottomk"];

fn unsupported(what: impl std::fmt::Display) -> PromError {
    bad(format!(
        "{what} is not supported by Legato's /prometheus API (it evaluates the PromQL Grafana's service map and RED table send; see docs/prometheus-api.md)"
    ))
}

fn check(expr: &Expr) -> Result<(), PromError> {
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !AGGREGATIONS.contains(&op.as_str()) {
                return Err(unsupported(format!("aggregation {op}")));
            }
            if let Some(p) = &a.param {
                check(p)?;
            }
            check(&a.expr)
        }
        Expr::Unary(u) => check(&u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && !matches!(m.card, promql_parser::parser::VectorMatchCardinality::OneToOne)
                && !is_set_op(&b.op.to_string())
            {
                return Err(unsupported("group_left/group_right"));
            }
            check(&b.lhs)?;
            check(&b.rhs)
        }
        Expr::Paren(p) => check(&p.expr),
        Expr::Subquery(_) => Err(unsupported("a subquery")),
        Expr::NumberLiteral(_) => Ok(()),
        Expr::StringLiteral(_) => Err(unsupported("a string literal")),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(m) => check_selector(&m.vs),
        Expr::Call(c) => {
            if !FUNCTIONS.contains(&c.func.name) {
                return Err(unsupported(format!("function {}()", c.func.name)));
            }
            if matches!(c.func.name, "rate" | "increase")
                && !matches!(c.args.args.first().map(|a| a.as_ref()), Some(Expr::MatrixSelector(_)))
            {
                return Err(unsupported(format!(
                    "{}() of anything but a range selector",
                    c.func.name
                )));
            }
            c.args.args.iter().try_for_each(|a| check(a))
        }
        Expr::Extension(_) => Err(unsupported("an extension expression")),
    }
}

fn check_selector(vs: &VectorSelector) -> Result<(), PromError> {
    if vs.offset.is_some() {
        return Err(unsupported("offset"));
    }
    if vs.at.is_some() {
        return Err(unsupported("the @ modifier"));
    }
    Ok(())
}

fn is_set_op(op: &str) -> bool {
    matches!(op, "or" | "and" | "unless")
}

/// The metric a selector names (`x{...}` or `{__name__="x"}`), if exactly one.
fn selector_name(vs: &VectorSelector) -> Option<&str> {
    vs.name.as_deref().or_else(|| {
        vs.matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && matches!(m.op, promql_parser::label::MatchOp::Equal))
            .map(|m| m.value.as_str())
    })
}

/// Whether a series' labels satisfy a selector (a missing label is "").
pub fn selector_matches(vs: &VectorSelector, labels: &SeriesLabels) -> bool {
    if let Some(name) = &vs.name
        && label(labels, "__name__") != name
    {
        return false;
    }
    matchers_match(&vs.matchers, labels)
}

/// A label's value ("" when missing) in labels sorted by name.
fn label<'a>(labels: &'a SeriesLabels, name: &str) -> &'a str {
    labels
        .binary_search_by(|(k, _)| k.as_str().cmp(name))
        .map(|i| labels[i].1.as_str())
        .unwrap_or("")
}

fn matchers_match(m: &Matchers, labels: &SeriesLabels) -> bool {
    let all = |ms: &[Matcher]| ms.iter().all(|m| m.is_match(label(labels, &m.name)));
    all(&m.matchers) && (m.or_matchers.is_empty() || m.or_matchers.iter().any(|g| all(g)))
}

/// Selectors of `expr` with the longest range each is read over (0 for instant selectors).
fn selectors(expr: &Expr, out: &mut Vec<(VectorSelector, i64)>) {
    match expr {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                selectors(p, out);
            }
            selectors(&a.expr, out);
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::VectorSelector(vs) => out.push((vs.clone(), 0)),
        Expr::MatrixSelector(m) => out.push((m.vs.clone(), m.range.as_millis() as i64)),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        _ => {}
    }
}

impl Data {
    async fn load(
        history: &History,
        tenant: &TenantId,
        expr: &Expr,
        start: i64,
        end: i64,
        settings: Settings,
    ) -> Result<Self, PromError> {
        let mut wanted = Vec::new();
        selectors(expr, &mut wanted);
        let mut by_selector = HashMap::new();
        for (vs, range) in wanted {
            let key = selector_key(&vs);
            if by_selector.contains_key(&key) {
                continue;
            }
            // Long enough back for the widest range and for presence.
            let from = start - range.max(0) - settings.presence_ms;
            let series = history
                .read(tenant, from, end, selector_name(&vs), &|labels| {
                    selector_matches(&vs, labels)
                })
                .await
                .map_err(PromError::Unavailable)?;
            let loaded: Vec<Loaded> = series.into_iter().map(|(l, p)| Loaded::new(l, p)).collect();
            by_selector.insert(key, Arc::new(loaded));
        }
        Ok(Self { by_selector, settings })
    }

    fn series(&self, vs: &VectorSelector) -> Arc<Vec<Loaded>> {
        self.by_selector.get(&selector_key(vs)).cloned().unwrap_or_default()
    }
}

/// Evaluates `text` at `t_ms`.
pub async fn instant(
    history: &History,
    tenant: &TenantId,
    text: &str,
    t_ms: i64,
    settings: Settings,
) -> Result<Value, PromError> {
    let expr = parse(text)?;
    let data = Data::load(history, tenant, &expr, t_ms, t_ms, settings).await?;
    eval(&expr, &data, t_ms)
}

/// Evaluates `text` at every step from `start_ms` to `end_ms`: series and their samples.
pub async fn range(
    history: &History,
    tenant: &TenantId,
    text: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    settings: Settings,
) -> Result<Vec<(SeriesLabels, Vec<(i64, f64)>)>, PromError> {
    let expr = parse(text)?;
    if matches!(expr, Expr::MatrixSelector(_)) {
        return Err(bad(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
        ));
    }
    let data = Data::load(history, tenant, &expr, start_ms, end_ms, settings).await?;
    let mut out: BTreeMap<SeriesLabels, Vec<(i64, f64)>> = BTreeMap::new();
    let mut t = start_ms;
    while t <= end_ms {
        match eval(&expr, &data, t)? {
            Value::Scalar(v) => out.entry(Vec::new()).or_default().push((t, v)),
            Value::Vector(elems) => {
                for (labels, v) in elems {
                    out.entry(labels).or_default().push((t, v));
                }
            }
        }
        t += step_ms;
    }
    Ok(out.into_iter().collect())
}

fn eval(expr: &Expr, data: &Data, t: i64) -> Result<Value, PromError> {
    match expr {
        Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
        Expr::Paren(p) => eval(&p.expr, data, t),
        Expr::Unary(u) => Ok(match eval(&u.expr, data, t)? {
            Value::Scalar(v) => Value::Scalar(-v),
            Value::Vector(elems) => Value::Vector(elems.into_iter().map(|(l, v)| (drop_name(l), -v)).collect()),
        }),
        Expr::VectorSelector(vs) => {
            let presence = data.settings.presence_ms;
            let elems = data
                .series(vs)
                .iter()
                .filter(|s| s.any(t - presence, t))
                .map(|s| (s.labels.clone(), s.sum(i64::MIN, t)))
                .collect();
            Ok(Value::Vector(elems))
        }
        Expr::MatrixSelector(_) => Err(bad(
            "a range vector can only be an argument of rate() or increase() here",
        )),
        Expr::Call(c) => call(c, data, t),
        Expr::Aggregate(a) => aggregate(a, data, t),
        Expr::Binary(b) => binary(b, data, t),
        other => Err(unsupported(format!("expression {other}"))),
    }
}

fn scalar_arg(c: &Call, i: usize, data: &Data, t: i64) -> Result<f64, PromError> {
    match c.args.args.get(i).map(|a| eval(a, data, t)).transpose()? {
        Some(Value::Scalar(v)) => Ok(v),
        _ => Err(bad(format!(
            "expected a scalar as argument {} of {}()",
            i + 1,
            c.func.name
        ))),
    }
}

fn vector_arg(c: &Call, i: usize, data: &Data, t: i64) -> Result<Vec<(SeriesLabels, f64)>, PromError> {
    match c.args.args.get(i).map(|a| eval(a, data, t)).transpose()? {
        Some(Value::Vector(v)) => Ok(v),
        _ => Err(bad(format!(
            "expected an instant vector as argument {} of {}()",
            i + 1,
            c.func.name
        ))),
    }
}

fn call(c: &Call, data: &Data, t: i64) -> Result<Value, PromError> {
    match c.func.name {
        "rate" | "increase" => {
            let Some(Expr::MatrixSelector(m)) = c.args.args.first().map(|a| a.as_ref()) else {
                return Err(unsupported(format!(
                    "{}() of anything but a range selector",
                    c.func.name
                )));
            };
            let range = m.range.as_millis() as i64;
            if range <= 0 {
                return Err(bad("the range of a range selector must be positive"));
            }
            let presence = data.settings.presence_ms;
            let per = if c.func.name == "rate" {
                range as f64 / 1000.0
            } else {
                1.0
            };
            let elems = data
                .series(&m.vs)
                .iter()
                .filter(|s| s.any(t - range - presence, t))
                .map(|s| (drop_name(s.labels.clone()), s.sum(t - range, t) / per))
                .collect();
            Ok(Value::Vector(elems))
        }
        "histogram_quantile" => {
            let q = scalar_arg(c, 0, data, t)?;
            let buckets = vector_arg(c, 1, data, t)?;
            Ok(Value::Vector(histogram_quantile(q, buckets)))
        }
        "vector" => Ok(Value::Vector(vec![(Vec::new(), scalar_arg(c, 0, data, t)?)])),
        "scalar" => {
            let v = vector_arg(c, 0, data, t)?;
            Ok(Value::Scalar(if v.len() == 1 { v[0].1 } else { f64::NAN }))
        }
        "abs" => Ok(Value::Vector(
            vector_arg(c, 0, data, t)?
                .into_iter()
                .map(|(l, v)| (drop_name(l), v.abs()))
                .collect(),
        )),
        other => Err(unsupported(format!("function {other}()"))),
    }
}

fn drop_name(mut labels: SeriesLabels) -> SeriesLabels {
    labels.retain(|(k, _)| k != "__name__");
    labels
}

/// The labels an aggregation or a vector match groups by.
fn grouping(labels: &SeriesLabels, modifier: Option<&LabelModifier>) -> SeriesLabels {
    match modifier {
        Some(LabelModifier::Include(names)) => labels
            .iter()
            .filter(|(k, _)| names.labels.iter().any(|n| n == k))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(names)) => labels
            .iter()
            .filter(|(k, _)| k != "__name__" && !names.labels.iter().any(|n| n == k))
            .cloned()
            .collect(),
        None => Vec::new(),
    }
}

fn aggregate(a: &AggregateExpr, data: &Data, t: i64) -> Result<Value, PromError> {
    let op = a.op.to_string();
    let Value::Vector(elems) = eval(&a.expr, data, t)? else {
        return Err(bad(format!("expected an instant vector in aggregation {op}")));
    };
    let mut groups: BTreeMap<SeriesLabels, Vec<(SeriesLabels, f64)>> = BTreeMap::new();
    for (labels, v) in elems {
        groups
            .entry(grouping(&labels, a.modifier.as_ref()))
            .or_default()
            .push((labels, v));
    }
    if matches!(op.as_str(), "topk" | "bottomk") {
        let k = match a.param.as_deref().map(|p| eval(p, data, t)).transpose()? {
            Some(Value::Scalar(k)) if k >= 0.0 => k as usize,
            _ => {
                return Err(bad(format!(
                    "expected a non-negative scalar parameter in aggregation {op}"
                )));
            }
        };
        let mut out = Vec::new();
        for (_, mut members) in groups {
            members.sort_by(|x, y| {
                let o = x.1.partial_cmp(&y.1).unwrap_or(std::cmp::Ordering::Equal);
                if op == "topk" { o.reverse() } else { o }
            });
            out.extend(members.into_iter().take(k));
        }
        return Ok(Value::Vector(out));
    }
    let out = groups
        .into_iter()
        .map(|(labels, members)| {
            let values = members.iter().map(|(_, v)| *v);
            let n = members.len() as f64;
            let v = match op.as_str() {
                "sum" => values.sum(),
                "avg" => values.sum::<f64>() / n,
                "min" => values.fold(f64::INFINITY, f64::min),
                "max" => values.fold(f64::NEG_INFINITY, f64::max),
                "count" => n,
                _ => 1.0, // group
            };
            (labels, v)
        })
        .collect();
    Ok(Value::Vector(out))
}

/// Prometheus's `histogram_quantile` over classic buckets (`le` labels): per label set
/// without `le`, linear interpolation inside the bucket holding the rank.
fn histogram_quantile(q: f64, buckets: Vec<(SeriesLabels, f64)>) -> Vec<(SeriesLabels, f64)> {
    let mut groups: BTreeMap<SeriesLabels, Vec<(f64, f64)>> = BTreeMap::new();
    for (labels, v) in buckets {
        let Some(le) = labels.iter().find(|(k, _)| k == "le").and_then(|(_, v)| parse_le(v)) else {
            continue;
        };
        let key: SeriesLabels = labels
            .into_iter()
            .filter(|(k, _)| k != "le" && k != "__name__")
            .collect();
        groups.entry(key).or_default().push((le, v));
    }
    groups
        .into_iter()
        .map(|(labels, mut b)| {
            b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
            (labels, bucket_quantile(q, &b))
        })
        .collect()
}

fn parse_le(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" | "+inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let Some(&(last_le, total)) = buckets.last() else {
        return f64::NAN;
    };
    if buckets.len() < 2 || !last_le.is_infinite() || total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let i = buckets.partition_point(|(_, count)| *count < rank);
    if i == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if i == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (start, below) = if i == 0 {
        (0.0, 0.0)
    } else {
        (buckets[i - 1].0, buckets[i - 1].1)
    };
    let (end, count) = buckets[i];
    if count - below <= 0.0 {
        return end;
    }
    start + (end - start) * ((rank - below) / (count - below))
}

fn arith(op: &str, a: f64, b: f64) -> Option<f64> {
    Some(match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        "%" => a % b,
        "^" => a.powf(b),
        _ => return None,
    })
}

fn compare(op: &str, a: f64, b: f64) -> Option<bool> {
    Some(match op {
        "==" => a == b,
        "!=" => a != b,
        ">" => a > b,
        "<" => a < b,
        ">=" => a >= b,
        "<=" => a <= b,
        _ => return None,
    })
}

/// `a op b` for two scalars, or a vector element and a scalar (`keep`: the element stays).
fn combine(op: &str, a: f64, b: f64, return_bool: bool, keep: f64) -> Result<Option<f64>, PromError> {
    if let Some(v) = arith(op, a, b) {
        return Ok(Some(v));
    }
    match compare(op, a, b) {
        Some(r) if return_bool => Ok(Some(if r { 1.0 } else { 0.0 })),
        Some(r) => Ok(r.then_some(keep)),
        None => Err(unsupported(format!("operator {op} here"))),
    }
}

fn binary(b: &BinaryExpr, data: &Data, t: i64) -> Result<Value, PromError> {
    let op = b.op.to_string();
    let return_bool = b.return_bool();
    let lhs = eval(&b.lhs, data, t)?;
    let rhs = eval(&b.rhs, data, t)?;
    match (lhs, rhs) {
        (Value::Scalar(x), Value::Scalar(y)) => {
            let v = combine(&op, x, y, true, x)?.unwrap_or(f64::NAN);
            Ok(Value::Scalar(v))
        }
        (Value::Vector(v), Value::Scalar(s)) => {
            let mut out = Vec::new();
            for (l, x) in v {
                if let Some(r) = combine(&op, x, s, return_bool, x)? {
                    out.push((drop_name_if(l, &op, return_bool), r));
                }
            }
            Ok(Value::Vector(out))
        }
        (Value::Scalar(s), Value::Vector(v)) => {
            let mut out = Vec::new();
            for (l, x) in v {
                if let Some(r) = combine(&op, s, x, return_bool, x)? {
                    out.push((drop_name_if(l, &op, return_bool), r));
                }
            }
            Ok(Value::Vector(out))
        }
        (Value::Vector(l), Value::Vector(r)) => vector_binary(&op, b, l, r),
    }
}

/// Arithmetic drops the metric name; a filtering comparison keeps it.
fn drop_name_if(labels: SeriesLabels, op: &str, return_bool: bool) -> SeriesLabels {
    if compare(op, 0.0, 0.0).is_some() && !return_bool {
        labels
    } else {
        drop_name(labels)
    }
}

fn vector_binary(
    op: &str,
    b: &BinaryExpr,
    lhs: Vec<(SeriesLabels, f64)>,
    rhs: Vec<(SeriesLabels, f64)>,
) -> Result<Value, PromError> {
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    let signature = |labels: &SeriesLabels| match matching {
        Some(m) => grouping(labels, Some(m)),
        None => drop_name(labels.clone()),
    };
    if is_set_op(op) {
        let right: HashSet<SeriesLabels> = rhs.iter().map(|(l, _)| signature(l)).collect();
        return Ok(Value::Vector(match op {
            "and" => lhs.into_iter().filter(|(l, _)| right.contains(&signature(l))).collect(),
            "unless" => lhs
                .into_iter()
                .filter(|(l, _)| !right.contains(&signature(l)))
                .collect(),
            _ => {
                let left: HashSet<SeriesLabels> = lhs.iter().map(|(l, _)| signature(l)).collect();
                let mut out = lhs;
                out.extend(rhs.into_iter().filter(|(l, _)| !left.contains(&signature(l))));
                out
            }
        }));
    }
    let mut right: HashMap<SeriesLabels, f64> = HashMap::new();
    for (l, v) in rhs {
        if right.insert(signature(&l), v).is_some() {
            return Err(bad(format!(
                "found duplicate series for the match group on the right hand-side of the operation {op}: many-to-many matching not allowed"
            )));
        }
    }
    let return_bool = b.return_bool();
    let mut out = Vec::new();
    for (l, x) in lhs {
        let sig = signature(&l);
        let Some(y) = right.get(&sig) else {
            continue;
        };
        if let Some(v) = combine(op, x, *y, return_bool, x)? {
            let labels = match matching {
                Some(LabelModifier::Include(_)) if arith(op, 0.0, 0.0).is_some() || return_bool => sig,
                _ => drop_name_if(l, op, return_bool),
            };
            out.push((labels, v));
        }
    }
    Ok(Value::Vector(out))
}

/// Prometheus's number format: shortest representation, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

fn time_json(ms: i64) -> Json {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// A series' labels as Prometheus's `metric` object.
pub fn metric_json(labels: &SeriesLabels) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

/// `data` of an instant query.
pub fn instant_json(value: &Value, t_ms: i64) -> Json {
    match value {
        Value::Scalar(v) => json!({"resultType": "scalar", "result": [time_json(t_ms), format_value(*v)]}),
        Value::Vector(elems) => json!({
            "resultType": "vector",
            "result": elems.iter().map(|(l, v)| json!({
                "metric": metric_json(l),
                "value": [time_json(t_ms), format_value(*v)],
            })).collect::<Vec<_>>(),
        }),
    }
}

/// `data` of a range query.
pub fn matrix_json(series: &[(SeriesLabels, Vec<(i64, f64)>)]) -> Json {
    json!({
        "resultType": "matrix",
        "result": series.iter().map(|(l, samples)| json!({
            "metric": metric_json(l),
            "values": samples.iter().map(|(t, v)| json!([time_json(*t), format_value(*v)])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Parses `match[]` selectors (each must be a plain series selector).
pub fn parse_selectors(matches: &[String]) -> Result<Vec<VectorSelector>, PromError> {
    matches
        .iter()
        .map(|m| match promql_parser::parser::parse(m) {
            Ok(Expr::VectorSelector(vs)) => {
                check_selector(&vs)?;
                let only_empty = vs.name.is_none()
                    && vs.matchers.or_matchers.is_empty()
                    && vs.matchers.matchers.iter().all(|m| m.is_match(""));
                if only_empty {
                    return Err(bad(format!("match[] must contain at least one non-empty matcher: {m}")));
                }
                Ok(vs)
            }
            Ok(_) => Err(bad(format!(
                "invalid parameter \"match[]\": {m} is not a series selector"
            ))),
            Err(e) => Err(bad(format!("invalid parameter \"match[]\": {e}"))),
        })
        .collect()
}

/// Label sets of the series in `[start, end]` that any of `selectors` match (all when none).
pub async fn series(
    history: &History,
    tenant: &TenantId,
    selectors: &[VectorSelector],
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<SeriesLabels>, PromError> {
    let found = history
        .read(tenant, start_ms, end_ms, None, &|labels| {
            selectors.is_empty() || selectors.iter().any(|vs| selector_matches(vs, labels))
        })
        .await
        .map_err(PromError::Unavailable)?;
    let mut out: Vec<SeriesLabels> = found.into_iter().map(|(l, _)| l).collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::{Label, Sample, TimeSeries};
    use legato_storage::object_store::memory::InMemory;

    fn series(name: &str, labels: &[(&str, &str)], value: f64) -> TimeSeries {
        let mut all = vec![Label {
            name: "__name__".into(),
            value: name.into(),
        }];
        all.extend(labels.iter().map(|(k, v)| Label {
            name: (*k).into(),
            value: (*v).into(),
        }));
        all.sort_by(|a, b| a.name.cmp(&b.name));
        TimeSeries {
            labels: all,
            samples: vec![Sample { value, timestamp: 0 }],
            exemplars: Vec::new(),
        }
    }

    const T0: i64 = 1_700_000_000_000;

    /// Two collections a minute apart: frontend→checkout 60 calls (6 failed), checkout→db 30,
    /// with latency buckets.
    fn history() -> History {
        let h = History::new(Arc::new(InMemory::new()));
        let tenant = TenantId::single();
        let edge = |c: &'static str, s: &'static str| vec![("client", c), ("server", s), ("connection_type", "")];
        let fc = edge("frontend", "checkout");
        let mut cd = edge("checkout", "db");
        cd[2].1 = "database";
        let bucket = |le: &'static str, v: f64| {
            let mut l = fc.clone();
            l.push(("le", le));
            series("traces_service_graph_request_server_seconds_bucket", &l, v)
        };
        h.record(&tenant, T0, &[]);
        h.record(
            &tenant,
            T0 + 60_000,
            &[
                series("traces_service_graph_request_total", &fc, 60.0),
                series("traces_service_graph_request_failed_total", &fc, 6.0),
                series("traces_service_graph_request_total", &cd, 30.0),
                series("traces_service_graph_request_server_seconds_sum", &fc, 12.0),
                bucket("0.1", 30.0),
                bucket("0.5", 54.0),
                bucket("+Inf", 60.0),
            ],
        );
        h
    }

    async fn at(h: &History, q: &str) -> Result<Value, PromError> {
        instant(h, &TenantId::single(), q, T0 + 90_000, Settings::default()).await
    }

    fn one(v: Value) -> Vec<(String, f64)> {
        let Value::Vector(elems) = v else {
            panic!("not a vector")
        };
        let mut out: Vec<(String, f64)> = elems
            .into_iter()
            .map(|(l, v)| {
                (
                    l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                    v,
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[tokio::test]
    async fn grafana_service_map_queries() {
        let h = history();
        let rate = one(at(
            &h,
            "sum by (client, server) (rate(traces_service_graph_request_total[5m]))",
        )
        .await
        .unwrap());
        assert_eq!(
            rate,
            vec![
                ("client=checkout,server=db".to_string(), 0.1),
                ("client=frontend,server=checkout".to_string(), 0.2)
            ]
        );
        let labels = one(
            at(&h, "group by (client, connection_type, server) (traces_service_graph_request_total{client=~\".+\"}) OR group by (client, connection_type, server) (traces_service_graph_request_failed_total)")
                .await
                .unwrap(),
        );
        assert_eq!(labels.len(), 2);
        assert!(labels[0].0.contains("connection_type=database"), "{labels:?}");
        let p90 = one(
            at(&h, "histogram_quantile(0.9, sum(rate(traces_service_graph_request_server_seconds_bucket{server=\"checkout\"}[5m])) by (le, client, server))")
                .await
                .unwrap(),
        );
        // 54 of 60 below 0.5 s: the 90th percentile is the 0.5 s bound.
        assert_eq!(p90, vec![("client=frontend,server=checkout".to_string(), 0.5)]);
        let top = one(at(
            &h,
            "topk(1, sum(increase(traces_service_graph_request_total[10m])) by (server))",
        )
        .await
        .unwrap());
        assert_eq!(top, vec![("server=checkout".to_string(), 60.0)]);
        let avg = one(
            at(&h, "sum(rate(traces_service_graph_request_server_seconds_sum[5m])) by (server) / sum(rate(traces_service_graph_request_total[5m])) by (server) * 1000")
                .await
                .unwrap(),
        );
        assert_eq!(avg[0].0, "server=checkout");
        assert!((avg[0].1 - 200.0).abs() < 1e-9, "{avg:?}");
        assert_eq!(at(&h, "1+1").await.unwrap(), Value::Scalar(2.0));
        // Nothing within the window: no series (the window ends before the points).
        let old = instant(
            &h,
            &TenantId::single(),
            "rate(traces_service_graph_request_total[1m])",
            T0 - 60_000,
            Settings::default(),
        )
        .await
        .unwrap();
        assert_eq!(old, Value::Vector(Vec::new()));
    }

    #[tokio::test]
    async fn unsupported_parts_are_named() {
        let h = history();
        for (q, part) in [
            ("predict_linear(x[5m], 60)", "predict_linear"),
            ("rate(x[5m] offset 1h)", "offset"),
            ("max_over_time(rate(x[1m])[5m:1m])", "max_over_time"),
            ("quantile(0.5, x)", "quantile"),
            ("sum(", "invalid parameter"),
        ] {
            let err = at(&h, q).await.unwrap_err();
            assert!(
                matches!(&err, PromError::BadData(m) if m.contains(part)),
                "{q}: {err:?}"
            );
        }
    }

    #[test]
    fn quantiles_follow_prometheus() {
        let b = [(0.1, 30.0), (0.5, 54.0), (f64::INFINITY, 60.0)];
        assert_eq!(bucket_quantile(0.5, &b), 0.1);
        assert!((bucket_quantile(0.7, &b) - (0.1 + 0.4 * (12.0 / 24.0))).abs() < 1e-12);
        assert_eq!(
            bucket_quantile(0.99, &b),
            0.5,
            "in the +Inf bucket: the highest finite bound"
        );
        assert!(bucket_quantile(0.5, &[(f64::INFINITY, 0.0)]).is_nan());
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(0.25), "0.25");
    }
}
