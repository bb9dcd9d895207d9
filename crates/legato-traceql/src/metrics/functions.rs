//! The series of one metrics function (`rate`, `..._over_time`) from its accumulators.

use super::stages::Dense;
use super::{Grid, SeriesMap, log2_quantile, op_name};
use crate::ast::{FieldExpr, Intrinsic, MetricsOp, MetricsStage};
use crate::value::Value;

/// The series of a single metrics function from its accumulators.
pub(super) fn series(stage: &MetricsStage, grid: &Grid, series: SeriesMap, zero_fill: bool) -> Vec<Dense> {
    let step_secs = grid.step_ns as f64 / 1e9;
    let op = stage.op;
    let is_duration = stage
        .field
        .as_ref()
        .is_some_and(|f| matches!(f, FieldExpr::Intrinsic(Intrinsic::Duration | Intrinsic::TraceDuration)));
    let empty = if zero_fill { 0.0 } else { f64::NAN };
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
                for q in &stage.quantiles {
                    let mut labels = base_labels.clone();
                    labels.push(("p".into(), Value::Float(*q)));
                    let values = values(&|i| {
                        let v = log2_quantile(&acc.buckets[i], *q);
                        if is_duration { v / 1e9 } else { v }
                    });
                    out.push(Dense {
                        labels,
                        values,
                        exemplars: acc.exemplars.clone(),
                    });
                }
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
                    let values = values(&|i| acc.buckets[i].get(&b).copied().unwrap_or(empty));
                    out.push(Dense {
                        labels,
                        values,
                        exemplars: Vec::new(),
                    });
                }
            }
            _ => {
                let counted = |i: usize, v: f64| if acc.count[i] > 0.0 { v } else { f64::NAN };
                let values = values(&|i| match op {
                    MetricsOp::Rate if acc.count[i] > 0.0 => acc.count[i] / step_secs,
                    MetricsOp::CountOverTime if acc.count[i] > 0.0 => acc.count[i],
                    MetricsOp::Rate | MetricsOp::CountOverTime => empty,
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
