//! TraceQL metrics: `rate`, `count_over_time`, `sum/avg/min/max_over_time`,
//! `quantile_over_time`, `histogram_over_time`, grouped `by(...)`, over fixed steps;
//! `compare()` (`compare.rs`) and arithmetic between metrics queries (`binary.rs`).
//! Quantiles and histograms use power-of-two buckets read by Tempo's rules (`quantile.rs`),
//! so numbers match.

mod binary;
mod compare;
mod exemplars;
mod functions;
mod quantile;
mod stages;

use std::collections::HashMap;
use std::sync::Arc;

use legato_model::span::TraceData;

use crate::ast::{MetricsOp, MetricsStage, SpansetExpr};
use crate::eval::{Plan, field_label};
use crate::value::Value;

pub use compare::{CompareAttr, ComparePartial};
pub use exemplars::ExemplarBuckets;
pub use quantile::{log2_bucket, log2_quantile};
use stages::Dense;

/// One output series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label name and value; ungrouped series carry `__name__` = the function name.
    pub labels: Vec<(String, Value)>,
    /// (timestamp ms, value); NaN samples are left out, and so is a series left without any
    /// (Tempo's `SeriesSet.ToProto`). Counting functions have 0 at steps without spans.
    pub samples: Vec<(i64, f64)>,
    pub exemplars: Vec<Exemplar>,
}

/// A span shown beside a series: its trace and span, start, and a value.
///
/// The value is the span's own for the functions of a measured field (`sum/avg/min/max_over_time`,
/// `quantile_over_time`: the duration in seconds, or the attribute). For `rate`,
/// `count_over_time`, `histogram_over_time` and `compare()`'s totals it is NaN until the answer
/// is finished, then the series' sample at the exemplar's step (Tempo's jobs send NaN and its
/// frontend fills it in: `exemplarNaN` in `ast_metrics.go`, `attachExemplars` in
/// `modules/frontend/combiner/metrics_query_range.go`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub timestamp_ms: i64,
    #[serde(with = "nan_as_none")]
    pub value: f64,
    /// `histogram_over_time`: the power-of-two bucket of the span's value, whose `__bucket`
    /// series the exemplar goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<i32>,
    /// `compare()`: every attribute of the span, named as Tempo names them (`trace:id`
    /// included), which are then its labels. Empty for the other functions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<(String, Value)>,
}

impl Exemplar {
    /// An exemplar of a span, without a bucket or attributes.
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], timestamp_ms: i64, value: f64) -> Self {
        Self {
            trace_id,
            span_id,
            timestamp_ms,
            value,
            bucket: None,
            attributes: Vec::new(),
        }
    }

    /// The labels the exemplar is answered with: `compare()`'s every attribute of the span,
    /// otherwise `trace:id` and `span:id`.
    pub fn labels(&self) -> Vec<(String, Value)> {
        if !self.attributes.is_empty() {
            return self.attributes.clone();
        }
        vec![
            ("trace:id".into(), Value::Str(trace_id_label(&self.trace_id))),
            ("span:id".into(), Value::Str(crate::eval::hex(&self.span_id))),
        ]
    }
}

/// Which span of a trace is its exemplar: the counted one with the lowest rank, a mix of its
/// id (so the pick looks random, as Tempo's is, yet every path picks the same span).
pub fn exemplar_rank(span_id: [u8; 8]) -> u64 {
    crate::search::span_id_mix(span_id)
}

/// A trace id as Tempo's exemplars carry it: hex without leading zeros ("0" for zero).
pub fn trace_id_label(id: &[u8; 16]) -> String {
    legato_model::TraceId(*id).to_short_hex()
}

