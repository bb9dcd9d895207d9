//! Tail sampling in the ingester, with the OpenTelemetry Collector `tail_sampling`
//! processor's policies and semantics: a trace is decided `decision_wait` after its first
//! span arrived, on the ingester holding it; it is kept if a policy samples it and no
//! policy drops it (a `drop` policy, or an inverted match). Spans that arrive after the
//! decision follow it (the decision caches). The decision is a function of the trace (and,
//! for `rate_limiting` and `composite`, of the spans kept this second), so replicas decide
//! alike except under rate limits.

pub mod config;
pub mod ottl;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use legato_model::span::{AttrValue, TraceData};
use legato_proto::trace::ResourceSpans;
use parking_lot::Mutex;

use config::PolicyConfig;
pub use config::TailSamplingConfig;

/// A policy's verdict, named as the Collector names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Sampled,
    NotSampled,
    /// An `invert_match` policy whose condition did not hold.
    InvertSampled,
    /// An `invert_match` policy whose condition held: the trace is not kept.
    InvertNotSampled,
    /// A `drop` policy whose sub-policies all sampled: the trace is not kept.
    Dropped,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sampled => "sampled",
            Self::NotSampled => "not_sampled",
            Self::InvertSampled => "inverted_sampled",
            Self::InvertNotSampled => "inverted_not_sampled",
            Self::Dropped => "dropped",
        }
    }

    fn samples(self) -> bool {
        matches!(self, Self::Sampled | Self::InvertSampled)
    }
}

/// A trace as policies see it: the query view, and the OTLP batches (for `trace_state`).
pub struct TraceView<'a> {
    pub data: &'a TraceData,
    pub batches: &'a [ResourceSpans],
    /// Encoded bytes of the trace, for `bytes_limiting`.
    pub bytes: u64,
    /// Clock nanoseconds of the decision (rate limits count per second).
    pub now_ns: u64,
}

/// A token bucket of bytes, for `bytes_limiting`.
struct Bucket {
    tokens: f64,
    at_ns: u64,
}

/// Spans taken in the current second, for `rate_limiting` and `composite`.
#[derive(Default)]
struct Window {
    second: u64,
    spans: u64,
}

impl Window {
    /// Takes `spans` if they fit under `limit` this second.
    fn take(&mut self, now_s: u64, spans: u64, limit: u64) -> bool {
        if now_s != self.second {
            self.second = now_s;
            self.spans = 0;
        }
        if self.spans + spans <= limit {
            self.spans += spans;
            true
        } else {
            false
        }
    }
}

enum Rule {
    Always,
    Latency {
        min_ns: u64,
        max_ns: Option<u64>,
    },
    Numeric {
        key: String,
        min: i64,
        max: i64,
        invert: bool,
    },
    Probabilistic {
        ratio: f64,
        salt: String,
    },
    Status(Vec<i32>),
    Str {
        key: String,
        values: HashSet<String>,
        regexes: Vec<regex::Regex>,
        invert: bool,
    },
    Bool {
        key: String,
        value: bool,
        invert: bool,
    },
    TraceState {
        key: String,
        values: HashSet<String>,
    },
    RateLimit {
        spans_per_second: u64,
        window: Mutex<Window>,
    },
    BytesLimit {
        per_second: f64,
        burst: f64,
        bucket: Mutex<Option<Bucket>>,
    },
    TraceFlags,
    SpanCount {
        min: u64,
        max: u64,
    },
    And(Vec<Policy>),
    Drop(Vec<Policy>),
    Composite(Vec<(Policy, u64, Mutex<Window>)>),
    TraceQl(Box<legato_traceql::eval::Plan>),
}

/// A compiled policy.
pub struct Policy {
    pub name: String,
    rule: Rule,
}

const TYPES: &str = "always_sample, latency, numeric_attribute, probabilistic, status_code, string_attribute, boolean_attribute, trace_state, trace_flags, rate_limiting, bytes_limiting, span_count, ottl_condition, and, drop, composite, traceql";

