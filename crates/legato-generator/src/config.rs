//! `metrics_generator`: Tempo's keys for the processors, the registry and remote write.

use std::collections::BTreeMap;
use std::time::Duration;

use legato_storage::config_durations as dur;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    pub registry: RegistryConfig,
    pub storage: GeneratorStorageConfig,
    pub processor: ProcessorConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// How often series are collected and remote-written.
    #[serde(with = "dur")]
    pub collection_interval: Duration,
    /// A series not updated for this long is dropped.
    #[serde(with = "dur")]
    pub stale_duration: Duration,
    /// Labels added to every series.
    pub external_labels: BTreeMap<String, String>,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// Active series per tenant; new ones past it are refused and counted (0 = no limit).
    pub max_active_series: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            collection_interval: Duration::from_secs(15),
            stale_duration: Duration::from_secs(15 * 60),
            external_labels: BTreeMap::new(),
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_active_series: 100_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorStorageConfig {
    pub remote_write: Vec<RemoteWriteConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Exemplars (`traceID`) on latency buckets; Tempo sends them whatever this says.
    pub send_exemplars: bool,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            headers: BTreeMap::new(),
            send_exemplars: true,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorConfig {
    pub span_metrics: SpanMetricsConfig,
    pub service_graphs: crate::servicegraphs::ServiceGraphsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SpanMetricsConfig {
    /// Span or resource attributes added as labels (dots become underscores).
    pub dimensions: Vec<String>,
    /// Which of service, span_name, span_kind, status_code, status_message are labels.
    pub intrinsic_dimensions: IntrinsicDimensions,
    /// Latency histogram buckets, seconds.
    pub histogram_buckets: Vec<f64>,
    /// Which spans are counted (Tempo's `filter_policies`): none = all.
    pub filter_policies: Vec<FilterPolicy>,
}

/// One `filter_policies` entry, as in Tempo: `include`, `include_any` and `exclude` matches.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FilterPolicy {
    pub include: Option<PolicyMatch>,
    pub include_any: Option<PolicyMatch>,
    pub exclude: Option<PolicyMatch>,
}

/// Attributes that must all match: `span.x`, `resource.x`, or the intrinsics `kind`, `name`,
/// `status` (with enum names such as `SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyMatch {
    pub match_type: MatchType,
    pub attributes: Vec<MatchAttribute>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    #[default]
    Strict,
    Regex,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchAttribute {
    pub key: String,
    pub value: FilterValue,
}

/// A typed value: strict matches compare type and value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum FilterValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        Self {
            dimensions: Vec::new(),
            filter_policies: Vec::new(),
            intrinsic_dimensions: IntrinsicDimensions::default(),
            // 2 ms doubling 14 times, up to about 16 s.
            histogram_buckets: (0..14).map(|i| 0.002 * f64::from(1u32 << i)).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IntrinsicDimensions {
    pub service: bool,
    pub span_name: bool,
    pub span_kind: bool,
    pub status_code: bool,
    pub status_message: bool,
}

impl Default for IntrinsicDimensions {
    fn default() -> Self {
        Self {
            service: true,
            span_name: true,
            span_kind: true,
            status_code: true,
            status_message: false,
        }
    }
}

impl GeneratorConfig {
    /// `key` is where this block sits (`metrics_generator`).
    pub fn validate(&self, key: &str) -> Result<(), String> {
        if self.registry.collection_interval.is_zero() {
            return Err(format!("{key}.registry.collection_interval must be greater than 0"));
        }
        for (i, rw) in self.storage.remote_write.iter().enumerate() {
            if !(rw.url.starts_with("http://") || rw.url.starts_with("https://")) {
                return Err(format!(
                    "{key}.storage.remote_write[{i}].url must be an http(s) URL, got {:?}",
                    rw.url
                ));
            }
        }
        crate::servicegraphs::ServiceGraphs::new(self.processor.service_graphs.clone())
            .validate(&format!("{key}.processor.service_graphs"))?;
        crate::spanmetrics::Filter::new(&self.processor.span_metrics.filter_policies)
            .map_err(|e| format!("{key}.processor.span_metrics.filter_policies: {e}"))?;
        let buckets = &self.processor.span_metrics.histogram_buckets;
        if buckets.is_empty() || buckets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "{key}.processor.span_metrics.histogram_buckets must be increasing and not empty"
            ));
        }
        Ok(())
    }
}