/// NaN (an exemplar value not filled in yet) as JSON `null`, which `serde_json` cannot read
/// back as a number.
mod nan_as_none {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        (!v.is_nan()).then_some(*v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[derive(Clone)]
struct Acc {
    count: Vec<f64>,
    sum: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
    /// Per step: log2 bucket → count.
    buckets: Vec<HashMap<i32, f64>>,
    exemplars: Vec<Exemplar>,
    /// Which exemplars the series still takes (Tempo's per-series set, `StepAggregator`).
    exemplar_buckets: ExemplarBuckets,
}

/// Spans of one series counted outside the evaluator (`MetricsEval::add_spans`), per step.
#[derive(Debug, Clone, Default)]
pub struct SpanCounts {
    pub count: Vec<f64>,
    /// For a measured field (seconds for durations): per step, as `observe` accumulates.
    pub measured: Option<Measured>,
}

#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub sum: Vec<f64>,
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    /// Per step: log2 bucket → count.
    pub buckets: Vec<HashMap<i32, f64>>,
}

impl SpanCounts {
    /// Zeros over `steps` steps; with `measured`, NaN extremes and empty buckets.
    pub fn new(steps: usize, measured: bool) -> Self {
        Self {
            count: vec![0.0; steps],
            measured: measured.then(|| Measured {
                sum: vec![0.0; steps],
                min: vec![f64::NAN; steps],
                max: vec![f64::NAN; steps],
                buckets: vec![HashMap::new(); steps],
            }),
        }
    }

    /// One span at `step`, with its measured value and bucket.
    pub fn add(&mut self, step: usize, measured: Option<(f64, i32)>) {
        self.count[step] += 1.0;
        if let (Some(m), Some((v, bucket))) = (&mut self.measured, measured) {
            m.sum[step] += v;
            m.min[step] = extreme(m.min[step], v, true);
            m.max[step] = extreme(m.max[step], v, false);
            *m.buckets[step].entry(bucket).or_default() += 1.0;
        }
    }
}

/// Accumulates spans of many traces into series over `(start, end]` in steps (`Grid`).
pub struct MetricsEval {
    plan: Arc<Plan>,
    stage: MetricsStage,
    grid: Grid,
    /// An empty exemplar set over the range, copied for each series.
    exemplar_buckets: ExemplarBuckets,
    series: SeriesMap,
    /// Most series kept (0 = no limit); spans of further label sets are not counted.
    max_series: usize,
    /// Some label set was not kept because of `max_series`.
    truncated: bool,
    /// `compare()` counts here instead of in `series`.
    compare: Option<Box<compare::CompareAcc>>,
    /// Arithmetic: each side is evaluated on its own, `series` stays empty.
    sides: Option<Box<[MetricsEval; 2]>>,
}

/// The steps of a query: `(start, end]` cut every `step_ns`, closed at the right as Tempo's
/// interval mapper cuts them since Tempo 2.9 (`IntervalMapperQueryRange`): step `i` holds
/// the spans starting in `(start + i·step, start + (i+1)·step]` and is reported at its end,
/// so a sample at `t` counts the step before `t`, as a Prometheus sample does. An instant
/// query is one step, `(start, end]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start_ns: u64,
    pub end_ns: u64,
    pub step_ns: u64,
    pub steps: usize,
}

impl Grid {
    /// The step of a span starting at `t`, if inside the range.
    pub fn step_of(&self, t: u64) -> Option<usize> {
        (t > self.start_ns && t <= self.end_ns).then(|| ((t - self.start_ns - 1) / self.step_ns) as usize)
    }

    /// The timestamp (ms) a step is reported at: its end.
    pub fn timestamp_ms(&self, step: usize) -> i64 {
        ((self.start_ns + (step as u64 + 1) * self.step_ns) / 1_000_000) as i64
    }
}

/// Series by label key: the labels as given, and their accumulators.
type SeriesMap = HashMap<SeriesKey, (Vec<(String, Value)>, Acc)>;

/// A series' labels as a map key.
type SeriesKey = Vec<(String, ValueKey)>;

/// A hashable stand-in for a label value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ValueKey(String);

/// What one part of the data contributed to a metrics query, before `finish`: the job of
/// one ingester or one block shard, sent to the query frontend, which merges the parts of
/// every job into one `MetricsEval` (`merge`). Only steps with spans are listed; `finish`
/// fills in the zeros of the others.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricsPartial {
    pub series: Vec<PartialSeries>,
    /// Some label set was left out because of the series limit.
    pub truncated: bool,
    /// `compare()`'s counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<ComparePartial>,
    /// Arithmetic: the parts of the left and the right side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sides: Vec<MetricsPartial>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartialSeries {
    pub labels: Vec<(String, Value)>,
    pub steps: Vec<PartialStep>,
    pub exemplars: Vec<Exemplar>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartialStep {
    pub step: u32,
    pub count: f64,
    pub sum: f64,
    /// Absent when no span of the step had a value.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Power-of-two bucket and count.
    pub buckets: Vec<(i32, f64)>,
}