impl Policy {
    /// Compiles a policy; `key` names it in errors (`...policies[2]`).
    pub fn compile(cfg: &PolicyConfig, key: &str, depth: usize) -> Result<Self, String> {
        let key = format!("{key} (name {:?})", cfg.name);
        let missing = |block: &str| format!("{key}: a policy of type {block} needs a `{block}` block");
        let rule = match cfg.kind.as_str() {
            "always_sample" => Rule::Always,
            "latency" => {
                let c = cfg.latency.as_ref().ok_or_else(|| missing("latency"))?;
                if c.threshold_ms < 0 || c.upper_threshold_ms < 0 {
                    return Err(format!("{key}: latency thresholds must not be negative"));
                }
                if c.upper_threshold_ms > 0 && c.upper_threshold_ms < c.threshold_ms {
                    return Err(format!(
                        "{key}: latency.upper_threshold_ms must be at least threshold_ms"
                    ));
                }
                Rule::Latency {
                    min_ns: c.threshold_ms as u64 * 1_000_000,
                    max_ns: (c.upper_threshold_ms > 0).then_some(c.upper_threshold_ms as u64 * 1_000_000),
                }
            }
            "numeric_attribute" => {
                let c = cfg
                    .numeric_attribute
                    .as_ref()
                    .ok_or_else(|| missing("numeric_attribute"))?;
                if c.min_value.is_none() && c.max_value.is_none() {
                    return Err(format!("{key}: numeric_attribute needs min_value, max_value or both"));
                }
                Rule::Numeric {
                    key: c.key.clone(),
                    min: c.min_value.unwrap_or(i64::MIN),
                    max: c.max_value.unwrap_or(i64::MAX),
                    invert: c.invert_match,
                }
            }
            "probabilistic" => {
                let c = cfg.probabilistic.as_ref().ok_or_else(|| missing("probabilistic"))?;
                if !(0.0..=100.0).contains(&c.sampling_percentage) {
                    return Err(format!(
                        "{key}: probabilistic.sampling_percentage must be between 0 and 100, got {}",
                        c.sampling_percentage
                    ));
                }
                Rule::Probabilistic {
                    ratio: c.sampling_percentage / 100.0,
                    salt: c.hash_salt.clone(),
                }
            }
            "status_code" => {
                let c = cfg.status_code.as_ref().ok_or_else(|| missing("status_code"))?;
                let codes = c
                    .status_codes
                    .iter()
                    .map(|s| match s.as_str() {
                        "UNSET" => Ok(0),
                        "OK" => Ok(1),
                        "ERROR" => Ok(2),
                        other => Err(format!(
                            "{key}: unknown status code {other:?} in status_code.status_codes (OK, ERROR or UNSET)"
                        )),
                    })
                    .collect::<Result<Vec<i32>, String>>()?;
                if codes.is_empty() {
                    return Err(format!("{key}: status_code.status_codes must not be empty"));
                }
                Rule::Status(codes)
            }
            "string_attribute" => {
                let c = cfg
                    .string_attribute
                    .as_ref()
                    .ok_or_else(|| missing("string_attribute"))?;
                let regexes = if c.enabled_regex_matching {
                    c.values
                        .iter()
                        .map(|v| {
                            regex::Regex::new(v).map_err(|e| {
                                format!("{key}: string_attribute.values: bad regular expression {v:?}: {e}")
                            })
                        })
                        .collect::<Result<Vec<_>, String>>()?
                } else {
                    Vec::new()
                };
                Rule::Str {
                    key: c.key.clone(),
                    values: c.values.iter().cloned().collect(),
                    regexes,
                    invert: c.invert_match,
                }
            }
            "boolean_attribute" => {
                let c = cfg
                    .boolean_attribute
                    .as_ref()
                    .ok_or_else(|| missing("boolean_attribute"))?;
                Rule::Bool {
                    key: c.key.clone(),
                    value: c.value,
                    invert: c.invert_match,
                }
            }
            "trace_state" => {
                let c = cfg.trace_state.as_ref().ok_or_else(|| missing("trace_state"))?;
                Rule::TraceState {
                    key: c.key.clone(),
                    values: c.values.iter().cloned().collect(),
                }
            }
            "rate_limiting" => {
                let c = cfg.rate_limiting.as_ref().ok_or_else(|| missing("rate_limiting"))?;
                Rule::RateLimit {
                    spans_per_second: c.spans_per_second,
                    window: Mutex::default(),
                }
            }
            "span_count" => {
                let c = cfg.span_count.as_ref().ok_or_else(|| missing("span_count"))?;
                if c.max_spans > 0 && c.max_spans < c.min_spans {
                    return Err(format!("{key}: span_count.max_spans must be at least min_spans"));
                }
                Rule::SpanCount {
                    min: c.min_spans,
                    max: c.max_spans,
                }
            }
            "and" => {
                let c = cfg.and.as_ref().ok_or_else(|| missing("and"))?;
                Rule::And(compile_subs(
                    &c.and_sub_policy,
                    &format!("{key}.and.and_sub_policy"),
                    depth,
                )?)
            }
            "drop" => {
                let c = cfg.drop.as_ref().ok_or_else(|| missing("drop"))?;
                Rule::Drop(compile_subs(
                    &c.drop_sub_policy,
                    &format!("{key}.drop.drop_sub_policy"),
                    depth,
                )?)
            }
            "composite" => {
                let c = cfg.composite.as_ref().ok_or_else(|| missing("composite"))?;
                compile_composite(c, &key, depth)?
            }
            "traceql" => {
                let c = cfg.traceql.as_ref().ok_or_else(|| missing("traceql"))?;
                let query =
                    legato_traceql::parse(&c.query).map_err(|e| format!("{key}: traceql.query {:?}: {e}", c.query))?;
                if query.metrics.is_some() {
                    return Err(format!("{key}: traceql.query must be a filter, not a metrics query"));
                }
                Rule::TraceQl(Box::new(
                    legato_traceql::eval::Plan::new(query)
                        .map_err(|e| format!("{key}: traceql.query {:?}: {e}", c.query))?,
                ))
            }
            "bytes_limiting" => {
                let c = cfg.bytes_limiting.as_ref().ok_or_else(|| missing("bytes_limiting"))?;
                if c.bytes_per_second == 0 {
                    return Err(format!("{key}: bytes_limiting.bytes_per_second must be greater than 0"));
                }
                let burst = match c.burst_capacity {
                    0 => 2 * c.bytes_per_second,
                    b => b,
                };
                Rule::BytesLimit {
                    per_second: c.bytes_per_second as f64,
                    burst: burst as f64,
                    bucket: Mutex::new(None),
                }
            }
            "trace_flags" => Rule::TraceFlags,
            "ottl_condition" => {
                let c = cfg.ottl_condition.as_ref().ok_or_else(|| missing("ottl_condition"))?;
                if !matches!(c.error_mode.as_str(), "" | "ignore" | "silent" | "propagate") {
                    return Err(format!(
                        "{key}: ottl_condition.error_mode must be ignore, silent or propagate, got {:?}",
                        c.error_mode
                    ));
                }
                let text = ottl::query(&c.span, &c.spanevent).map_err(|e| {
                    format!("{key}: ottl_condition: {e}; Legato translates a subset of OTTL to TraceQL (see docs/sampling.md), or write a `traceql` policy")
                })?;
                let query = legato_traceql::parse(&text).map_err(|e| {
                    format!("{key}: ottl_condition, as TraceQL {text:?}: {e}; write a `traceql` policy")
                })?;
                Rule::TraceQl(Box::new(
                    legato_traceql::eval::Plan::new(query)
                        .map_err(|e| format!("{key}: ottl_condition, as TraceQL {text:?}: {e}"))?,
                ))
            }
            other => return Err(format!("{key}: unknown policy type {other:?}; known: {TYPES}")),
        };
        Ok(Self {
            name: cfg.name.clone(),
            rule,
        })
    }

