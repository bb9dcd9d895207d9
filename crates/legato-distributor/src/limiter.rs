use std::collections::HashMap;
use std::sync::Arc;

use legato_model::{Clock, TenantId};
use parking_lot::Mutex;

/// Per-tenant token bucket over bytes.
pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: u64,
}

impl RateLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            buckets: Mutex::default(),
        }
    }

    /// Takes `size` tokens if available. A rate of 0 disables the limit.
    pub fn allow(&self, tenant: &TenantId, size: u64, rate: u64, burst: u64) -> bool {
        if rate == 0 {
            return true;
        }
        let now = self.clock.now_nanos();
        let burst = burst.max(1) as f64;
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_sub(bucket.updated) as f64 / 1e9;
        bucket.tokens = (bucket.tokens + elapsed * rate as f64).min(burst);
        bucket.updated = now;
        if bucket.tokens >= size as f64 {
            bucket.tokens -= size as f64;
            true
        } else {
            false
        }
    }
}
