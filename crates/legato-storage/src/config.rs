use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use legato_model::ByteSize;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use serde::{Deserialize, Serialize};

use crate::azure::AzureConfig;
use crate::client::{ClientConfig, S3_PART_SIZES, built, check_part_size};
use crate::gcs::GcsConfig;
use crate::{Error, Result};

/// `storage.trace`: where blocks and the WAL live (Tempo's key names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TraceStorageConfig {
    pub backend: StorageBackend,
    pub wal: WalConfig,
    pub local: LocalConfig,
    pub s3: S3Config,
    pub gcs: GcsConfig,
    pub azure: AzureConfig,
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
            gcs: GcsConfig::default(),
            azure: AzureConfig::default(),
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
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
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
    /// Timeouts and retries (*Legato*; Tempo has no such S3 keys): `timeout`,
    /// `connect_timeout`, `max_retries`, `min_backoff`, `max_backoff`, `retry_timeout`.
    #[serde(flatten)]
    pub client: ClientConfig,
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
            client: ClientConfig::default(),
        }
    }
}

impl S3Config {
    /// Checks the part size, timeouts and the retry policy; the message names the key.
    fn validate(&self) -> Result<()> {
        check_part_size("storage.trace.s3.part_size", self.part_size, S3_PART_SIZES, "S3's")?;
        self.client.validate("s3")
    }

    /// object_store's retry policy: exponential backoff with jitter, doubling.
    pub fn retry_config(&self) -> object_store::RetryConfig {
        self.client.retry_config()
    }

    fn build(&self) -> Result<Arc<dyn ObjectStore>> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_allow_http(self.insecure)
            .with_virtual_hosted_style_request(!self.forcepathstyle && self.endpoint.is_empty())
            .with_retry(self.client.retry_config());
        for (key, value) in self.client.client_settings() {
            builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
        }
        if !self.region.is_empty() {
            builder = builder.with_region(&self.region);
        } else if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            builder = builder.with_region("us-east-1");
        }
        if !self.endpoint.is_empty() {
            let scheme = if self.insecure { "http" } else { "https" };
            let url = if self.endpoint.contains("://") {
                self.endpoint.clone()
            } else {
                format!("{scheme}://{}", self.endpoint)
            };
            builder = builder.with_endpoint(url);
        }
        if !self.access_key.is_empty() {
            builder = builder
                .with_access_key_id(&self.access_key)
                .with_secret_access_key(&self.secret_key);
        }
        built(builder.build(), "s3", &self.prefix)
    }
}

impl TraceStorageConfig {
    /// Part size for streamed uploads: the chosen backend's key (`storage.trace.s3.part_size`,
    /// `gcs.chunk_buffer_size`, `azure.buffer_size`), the default otherwise.
    pub fn upload_part_size(&self) -> usize {
        let bytes = match self.backend {
            StorageBackend::S3 if self.s3.part_size.0 != 0 => self.s3.part_size.0,
            StorageBackend::Gcs => self.gcs.part_size(),
            StorageBackend::Azure => self.azure.part_size(),
            _ => return crate::DEFAULT_PART_SIZE,
        };
        usize::try_from(bytes).unwrap_or(crate::DEFAULT_PART_SIZE)
    }

    /// Checks the settings the chosen backend needs; the message names the key.
    pub fn validate(&self) -> Result<()> {
        if self.wal.path.as_os_str().is_empty() {
            return Err(Error::Config("storage.trace.wal.path must not be empty".into()));
        }
        if self.blocklist_poll.is_zero() {
            return Err(Error::Config(
                "storage.trace.blocklist_poll must be greater than 0".into(),
            ));
        }
        match self.backend {
            StorageBackend::Local if self.local.path.as_os_str().is_empty() => Err(Error::Config(
                "storage.trace.local.path must not be empty with backend local".into(),
            )),
            StorageBackend::S3 if self.s3.bucket.is_empty() => Err(Error::Config(
                "storage.trace.s3.bucket is required with backend s3".into(),
            )),
            StorageBackend::S3 => self.s3.validate(),
            StorageBackend::Gcs => self.gcs.validate(),
            StorageBackend::Azure => self.azure.validate(),
            StorageBackend::Local | StorageBackend::Memory => Ok(()),
        }
    }

    /// Keys of the chosen backend that are set but that Legato accepts without honouring
    /// (Tempo's hedged requests, GCS object metadata), as `storage.trace.<backend>.<key>`.
    pub fn ignored_keys(&self) -> Vec<String> {
        let (section, keys) = match self.backend {
            StorageBackend::Gcs => ("gcs", self.gcs.ignored_keys()),
            StorageBackend::Azure => ("azure", self.azure.ignored_keys()),
            _ => return Vec::new(),
        };
        keys.into_iter()
            .map(|key| format!("storage.trace.{section}.{key}"))
            .collect()
    }
}

/// Builds the object store for blocks. Local paths are created if missing.
pub fn build_object_store(cfg: &TraceStorageConfig) -> Result<Arc<dyn ObjectStore>> {
    for key in cfg.ignored_keys() {
        tracing::warn!(%key, "accepted for Tempo compatibility but not honoured by Legato");
    }
    match cfg.backend {
        StorageBackend::Memory => Ok(Arc::new(InMemory::new())),
        StorageBackend::Local => {
            std::fs::create_dir_all(&cfg.local.path)
                .map_err(|e| Error::Config(format!("storage.trace.local.path {}: {e}", cfg.local.path.display())))?;
            let fs = LocalFileSystem::new_with_prefix(&cfg.local.path)
                .map_err(|e| Error::store(cfg.local.path.display(), e))?;
            Ok(Arc::new(fs))
        }
        StorageBackend::S3 => cfg.s3.build(),
        StorageBackend::Gcs => cfg.gcs.build(),
        StorageBackend::Azure => cfg.azure.build(),
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