    pub fn evaluate(&self, t: &TraceView<'_>) -> Decision {
        let verdict = |hit: bool| if hit { Decision::Sampled } else { Decision::NotSampled };
        let inverted = |hit: bool, invert: bool| match (invert, hit) {
            (false, hit) => verdict(hit),
            (true, true) => Decision::InvertNotSampled,
            (true, false) => Decision::InvertSampled,
        };
        match &self.rule {
            Rule::Always => Decision::Sampled,
            Rule::Latency { min_ns, max_ns } => {
                let start = t.data.spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
                let end = t.data.spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
                let duration = end.saturating_sub(start);
                verdict(duration >= *min_ns && max_ns.is_none_or(|m| duration <= m))
            }
            Rule::Numeric { key, min, max, invert } => inverted(
                any_attr(t.data, key, |v| match v {
                    AttrValue::Int(i) => (*min..=*max).contains(i),
                    AttrValue::Float(f) => *f >= *min as f64 && *f <= *max as f64,
                    _ => false,
                }),
                *invert,
            ),
            Rule::Probabilistic { ratio, salt } => verdict(probabilistic_keep(&t.data.trace_id, *ratio, salt)),
            Rule::Status(codes) => verdict(t.data.spans.iter().any(|s| codes.contains(&s.status_code))),
            Rule::Str {
                key,
                values,
                regexes,
                invert,
            } => inverted(
                any_attr(t.data, key, |v| match v {
                    AttrValue::Str(s) if regexes.is_empty() => values.contains(s),
                    AttrValue::Str(s) => regexes.iter().any(|r| r.is_match(s)),
                    _ => false,
                }),
                *invert,
            ),
            Rule::Bool { key, value, invert } => inverted(
                any_attr(t.data, key, |v| matches!(v, AttrValue::Bool(b) if b == value)),
                *invert,
            ),
            Rule::TraceState { key, values } => verdict(t.batches.iter().any(|rs| {
                rs.scope_spans.iter().any(|ss| {
                    ss.spans.iter().any(|s| {
                        s.trace_state.split(',').any(|member| {
                            member
                                .split_once('=')
                                .is_some_and(|(k, v)| k.trim() == key && values.contains(v.trim()))
                        })
                    })
                })
            })),
            Rule::RateLimit {
                spans_per_second,
                window,
            } => verdict(
                window
                    .lock()
                    .take(t.now_ns / 1_000_000_000, t.data.spans.len() as u64, *spans_per_second),
            ),
            Rule::BytesLimit {
                per_second,
                burst,
                bucket,
            } => {
                let mut bucket = bucket.lock();
                let b = bucket.get_or_insert(Bucket {
                    tokens: *burst,
                    at_ns: t.now_ns,
                });
                let elapsed = t.now_ns.saturating_sub(b.at_ns) as f64 / 1e9;
                b.tokens = (b.tokens + elapsed * per_second).min(*burst);
                b.at_ns = b.at_ns.max(t.now_ns);
                let cost = t.bytes as f64;
                let fits = b.tokens >= cost;
                if fits {
                    b.tokens -= cost;
                }
                verdict(fits)
            }
            // The W3C sampled flag, in the low byte of OTLP's span flags.
            Rule::TraceFlags => verdict(
                t.batches
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .flat_map(|ss| &ss.spans)
                    .any(|s| s.flags & 0x01 != 0),
            ),
            Rule::SpanCount { min, max } => {
                let n = t.data.spans.len() as u64;
                verdict(n >= *min && (*max == 0 || n <= *max))
            }
            Rule::And(subs) => verdict(subs.iter().all(|p| p.evaluate(t).samples())),
            Rule::Drop(subs) => match subs.iter().all(|p| p.evaluate(t).samples()) {
                true => Decision::Dropped,
                false => Decision::NotSampled,
            },
            Rule::Composite(subs) => {
                let spans = t.data.spans.len() as u64;
                let second = t.now_ns / 1_000_000_000;
                let kept = subs
                    .iter()
                    .any(|(p, limit, window)| p.evaluate(t).samples() && window.lock().take(second, spans, *limit));
                verdict(kept)
            }
            Rule::TraceQl(plan) => verdict(!plan.eval(t.data).is_empty()),
        }
    }
}

