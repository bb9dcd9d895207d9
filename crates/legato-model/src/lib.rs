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
