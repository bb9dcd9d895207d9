use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use legato_model::ByteSize;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `storage.trace`: where blocks and the WAL live (Tempo's key names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TraceStorageConfig {
    pub backend: StorageBackend,
    pub wal: WalConfig,
    pub local: LocalConfig,
    pub s3: S3Config,
    /// How often queriers list the bucket for blocks written by other processes.
    #[serde(with = "humantime_serde_compat")]
    pub blocklist_poll: Duration,
    /// How old a tenant index (`<tenant>/index.json.gz`, written by the compactor) may be
    /// before readers list the tenant instead; `0s` trusts an index of any age.
    #[serde(with = "humantime_serde_compat")]
    pub blocklist_poll_stale_tenant_index: Duration,
}

impl Default for TraceStorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Local,
            wal: WalConfig::default(),
            local: LocalConfig::default(),
            s3: S3Config::default(),
            blocklist_poll: Duration::from_secs(300),
            blocklist_poll_stale_tenant_index: crate::DEFAULT_STALE_TENANT_INDEX,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Local,
    S3,
    /// In-process memory; for tests and throwaway runs.
    Memory,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    pub path: PathBuf,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/wal"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    pub path: PathBuf,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/blocks"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// host[:port] or a full URL; without a scheme, `https://` (or `http://` with `insecure`).
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub insecure: bool,
    pub forcepathstyle: bool,
    pub prefix: String,
    /// Part size of multipart uploads (Tempo's key; `0` = the default, 16 MiB). The compactor
    /// streams its output in parts of this size, so its memory per upload is a few parts.
    pub part_size: ByteSize,
    /// One request, from connecting to the end of the response body (*Legato*; Tempo has no
    /// S3 timeout key). A stalled request is abandoned after this and retried if it is safe.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Establishing a connection (*Legato*).
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Retries of a request that failed with a 5xx, 429, a connection error or (for requests
    /// that are safe to repeat) a timeout; 0 disables retries. Tempo has this key for GCS only.
    pub max_retries: usize,
    /// First backoff between retries; it doubles (with jitter) up to `max_backoff` (*Legato*).
    #[serde(with = "humantime_serde_compat")]
    pub min_backoff: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt (*Legato*).
    #[serde(with = "humantime_serde_compat")]
    pub retry_timeout: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            endpoint: String::new(),
            region: String::new(),
            access_key: String::new(),
            secret_key: String::new(),
            insecure: false,
            forcepathstyle: false,
            prefix: String::new(),
            part_size: ByteSize(crate::DEFAULT_PART_SIZE as u64),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 5,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(120),
        }
    }
}

impl S3Config {
    /// Checks timeouts and the retry policy; the message names the key.
    fn validate(&self) -> Result<()> {
        let positive = [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
            ("min_backoff", self.min_backoff),
            ("max_backoff", self.max_backoff),
            ("retry_timeout", self.retry_timeout),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::Config(format!("storage.trace.s3.{key} must be greater than 0")));
        }
        let part = self.part_size.0;
        if part != 0 && !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part) {
            return Err(Error::Config(format!(
                "storage.trace.s3.part_size must be between 5MiB and 5GiB (S3's limits) or 0 for the default, got {}",
                self.part_size
            )));
        }
        if self.min_backoff > self.max_backoff {
            return Err(Error::Config(format!(
                "storage.trace.s3.min_backoff ({}) must not exceed storage.trace.s3.max_backoff ({})",
                humantime::format_duration(self.min_backoff),
                humantime::format_duration(self.max_backoff)
            )));
        }
        Ok(())
    }

    /// The request and connect timeouts as object_store client settings. Set key by key: a
    /// whole `ClientOptions` would replace what `with_allow_http` and the `AWS_*` environment set.
    fn client_settings(&self) -> [(AmazonS3ConfigKey, String); 2] {
        let text = |d: Duration| humantime::format_duration(d).to_string();
        [
            (AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), text(self.timeout)),
            (
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                text(self.connect_timeout),
            ),
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

/// S3's bounds on the size of a part (but the last) of a multipart upload.
const MIN_PART_SIZE: u64 = 5 << 20;
const MAX_PART_SIZE: u64 = 5 << 30;

impl TraceStorageConfig {
    /// Part size for streamed uploads: `storage.trace.s3.part_size` with the S3 backend, the
    /// default otherwise.
    pub fn upload_part_size(&self) -> usize {
        match self.backend {
            StorageBackend::S3 if self.s3.part_size.0 != 0 => {
                usize::try_from(self.s3.part_size.0).unwrap_or(crate::DEFAULT_PART_SIZE)
            }
            _ => crate::DEFAULT_PART_SIZE,
        }
    }

    /// Checks the settings the chosen backend needs; the message names the key.
    pub fn validate(&self) -> Result<()> {
        if self.wal.path.as_os_str().is_empty() {
            return Err(Error::Config("storage.trace.wal.path must not be empty".into()));
        }
        match self.backend {
            StorageBackend::Local if self.local.path.as_os_str().is_empty() => Err(Error::Config(
                "storage.trace.local.path must not be empty with backend local".into(),
            )),
            StorageBackend::S3 if self.s3.bucket.is_empty() => Err(Error::Config(
                "storage.trace.s3.bucket is required with backend s3".into(),
            )),
            _ if self.blocklist_poll.is_zero() => Err(Error::Config(
                "storage.trace.blocklist_poll must be greater than 0".into(),
            )),
            StorageBackend::S3 => self.s3.validate(),
            _ => Ok(()),
        }
    }
}

/// Builds the object store for blocks. Local paths are created if missing.
pub fn build_object_store(cfg: &TraceStorageConfig) -> Result<Arc<dyn ObjectStore>> {
    match cfg.backend {
        StorageBackend::Memory => Ok(Arc::new(InMemory::new())),
        StorageBackend::Local => {
            std::fs::create_dir_all(&cfg.local.path)
                .map_err(|e| Error::Config(format!("storage.trace.local.path {}: {e}", cfg.local.path.display())))?;
            let fs = LocalFileSystem::new_with_prefix(&cfg.local.path)
                .map_err(|e| Error::store(cfg.local.path.display(), e))?;
            Ok(Arc::new(fs))
        }
        StorageBackend::S3 => {
            let s3 = &cfg.s3;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(&s3.bucket)
                .with_allow_http(s3.insecure)
                .with_virtual_hosted_style_request(!s3.forcepathstyle && s3.endpoint.is_empty())
                .with_retry(s3.retry_config());
            for (key, value) in s3.client_settings() {
                builder = builder.with_config(key, value);
            }
            if !s3.region.is_empty() {
                builder = builder.with_region(&s3.region);
            } else if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                builder = builder.with_region("us-east-1");
            }
            if !s3.endpoint.is_empty() {
                let scheme = if s3.insecure { "http" } else { "https" };
                let url = if s3.endpoint.contains("://") {
                    s3.endpoint.clone()
                } else {
                    format!("{scheme}://{}", s3.endpoint)
                };
                builder = builder.with_endpoint(url);
            }
            if !s3.access_key.is_empty() {
                builder = builder
                    .with_access_key_id(&s3.access_key)
                    .with_secret_access_key(&s3.secret_key);
            }
            let store = builder
                .build()
                .map_err(|e| Error::Config(format!("storage.trace.s3: {e}")))?;
            if s3.prefix.is_empty() {
                Ok(Arc::new(store))
            } else {
                Ok(Arc::new(PrefixStore::new(store, s3.prefix.trim_matches('/'))))
            }
        }
    }
}

/// Durations as "30s", "5m", "1h30m" in YAML (Go/Tempo style).
pub mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim())
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}