fn compile_subs(subs: &[PolicyConfig], key: &str, depth: usize) -> Result<Vec<Policy>, String> {
    if depth >= 2 {
        return Err(format!("{key}: sub-policies nest at most two levels deep"));
    }
    if subs.is_empty() {
        return Err(format!("{key} must not be empty"));
    }
    subs.iter()
        .enumerate()
        .map(|(i, p)| Policy::compile(p, &format!("{key}[{i}]"), depth + 1))
        .collect()
}

/// `composite`: sub-policies in `policy_order`, each with its share of
/// `max_total_spans_per_second` (`rate_allocation` percent; policies without one share what
/// is left equally).
fn compile_composite(c: &config::CompositeConfig, key: &str, depth: usize) -> Result<Rule, String> {
    let subs = compile_subs(
        &c.composite_sub_policy,
        &format!("{key}.composite.composite_sub_policy"),
        depth,
    )?;
    let mut by_name: std::collections::HashMap<String, Policy> =
        subs.into_iter().map(|p| (p.name.clone(), p)).collect();
    for a in &c.rate_allocation {
        if !by_name.contains_key(&a.policy) {
            return Err(format!(
                "{key}: composite.rate_allocation names policy {:?}, which is not in composite_sub_policy",
                a.policy
            ));
        }
    }
    let allocated: f64 = c.rate_allocation.iter().map(|a| a.percent).sum();
    if allocated > 100.0 {
        return Err(format!(
            "{key}: composite.rate_allocation percentages add up to {allocated}, over 100"
        ));
    }
    let unallocated = c
        .policy_order
        .iter()
        .filter(|n| !c.rate_allocation.iter().any(|a| &a.policy == *n))
        .count();
    let share_left = if unallocated > 0 {
        (100.0 - allocated) / unallocated as f64
    } else {
        0.0
    };
    let mut ordered = Vec::new();
    for name in &c.policy_order {
        let policy = by_name.remove(name).ok_or_else(|| {
            format!(
                "{key}: composite.policy_order names {name:?}, which is not in composite_sub_policy (or is named twice)"
            )
        })?;
        let percent = c
            .rate_allocation
            .iter()
            .find(|a| &a.policy == name)
            .map_or(share_left, |a| a.percent);
        let limit = (c.max_total_spans_per_second as f64 * percent / 100.0) as u64;
        ordered.push((policy, limit, Mutex::default()));
    }
    if let Some(name) = by_name.keys().next() {
        return Err(format!(
            "{key}: composite sub-policy {name:?} is missing from composite.policy_order"
        ));
    }
    Ok(Rule::Composite(ordered))
}

