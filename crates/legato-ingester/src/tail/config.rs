//! `overrides.*.sampling.tail_sampling`: the OpenTelemetry Collector's `tail_sampling`
//! processor configuration, key for key, so a Collector block can be pasted unchanged.

use std::time::Duration;

use legato_storage::config_durations as dur;
use serde::{Deserialize, Serialize};

/// Integers as YAML 1.1 (the Collector's parser) writes them too: `100_000`.
mod int {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }

    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Int(i) => Ok(i),
            Raw::Text(t) => t
                .replace('_', "")
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("expected an integer, got {t:?}"))),
        }
    }

    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let v = parse(d)?;
        u64::try_from(v).map_err(|_| serde::de::Error::custom(format!("expected a non-negative integer, got {v}")))
    }

    pub fn usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        u64(d).map(|v| v as usize)
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        parse(d)
    }

    pub fn opt_usize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        usize(d).map(Some)
    }

    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        parse(d).map(Some)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TailSamplingConfig {
    /// How long after a trace's first span the decision is made (Collector default 30s).
    #[serde(default = "default_decision_wait", with = "dur")]
    pub decision_wait: Duration,
    /// Undecided traces held per tenant; past it the oldest are decided early.
    #[serde(default = "default_num_traces", deserialize_with = "int::usize")]
    pub num_traces: usize,
    /// A sizing hint in the Collector; accepted, and used to size the decision caches.
    #[serde(default, deserialize_with = "int::u64")]
    pub expected_new_traces_per_sec: u64,
    #[serde(default)]
    pub decision_cache: DecisionCacheConfig,
    /// Stop at the first policy that samples.
    #[serde(default)]
    pub sample_on_first_match: bool,
    /// At shutdown (and `/flush`), drop undecided traces instead of deciding them early.
    #[serde(default)]
    pub drop_pending_traces_on_shutdown: bool,
    pub policies: Vec<PolicyConfig>,
}

fn default_decision_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_num_traces() -> usize {
    50_000
}

/// Decisions remembered for spans that arrive after them. Unset sizes default to
/// `num_traces` (the Collector's default is off; Legato keeps late spans with their trace).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DecisionCacheConfig {
    #[serde(default, deserialize_with = "int::opt_usize")]
    pub sampled_cache_size: Option<usize>,
    #[serde(default, deserialize_with = "int::opt_usize")]
    pub non_sampled_cache_size: Option<usize>,
}

/// One policy: `name`, `type` and the block named after the type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric_attribute: Option<NumericAttributeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilistic: Option<ProbabilisticConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<StatusCodeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_attribute: Option<StringAttributeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boolean_attribute: Option<BooleanAttributeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_state: Option<TraceStateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiting: Option<RateLimitingConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_count: Option<SpanCountConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and: Option<AndConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<DropConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite: Option<CompositeConfig>,
    /// Legato: a TraceQL filter the trace must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceql: Option<TraceqlConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_limiting: Option<BytesLimitingConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_flags: Option<serde_yaml::Value>,
    /// The Collector's OTTL conditions: the common subset is translated to TraceQL (see
    /// `tail::ottl`); anything else stops start-up naming the condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ottl_condition: Option<OttlConditionConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    #[serde(deserialize_with = "int::i64")]
    pub threshold_ms: i64,
    #[serde(default, deserialize_with = "int::i64")]
    pub upper_threshold_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NumericAttributeConfig {
    pub key: String,
    #[serde(default, deserialize_with = "int::opt_i64")]
    pub min_value: Option<i64>,
    #[serde(default, deserialize_with = "int::opt_i64")]
    pub max_value: Option<i64>,
    #[serde(default)]
    pub invert_match: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticConfig {
    pub sampling_percentage: f64,
    #[serde(default)]
    pub hash_salt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatusCodeConfig {
    pub status_codes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StringAttributeConfig {
    pub key: String,
    pub values: Vec<String>,
    #[serde(default)]
    pub enabled_regex_matching: bool,
    /// The Collector's regex-result cache size; accepted (Legato's regexes need none).
    #[serde(default, deserialize_with = "int::usize")]
    pub cache_max_size: usize,
    #[serde(default)]
    pub invert_match: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BooleanAttributeConfig {
    pub key: String,
    pub value: bool,
    #[serde(default)]
    pub invert_match: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraceStateConfig {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    #[serde(deserialize_with = "int::u64")]
    pub spans_per_second: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BytesLimitingConfig {
    #[serde(deserialize_with = "int::u64")]
    pub bytes_per_second: u64,
    /// Default: twice `bytes_per_second`.
    #[serde(default, deserialize_with = "int::u64")]
    pub burst_capacity: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpanCountConfig {
    #[serde(default, deserialize_with = "int::u64")]
    pub min_spans: u64,
    /// 0 = no upper bound.
    #[serde(default, deserialize_with = "int::u64")]
    pub max_spans: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AndConfig {
    pub and_sub_policy: Vec<PolicyConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    pub drop_sub_policy: Vec<PolicyConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompositeConfig {
    #[serde(deserialize_with = "int::u64")]
    pub max_total_spans_per_second: u64,
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<PolicyConfig>,
    #[serde(default)]
    pub rate_allocation: Vec<RateAllocation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateAllocation {
    pub policy: String,
    pub percent: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OttlConditionConfig {
    /// `ignore`, `silent` or `propagate`: accepted (a translated condition cannot fail at
    /// run time).
    #[serde(default)]
    pub error_mode: String,
    #[serde(default)]
    pub span: Vec<String>,
    #[serde(default)]
    pub spanevent: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraceqlConfig {
    pub query: String,
}
