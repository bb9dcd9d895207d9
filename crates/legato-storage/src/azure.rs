//! `storage.trace.azure`: Azure Blob Storage (Tempo's keys), through object_store's Azure client.

use std::sync::Arc;
use std::time::Duration;

use legato_model::ByteSize;
use object_store::ObjectStore;
use object_store::azure::{AzureAccessKey, AzureConfigKey, MicrosoftAzureBuilder};
use serde::{Deserialize, Serialize};

use crate::client::{ClientConfig, built, check_part_size};
use crate::config::humantime_serde_compat;
use crate::{Error, Result};

/// Tempo's default `buffer_size`.
pub const DEFAULT_AZURE_BUFFER_SIZE: u64 = 3 << 20;
/// Tempo's default `endpoint_suffix`: the global Azure cloud.
pub const DEFAULT_AZURE_ENDPOINT_SUFFIX: &str = "blob.core.windows.net";
/// The environment variables Tempo reads when the keys are empty.
const ACCOUNT_ENV: &str = "AZURE_STORAGE_ACCOUNT";
const KEY_ENV: &str = "AZURE_STORAGE_KEY";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    pub container_name: String,
    pub prefix: String,
    /// The storage account; `AZURE_STORAGE_ACCOUNT` when empty.
    pub storage_account_name: String,
    /// Shared key; `AZURE_STORAGE_KEY` when empty and no identity is chosen.
    pub storage_account_key: String,
    /// Authenticate as the VM's or pod's managed identity.
    pub use_managed_identity: bool,
    /// Azure Workload Identity: `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and
    /// `AZURE_FEDERATED_TOKEN_FILE` (set by the workload-identity webhook).
    pub use_federated_token: bool,
    /// Client id of a user-assigned managed identity (implies `use_managed_identity`).
    pub user_assigned_id: String,
    /// `https://<account>.<suffix>` for a suffix starting with `blob.` (sovereign clouds);
    /// any other suffix is an emulator's `host:port`, addressed as `http://<suffix>/<account>`
    /// like Tempo does for Azurite. A full URL (with `://`) is used as the account URL as is.
    pub endpoint_suffix: String,
    /// Tempo's number of parallel uploads: accepted, not honoured (Legato uploads
    /// `PARTS_IN_FLIGHT` parts of a block at once).
    pub max_buffers: usize,
    /// Part (Azure block) size of streamed uploads; `0` = 3 MiB, Tempo's default.
    pub buffer_size: ByteSize,
    /// Tempo's hedged requests: accepted, not honoured (Legato does not hedge).
    #[serde(with = "humantime_serde_compat")]
    pub hedge_requests_at: Duration,
    /// Accepted, not honoured (see `hedge_requests_at`).
    pub hedge_requests_up_to: usize,
    #[serde(flatten)]
    pub client: ClientConfig,
}

impl Default for AzureConfig {
    fn default() -> Self {
        Self {
            container_name: String::new(),
            prefix: String::new(),
            storage_account_name: String::new(),
            storage_account_key: String::new(),
            use_managed_identity: false,
            use_federated_token: false,
            user_assigned_id: String::new(),
            endpoint_suffix: DEFAULT_AZURE_ENDPOINT_SUFFIX.into(),
            max_buffers: 4,
            buffer_size: ByteSize(DEFAULT_AZURE_BUFFER_SIZE),
            hedge_requests_at: Duration::ZERO,
            hedge_requests_up_to: 2,
            client: ClientConfig::default(),
        }
    }
}

/// How requests are authorised, from the keys (Tempo's precedence).
#[derive(Debug, PartialEq, Eq)]
enum Credential {
    FederatedToken,
    ManagedIdentity {
        client_id: Option<String>,
    },
    SharedKey(String),
    /// Whatever object_store finds in `AZURE_*` variables, else the managed identity.
    FromEnvironment,
}

impl AzureConfig {
    /// Checks what the Azure backend needs; the message names the key.
    pub fn validate(&self) -> Result<()> {
        if self.container_name.is_empty() {
            return Err(Error::Config(
                "storage.trace.azure.container_name is required with backend azure".into(),
            ));
        }
        if self.account_name().is_none() {
            return Err(Error::Config(format!(
                "storage.trace.azure.storage_account_name is required with backend azure (or set {ACCOUNT_ENV})"
            )));
        }
        if self.endpoint_suffix.trim().is_empty() {
            return Err(Error::Config(
                "storage.trace.azure.endpoint_suffix must not be empty (default blob.core.windows.net)".into(),
            ));
        }
        let identity = self.use_managed_identity || !self.user_assigned_id.is_empty();
        if self.use_federated_token && identity {
            return Err(Error::Config(
                "storage.trace.azure.use_federated_token and use_managed_identity (or user_assigned_id) exclude each other"
                    .into(),
            ));
        }
        if !self.storage_account_key.is_empty() && (identity || self.use_federated_token) {
            return Err(Error::Config(
                "storage.trace.azure.storage_account_key must be empty with use_managed_identity, user_assigned_id or use_federated_token"
                    .into(),
            ));
        }
        if !self.storage_account_key.is_empty() && AzureAccessKey::try_new(&self.storage_account_key).is_err() {
            return Err(Error::Config(
                "storage.trace.azure.storage_account_key is not a storage account key (base64)".into(),
            ));
        }
        // Azure allows 50,000 blocks per blob: below 1 MiB a large compacted block could not fit.
        check_part_size(
            "storage.trace.azure.buffer_size",
            self.buffer_size,
            (1 << 20)..=(4000 << 20),
            "Azure's block",
        )?;
        self.client.validate("azure")
    }

