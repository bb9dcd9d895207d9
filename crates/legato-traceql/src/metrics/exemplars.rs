//! How many exemplars a metrics answer keeps, and where in the range: Tempo's exemplar
//! bucket set (`newExemplarBucketSet` / `limitedBucketSet` in `pkg/traceql/util.go`).
//!
//! With a limit of `n` exemplars, the aligned range is cut into `n / 2` equal time buckets
//! (at least one, each at least 1 ms wide), and each bucket takes at most two exemplars, `n`
//! in all; an exemplar outside the range is refused. Tempo applies one such set to each series
//! while a job collects (`StepAggregator`), and one over all series of a query when its
//! frontend combines the jobs (`SimpleAggregator`, `BaselineAggregator` for `compare()`), or
//! one per group of quantile series (`HistogramAggregator`). Legato does the same:
//! `MetricsEval` keeps a set per series as it observes and merges, and applies one over the
//! whole answer when it finishes (`select`).

use super::stages::Dense;
use super::{Exemplar, Grid};

/// Most exemplars in one time bucket (Tempo's `maxExemplarsPerBucket`).
const PER_BUCKET: u8 = 2;

/// The exemplars taken so far, per time bucket.
#[derive(Debug, Clone)]
pub struct ExemplarBuckets {
    start_ms: u64,
    end_ms: u64,
    width_ms: u64,
    limit: usize,
    taken: usize,
    buckets: Vec<u8>,
}

impl ExemplarBuckets {
    /// A set over `(start_ns, end_ns)` (the aligned range) taking at most `limit` exemplars.
    pub fn new(limit: usize, start_ns: u64, end_ns: u64) -> Self {
        let count = (limit / PER_BUCKET as usize).max(1);
        let start_ms = start_ns / 1_000_000;
        let end_ms = end_ns / 1_000_000;
        Self {
            start_ms,
            end_ms,
            width_ms: ((end_ms - start_ms.min(end_ms)) / count as u64).max(1),
            limit,
            taken: 0,
            buckets: vec![0; count],
        }
    }

    pub(crate) fn for_grid(limit: usize, grid: &Grid) -> Self {
        Self::new(limit, grid.start_ns, grid.end_ns)
    }

    /// Whether no exemplar is taken any more.
    pub fn full(&self) -> bool {
        self.taken >= self.limit
    }

    /// Takes an exemplar starting at `timestamp_ms` if the limit and its bucket allow.
    pub fn admit(&mut self, timestamp_ms: i64) -> bool {
        let Ok(t) = u64::try_from(timestamp_ms) else {
            return false;
        };
        if self.full() || t < self.start_ms || t > self.end_ms {
            return false;
        }
        let last = self.buckets.len() - 1;
        let i = (((t - self.start_ms) / self.width_ms) as usize).min(last);
        if self.buckets[i] >= PER_BUCKET {
            return false;
        }
        self.buckets[i] += 1;
        self.taken += 1;
        true
    }

    /// A new, empty set over the same range with the same limit.
    pub fn fresh(&self) -> Self {
        Self {
            taken: 0,
            buckets: vec![0; self.buckets.len()],
            ..self.clone()
        }
    }
}

/// Keeps the exemplars of `series` one set admits, taking them in time order over all the
/// series (ties: trace, span, then the series' order), as Tempo's frontend keeps those its
/// set admits in the order the jobs answer.
pub(crate) fn select(series: &mut [Dense], mut set: ExemplarBuckets) {
    let mut all: Vec<(usize, Exemplar)> = Vec::new();
    for (i, s) in series.iter_mut().enumerate() {
        all.extend(std::mem::take(&mut s.exemplars).into_iter().map(|e| (i, e)));
    }
    all.sort_by(|(i, a), (j, b)| {
        (a.timestamp_ms, a.trace_id, a.span_id, *i).cmp(&(b.timestamp_ms, b.trace_id, b.span_id, *j))
    });
    for (i, e) in all {
        if set.admit(e.timestamp_ms) {
            series[i].exemplars.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_per_fiftieth_of_the_range_and_the_limit_in_all() {
        // 100 exemplars over 0..100 s: 50 buckets of 2 s, two in each.
        let mut set = ExemplarBuckets::new(100, 0, 100_000_000_000);
        let taken: Vec<bool> = [0, 1, 1_999, 2_000, 2_001, 2_500].map(|t| set.admit(t)).into();
        assert_eq!(taken, vec![true, true, false, true, true, false]);
        // Outside the range: refused. The end is inside (the last bucket takes it).
        assert!(!set.admit(-1));
        assert!(!set.admit(100_001));
        assert!(set.admit(100_000));
        // Every bucket filled: 100 in all, then nothing.
        let mut set = ExemplarBuckets::new(100, 0, 100_000_000_000);
        let n = (0..100_000).step_by(100).filter(|t| set.admit(*t)).count();
        assert_eq!(n, 100);
        assert!(set.full());
    }

    #[test]
    fn small_limits() {
        // One exemplar: one bucket over the whole range, one in it.
        let mut one = ExemplarBuckets::new(1, 0, 10_000_000_000);
        assert!(one.admit(5_000));
        assert!(!one.admit(6_000));
        // None wanted: none taken.
        assert!(!ExemplarBuckets::new(0, 0, 10_000_000_000).admit(5_000));
        // Three: one bucket (3 / 2), which takes two.
        let mut three = ExemplarBuckets::new(3, 0, 10_000_000_000);
        assert_eq!([1, 2, 3].map(|t| three.admit(t)), [true, true, false]);
    }
}
