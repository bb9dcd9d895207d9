//! The configuration file: YAML with Tempo's key names, every section strict about unknown
//! keys. Precedence: defaults < YAML (with `${VAR}` expansion when asked) < flags.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use legato_distributor::IngestionLimits;
use legato_ingester::{IngestLimits, IngesterConfig};
use legato_model::{ByteSize, TenantId};
use legato_storage::TraceStorageConfig;
use serde::{Deserialize, Serialize};

pub mod receivers;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub target: String,
    pub multitenancy_enabled: bool,
    pub server: ServerConfig,
    pub distributor: DistributorConfig,
    pub ingester: IngesterConfig,
    pub storage: StorageConfig,
    pub overrides: OverridesConfig,
    pub memberlist: legato_cluster::MemberlistConfig,
    pub query_frontend: QueryFrontendConfig,
    pub querier: QuerierConfig,
    pub compactor: legato_compactor::CompactorConfig,
    pub ingester_client: IngesterClientConfig,
    pub auth: AuthConfig,
    pub metrics_generator: legato_generator::GeneratorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target: "all".into(),
            multitenancy_enabled: false,
            server: ServerConfig::default(),
            distributor: DistributorConfig::default(),
            ingester: IngesterConfig::default(),
            storage: StorageConfig::default(),
            overrides: OverridesConfig::default(),
            memberlist: legato_cluster::MemberlistConfig::default(),
            query_frontend: QueryFrontendConfig::default(),
            querier: QuerierConfig::default(),
            ingester_client: IngesterClientConfig::default(),
            auth: AuthConfig::default(),
            metrics_generator: legato_generator::GeneratorConfig::default(),
            compactor: legato_compactor::CompactorConfig::default(),
        }
    }
}

/// `query_frontend`: how lookups and searches are split into jobs (microservices mode).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueryFrontendConfig {
    /// A failed job is retried on another querier this many times.
    pub max_retries: usize,
    pub trace_by_id: TraceByIdConfig,
    pub search: FrontendSearchConfig,
    pub metrics: FrontendMetricsConfig,
    /// TraceQL metrics queries end at least this long before now (an `end` later than
    /// now − cutoff is pulled back to it), so the newest data, maybe still incomplete, is
    /// left out (Tempo's key and default).
    #[serde(with = "legato_storage::config_durations")]
    pub query_end_cutoff: std::time::Duration,
    /// Legato: search, metrics and tag queries one tenant may run at once on this process;
    /// more are answered 429 at once (0 = no limit).
    pub max_concurrent_queries_per_tenant: usize,
}

impl Default for QueryFrontendConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            trace_by_id: TraceByIdConfig::default(),
            search: FrontendSearchConfig::default(),
            metrics: FrontendMetricsConfig::default(),
            query_end_cutoff: std::time::Duration::from_secs(30),
            max_concurrent_queries_per_tenant: 20,
        }
    }
}

/// `auth` (Legato; Tempo has none): credentials the query API, Grafana's streaming API and
/// the OTLP receivers require. `/ready` and `/metrics` stay open.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A YAML file `credentials: [{tenant, bearer_token} | {tenant, username, password}]`;
    /// unset = no authentication.
    pub credentials_file: Option<std::path::PathBuf>,
}

impl AuthConfig {
    /// Reads and checks the credentials file.
    pub fn load(&self) -> anyhow::Result<Option<legato_api::auth::Authenticator>> {
        let Some(path) = &self.credentials_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "invalid configuration at auth.credentials_file: cannot read {}",
                path.display()
            )
        })?;
        let file: legato_api::auth::CredentialsFile = serde_yaml::from_str(&text)
            .with_context(|| format!("invalid configuration at auth.credentials_file: {}", path.display()))?;
        let auth = legato_api::auth::Authenticator::new(file.credentials).map_err(|e| {
            anyhow::anyhow!(
                "invalid configuration at auth.credentials_file ({}): {e}",
                path.display()
            )
        })?;
        Ok(Some(auth))
    }
}

/// `ingester_client`: how this process dials other roles (Tempo's key; Legato uses it for
/// every internal gRPC call, to ingesters and queriers alike).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngesterClientConfig {
    pub grpc_client_config: crate::tls::GrpcClientConfig,
}

/// `querier`: how long a query may run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuerierConfig {
    pub search: QuerierSearchConfig,
    pub trace_by_id: QuerierTraceByIdConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuerierTraceByIdConfig {
    /// Trace lookups answer 504 after this long (Tempo's key and default).
    #[serde(with = "legato_storage::config_durations")]
    pub query_timeout: std::time::Duration,
}

