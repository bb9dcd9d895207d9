//! Series with one value per step, and the second stages that work on them: `topk`,
//! `bottomk`, comparisons and arithmetic with a number.

use super::{Exemplar, Grid, Series};
use crate::ast::{ArithOp, SecondStage};
use crate::value::Value;

/// A series with one value per step; NaN = no value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dense {
    pub labels: Vec<(String, Value)>,
    pub values: Vec<f64>,
    pub exemplars: Vec<Exemplar>,
}

/// The samples of each series (NaN values left out); series without any are dropped.
/// Exemplars as Tempo answers them: one at a step without a sample is left out (`ToProto`),
/// one without a value yet takes the sample of its step (its frontend's `attachExemplars`),
/// in time order.
pub(crate) fn to_series(dense: Vec<Dense>, grid: &Grid) -> Vec<Series> {
    dense
        .into_iter()
        .map(|d| {
            let mut exemplars: Vec<Exemplar> = d
                .exemplars
                .into_iter()
                .filter_map(|mut e| {
                    // Mapped by its whole milliseconds, as Tempo maps it.
                    let ns = u64::try_from(e.timestamp_ms).ok()?.checked_mul(1_000_000)?;
                    let sample = *d.values.get(grid.step_of(ns)?)?;
                    if sample.is_nan() {
                        return None;
                    }
                    if e.value.is_nan() {
                        e.value = sample;
                    }
                    Some(e)
                })
                .collect();
            exemplars.sort_by_key(|e| e.timestamp_ms);
            Series {
                labels: d.labels,
                samples: d
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| !v.is_nan())
                    .map(|(i, v)| (grid.timestamp_ms(i), *v))
                    .collect(),
                exemplars,
            }
        })
        .filter(|s| !s.samples.is_empty())
        .collect()
}

/// `lhs op rhs` as Tempo computes it between points: dividing by zero gives NaN (no point),
/// and NaN on either side stays NaN.
pub(crate) fn arith(op: ArithOp, lhs: f64, rhs: f64) -> f64 {
    match op {
        ArithOp::Add => lhs + rhs,
        ArithOp::Sub => lhs - rhs,
        ArithOp::Mul => lhs * rhs,
        ArithOp::Div if rhs == 0.0 => f64::NAN,
        ArithOp::Div => lhs / rhs,
        ArithOp::Mod | ArithOp::Pow => f64::NAN,
    }
}

/// Applies one second stage; series left without any value are dropped.
pub(crate) fn apply(mut series: Vec<Dense>, stage: &SecondStage) -> Vec<Dense> {
    match stage {
        SecondStage::Filter { op, value } => {
            let keep = |v: f64| !v.is_nan() && Value::Float(v).compare(*op, &Value::Float(*value));
            for s in &mut series {
                for v in &mut s.values {
                    if !keep(*v) {
                        *v = f64::NAN;
                    }
                }
                // As Tempo's `MetricsFilter`: an exemplar stays only if its own value passes,
                // so those still without one (rate, count, histogram) all go.
                s.exemplars.retain(|e| keep(e.value));
            }
        }
        SecondStage::TopK(k) | SecondStage::BottomK(k) => {
            // Per step, keep the k highest (lowest) series values. Ties as in Tempo
            // (`series_heap.go`): topk keeps the series first in label order, bottomk the
            // last. Zeros count: with counting functions, a quiet step is a tie at 0.
            let top = matches!(stage, SecondStage::TopK(_));
            let steps = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
            for step in 0..steps {
                let mut at: Vec<(usize, f64)> = series
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.values.get(step).filter(|v| !v.is_nan()).map(|v| (i, *v)))
                    .collect();
                match top {
                    true => at.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))),
                    false => at.sort_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0))),
                }
                for (i, _) in at.into_iter().skip(*k as usize) {
                    series[i].values[step] = f64::NAN;
                }
            }
        }
        SecondStage::Arith {
            op,
            value,
            scalar_on_left,
        } => {
            let apply = |v: f64| match scalar_on_left {
                true => arith(*op, *value, v),
                false => arith(*op, v, *value),
            };
            for s in &mut series {
                s.values.iter_mut().for_each(|v| *v = apply(*v));
                s.exemplars.iter_mut().for_each(|e| e.value = apply(e.value));
            }
        }
    }
    series.retain(|s| s.values.iter().any(|v| !v.is_nan()));
    series
}
