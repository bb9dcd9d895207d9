//! Probabilistic sampling at the distributor, per tenant: decided by trace id alone, exactly
//! as OpenTelemetry's `TraceIdRatioBased` sampler decides (the trace id's low 64 bits, shifted
//! right by one, below `ratio * 2^63`), so every distributor, every replica and an SDK
//! sampling at the same ratio keep the same traces. Sampled-out spans are acknowledged and
//! counted, never reported as refused.

use std::sync::Arc;

use legato_model::TenantId;
use serde::{Deserialize, Serialize};

/// `sampling.probabilistic`: the share of traces kept, in percent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticSampling {
    pub sampling_percentage: f64,
}

/// The sampling ratio of a tenant (`None` = keep all).
pub type SamplingLookup = Arc<dyn Fn(&TenantId) -> Option<f64> + Send + Sync>;

/// Whether a trace is kept at `ratio`, as OpenTelemetry's `TraceIdRatioBased` decides.
pub use legato_model::ratio_keeps as keep;

pub use legato_proto::push::SpanObserver;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_low_half_of_the_trace_id() {
        let id = |low: u64| {
            let mut id = [0xffu8; 16];
            id[8..].copy_from_slice(&low.to_be_bytes());
            id
        };
        assert!(keep(&id(0), 0.01));
        assert!(!keep(&id(u64::MAX), 0.99));
        assert!(keep(&id(u64::MAX), 1.0));
        // 2^63 * 0.5 = 2^62; low >> 1 < 2^62 <=> low < 2^63.
        assert!(keep(&id((1 << 63) - 2), 0.5));
        assert!(!keep(&id(1 << 63), 0.5));
        assert!(!keep(&id(0), 0.0));
        let kept = (0..10_000u64)
            .filter(|i| keep(&id(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)), 0.1))
            .count();
        assert!((900..1100).contains(&kept), "{kept}");
    }
}
