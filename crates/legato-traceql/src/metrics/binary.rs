//! Arithmetic between the series of two metrics queries, matched as Tempo matches them
//! (`pkg/traceql/ast_metrics_math.go`):
//!
//! * series pair up when their labels are identical, `__name__` aside;
//! * an ungrouped side (one series whose only label is `__name__`) pairs with every series of
//!   the other side;
//! * a series without a partner is dropped;
//! * values combine step by step; NaN on either side, or dividing by zero, gives no point.
//!
//! The result carries the left side's labels plus the right side's others; `__name__` becomes
//! `(left op right)` when both sides have one and disappears otherwise.

use std::collections::HashMap;

use super::stages::{Dense, arith};
use crate::ast::ArithOp;
use crate::value::Value;

const NAME: &str = "__name__";

/// The labels series are matched on: all but `__name__`, in order.
fn match_key(labels: &[(String, Value)]) -> String {
    let key: Vec<&(String, Value)> = labels.iter().filter(|(k, _)| k != NAME).collect();
    format!("{key:?}")
}

pub(crate) fn combine(op: ArithOp, lhs: Vec<Dense>, rhs: Vec<Dense>) -> Vec<Dense> {
    let index = |side: &[Dense]| -> HashMap<String, usize> {
        side.iter()
            .enumerate()
            .map(|(i, s)| (match_key(&s.labels), i))
            .collect()
    };
    let (lkeys, rkeys) = (index(&lhs), index(&rhs));
    let ungrouped = match_key(&[]);
    // Tempo walks the right side's series unless the right side is ungrouped.
    let (target, target_keys) = match rkeys.contains_key(&ungrouped) {
        true => (&lhs, &lkeys),
        false => (&rhs, &rkeys),
    };
    let find = |keys: &HashMap<String, usize>, key: &str| -> Option<(usize, bool)> {
        keys.get(key)
            .map(|&i| (i, false))
            .or_else(|| keys.get(&ungrouped).map(|&i| (i, true)))
    };
    let mut out = Vec::new();
    for t in target {
        let key = match_key(&t.labels);
        debug_assert!(target_keys.contains_key(&key));
        let (Some((li, l_fan)), Some((ri, r_fan))) = (find(&lkeys, &key), find(&rkeys, &key)) else {
            continue;
        };
        let (l, r) = (&lhs[li], &rhs[ri]);
        let exemplars = match (l_fan, r_fan) {
            (true, false) => r.exemplars.clone(),
            (false, true) => l.exemplars.clone(),
            _ => l.exemplars.iter().chain(&r.exemplars).cloned().collect(),
        };
        let values = l.values.iter().zip(&r.values).map(|(a, b)| arith(op, *a, *b)).collect();
        out.push(Dense {
            labels: merge_labels(op, &l.labels, &r.labels),
            values,
            exemplars,
        });
    }
    out
}

fn merge_labels(op: ArithOp, l: &[(String, Value)], r: &[(String, Value)]) -> Vec<(String, Value)> {
    let mut out = l.to_vec();
    for (k, v) in r {
        if k != NAME && !l.iter().any(|(lk, _)| lk == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    let name = |labels: &[(String, Value)]| {
        labels.iter().find_map(|(k, v)| match v {
            Value::Str(s) if k == NAME => Some(s.clone()),
            _ => None,
        })
    };
    match (name(l), name(r)) {
        (Some(ln), Some(rn)) => {
            if let Some((_, v)) = out.iter_mut().find(|(k, _)| k == NAME) {
                *v = Value::Str(format!("({ln} {} {rn})", op.symbol()));
            }
        }
        _ => {
            if let Some(i) = out.iter().position(|(k, _)| k == NAME) {
                out.remove(i);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(labels: &[(&str, &str)], values: &[f64]) -> Dense {
        Dense {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                .collect(),
            values: values.to_vec(),
            exemplars: Vec::new(),
        }
    }

    #[test]
    fn identical_labels_pair_up_and_lonely_series_drop() {
        let l = vec![d(&[("svc", "a")], &[1.0, 2.0]), d(&[("svc", "b")], &[3.0, 4.0])];
        let r = vec![d(&[("svc", "a")], &[2.0, 0.0]), d(&[("svc", "c")], &[1.0, 1.0])];
        let out = combine(ArithOp::Div, l, r);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].labels, d(&[("svc", "a")], &[]).labels);
        assert_eq!(out[0].values[0], 0.5);
        assert!(out[0].values[1].is_nan(), "division by zero gives no point");
    }

    #[test]
    fn an_ungrouped_side_applies_to_every_series() {
        let grouped = || vec![d(&[("svc", "a")], &[1.0]), d(&[("svc", "b")], &[3.0])];
        let total = || vec![d(&[(NAME, "rate")], &[4.0])];
        for (l, r) in [(grouped(), total()), (total(), grouped())] {
            let out = combine(ArithOp::Mul, l, r);
            assert_eq!(out.len(), 2);
            assert!(out.iter().all(|s| s.labels.len() == 1 && s.labels[0].0 == "svc"));
        }
        let out = combine(ArithOp::Sub, total(), vec![d(&[(NAME, "count_over_time")], &[1.0])]);
        assert_eq!(out[0].labels, d(&[(NAME, "(rate - count_over_time)")], &[]).labels);
        assert_eq!(out[0].values, vec![3.0]);
    }
}