fn label_key(labels: &[(String, Value)]) -> Vec<(String, ValueKey)> {
    labels
        .iter()
        .map(|(k, v)| (k.clone(), ValueKey(format!("{v:?}"))))
        .collect()
}

fn nan_to_none(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// The smaller (`pick_min`) or larger of two values where NaN means "none yet".
fn extreme(a: f64, b: f64, pick_min: bool) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (true, _) => b,
        (_, true) => a,
        _ if pick_min => a.min(b),
        _ => a.max(b),
    }
}

impl Acc {
    fn new(steps: usize, exemplar_buckets: &ExemplarBuckets) -> Self {
        Self {
            count: vec![0.0; steps],
            sum: vec![0.0; steps],
            min: vec![f64::NAN; steps],
            max: vec![f64::NAN; steps],
            buckets: vec![HashMap::new(); steps],
            exemplars: Vec::new(),
            exemplar_buckets: exemplar_buckets.fresh(),
        }
    }

    /// Keeps `e` if the series has no exemplar of its trace yet and its set takes it.
    fn offer(&mut self, e: &Exemplar) {
        if self.exemplar_buckets.full() || self.exemplars.iter().any(|x| x.trace_id == e.trace_id) {
            return;
        }
        if self.exemplar_buckets.admit(e.timestamp_ms) {
            self.exemplars.push(e.clone());
        }
    }
}

impl MetricsEval {
    pub fn new(
        plan: Arc<Plan>,
        stage: MetricsStage,
        start_ns: u64,
        end_ns: u64,
        step_ns: u64,
        max_exemplars: usize,
    ) -> Self {
        let step_ns = step_ns.max(1);
        let steps = (end_ns.saturating_sub(start_ns)).div_ceil(step_ns).max(1) as usize;
        let grid = Grid {
            start_ns,
            end_ns,
            step_ns,
            steps,
        };
        let compare = stage.compare.as_ref().map(|c| {
            let selection = plan.sub(crate::ast::Pipeline {
                head: SpansetExpr::Filter(c.selection.clone()),
                stages: Vec::new(),
            });
            Box::new(compare::CompareAcc::new(
                c,
                selection,
                ExemplarBuckets::for_grid(max_exemplars, &grid),
            ))
        });
        let sides = stage.binary.as_ref().map(|b| {
            let side = |q: &crate::ast::MetricsQuery| {
                let plan = Arc::new(plan.sub(q.pipeline.clone()));
                MetricsEval::new(plan, q.stage.clone(), start_ns, end_ns, step_ns, max_exemplars)
            };
            Box::new([side(&b.lhs), side(&b.rhs)])
        });
        Self {
            plan,
            stage,
            grid,
            exemplar_buckets: ExemplarBuckets::for_grid(max_exemplars, &grid),
            series: HashMap::new(),
            max_series: 0,
            truncated: false,
            compare,
            sides,
        }
    }

    /// Keeps at most `max` series (0 = no limit): memory stays bounded however many label
    /// sets a `by (...)` produces; the series kept are counted exactly.
    pub fn with_max_series(mut self, max: usize) -> Self {
        self.max_series = max;
        if let Some(c) = &mut self.compare {
            c.max_series = max;
        }
        if let Some(sides) = self.sides.take() {
            let [l, r] = *sides;
            self.sides = Some(Box::new([l.with_max_series(max), r.with_max_series(max)]));
        }
        self
    }

    /// The step a span starting at a time (ns) counts in, if inside the range, as a function
    /// that outlives the evaluator; and the number of steps.
    pub fn stepper(&self) -> (std::sync::Arc<dyn Fn(u64) -> Option<usize> + Send + Sync>, usize) {
        let grid = self.grid;
        let steps = grid.steps;
        (std::sync::Arc::new(move |t| grid.step_of(t)), steps)
    }

    /// An empty exemplar set over the query's range with its limit: each series counted
    /// elsewhere takes its exemplars through a copy, as the series here do.
    pub fn exemplar_buckets(&self) -> ExemplarBuckets {
        self.exemplar_buckets.fresh()
    }

