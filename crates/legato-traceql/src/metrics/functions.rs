//! The series of one metrics function (`rate`, `..._over_time`) from its accumulators.
//!
//! Steps without spans follow Tempo (`pkg/traceql/engine_metrics.go`): the counting functions
//! (`rate`, `count_over_time`, `histogram_over_time`, and `quantile_over_time`, whose final
//! step Tempo builds from bucket counts) are 0 there; `sum/avg/min/max_over_time` have no
//! value (NaN, left out of the answer). An ungrouped `rate` or `count_over_time` is reported
//! even when no span matched, as Tempo's ungrouped aggregator always is.
//!
//! A `quantile_over_time` exemplar goes only to the quantile series of its group whose
//! quantile, computed over all series and steps together, is closest to the exemplar's value
//! (`closest`); each group takes its exemplars through its own set, as Tempo's
//! `HistogramAggregator` does. A `histogram_over_time` exemplar goes to the `__bucket` series
//! of its span's bucket (Tempo groups it there like the span), to be valued at that series'
//! count in its step.

use std::collections::HashMap;

use super::exemplars::{self, ExemplarBuckets};
use super::stages::Dense;
use super::{Acc, Grid, SeriesMap, log2_quantile, op_name};
use crate::ast::{FieldExpr, Intrinsic, MetricsOp, MetricsStage};
use crate::value::Value;

/// The series of a single metrics function from its accumulators, one value per step.
pub(super) fn series(
    stage: &MetricsStage,
    grid: &Grid,
    mut series: SeriesMap,
    exemplar_buckets: &ExemplarBuckets,
) -> Vec<Dense> {
    let step_secs = grid.step_ns as f64 / 1e9;
    let op = stage.op;
    let is_duration = stage
        .field
        .as_ref()
        .is_some_and(|f| matches!(f, FieldExpr::Intrinsic(Intrinsic::Duration | Intrinsic::TraceDuration)));
    if stage.by.is_empty() && matches!(op, MetricsOp::Rate | MetricsOp::CountOverTime) {
        series
            .entry(Vec::new())
            .or_insert_with(|| (Vec::new(), Acc::new(grid.steps, exemplar_buckets)));
    }
    let unit = if is_duration { 1e9 } else { 1.0 };
    let quantile_targets = match op {
        MetricsOp::QuantileOverTime => overall_quantiles(&series, &stage.quantiles, unit),
        _ => Vec::new(),
    };
    let mut out: Vec<Dense> = Vec::new();
    for (_, (labels, acc)) in series {
        let base_labels = if labels.is_empty() {
            vec![("__name__".to_string(), Value::Str(op_name(op).into()))]
        } else {
            labels
        };
        let values = |f: &dyn Fn(usize) -> f64| -> Vec<f64> { (0..grid.steps).map(f).collect() };
        match op {
            MetricsOp::QuantileOverTime => {
                let first = out.len();
                for (index, q) in stage.quantiles.iter().enumerate() {
                    let mut labels = base_labels.clone();
                    labels.push(("p".into(), Value::Float(*q)));
                    let values = values(&|i| {
                        if acc.buckets[i].is_empty() {
                            return 0.0;
                        }
                        // Durations are bucketed in nanoseconds and reported in seconds.
                        log2_quantile(&acc.buckets[i], *q, unit)
                    });
                    let exemplars = acc
                        .exemplars
                        .iter()
                        .filter(|e| closest(&quantile_targets, e.value) == Some(index))
                        .cloned()
                        .collect();
                    out.push(Dense {
                        labels,
                        values,
                        exemplars,
                    });
                }
                exemplars::select(&mut out[first..], exemplar_buckets.fresh());
            }
            MetricsOp::HistogramOverTime => {
                let mut bounds: Vec<i32> = acc.buckets.iter().flat_map(|b| b.keys().copied()).collect();
                bounds.sort_unstable();
                bounds.dedup();
                for b in bounds {
                    let upper = 2f64.powi(b);
                    let mut labels = base_labels.clone();
                    labels.push((
                        "__bucket".into(),
                        Value::Float(if is_duration { upper / 1e9 } else { upper }),
                    ));
                    let values = values(&|i| acc.buckets[i].get(&b).copied().unwrap_or(0.0));
                    let exemplars = acc.exemplars.iter().filter(|e| e.bucket == Some(b)).cloned().collect();
                    out.push(Dense {
                        labels,
                        values,
                        exemplars,
                    });
                }
            }
            _ => {
                let counted = |i: usize, v: f64| if acc.count[i] > 0.0 { v } else { f64::NAN };
                let values = values(&|i| match op {
                    MetricsOp::Rate => acc.count[i] / step_secs,
                    MetricsOp::CountOverTime => acc.count[i],
                    MetricsOp::SumOverTime => counted(i, acc.sum[i]),
                    MetricsOp::AvgOverTime => counted(i, acc.sum[i] / acc.count[i]),
                    MetricsOp::MinOverTime => acc.min[i],
                    MetricsOp::MaxOverTime => acc.max[i],
                    _ => f64::NAN,
                });
                out.push(Dense {
                    labels: base_labels,
                    values,
                    exemplars: acc.exemplars.clone(),
                });
            }
        }
    }
    out
}

/// Each quantile of the query over every series and step together: the values Tempo's
/// frontend matches exemplars against (`HistogramAggregator.Results` in
/// `pkg/traceql/engine_metrics.go` adds the bucket counts of all series and intervals first).
fn overall_quantiles(series: &SeriesMap, quantiles: &[f64], unit: f64) -> Vec<f64> {
    let mut overall: HashMap<i32, f64> = HashMap::new();
    for (_, acc) in series.values() {
        for (bucket, n) in acc.buckets.iter().flatten() {
            *overall.entry(*bucket).or_default() += n;
        }
    }
    if overall.is_empty() {
        return Vec::new();
    }
    quantiles.iter().map(|q| log2_quantile(&overall, *q, unit)).collect()
}

/// The quantile an exemplar goes to (Tempo's `assignExemplarToQuantile`): the one whose
/// overall value is closest to the exemplar's, the first on a tie; none for NaN (so an
/// exemplar is on one quantile series of its group, not on all of them).
fn closest(targets: &[f64], value: f64) -> Option<usize> {
    let mut best = None;
    let mut best_diff = f64::INFINITY;
    for (i, target) in targets.iter().enumerate() {
        let diff = (value - target).abs();
        if diff < best_diff {
            best_diff = diff;
            best = Some(i);
        }
    }
    best
}