impl Default for QuerierTraceByIdConfig {
    fn default() -> Self {
        Self {
            query_timeout: std::time::Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuerierSearchConfig {
    /// Search, TraceQL metrics and tag queries answer 504 after this long, and their scans
    /// stop (as in Tempo, where it covers the same queries).
    #[serde(with = "legato_storage::config_durations")]
    pub query_timeout: std::time::Duration,
    /// Most bytes of recent (ingester-held, encoded) data one search, metrics or tag query
    /// may read; over it search and tags answer 400 and metrics answer partial, naming this
    /// key. 0 = no limit.
    pub max_recent_bytes: ByteSize,
}

impl Default for QuerierSearchConfig {
    fn default() -> Self {
        Self {
            query_timeout: std::time::Duration::from_secs(30),
            max_recent_bytes: ByteSize(0),
        }
    }
}

/// `query_frontend.metrics`: limits of TraceQL metrics queries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendMetricsConfig {
    /// Most series one metrics query returns; past it the answer is partial (`status:
    /// PARTIAL` with Tempo's message) and memory stays bounded. 0 = no limit (Tempo's default;
    /// Legato bounds it by default).
    pub max_response_series: usize,
}

impl Default for FrontendMetricsConfig {
    fn default() -> Self {
        Self {
            max_response_series: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TraceByIdConfig {
    /// Most block shards a lookup is split into.
    pub query_shards: u32,
}

impl Default for TraceByIdConfig {
    fn default() -> Self {
        Self { query_shards: 50 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendSearchConfig {
    /// Jobs of one request running at once.
    pub concurrent_jobs: usize,
}

impl Default for FrontendSearchConfig {
    fn default() -> Self {
        Self { concurrent_jobs: 1000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Empty means all interfaces, as in Tempo.
    pub http_listen_address: String,
    pub http_listen_port: u16,
    pub grpc_listen_address: String,
    pub grpc_listen_port: u16,
    pub log_level: String,
    /// TLS on the HTTP port (query API, and Grafana's gRPC streaming on the same port).
    pub http_tls_config: crate::tls::TlsServerConfig,
    /// TLS on the gRPC port (streaming querier and, between roles, internal RPCs).
    pub grpc_tls_config: crate::tls::TlsServerConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_listen_address: String::new(),
            http_listen_port: 3200,
            grpc_listen_address: String::new(),
            grpc_listen_port: 9095,
            log_level: "info".into(),
            http_tls_config: crate::tls::TlsServerConfig::default(),
            grpc_tls_config: crate::tls::TlsServerConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DistributorConfig {
    pub receivers: ReceiversConfig,
    /// Attribute keys and string values longer than this many bytes are cut to it (Tempo's
    /// key and default); 0 = no limit.
    pub max_attribute_bytes: usize,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        Self {
            receivers: ReceiversConfig::default(),
            max_attribute_bytes: 2048,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiversConfig {
    pub otlp: OtlpReceiverConfig,
    /// On only when the key is present (`zipkin:` alone takes the defaults).
    #[serde(deserialize_with = "receivers::present", skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<receivers::ZipkinReceiverConfig>,
    /// On only when the key is present, with the protocols that are present.
    #[serde(deserialize_with = "receivers::present", skip_serializing_if = "Option::is_none")]
    pub jaeger: Option<receivers::JaegerReceiverConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    pub protocols: OtlpProtocols,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpProtocols {
    pub grpc: OtlpGrpcConfig,
    pub http: OtlpHttpConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpGrpcConfig {
    pub endpoint: String,
    /// Largest accepted message, MiB (the Collector's key).
    pub max_recv_msg_size_mib: usize,
    /// The Collector's receiver `tls` block.
    pub tls: crate::tls::TlsServerConfig,
}

impl Default for OtlpGrpcConfig {
    fn default() -> Self {
        Self {
            endpoint: "0.0.0.0:4317".into(),
            max_recv_msg_size_mib: 16,
            tls: crate::tls::TlsServerConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpHttpConfig {
    pub endpoint: String,
    /// Largest accepted body, compressed or not (the Collector's key).
    pub max_request_body_size: ByteSize,
    /// The Collector's receiver `tls` block.
    pub tls: crate::tls::TlsServerConfig,
}

impl Default for OtlpHttpConfig {
    fn default() -> Self {
        Self {
            endpoint: "0.0.0.0:4318".into(),
            max_request_body_size: ByteSize(20 << 20),
            tls: crate::tls::TlsServerConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub trace: TraceStorageConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OverridesConfig {
    pub defaults: TenantOverrides,
    /// A YAML file of per-tenant overrides (`overrides: {<tenant>: {compaction: ...}}`),
    /// read at start-up.
    pub per_tenant_override_config: Option<std::path::PathBuf>,
    /// Per-tenant overrides given inline (Legato), same shape as the file's `overrides`.
    pub per_tenant: std::collections::BTreeMap<String, PerTenantOverride>,
}

/// What can be overridden per tenant so far (other limits apply to every tenant alike).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PerTenantOverride {
    pub ingestion: PerTenantIngestion,
    pub global: PerTenantGlobal,
    pub compaction: CompactionOverrides,
    pub sampling: SamplingOverrides,
    pub metrics_generator: GeneratorOverrides,
}

/// `overrides.<tenant>.ingestion`: the ingestion limits a tenant can have of its own so far
/// (Tempo's keys); unset = `overrides.defaults.ingestion`'s.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PerTenantIngestion {
    /// Over 0, replaces `distributor.max_attribute_bytes` for the tenant; 0 = that key's value.
    pub max_attribute_bytes: Option<usize>,
}

/// `overrides.<tenant>.global` (Tempo's keys); unset = `overrides.defaults.global`'s.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PerTenantGlobal {
    /// The tenant's `max_bytes_per_trace` (0 = no limit).
    pub max_bytes_per_trace: Option<u64>,
}

/// `overrides.*.metrics_generator`: which processors run for the tenant (Tempo's key).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorOverrides {
    pub processors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TenantOverrides {
    pub ingestion: IngestionLimits,
    pub global: GlobalLimits,
    pub compaction: CompactionOverrides,
    pub sampling: SamplingOverrides,
    pub metrics_generator: GeneratorOverrides,
}

/// `overrides.*.sampling`: probabilistic sampling at the distributor, tail sampling in the
/// ingester (the Collector's `tail_sampling` block, unchanged).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingOverrides {
    pub probabilistic: Option<legato_distributor::sampling::ProbabilisticSampling>,
    pub tail_sampling: Option<legato_ingester::tail::TailSamplingConfig>,
}

impl SamplingOverrides {
    /// `key` names the block in the message.
    pub fn validate(&self, key: &str) -> Result<(), String> {
        if let Some(p) = self.probabilistic
            && !(0.0..=100.0).contains(&p.sampling_percentage)
        {
            return Err(format!(
                "{key}.probabilistic.sampling_percentage must be between 0 and 100, got {}",
                p.sampling_percentage
            ));
        }
        if let Some(tail) = &self.tail_sampling {
            legato_ingester::tail::TailSampler::new(tail, &format!("{key}.tail_sampling"))?;
        }
        Ok(())
    }

    /// The share kept, 0..=1; `None` keeps everything.
    pub fn ratio(&self) -> Option<f64> {
        self.probabilistic
            .map(|p| p.sampling_percentage / 100.0)
            .filter(|r| *r < 1.0)
    }
}

/// `overrides.*.compaction`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionOverrides {
    /// Blocks of the tenant older than this are deleted; unset = `compactor.compaction.block_retention`.
    #[serde(with = "opt_duration")]
    pub block_retention: Option<std::time::Duration>,
    /// Retention by policy: traces matching a TraceQL filter kept longer than
    /// `block_retention` (the longest matching policy wins); the rest of an expired block is
    /// deleted. Per tenant, a non-empty list replaces the defaults'.
    pub retention_policies: Vec<RetentionPolicyConfig>,
}

/// One `retention_policies` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicyConfig {
    /// A TraceQL filter, e.g. `{ status = error }`.
    pub query: String,
    #[serde(with = "legato_storage::config_durations")]
    pub retention: std::time::Duration,
}

impl RetentionPolicyConfig {
    fn compile(&self, key: &str) -> Result<legato_compactor::RetentionPolicy, String> {
        let query = legato_traceql::parse(&self.query).map_err(|e| format!("{key}.query {:?}: {e}", self.query))?;
        if query.metrics.is_some() {
            return Err(format!("{key}.query must be a TraceQL filter, not a metrics query"));
        }
        if self.retention.is_zero() {
            return Err(format!("{key}.retention must be greater than 0"));
        }
        let plan = legato_traceql::eval::Plan::new(query).map_err(|e| format!("{key}.query {:?}: {e}", self.query))?;
        Ok(legato_compactor::RetentionPolicy {
            query: self.query.clone(),
            plan: Arc::new(plan),
            retention: self.retention,
        })
    }
}

impl CompactionOverrides {
    fn compiled_policies(&self, key: &str) -> Result<Vec<legato_compactor::RetentionPolicy>, String> {
        self.retention_policies
            .iter()
            .enumerate()
            .map(|(i, p)| p.compile(&format!("{key}.compaction.retention_policies[{i}]")))
            .collect()
    }
}

/// The per-tenant override file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PerTenantOverrides {
    pub overrides: std::collections::BTreeMap<String, PerTenantOverride>,
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => humantime::parse_duration(&text)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration: {e}"))),
            None => Ok(None),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GlobalLimits {
    pub max_bytes_per_trace: u64,
}

impl Default for GlobalLimits {
    fn default() -> Self {
        Self {
            max_bytes_per_trace: 5_000_000,
        }
    }
}

pub const TARGETS: &[&str] = &[
    "all",
    "distributor",
    "ingester",
    "querier",
    "query-frontend",
    "compactor",
    "metrics-generator",
];

impl Config {
    /// Parses YAML; errors name the offending key path.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("invalid configuration at {path}: {}", e.inner())
        })
    }

    pub fn load(path: &Path, expand_env: bool) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        let text = if expand_env { expand_env_vars(&text) } else { text };
        Self::from_yaml(&text).with_context(|| format!("config file {}", path.display()))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if !TARGETS.contains(&self.target.as_str()) {
            bail!(
                "invalid configuration at target: {:?} is not supported by this build (supported: {})",
                self.target,
                TARGETS.join(", ")
            );
        }
        let tls_blocks = [
            ("server.http_tls_config", &self.server.http_tls_config),
            ("server.grpc_tls_config", &self.server.grpc_tls_config),
            (
                "distributor.receivers.otlp.protocols.grpc.tls",
                &self.distributor.receivers.otlp.protocols.grpc.tls,
            ),
            (
                "distributor.receivers.otlp.protocols.http.tls",
                &self.distributor.receivers.otlp.protocols.http.tls,
            ),
        ];
        let receivers = &self.distributor.receivers;
        let receiver_tls = receivers::tls_blocks(receivers.zipkin.as_ref(), receivers.jaeger.as_ref());
        for (key, tls) in tls_blocks.into_iter().chain(receiver_tls) {
            if !tls.is_unset() {
                tls.validate(&format!("invalid configuration at {key}"))?;
            }
        }
        self.ingester_client
            .grpc_client_config
            .validate("invalid configuration at ingester_client.grpc_client_config")?;
        self.auth.load()?;
        if self.server.http_listen_port == self.server.grpc_listen_port {
            bail!("invalid configuration at server.grpc_listen_port: same port as server.http_listen_port");
        }
        let translated = receivers::validate(
            receivers.zipkin.as_ref(),
            receivers.jaeger.as_ref(),
            self.multitenancy_enabled || self.auth.credentials_file.is_some(),
        )?;
        let otlp = [
            (
                "distributor.receivers.otlp.protocols.grpc.endpoint",
                &receivers.otlp.protocols.grpc.endpoint,
            ),
            (
                "distributor.receivers.otlp.protocols.http.endpoint",
                &receivers.otlp.protocols.http.endpoint,
            ),
        ];
        for (key, endpoint) in otlp.into_iter().chain(translated.iter().map(|(k, e)| (*k, e))) {
            if !endpoint.is_empty()
                && endpoint
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
            {
                bail!("invalid configuration at {key}: {endpoint:?} is not host:port");
            }
        }
        if self.distributor.receivers.otlp.protocols.grpc.max_recv_msg_size_mib == 0 {
            bail!(
                "invalid configuration at distributor.receivers.otlp.protocols.grpc.max_recv_msg_size_mib: must be greater than 0"
            );
        }
        if self.distributor.receivers.otlp.protocols.http.max_request_body_size.0 == 0 {
            bail!(
                "invalid configuration at distributor.receivers.otlp.protocols.http.max_request_body_size: must be greater than 0"
            );
        }
        if !["trace", "debug", "info", "warn", "error"].contains(&self.server.log_level.as_str()) {
            bail!(
                "invalid configuration at server.log_level: {:?} is not one of trace, debug, info, warn, error",
                self.server.log_level
            );
        }
        self.memberlist
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration at {e}"))?;
        if self.query_frontend.trace_by_id.query_shards == 0 {
            bail!("invalid configuration at query_frontend.trace_by_id.query_shards: must be greater than 0");
        }
        if self.querier.trace_by_id.query_timeout.is_zero() {
            bail!("invalid configuration at querier.trace_by_id.query_timeout: must be greater than 0");
        }
        if self.querier.search.query_timeout.is_zero() {
            bail!("invalid configuration at querier.search.query_timeout: must be greater than 0");
        }
        if self.query_frontend.search.concurrent_jobs == 0 {
            bail!("invalid configuration at query_frontend.search.concurrent_jobs: must be greater than 0");
        }
        self.compactor
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration at {e}"))?;
        if let Some(path) = &self.overrides.per_tenant_override_config {
            self.per_tenant_overrides()
                .with_context(|| format!("overrides.per_tenant_override_config: {}", path.display()))?;
        }
        self.metrics_generator
            .validate("metrics_generator")
            .map_err(|e| anyhow::anyhow!("invalid configuration at {e}"))?;
        self.generator_enabled()?;
        self.overrides
            .defaults
            .sampling
            .validate("overrides.defaults.sampling")
            .map_err(|e| anyhow::anyhow!("invalid configuration at {e}"))?;
        for (tenant, o) in self.per_tenant_overrides()? {
            o.sampling
                .validate(&format!("overrides.{tenant}.sampling"))
                .map_err(|e| anyhow::anyhow!("invalid configuration at {e}"))?;
            o.compaction
                .compiled_policies(&format!("overrides.{tenant}"))
                .map_err(|e| anyhow::anyhow!("invalid configuration at {e}"))?;
        }
        self.overrides
            .defaults
            .compaction
            .compiled_policies("overrides.defaults")
            .map_err(|e| anyhow::anyhow!("invalid configuration at {e}"))?;
        self.ingester
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration at {e}"))?;
        self.storage
            .trace
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(())
    }

    /// Per-tenant overrides: the inline ones, then the file's (which win).
    pub fn per_tenant_overrides(&self) -> anyhow::Result<std::collections::BTreeMap<String, PerTenantOverride>> {
        let mut all = self.overrides.per_tenant.clone();
        if let Some(path) = &self.overrides.per_tenant_override_config {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let de = serde_yaml::Deserializer::from_str(&text);
            let file: PerTenantOverrides = serde_path_to_error::deserialize(de)
                .map_err(|e| anyhow::anyhow!("invalid per-tenant overrides at {}: {}", e.path(), e.inner()))?;
            all.extend(file.overrides);
        }
        Ok(all)
    }

    /// Retention per tenant: its override, else the default override, else `None` (the
    /// compactor's `block_retention`).
    pub fn retention_lookup(&self) -> anyhow::Result<legato_compactor::RetentionLookup> {
        let per_tenant = self.per_tenant_overrides()?;
        let default = self.overrides.defaults.compaction.block_retention;
        Ok(Arc::new(move |tenant: &legato_model::TenantId| {
            per_tenant
                .get(tenant.as_str())
                .and_then(|o| o.compaction.block_retention)
                .or(default)
        }))
    }

    /// Retention policies per tenant: its override's list when it has one, else the
    /// defaults' (validated at start-up).
    pub fn retention_policies_lookup(&self) -> anyhow::Result<legato_compactor::RetentionPoliciesLookup> {
        let compile = |o: &CompactionOverrides, key: &str| o.compiled_policies(key).map_err(|e| anyhow::anyhow!(e));
        let default = compile(&self.overrides.defaults.compaction, "overrides.defaults")?;
        let mut per_tenant = std::collections::HashMap::new();
        for (tenant, o) in self.per_tenant_overrides()? {
            if !o.compaction.retention_policies.is_empty() {
                per_tenant.insert(tenant.clone(), compile(&o.compaction, &format!("overrides.{tenant}"))?);
            }
        }
        Ok(Arc::new(move |tenant: &legato_model::TenantId| {
            per_tenant.get(tenant.as_str()).unwrap_or(&default).clone()
        }))
    }

    /// Sampling ratio per tenant: its override's `sampling`, else the defaults'; `None` keeps
    /// everything.
    pub fn sampling_lookup(&self) -> anyhow::Result<legato_distributor::sampling::SamplingLookup> {
        let per_tenant = self.per_tenant_overrides()?;
        let default = self.overrides.defaults.sampling.clone();
        Ok(Arc::new(move |tenant: &legato_model::TenantId| {
            per_tenant
                .get(tenant.as_str())
                .filter(|o| o.sampling.probabilistic.is_some())
                .map_or(&default, |o| &o.sampling)
                .ratio()
        }))
    }

    /// Tail sampling per tenant: its override's `tail_sampling`, else the defaults'. Each
    /// tenant gets its own sampler (rate windows and decision caches), made on first use.
    /// `None` when no tenant has tail sampling.
    pub fn tail_sampling_lookup(&self) -> anyhow::Result<Option<legato_ingester::tail::TailLookup>> {
        use legato_ingester::tail::{TailSampler, TailSamplingConfig};
        let per_tenant = self.per_tenant_overrides()?;
        let default = self.overrides.defaults.sampling.tail_sampling.clone();
        let configs: std::collections::BTreeMap<String, TailSamplingConfig> = per_tenant
            .into_iter()
            .filter_map(|(tenant, o)| o.sampling.tail_sampling.map(|t| (tenant, t)))
            .collect();
        if default.is_none() && configs.is_empty() {
            return Ok(None);
        }
        let samplers: parking_lot::Mutex<std::collections::HashMap<legato_model::TenantId, Arc<TailSampler>>> =
            Default::default();
        Ok(Some(Arc::new(move |tenant: &legato_model::TenantId| {
            let cfg = configs.get(tenant.as_str()).or(default.as_ref())?;
            let mut samplers = samplers.lock();
            if let Some(s) = samplers.get(tenant) {
                return Some(s.clone());
            }
            // Validated at start-up; a failure here cannot happen, and keeps every trace.
            let sampler = Arc::new(TailSampler::new(cfg, "tail_sampling").ok()?);
            samplers.insert(tenant.clone(), sampler.clone());
            Some(sampler)
        })))
    }

    /// Processors per tenant: its override's list when it has one, else the defaults'.
    pub fn processors_lookup(&self) -> legato_generator::ProcessorsLookup {
        let per_tenant = self.per_tenant_overrides().unwrap_or_default();
        let default = self.overrides.defaults.metrics_generator.processors.clone();
        Arc::new(move |tenant: &legato_model::TenantId| {
            per_tenant
                .get(tenant.as_str())
                .filter(|o| !o.metrics_generator.processors.is_empty())
                .map_or(&default, |o| &o.metrics_generator.processors)
                .clone()
        })
    }

    /// Whether any tenant has a processor on; checks the names and where it can run.
    pub fn generator_enabled(&self) -> anyhow::Result<bool> {
        let per_tenant = self.per_tenant_overrides()?;
        let lists = std::iter::once((
            "overrides.defaults".to_string(),
            &self.overrides.defaults.metrics_generator,
        ))
        .chain(
            per_tenant
                .iter()
                .map(|(t, o)| (format!("overrides.{t}"), &o.metrics_generator)),
        );
        let mut any = false;
        for (key, o) in lists {
            for p in &o.processors {
                match p.as_str() {
                    legato_generator::SPAN_METRICS | legato_generator::SERVICE_GRAPHS => any = true,
                    other => bail!(
                        "invalid configuration at {key}.metrics_generator.processors: unknown processor {other:?} (known: span-metrics, service-graphs)"
                    ),
                }
            }
        }
        if any && self.microservices() && !matches!(self.target.as_str(), "distributor" | "metrics-generator") {
            // It runs in metrics generators, which distributors send each trace to by trace
            // id (in the distributor itself while the cluster has none); other roles ignore it.
            return Ok(false);
        }
        Ok(any)
    }

    /// Whether this process is one role of a cluster (not the single binary).
    pub fn microservices(&self) -> bool {
        self.target != "all"
    }

    /// Ingesters each trace is written to: configured, else 3 in microservices mode and 1 in
    /// the single binary.
    pub fn replication_factor(&self) -> usize {
        self.ingester
            .lifecycler
            .ring
            .replication_factor
            .unwrap_or(if self.microservices() { 3 } else { 1 })
    }

    /// `max_bytes_per_trace` per tenant: its override, else `overrides.defaults.global`'s.
    pub fn max_bytes_per_trace_lookup(&self) -> anyhow::Result<legato_api::TraceSizeLookup> {
        let default = self.overrides.defaults.global.max_bytes_per_trace;
        let per_tenant: HashMap<String, u64> = self
            .per_tenant_overrides()?
            .into_iter()
            .filter_map(|(tenant, o)| Some((tenant, o.global.max_bytes_per_trace?)))
            .collect();
        Ok(Arc::new(move |tenant: &TenantId| {
            per_tenant.get(tenant.as_str()).copied().unwrap_or(default)
        }))
    }

    /// `max_attribute_bytes` per tenant, as Tempo resolves it: the tenant's
    /// `ingestion.max_attribute_bytes` (else `overrides.defaults.ingestion`'s) when over 0,
    /// else `distributor.max_attribute_bytes`.
    pub fn max_attribute_bytes_lookup(&self) -> anyhow::Result<legato_distributor::AttributeLimitLookup> {
        let distributor = self.distributor.max_attribute_bytes;
        let resolve = move |limit: usize| if limit > 0 { limit } else { distributor };
        let default = resolve(self.overrides.defaults.ingestion.max_attribute_bytes);
        let per_tenant: HashMap<String, usize> = self
            .per_tenant_overrides()?
            .into_iter()
            .filter_map(|(tenant, o)| Some((tenant, resolve(o.ingestion.max_attribute_bytes?))))
            .collect();
        Ok(Arc::new(move |tenant: &TenantId| {
            per_tenant.get(tenant.as_str()).copied().unwrap_or(default)
        }))
    }

    /// The ingester's limits per tenant (`max_bytes_per_trace` per tenant, the rest alike).
    pub fn ingest_limits_lookup(&self) -> anyhow::Result<legato_ingester::IngestLimitsLookup> {
        let max_traces_per_user = self.overrides.defaults.ingestion.max_traces_per_user;
        let max_bytes_per_trace = self.max_bytes_per_trace_lookup()?;
        Ok(Arc::new(move |tenant: &TenantId| IngestLimits {
            max_traces_per_user,
            max_bytes_per_trace: max_bytes_per_trace(tenant),
        }))
    }

    /// The effective config as YAML with secrets masked, for `/status/config`.
    pub fn masked_yaml(&self) -> String {
        let mut shown = self.clone();
        let trace = &mut shown.storage.trace;
        for secret in [&mut trace.s3.secret_key, &mut trace.azure.storage_account_key] {
            if !secret.is_empty() {
                *secret = "********".into();
            }
        }
        serde_yaml::to_string(&shown).unwrap_or_else(|e| format!("# could not render config: {e}\n"))
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` with environment values (Tempo's -config.expand-env).
fn expand_env_vars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = &after[..end];
        let (name, default) = expr.split_once(":-").map_or((expr, ""), |(n, d)| (n, d));
        out.push_str(&std::env::var(name).unwrap_or_else(|_| default.to_string()));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tempo's per-tenant `global.max_bytes_per_trace` and `ingestion.max_attribute_bytes`,
    /// resolved as Tempo does; other ingestion limits are not per tenant (yet) and say so.
    #[test]
    fn size_limits_are_looked_up_per_tenant() {
        let cfg = Config::from_yaml(
            "distributor:\n  max_attribute_bytes: 1000\noverrides:\n  defaults:\n    global:\n      max_bytes_per_trace: 5000\n  per_tenant:\n    small:\n      global:\n        max_bytes_per_trace: 100\n      ingestion:\n        max_attribute_bytes: 10\n    unlimited:\n      global:\n        max_bytes_per_trace: 0\n      ingestion:\n        max_attribute_bytes: 0\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let tenant = |t: &str| TenantId::new(t).unwrap();
        let bytes = cfg.max_bytes_per_trace_lookup().unwrap();
        let attrs = cfg.max_attribute_bytes_lookup().unwrap();
        let ingest = cfg.ingest_limits_lookup().unwrap();
        assert_eq!(
            ["small", "unlimited", "other"].map(|t| (bytes(&tenant(t)), attrs(&tenant(t)))),
            [(100, 10), (0, 1000), (5000, 1000)],
            "a tenant's max_attribute_bytes of 0 is distributor.max_attribute_bytes, as in Tempo"
        );
        assert_eq!(ingest(&tenant("small")).max_bytes_per_trace, 100);

        // overrides.defaults.ingestion.max_attribute_bytes over 0 wins over the distributor's.
        let cfg =
            Config::from_yaml("overrides:\n  defaults:\n    ingestion:\n      max_attribute_bytes: 64\n").unwrap();
        assert_eq!(cfg.max_attribute_bytes_lookup().unwrap()(&tenant("any")), 64);

        let err =
            Config::from_yaml("overrides:\n  per_tenant:\n    a:\n      ingestion:\n        rate_limit_bytes: 1\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("overrides.per_tenant.a.ingestion") && err.contains("rate_limit_bytes"),
            "{err}"
        );
    }

    #[test]
    fn tempo_keys_parse() {
        let cfg = Config::from_yaml(
            r#"
target: all
server:
  http_listen_port: 3300
  grpc_listen_address: 127.0.0.1
distributor:
  receivers:
    otlp:
      protocols:
        grpc:
          endpoint: 127.0.0.1:14317
        http:
          endpoint: 127.0.0.1:14318
ingester:
  trace_idle_period: 2s
  max_block_duration: 1m
  max_block_bytes: 10MiB
storage:
  trace:
    backend: s3
    wal:
      path: /tmp/wal
    s3:
      bucket: traces
      endpoint: 127.0.0.1:9000
      access_key: a
      secret_key: topsecret
      insecure: true
      forcepathstyle: true
      prefix: legato
"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.server.http_listen_port, 3300);
        assert_eq!(cfg.ingester.trace_idle_period, std::time::Duration::from_secs(2));
        assert_eq!(cfg.ingester.max_block_bytes.0, 10 << 20);
        assert!(!cfg.masked_yaml().contains("topsecret"));
    }

    #[test]
    fn query_end_cutoff_is_tempos_key_and_default() {
        let default = Config::default().query_frontend.query_end_cutoff;
        assert_eq!(default, std::time::Duration::from_secs(30));
        let cfg = Config::from_yaml("query_frontend:\n  query_end_cutoff: 0s\n").unwrap();
        assert_eq!(cfg.query_frontend.query_end_cutoff, std::time::Duration::ZERO);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_yaml("ingester:\n  trace_idle_periodd: 5s\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingester") && err.contains("trace_idle_periodd"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::from_yaml("ingester:\n  trace_idle_period: soon\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingester.trace_idle_period"), "{err}");
        let err = Config::from_yaml("storage:\n  trace:\n    backend: floppy\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.trace.backend"), "{err}");
        for (backend, key) in [
            ("s3", "storage.trace.s3.bucket"),
            ("gcs", "storage.trace.gcs.bucket_name"),
            ("azure", "storage.trace.azure.container_name"),
        ] {
            let cfg = Config::from_yaml(&format!("storage:\n  trace:\n    backend: {backend}\n")).unwrap();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{backend}: {err}");
        }
        let cfg =
            Config::from_yaml("storage:\n  trace:\n    backend: azure\n    azure:\n      container_name: c\n").unwrap();
        if std::env::var_os("AZURE_STORAGE_ACCOUNT").is_none() {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains("storage.trace.azure.storage_account_name"), "{err}");
        }
        let err = Config::from_yaml("storage:\n  trace:\n    gcs:\n      bucket: b\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.trace.gcs") && err.contains("bucket"), "{err}");
    }

    #[test]
    fn gcs_and_azure_take_tempos_keys_and_mask_the_account_key() {
        let cfg = Config::from_yaml(
            r#"
storage:
  trace:
    backend: azure
    gcs:
      bucket_name: traces
      prefix: legato
      endpoint: https://storage.googleapis.com/storage/v1/
      insecure: false
      chunk_buffer_size: 10485760
      hedge_requests_at: 500ms
      hedge_requests_up_to: 3
      object_cache_control: no-cache
      object_metadata: {team: tracing}
      service_account: /etc/gcs/key.json
      max_retries: 3
    azure:
      container_name: traces
      prefix: legato
      storage_account_name: acct
      storage_account_key: dG9wc2VjcmV0
      endpoint_suffix: blob.core.windows.net
      max_buffers: 4
      buffer_size: 3MiB
      hedge_requests_at: 1s
      hedge_requests_up_to: 2
      timeout: 10s
"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let trace = &cfg.storage.trace;
        assert_eq!(trace.gcs.client.max_retries, 3);
        assert_eq!(trace.azure.client.timeout, std::time::Duration::from_secs(10));
        assert_eq!(trace.upload_part_size(), 3 << 20);
        assert_eq!(trace.ignored_keys(), vec!["storage.trace.azure.hedge_requests_at"]);
        let shown = cfg.masked_yaml();
        assert!(
            !shown.contains("dG9wc2VjcmV0") && shown.contains("storage_account_key"),
            "{shown}"
        );
    }

    #[test]
    fn env_expansion() {
        // SAFETY-free: set_var is safe in edition 2024 only in unsafe; use a var that exists.
        let home = std::env::var("PATH").unwrap_or_default();
        assert_eq!(expand_env_vars("a ${PATH} b"), format!("a {home} b"));
        assert_eq!(expand_env_vars("${LEGATO_SURELY_UNSET_VAR:-x}"), "x");
    }
}