    /// Adds spans counted elsewhere (from block columns, without rebuilding traces) to the
    /// series `labels` (the `by` fields' labels and values, as `observe` gives them): per
    /// step, the count and, for a measured field, the sum, extremes and power-of-two buckets
    /// of the values; and the exemplars its set takes.
    pub fn add_spans(&mut self, labels: Vec<(String, Value)>, spans: &SpanCounts, exemplars: &[Exemplar]) {
        let key = label_key(&labels);
        if self.max_series > 0 && self.series.len() >= self.max_series && !self.series.contains_key(&key) {
            self.truncated = true;
            return;
        }
        let (steps, buckets) = (self.grid.steps, &self.exemplar_buckets);
        let (_, acc) = self
            .series
            .entry(key)
            .or_insert_with(|| (labels, Acc::new(steps, buckets)));
        for (total, n) in acc.count.iter_mut().zip(&spans.count) {
            *total += n;
        }
        if let Some(m) = &spans.measured {
            for step in 0..steps.min(m.sum.len()) {
                acc.sum[step] += m.sum[step];
                acc.min[step] = extreme(acc.min[step], m.min[step], true);
                acc.max[step] = extreme(acc.max[step], m.max[step], false);
                for (b, n) in &m.buckets[step] {
                    *acc.buckets[step].entry(*b).or_default() += n;
                }
            }
        }
        exemplars.iter().for_each(|e| acc.offer(e));
    }

    /// Whether some series were left out because of the series limit.
    pub fn truncated(&self) -> bool {
        self.truncated
            || self.compare.as_ref().is_some_and(|c| c.truncated)
            || self
                .sides
                .as_ref()
                .is_some_and(|s| s.iter().any(MetricsEval::truncated))
    }

    /// Adds the matching spans of one trace. One span counted is offered as the trace's
    /// exemplar, to its series: Tempo's job picks one span of each trace at random; here the
    /// one whose id mixes lowest (`exemplar_rank`), as random but the same on every path.
    pub fn observe(&mut self, trace: &TraceData) {
        if let Some(sides) = &mut self.sides {
            sides.iter_mut().for_each(|side| side.observe(trace));
            return;
        }
        let mut spans: Vec<usize> = self.plan.eval(trace).into_iter().flat_map(|s| s.spans).collect();
        spans.sort_unstable();
        spans.dedup();
        if let Some(c) = &mut self.compare {
            c.observe(&self.grid, trace, &spans);
            return;
        }
        // The span picked so far: its rank, series and exemplar.
        let mut picked: Option<(u64, SeriesKey, Exemplar)> = None;
        for i in spans {
            let s = &trace.spans[i];
            let Some(step) = self.grid.step_of(s.start_unix_nano) else {
                continue;
            };
            let labels: Vec<(String, Value)> = self
                .stage
                .by
                .iter()
                .map(|f| (field_label(f), self.plan.field_value(trace, i, f)))
                .collect();
            let measured = match &self.stage.field {
                Some(f) => match self.plan.field_value(trace, i, f) {
                    Value::Duration(d) => Some((d as f64 / 1e9, Some(d))),
                    v => v.as_f64().map(|x| (x, None)),
                },
                None => None,
            };
            let needs_value = !matches!(self.stage.op, MetricsOp::Rate | MetricsOp::CountOverTime);
            if needs_value && measured.is_none() {
                continue;
            }
            let bucket = measured.and_then(|(v, raw)| log2_bucket(raw.map(|ns| ns as f64).unwrap_or(v)));
            let bucketed = matches!(
                self.stage.op,
                MetricsOp::QuantileOverTime | MetricsOp::HistogramOverTime
            );
            if bucketed && bucket.is_none() {
                // Tempo's bucketize functions refuse values under 2 (a 0 or 1 ns span), so
                // such a span is in neither a histogram nor a quantile, nor its exemplars.
                continue;
            }
            let key = label_key(&labels);
            if self.max_series > 0 && self.series.len() >= self.max_series && !self.series.contains_key(&key) {
                self.truncated = true;
                continue;
            }
            let rank = exemplar_rank(s.span_id);
            if picked.as_ref().is_none_or(|(best, _, _)| rank < *best) {
                let value = match self.stage.op {
                    MetricsOp::Rate | MetricsOp::CountOverTime | MetricsOp::HistogramOverTime => f64::NAN,
                    _ => measured.map_or(f64::NAN, |(v, _)| v),
                };
                let mut e = Exemplar::new(trace.trace_id, s.span_id, (s.start_unix_nano / 1_000_000) as i64, value);
                e.bucket = bucket.filter(|_| self.stage.op == MetricsOp::HistogramOverTime);
                picked = Some((rank, key.clone(), e));
            }
            let (steps, buckets) = (self.grid.steps, &self.exemplar_buckets);
            let (_, acc) = self
                .series
                .entry(key)
                .or_insert_with(|| (labels, Acc::new(steps, buckets)));
            acc.count[step] += 1.0;
            if let Some((v, _)) = measured {
                acc.sum[step] += v;
                acc.min[step] = extreme(acc.min[step], v, true);
                acc.max[step] = extreme(acc.max[step], v, false);
                if let Some(b) = bucket {
                    *acc.buckets[step].entry(b).or_default() += 1.0;
                }
            }
        }
        if let Some((_, key, e)) = picked
            && let Some((_, acc)) = self.series.get_mut(&key)
        {
            acc.offer(&e);
        }
    }

