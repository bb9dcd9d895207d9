//! Power-of-two buckets and the quantiles read from them, by Tempo's rules so the numbers
//! match (`Log2Bucketize`, `Log2QuantileWithBucket` and `bucketizeDuration` /
//! `bucketizeAttribute` in Tempo's `pkg/traceql/engine_metrics.go` and `ast_metrics.go`).
//!
//! - A value `v ≥ 2` goes to the bucket of the smallest power of two `≥ v` (1025 → 2048,
//!   1024 → 1024); values below 2 (a 0 or 1 ns span) have no bucket and are not counted.
//! - The q-quantile reads `⌈q·n⌉` samples (at least one) in buckets sorted by bound. If they
//!   end exactly at the end of a bucket, the answer is that bucket's bound. Otherwise the
//!   bucket holding the last of them is interpolated *exponentially*, from the bound of the
//!   previous non-empty bucket (or half its own bound for the first) to its own bound, by the
//!   fraction of its samples read.
//! - q outside [0, 1] (or NaN), or no samples, give 0.
//!
//! Buckets are kept as exponents with counts, so parts from many jobs merge exactly.

use std::collections::HashMap;

/// The exponent of the power-of-two bucket holding `v`: the smallest `k` with `2^k ≥ v`,
/// or `None` below 2, which Tempo leaves out of histograms and quantiles.
pub fn log2_bucket(v: f64) -> Option<i32> {
    if v.is_nan() || v < 2.0 {
        return None;
    }
    if v.fract() == 0.0 && v < u64::MAX as f64 {
        // Integers (nanoseconds, int attributes) exactly, as Tempo does on uint64: a float
        // log2 of 2^40 + 1 rounds to 40.
        let n = v as u64;
        return Some((u64::BITS - (n - 1).leading_zeros()) as i32);
    }
    Some(v.log2().ceil() as i32)
}

/// The q-quantile of samples in power-of-two buckets (exponent → count) by Tempo's
/// `Log2Quantile`, where a bucket's bound is `2^k / unit` (unit 1e9 turns nanoseconds into
/// the seconds Tempo reports; the arithmetic runs on those bounds as Tempo's does).
pub fn log2_quantile(buckets: &HashMap<i32, f64>, q: f64, unit: f64) -> f64 {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        return 0.0;
    }
    let mut sorted: Vec<(f64, f64)> = buckets
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(k, n)| (2f64.powi(*k) / unit, *n))
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = sorted.iter().map(|(_, n)| n).sum();
    if total == 0.0 {
        return 0.0;
    }
    // Rounding up favours low sample counts (p50 of 3 samples is the 2nd, not the 1.5th).
    let wanted = (q * total).ceil().max(1.0);
    let mut read = 0.0;
    let mut at = sorted.len() - 1;
    for (i, (bound, count)) in sorted.iter().enumerate() {
        if read + count > wanted {
            at = i;
            break;
        }
        read += count;
        if read == wanted {
            return *bound;
        }
    }
    let (bound, count) = sorted[at];
    let fraction = (wanted - read) / count;
    let hi = bound.log2();
    let lo = if at > 0 { sorted[at - 1].0.log2() } else { hi - 1.0 };
    2f64.powf(lo + (hi - lo) * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(list: &[(i32, f64)]) -> HashMap<i32, f64> {
        list.iter().copied().collect()
    }

    #[test]
    fn buckets_as_tempo_log2_bucketize() {
        // Tempo's TestLog2Bucketize: 0 and 1 have no bucket (-1 there), 2 → 2, 3 → 4, 4 → 4,
        // 5 → 8, 1023 → 1024, 1024 → 1024, 1025 → 2048.
        let cases = [(0.0, None), (1.0, None), (2.0, Some(1)), (3.0, Some(2)), (4.0, Some(2))];
        for (v, k) in cases.into_iter().chain([(5.0, Some(3)), (1023.0, Some(10))]) {
            assert_eq!(log2_bucket(v), k, "{v}");
        }
        assert_eq!(log2_bucket(1024.0), Some(10));
        assert_eq!(log2_bucket(1025.0), Some(11));
        assert_eq!(log2_bucket(f64::NAN), None);
        assert_eq!(log2_bucket(-5.0), None);
        // Exact on large integers, where a float log2 would round down.
        assert_eq!(log2_bucket(2f64.powi(40) + 1.0), Some(41));
        // Floats (not bucketed by Tempo at all): the power of two at or above.
        assert_eq!(log2_bucket(2.5), Some(2));
    }

    #[test]
    fn quantiles_interpolate_exponentially_at_the_rounded_up_rank() {
        let b = buckets(&[(10, 50.0), (11, 50.0)]);
        // ⌈0.5·100⌉ = 50 ends the first bucket: its bound.
        assert_eq!(log2_quantile(&b, 0.5, 1.0), 1024.0);
        // Tempo's TestLog2Quantile "p100 exact match": the last bound.
        assert_eq!(log2_quantile(&b, 1.0, 1.0), 2048.0);
        // 75th of 100: half of the second bucket, 2^(10 + 0.5) (linear gave 1536).
        assert!((log2_quantile(&b, 0.75, 1.0) - 2f64.powf(10.5)).abs() < 1e-9);
        // From the previous non-empty bucket, not from half the bound: 2^10 → 2^20, 2/4 of it.
        let sparse = buckets(&[(10, 1.0), (20, 4.0)]);
        assert!((log2_quantile(&sparse, 0.6, 1.0) - 2f64.powi(15)).abs() < 1e-6);
    }

    #[test]
    fn tempo_log2_quantile_cases() {
        // Tempo's TestLog2Quantile: "p50 in middle bucket" reads 4 of {1: 2, 2: 4, 4: 2}, 2
        // into the bucket of 2 → 2^(0 + 2/4); "p90 in last bucket" reads ⌈9⌉ of {1, 2, 4: 8},
        // 7 of 8 into the last → 2^(1 + 7/8); "single bucket" {2: 10} reads 5 → 2^(0 + 5/10);
        // "empty buckets" → 0.
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(
            log2_quantile(&buckets(&[(0, 2.0), (1, 4.0), (2, 2.0)]), 0.5, 1.0),
            2f64.powf(0.5),
        );
        close(
            log2_quantile(&buckets(&[(0, 1.0), (1, 1.0), (2, 8.0)]), 0.9, 1.0),
            2f64.powf(1.875),
        );
        close(log2_quantile(&buckets(&[(1, 10.0)]), 0.5, 1.0), 2f64.powf(0.5));
        assert_eq!(log2_quantile(&HashMap::new(), 0.5, 1.0), 0.0);
    }

    #[test]
    fn quantile_edges() {
        let b = buckets(&[(8, 4.0)]);
        // q = 0 still reads one sample: 1/4 into the only bucket, from half its bound
        // (Tempo's TestQuantileOverTime, p0 of four 256 ns spans).
        let p0 = log2_quantile(&b, 0.0, 1e9);
        assert!((p0 - 2f64.powf(7.25) / 1e9).abs() < 1e-18, "{p0}");
        // One sample alone: its bound (TestQuantileOverTime, p0 of one 128 ns span).
        assert_eq!(log2_quantile(&buckets(&[(7, 1.0)]), 0.0, 1e9), 128e-9);
        for q in [-0.1, 1.1, f64::NAN] {
            assert_eq!(log2_quantile(&b, q, 1.0), 0.0, "{q}");
        }
    }
}