/// Whether an attribute `key` of any span or its resource satisfies `test`.
fn any_attr(t: &TraceData, key: &str, test: impl Fn(&AttrValue) -> bool) -> bool {
    let hit = |attrs: &[(String, AttrValue)]| attrs.iter().any(|(k, v)| k == key && test(v));
    t.spans.iter().any(|s| hit(&s.attrs) || hit(&s.origin.resource))
}

/// The `probabilistic` policy: without a salt, OpenTelemetry's TraceIdRatioBased decision
/// (the same as probabilistic sampling at the distributor and in SDKs); with one, a hash of
/// salt and trace id.
fn probabilistic_keep(trace_id: &[u8; 16], ratio: f64, salt: &str) -> bool {
    if salt.is_empty() {
        return legato_model::ratio_keeps(trace_id, ratio);
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.as_bytes().iter().chain(trace_id) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ((h >> 11) as f64) < ratio * (1u64 << 53) as f64
}

/// A bounded set of trace ids, oldest forgotten first.
struct Remembered {
    set: HashSet<[u8; 16]>,
    order: VecDeque<[u8; 16]>,
    cap: usize,
}

impl Remembered {
    fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn insert(&mut self, id: [u8; 16]) {
        if self.cap == 0 || !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// One tenant's tail sampler: its policies, rate windows and decision caches.
pub struct TailSampler {
    pub decision_wait_ns: u64,
    pub num_traces: usize,
    pub drop_pending_on_shutdown: bool,
    sample_on_first_match: bool,
    policies: Vec<Policy>,
    sampled: Mutex<Remembered>,
    not_sampled: Mutex<Remembered>,
}

/// A trace's decision and what each policy said.
pub struct Verdict {
    pub keep: bool,
    pub policies: Vec<(String, Decision)>,
}

impl TailSampler {
    /// Compiles `cfg`; `key` names the block in errors.
    pub fn new(cfg: &TailSamplingConfig, key: &str) -> Result<Self, String> {
        if cfg.policies.is_empty() {
            return Err(format!("{key}.policies must name at least one policy"));
        }
        if cfg.decision_wait.is_zero() {
            return Err(format!("{key}.decision_wait must be greater than 0"));
        }
        if cfg.num_traces == 0 {
            return Err(format!("{key}.num_traces must be greater than 0"));
        }
        let policies = cfg
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| Policy::compile(p, &format!("{key}.policies[{i}]"), 0))
            .collect::<Result<Vec<_>, String>>()?;
        let mut names = HashSet::new();
        if let Some(dup) = policies.iter().find(|p| !names.insert(p.name.clone())) {
            return Err(format!("{key}.policies: two policies are named {:?}", dup.name));
        }
        let cache = |size: Option<usize>| size.unwrap_or(cfg.num_traces.max(cfg.expected_new_traces_per_sec as usize));
        Ok(Self {
            decision_wait_ns: cfg.decision_wait.as_nanos() as u64,
            num_traces: cfg.num_traces,
            drop_pending_on_shutdown: cfg.drop_pending_traces_on_shutdown,
            sample_on_first_match: cfg.sample_on_first_match,
            policies,
            sampled: Mutex::new(Remembered::new(cache(cfg.decision_cache.sampled_cache_size))),
            not_sampled: Mutex::new(Remembered::new(cache(cfg.decision_cache.non_sampled_cache_size))),
        })
    }

    /// Decides a trace and remembers the decision for late spans, as the Collector combines
    /// policies: a drop or an inverted match drops it; otherwise a sample keeps it, and so
    /// does an inverted non-match when no policy said "not sampled".
    pub fn decide(&self, t: &TraceView<'_>) -> Verdict {
        let mut said = Vec::with_capacity(self.policies.len());
        for p in &self.policies {
            let d = p.evaluate(t);
            said.push((p.name.clone(), d));
            if self.sample_on_first_match && d == Decision::Sampled {
                break;
            }
        }
        let vetoed = said
            .iter()
            .any(|(_, d)| matches!(d, Decision::Dropped | Decision::InvertNotSampled));
        let has = |want: Decision| said.iter().any(|(_, d)| *d == want);
        let keep = !vetoed && (has(Decision::Sampled) || (has(Decision::InvertSampled) && !has(Decision::NotSampled)));
        self.remember(t.data.trace_id, keep);
        Verdict { keep, policies: said }
    }

    pub fn remember(&self, id: [u8; 16], keep: bool) {
        match keep {
            true => self.sampled.lock().insert(id),
            false => self.not_sampled.lock().insert(id),
        }
    }

    /// The decision already made for a trace, if remembered.
    pub fn decided(&self, id: &[u8; 16]) -> Option<bool> {
        if self.sampled.lock().set.contains(id) {
            return Some(true);
        }
        self.not_sampled.lock().set.contains(id).then_some(false)
    }
}

/// The tail sampler of a tenant, `None` when it has no tail sampling.
pub type TailLookup = Arc<dyn Fn(&legato_model::TenantId) -> Option<Arc<TailSampler>> + Send + Sync>;