    /// What was accumulated so far, for merging elsewhere (`merge`).
    pub fn into_partial(self) -> MetricsPartial {
        let steps = self.grid.steps;
        // compare() keeps its own flag; the part says it with the others.
        let truncated = self.truncated || self.compare.as_ref().is_some_and(|c| c.truncated);
        let compare = self.compare.map(|c| c.into_partial());
        let sides = match self.sides {
            Some(sides) => sides.into_iter().map(MetricsEval::into_partial).collect(),
            None => Vec::new(),
        };
        let series = self
            .series
            .into_values()
            .map(|(labels, acc)| PartialSeries {
                labels,
                steps: (0..steps)
                    .filter(|&i| acc.count[i] > 0.0)
                    .map(|i| {
                        let mut buckets: Vec<(i32, f64)> = acc.buckets[i].iter().map(|(b, n)| (*b, *n)).collect();
                        buckets.sort_unstable_by_key(|(b, _)| *b);
                        PartialStep {
                            step: i as u32,
                            count: acc.count[i],
                            sum: acc.sum[i],
                            min: nan_to_none(acc.min[i]),
                            max: nan_to_none(acc.max[i]),
                            buckets,
                        }
                    })
                    .collect(),
                exemplars: acc.exemplars,
            })
            .collect();
        MetricsPartial {
            series,
            truncated,
            compare,
            sides,
        }
    }

    /// Adds what another evaluator of the same query over other data accumulated (the
    /// parts must not overlap: each span counted once is the caller's business). The series
    /// limit holds across parts, and each series' exemplar set.
    pub fn merge(&mut self, part: MetricsPartial) {
        self.truncated |= part.truncated;
        if let Some(sides) = &mut self.sides {
            for (side, p) in sides.iter_mut().zip(part.sides) {
                side.merge(p);
            }
        }
        if let (Some(c), Some(p)) = (&mut self.compare, part.compare) {
            c.merge(p, self.grid.steps);
        }
        let steps = self.grid.steps;
        for s in part.series {
            let key = label_key(&s.labels);
            if self.max_series > 0 && self.series.len() >= self.max_series && !self.series.contains_key(&key) {
                self.truncated = true;
                continue;
            }
            let buckets = &self.exemplar_buckets;
            let (_, acc) = self
                .series
                .entry(key)
                .or_insert_with(|| (s.labels, Acc::new(steps, buckets)));
            for st in s.steps {
                let i = st.step as usize;
                if i >= steps {
                    continue;
                }
                acc.count[i] += st.count;
                acc.sum[i] += st.sum;
                acc.min[i] = extreme(acc.min[i], st.min.unwrap_or(f64::NAN), true);
                acc.max[i] = extreme(acc.max[i], st.max.unwrap_or(f64::NAN), false);
                for (b, n) in st.buckets {
                    *acc.buckets[i].entry(b).or_default() += n;
                }
            }
            s.exemplars.iter().for_each(|e| acc.offer(e));
        }
    }

    /// The series, second-stage operations applied; series without samples are left out.
    pub fn finish(self) -> Vec<Series> {
        let grid = self.grid;
        stages::to_series(self.finish_dense(), &grid)
    }

