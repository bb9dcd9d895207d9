//! `storage.trace.gcs`: Google Cloud Storage (Tempo's keys), through object_store's GCS client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use legato_model::ByteSize;
use object_store::gcp::{GcpCredential, GcpSigningCredential, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{ClientConfigKey, ObjectStore, StaticCredentialProvider};
use serde::{Deserialize, Serialize};

use crate::client::{ClientConfig, S3_PART_SIZES, built, check_part_size};
use crate::config::humantime_serde_compat;
use crate::{Error, Result};

/// Tempo's default `chunk_buffer_size`.
pub const DEFAULT_GCS_CHUNK_BUFFER_SIZE: u64 = 10 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GcsConfig {
    pub bucket_name: String,
    pub prefix: String,
    /// The API endpoint, `https://storage.googleapis.com` when empty. Tempo's form with the JSON
    /// API's path (`https://host/storage/v1/`) is accepted; without a scheme, `https://` (or
    /// `http://` with `insecure`).
    pub endpoint: String,
    /// No authentication and no certificate checks (Tempo's meaning): for emulators.
    pub insecure: bool,
    /// Path to a service-account JSON key (*Legato*). Without it, as in Tempo:
    /// `GOOGLE_APPLICATION_CREDENTIALS`, then the metadata server (Workload Identity).
    pub service_account: String,
    /// Part size of streamed (multipart) uploads, as Tempo's write buffer; `0` = 10 MiB.
    pub chunk_buffer_size: ByteSize,
    /// Tempo's hedged requests: accepted, not honoured (Legato does not hedge).
    #[serde(with = "humantime_serde_compat")]
    pub hedge_requests_at: Duration,
    /// Accepted, not honoured (see `hedge_requests_at`).
    pub hedge_requests_up_to: usize,
    /// Accepted, not honoured: objects are written without a Cache-Control header.
    pub object_cache_control: String,
    /// Accepted, not honoured: objects are written without user metadata.
    pub object_metadata: BTreeMap<String, String>,
    #[serde(flatten)]
    pub client: ClientConfig,
}

impl Default for GcsConfig {
    fn default() -> Self {
        Self {
            bucket_name: String::new(),
            prefix: String::new(),
            endpoint: String::new(),
            insecure: false,
            service_account: String::new(),
            chunk_buffer_size: ByteSize(DEFAULT_GCS_CHUNK_BUFFER_SIZE),
            hedge_requests_at: Duration::ZERO,
            hedge_requests_up_to: 2,
            object_cache_control: String::new(),
            object_metadata: BTreeMap::new(),
            client: ClientConfig::default(),
        }
    }
}

impl GcsConfig {
    /// Checks what the GCS backend needs; the message names the key.
    pub fn validate(&self) -> Result<()> {
        if self.bucket_name.is_empty() {
            return Err(Error::Config(
                "storage.trace.gcs.bucket_name is required with backend gcs".into(),
            ));
        }
        check_part_size(
            "storage.trace.gcs.chunk_buffer_size",
            self.chunk_buffer_size,
            S3_PART_SIZES,
            "GCS's multipart upload",
        )?;
        self.client.validate("gcs")
    }

    /// Bytes per part of a streamed upload.
    pub fn part_size(&self) -> u64 {
        match self.chunk_buffer_size.0 {
            0 => DEFAULT_GCS_CHUNK_BUFFER_SIZE,
            n => n,
        }
    }

    /// Keys set to something Legato does not do, for a warning at start-up.
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        let set = [
            ("hedge_requests_at", !self.hedge_requests_at.is_zero()),
            ("object_cache_control", !self.object_cache_control.is_empty()),
            ("object_metadata", !self.object_metadata.is_empty()),
        ];
        set.iter().filter(|(_, on)| *on).map(|(key, _)| *key).collect()
    }

    /// The base URL object_store expects (scheme and host, no API path), if not the default.
    fn base_url(&self) -> Option<String> {
        let endpoint = self.endpoint.trim();
        if endpoint.is_empty() {
            return None;
        }
        let url = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            let scheme = if self.insecure { "http" } else { "https" };
            format!("{scheme}://{endpoint}")
        };
        let url = url.trim_end_matches('/');
        Some(url.strip_suffix("/storage/v1").unwrap_or(url).to_string())
    }

    pub(crate) fn build(&self) -> Result<Arc<dyn ObjectStore>> {
        let mut builder = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(&self.bucket_name)
            .with_retry(self.client.retry_config());
        for (key, value) in self.client.client_settings() {
            builder = builder.with_config(GoogleConfigKey::Client(key), value);
        }
        if let Some(url) = self.base_url() {
            builder = builder.with_base_url(&url);
        }
        if !self.service_account.is_empty() {
            builder = builder.with_service_account_path(&self.service_account);
        }
        if self.insecure {
            // Requests carry no token, and none is ever fetched: object_store's own
            // `skip_signature` still asks the metadata server for one before a PUT.
            let token = GcpCredential { bearer: String::new() };
            let signer = GcpSigningCredential {
                email: String::new(),
                private_key: None,
            };
            builder = builder
                .with_skip_signature(true)
                .with_credentials(Arc::new(StaticCredentialProvider::new(token)))
                .with_signing_credentials(Arc::new(StaticCredentialProvider::new(signer)))
                .with_config(
                    GoogleConfigKey::Client(ClientConfigKey::AllowInvalidCertificates),
                    "true",
                );
        }
        built(builder.build(), "gcs", &self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_url(endpoint: &str, insecure: bool) -> Option<String> {
        GcsConfig {
            endpoint: endpoint.into(),
            insecure,
            ..GcsConfig::default()
        }
        .base_url()
    }

    #[test]
    fn endpoint_takes_tempos_json_api_form() {
        assert_eq!(base_url("", false), None);
        assert_eq!(
            base_url("https://storage.googleapis.com/storage/v1/", false).as_deref(),
            Some("https://storage.googleapis.com")
        );
        assert_eq!(
            base_url("127.0.0.1:4443/storage/v1", true).as_deref(),
            Some("http://127.0.0.1:4443")
        );
        assert_eq!(base_url("gcs.internal", false).as_deref(), Some("https://gcs.internal"));
    }
}
