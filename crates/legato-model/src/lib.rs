//! Core identifiers and small value types shared by every Legato crate: trace, span, tenant
//! and block ids, and the injected clock. No IO, no async, no protocol types (those live in
//! `legato-proto`).

mod clock;
mod error;
mod ids;
mod size;
pub mod span;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::IdError;
pub use ids::{BlockId, SINGLE_TENANT, SpanId, TenantId, TraceId};
pub use size::ByteSize;

/// Whether OpenTelemetry's `TraceIdRatioBased` sampler keeps a trace at `ratio`: the trace
/// id's low 64 bits, shifted right by one, below `ratio * 2^63`. Every distributor, replica
/// and SDK sampling at the same ratio keeps the same traces.
pub fn ratio_keeps(trace_id: &[u8], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let Some(low) = trace_id.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
        return true;
    };
    let upper_bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    (u64::from_be_bytes(low) >> 1) < upper_bound
}
