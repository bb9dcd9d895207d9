//! The compactor role: merges small blocks of the same tenant, time window and level into
//! larger ones (collapsing the copies of spans that replicated ingesters wrote), applies
//! retention, deletes compacted blocks after a grace period, and writes each tenant's block
//! index. It owns planning (a pure function, [`plan`]) and execution; the block format,
//! compacted markers, the tenant index and the blocklist live in `legato-storage`. It knows
//! nothing of HTTP, gRPC or the ring: ownership of work comes in as a predicate.
//!
//! Crash safety: an output block's meta.json is written last and lists the inputs in
//! `replaces`; readers hide replaced blocks at once, the inputs' compacted markers follow,
//! and the next cycle writes markers an interrupted job missed and deletes output objects
//! that never got a meta.json. Every trace stays visible exactly once at every step.

mod compactor;
mod config;
mod error;
mod job;
mod metrics;
mod plan;

pub use compactor::{
    Compactor, CompactorDeps, CycleStats, Ownership, RetentionLookup, RetentionPoliciesLookup, RetentionPolicy,
    no_retention_overrides, owns_everything,
};
pub use config::{CompactionConfig, CompactorConfig};
pub use error::{Error, Result};
pub use metrics::CompactorMetrics;
pub use plan::{Job, PlanLimits, index_key, job_key, plan};