    /// Bytes per part (Azure block) of a streamed upload.
    pub fn part_size(&self) -> u64 {
        match self.buffer_size.0 {
            0 => DEFAULT_AZURE_BUFFER_SIZE,
            n => n,
        }
    }

    /// Keys set to something Legato does not do, for a warning at start-up.
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        if self.hedge_requests_at.is_zero() {
            Vec::new()
        } else {
            vec!["hedge_requests_at"]
        }
    }

    fn account_name(&self) -> Option<String> {
        Some(self.storage_account_name.clone())
            .filter(|name| !name.is_empty())
            .or_else(|| std::env::var(ACCOUNT_ENV).ok().filter(|name| !name.is_empty()))
    }

    /// The account's blob service URL.
    fn account_url(&self, account: &str) -> String {
        let suffix = self.endpoint_suffix.trim().trim_end_matches('/');
        if suffix.contains("://") {
            suffix.to_string()
        } else if suffix.starts_with("blob.") {
            format!("https://{account}.{suffix}")
        } else {
            format!("http://{suffix}/{account}")
        }
    }

    fn credential(&self) -> Credential {
        if self.use_federated_token {
            return Credential::FederatedToken;
        }
        if self.use_managed_identity || !self.user_assigned_id.is_empty() {
            let client_id = Some(self.user_assigned_id.clone()).filter(|id| !id.is_empty());
            return Credential::ManagedIdentity { client_id };
        }
        Some(self.storage_account_key.clone())
            .filter(|key| !key.is_empty())
            .or_else(|| std::env::var(KEY_ENV).ok().filter(|key| !key.is_empty()))
            .map_or(Credential::FromEnvironment, Credential::SharedKey)
    }

    pub(crate) fn build(&self) -> Result<Arc<dyn ObjectStore>> {
        let account = self.account_name().unwrap_or_default();
        let url = self.account_url(&account);
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_account(&account)
            .with_container_name(&self.container_name)
            .with_allow_http(url.starts_with("http://"))
            .with_endpoint(url)
            .with_retry(self.client.retry_config());
        for (key, value) in self.client.client_settings() {
            builder = builder.with_config(AzureConfigKey::Client(key), value);
        }
        builder = match self.credential() {
            Credential::FederatedToken => builder.with_credential_type("workload_identity"),
            Credential::ManagedIdentity { client_id } => {
                let builder = builder.with_credential_type("managed_identity");
                match client_id {
                    Some(id) => builder.with_client_id(id),
                    None => builder,
                }
            }
            Credential::SharedKey(key) => builder.with_access_key(key),
            Credential::FromEnvironment => builder,
        };
        built(builder.build(), "azure", &self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_url_follows_the_suffix() {
        let mut cfg = AzureConfig::default();
        assert_eq!(cfg.account_url("acct"), "https://acct.blob.core.windows.net");
        cfg.endpoint_suffix = "blob.core.usgovcloudapi.net".into();
        assert_eq!(cfg.account_url("acct"), "https://acct.blob.core.usgovcloudapi.net");
        cfg.endpoint_suffix = "127.0.0.1:10000".into();
        assert_eq!(
            cfg.account_url("devstoreaccount1"),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        cfg.endpoint_suffix = "https://azurite.test:10000/acct/".into();
        assert_eq!(cfg.account_url("acct"), "https://azurite.test:10000/acct");
    }

    #[test]
    fn credential_precedence_is_tempos() {
        let mut cfg = AzureConfig {
            storage_account_key: "a2V5".into(),
            ..AzureConfig::default()
        };
        assert_eq!(cfg.credential(), Credential::SharedKey("a2V5".into()));
        cfg.storage_account_key.clear();
        cfg.user_assigned_id = "client".into();
        assert_eq!(
            cfg.credential(),
            Credential::ManagedIdentity {
                client_id: Some("client".into())
            }
        );
        cfg.use_federated_token = true;
        assert_eq!(cfg.credential(), Credential::FederatedToken);
    }
}