    /// The series with one value per step (NaN = none), second stages applied, in label
    /// order. Steps without spans are 0 for the counting functions and NaN for the others
    /// (`functions.rs`), the same inside arithmetic as alone: `0 / x` is 0, not a missing point.
    ///
    /// Exemplars: one set over the whole answer takes them before the second stages, as
    /// Tempo's frontend combines (`exemplars::select`); a quantile group has its own
    /// (`functions.rs`), each side of arithmetic its own answer's.
    fn finish_dense(self) -> Vec<Dense> {
        let grid = self.grid;
        let one_set = self.sides.is_none() && self.stage.op != MetricsOp::QuantileOverTime;
        let exemplar_buckets = self.exemplar_buckets.fresh();
        let mut out = match (self.sides, self.compare) {
            (Some(sides), _) => {
                let [l, r] = *sides;
                let op = self.stage.binary.as_ref().map_or(crate::ast::ArithOp::Add, |b| b.op);
                binary::combine(op, l.finish_dense(), r.finish_dense())
            }
            (None, Some(c)) => c.finish_dense(),
            (None, None) => functions::series(&self.stage, &grid, self.series, &self.exemplar_buckets),
        };
        out.retain(|s| s.values.iter().any(|v| !v.is_nan()));
        out.sort_by_cached_key(|s| format!("{:?}", s.labels));
        if one_set {
            exemplars::select(&mut out, exemplar_buckets);
        }
        for stage in &self.stage.second_stage {
            out = stages::apply(out, stage);
        }
        out
    }
}

pub fn op_name(op: MetricsOp) -> &'static str {
    match op {
        MetricsOp::Rate => "rate",
        MetricsOp::CountOverTime => "count_over_time",
        MetricsOp::SumOverTime => "sum_over_time",
        MetricsOp::AvgOverTime => "avg_over_time",
        MetricsOp::MinOverTime => "min_over_time",
        MetricsOp::MaxOverTime => "max_over_time",
        MetricsOp::QuantileOverTime => "quantile_over_time",
        MetricsOp::HistogramOverTime => "histogram_over_time",
        MetricsOp::Compare => "compare",
        MetricsOp::Binary => "binary",
    }
}

/// Tempo's automatic step: range/240, rounded down to a multiple of the largest of
/// 1h/5m/1m/15s/5s/1s below it (at least 1 s; for ranges under a minute, multiples of 50 ms).
pub fn default_step_ns(range_ns: u64) -> u64 {
    let baseline = range_ns / 240;
    if range_ns < 60_000_000_000 {
        let unit = 50_000_000;
        return (baseline / unit * unit).max(unit);
    }
    let units = [
        3_600_000_000_000u64,
        300_000_000_000,
        60_000_000_000,
        15_000_000_000,
        5_000_000_000,
        1_000_000_000,
    ];
    let unit = units.iter().copied().find(|u| *u < baseline).unwrap_or(1_000_000_000);
    (baseline / unit * unit).max(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_closed_at_the_right_and_reported_at_their_end() {
        // Tempo's TestIntervalOf / TestTimestampOf cases for start 10, end 50, step 10.
        let grid = Grid {
            start_ns: 10,
            end_ns: 50,
            step_ns: 10,
            steps: 4,
        };
        let steps: Vec<Option<usize>> = [5, 10, 11, 15, 20, 25, 49, 50, 51].map(|t| grid.step_of(t)).into();
        let want = [None, None, Some(0), Some(0), Some(0), Some(1), Some(3), Some(3), None];
        assert_eq!(steps, want);
        let ms = Grid {
            start_ns: 10_000_000_000,
            end_ns: 50_000_000_000,
            step_ns: 10_000_000_000,
            steps: 4,
        };
        let stamps: Vec<i64> = (0..4).map(|i| ms.timestamp_ms(i)).collect();
        assert_eq!(stamps, vec![20_000, 30_000, 40_000, 50_000]);
    }

    #[test]
    fn default_steps() {
        assert_eq!(default_step_ns(3_600_000_000_000), 15_000_000_000);
        assert_eq!(default_step_ns(30_000_000_000), 100_000_000);
        assert_eq!(default_step_ns(24 * 3_600_000_000_000), 300_000_000_000);
    }
}
