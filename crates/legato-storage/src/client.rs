//! What the cloud backends (S3, GCS, Azure) share: the HTTP client's timeouts and retry policy
//! (`storage.trace.<backend>.timeout` …, Legato's keys; Tempo has none), and the prefix.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use legato_model::ByteSize;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};

use crate::config::humantime_serde_compat;
use crate::{Error, Result};

/// Timeouts and retries of requests to a cloud object store. Flattened into each backend's
/// section, so the keys read `storage.trace.s3.timeout`, `storage.trace.gcs.max_retries`, ….
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ClientConfig {
    /// One request, from connecting to the end of the response body. A stalled request is
    /// abandoned after this and retried if it is safe.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Establishing a connection.
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Retries of a request that failed with a 5xx, 429, a connection error or (for requests
    /// that are safe to repeat) a timeout; 0 disables retries.
    pub max_retries: usize,
    /// First backoff between retries; it doubles (with jitter) up to `max_backoff`.
    #[serde(with = "humantime_serde_compat")]
    pub min_backoff: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt.
    #[serde(with = "humantime_serde_compat")]
    pub retry_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 5,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(120),
        }
    }
}

impl ClientConfig {
    /// Checks timeouts and the retry policy of `storage.trace.<section>`; the message names the key.
    pub fn validate(&self, section: &str) -> Result<()> {
        let positive = [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
            ("min_backoff", self.min_backoff),
            ("max_backoff", self.max_backoff),
            ("retry_timeout", self.retry_timeout),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::Config(format!(
                "storage.trace.{section}.{key} must be greater than 0"
            )));
        }
        if self.min_backoff > self.max_backoff {
            return Err(Error::Config(format!(
                "storage.trace.{section}.min_backoff ({}) must not exceed storage.trace.{section}.max_backoff ({})",
                humantime::format_duration(self.min_backoff),
                humantime::format_duration(self.max_backoff)
            )));
        }
        Ok(())
    }

    /// The request and connect timeouts as object_store client settings, for each builder's
    /// `with_config`. Set key by key: a whole `ClientOptions` would replace what the builder's
    /// `with_allow_http` and its environment variables set.
    pub fn client_settings(&self) -> [(ClientConfigKey, String); 2] {
        let text = |d: Duration| humantime::format_duration(d).to_string();
        [
            (ClientConfigKey::Timeout, text(self.timeout)),
            (ClientConfigKey::ConnectTimeout, text(self.connect_timeout)),
        ]
    }

    /// object_store's retry policy: exponential backoff with jitter, doubling.
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: self.min_backoff,
                max_backoff: self.max_backoff,
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }
}

/// What a builder of `storage.trace.<section>` built, under `prefix` when one is set (Tempo's
/// `prefix` keys; surrounding slashes ignored); a builder's error names the section.
pub fn built(
    store: object_store::Result<impl ObjectStore>,
    section: &str,
    prefix: &str,
) -> Result<Arc<dyn ObjectStore>> {
    let store = store.map_err(|e| Error::Config(format!("storage.trace.{section}: {e}")))?;
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        Ok(Arc::new(store))
    } else {
        Ok(Arc::new(PrefixStore::new(store, prefix)))
    }
}

/// Part-size bounds of a multipart upload on S3 and GCS (XML API): every part but the last at
/// least 5 MiB, at most 5 GiB.
pub const S3_PART_SIZES: RangeInclusive<u64> = (5 << 20)..=(5 << 30);

/// Refuses a part size outside `bounds` (but 0, which means the backend's default), naming `key`.
pub fn check_part_size(key: &str, size: ByteSize, bounds: RangeInclusive<u64>, whose: &str) -> Result<()> {
    if size.0 == 0 || bounds.contains(&size.0) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{key} must be between {} and {} ({whose} limits) or 0 for the default, got {size}",
        ByteSize(*bounds.start()),
        ByteSize(*bounds.end()),
    )))
}
