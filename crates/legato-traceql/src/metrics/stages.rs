//! Series with one value per step, and the second stages that work on them: `topk`,
//! `bottomk` and comparisons.

use super::{Exemplar, Grid, Series};
use crate::ast::SecondStage;
use crate::value::Value;

/// A series with one value per step; NaN = no value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dense {
    pub labels: Vec<(String, Value)>,
    pub values: Vec<f64>,
    pub exemplars: Vec<Exemplar>,
}

/// The samples of each series (NaN values left out); series without any are dropped.
pub(crate) fn to_series(dense: Vec<Dense>, grid: &Grid) -> Vec<Series> {
    dense
        .into_iter()
        .map(|d| Series {
            labels: d.labels,
            samples: d
                .values
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.is_nan())
                .map(|(i, v)| (grid.timestamp_ms(i), *v))
                .collect(),
            exemplars: d.exemplars,
        })
        .filter(|s| !s.samples.is_empty())
        .collect()
}

/// Applies one second stage; series left without any value are dropped.
pub(crate) fn apply(mut series: Vec<Dense>, stage: &SecondStage) -> Vec<Dense> {
    match stage {
        SecondStage::Filter { op, value } => {
            for s in &mut series {
                for v in &mut s.values {
                    if !v.is_nan() && !Value::Float(*v).compare(*op, &Value::Float(*value)) {
                        *v = f64::NAN;
                    }
                }
            }
        }
        SecondStage::TopK(k) | SecondStage::BottomK(k) => {
            // Per step, keep the k highest (lowest) series values; ties keep label order.
            let top = matches!(stage, SecondStage::TopK(_));
            let steps = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
            for step in 0..steps {
                let mut at: Vec<(usize, f64)> = series
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.values.get(step).filter(|v| !v.is_nan()).map(|v| (i, *v)))
                    .collect();
                at.sort_by(|a, b| if top { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) });
                for (i, _) in at.into_iter().skip(*k as usize) {
                    series[i].values[step] = f64::NAN;
                }
            }
        }
    }
    series.retain(|s| s.values.iter().any(|v| !v.is_nan()));
    series
}
