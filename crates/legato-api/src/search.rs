//! `/api/search`, `/api/search/tags`, `/api/v2/search/tags`, and the tag-values endpoints.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use legato_model::TenantId;
use legato_model::span::AttrValue;
use legato_proto::common::{AnyValue, KeyValue, any_value};
use legato_proto::tempo_json::search as json;
use legato_proto::tempopb::search::{
    MetadataMetrics, SearchMetrics, SearchResponse, SearchTagValuesResponse, SearchTagValuesV2Response,
    SearchTagsResponse, SearchTagsV2Response, SearchTagsV2Scope, ServiceStats, Span, SpanSet, TagValue,
    TraceSearchMetadata,
};
use legato_querier::SearchRequest;
use legato_traceql::ast::{FieldExpr, Query as TraceQl, SpansetExpr};
use legato_traceql::eval::Plan;
use legato_traceql::tags::{INTRINSICS, SCOPES, TagSummary};
use prost::Message;

use crate::query::{finish, render};
use crate::{ApiError, READY, SharedState, tenant};

/// Where partial search results go while a search runs (gRPC streaming).
pub(crate) type Progress = tokio::sync::mpsc::UnboundedSender<legato_querier::SearchSnapshot>;

/// Tempo's defaults and maximums.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 262_144;
const DEFAULT_SPSS: usize = 3;
const MAX_SPSS: usize = 100;
const MAX_RANGE: Duration = Duration::from_secs(168 * 3600);
const MAX_QUERY_BYTES: usize = 128 * 1024;

type Params = HashMap<String, String>;

pub(crate) fn param<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// A time parameter: Unix seconds (fractions allowed), nanoseconds (more than 10 digits), or RFC3339.
pub(crate) fn parse_time(key: &str, text: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "invalid {key} parameter {text:?}: expected Unix seconds, nanoseconds or RFC3339"
        ))
    };
    if text.chars().all(|c| c.is_ascii_digit()) {
        let n: u64 = text.parse().map_err(|_| bad())?;
        return Ok(if text.len() > 10 {
            n
        } else {
            n.saturating_mul(1_000_000_000)
        });
    }
    if let Ok(f) = text.parse::<f64>() {
        if f.is_finite() && f >= 0.0 {
            return Ok((f * 1e9) as u64);
        }
        return Err(bad());
    }
    let t = humantime::parse_rfc3339_weak(text).map_err(|_| bad())?;
    Ok(t.duration_since(UNIX_EPOCH).map_err(|_| bad())?.as_nanos() as u64)
}

/// `start`/`end`: both or neither; `end` after `start`; within the maximum range.
fn time_range(params: &Params, max: Option<Duration>) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let start = param(params, "start").map(|v| parse_time("start", v)).transpose()?;
    let end = param(params, "end").map(|v| parse_time("end", v)).transpose()?;
    match (start, end) {
        (Some(s), Some(e)) => {
            if e <= s {
                return Err(ApiError::BadRequest(format!(
                    "http parameter start must be before end. received start={} end={}",
                    s / 1_000_000_000,
                    e / 1_000_000_000
                )));
            }
            if let Some(max) = max
                && e - s > max.as_nanos() as u64
            {
                return Err(ApiError::BadRequest(format!(
                    "range specified by start and end exceeds {}. received start={} end={}",
                    humantime::format_duration(max),
                    s / 1_000_000_000,
                    e / 1_000_000_000
                )));
            }
            Ok((Some(s), Some(e)))
        }
        (None, None) => Ok((None, None)),
        _ => Err(ApiError::BadRequest("only one of start and end provided".into())),
    }
}

fn bounded(params: &Params, key: &str, default: usize, max: usize, zero_ok: bool) -> Result<usize, ApiError> {
    let Some(text) = param(params, key) else {
        return Ok(default);
    };
    let n: usize = text.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "invalid {key} parameter {text:?}: expected a non-negative integer"
        ))
    })?;
    if n == 0 && !zero_ok {
        return Err(ApiError::BadRequest(format!("{key} must be greater than 0")));
    }
    if n > max {
        return Err(ApiError::BadRequest(format!("{key} {n} exceeds max {key} {max}")));
    }
    Ok(n)
}

pub(crate) fn parse_query(q: &str) -> Result<TraceQl, ApiError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(ApiError::BadRequest(format!(
            "TraceQL expression exceeds the configured maximum size of {MAX_QUERY_BYTES} bytes"
        )));
    }
    legato_traceql::parse(q).map_err(|e| ApiError::BadRequest(format!("invalid TraceQL query: {e}")))
}

pub(crate) fn plan(query: TraceQl) -> Result<Arc<Plan>, ApiError> {
    Plan::new(query)
        .map(Arc::new)
        .map_err(|e| ApiError::BadRequest(format!("invalid TraceQL query: {e}")))
}

/// Legacy tag search (`tags=k=v k2="v 2"`, `minDuration`, `maxDuration`) as a TraceQL query.
fn legacy_query(params: &Params) -> Result<String, ApiError> {
    let mut conds: Vec<String> = Vec::new();
    if let Some(tags) = param(params, "tags") {
        for (k, v) in logfmt(tags).map_err(ApiError::BadRequest)? {
            let value = v.replace('\\', "\\\\").replace('"', "\\\"");
            let cond = match k.as_str() {
                "name" => format!("name =~ \"(?i).*{}.*\"", regex_escape(&value)),
                "status.code" => format!(
                    "status = {}",
                    match v.as_str() {
                        "error" | "2" => "error",
                        "ok" | "1" => "ok",
                        _ => "unset",
                    }
                ),
                "http.status_code" => match v.parse::<i64>() {
                    Ok(code) => format!(".http.status_code = {code}"),
                    Err(_) => return Err(ApiError::BadRequest(format!("invalid http.status_code {v:?}"))),
                },
                "root.name" => format!("rootName =~ \"(?i).*{}.*\"", regex_escape(&value)),
                "root.service.name" => format!("rootServiceName =~ \"(?i).*{}.*\"", regex_escape(&value)),
                "service.name" => format!("resource.service.name =~ \"(?i).*{}.*\"", regex_escape(&value)),
                other => format!(
                    ".\"{}\" =~ \"(?i).*{}.*\"",
                    other.replace('"', "\\\""),
                    regex_escape(&value)
                ),
            };
            conds.push(cond);
        }
    }
    let dur = |key: &str| -> Result<Option<Duration>, ApiError> {
        param(params, key)
            .map(|v| {
                humantime::parse_duration(v).map_err(|e| ApiError::BadRequest(format!("invalid {key} {v:?}: {e}")))
            })
            .transpose()
    };
    let (min, max) = (dur("minDuration")?, dur("maxDuration")?);
    if let (Some(a), Some(b)) = (min, max)
        && b < a
    {
        return Err(ApiError::BadRequest(
            "invalid maxDuration: must be greater than minDuration".into(),
        ));
    }
    if let Some(min) = min {
        conds.push(format!("traceDuration >= {}ns", min.as_nanos()));
    }
    if let Some(max) = max {
        conds.push(format!("traceDuration <= {}ns", max.as_nanos()));
    }
    Ok(if conds.is_empty() {
        "{ }".into()
    } else {
        format!("{{ {} }}", conds.join(" && "))
    })
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', '\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// `k=v k2="v two"` pairs.
fn logfmt(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if chars.next() != Some('=') {
            return Err(format!("invalid tags parameter {text:?}: expected key=value"));
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next() {
                    Some('\\') => v.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => v.push(c),
                    None => return Err(format!("invalid tags parameter {text:?}: unterminated quote")),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect()
        };
        out.push((key, value));
    }
}

pub(crate) fn attr_kv_proto(key: &str, v: &AttrValue) -> KeyValue {
    key_value(key, v)
}

fn key_value(key: &str, v: &AttrValue) -> KeyValue {
    use any_value::Value as V;
    let value = match v {
        AttrValue::Str(s) => V::StringValue(s.clone()),
        AttrValue::Int(i) => V::IntValue(*i),
        AttrValue::Float(f) => V::DoubleValue(*f),
        AttrValue::Bool(b) => V::BoolValue(*b),
        AttrValue::Array(items) => V::ArrayValue(legato_proto::common::ArrayValue {
            values: items
                .iter()
                .map(|i| AnyValue {
                    value: key_value("", i).value.and_then(|v| v.value),
                })
                .collect(),
        }),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub(crate) fn ready(state: &SharedState) -> Result<(), ApiError> {
    if state.readiness.state() != READY {
        return Err(ApiError::NotReady);
    }
    Ok(())
}

/// `GET /api/search`.
pub async fn search(State(state): State<SharedState>, Query(params): Query<Params>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let result = match tenant::from_headers(state.multitenancy_enabled, &headers) {
        Ok(tenant) => search_response(&state, &tenant, &params, None).await,
        Err(e) => Err(e),
    };
    respond(&state, &headers, "search", started, result, json::search_response)
}

pub(crate) async fn search_response(
    state: &SharedState,
    tenant: &TenantId,
    params: &Params,
    progress: Option<Progress>,
) -> Result<SearchResponse, ApiError> {
    ready(state)?;
    let q = param(params, "q");
    if q.is_some() && param(params, "tags").is_some() {
        return Err(ApiError::BadRequest(
            "invalid request: q and tags cannot both be set".into(),
        ));
    }
    let text = match q {
        Some(q) => q.to_string(),
        None => legacy_query(params)?,
    };
    let query = parse_query(&text)?;
    if query.metrics.is_some() {
        return Err(ApiError::BadRequest(
            "invalid TraceQL query: metrics queries are served by /api/metrics/query_range and /api/metrics/query"
                .into(),
        ));
    }
    let limit = bounded(params, "limit", DEFAULT_LIMIT, MAX_LIMIT, false)?;
    let spss = bounded(params, "spss", DEFAULT_SPSS, MAX_SPSS, true)?;
    let (start_ns, end_ns) = time_range(params, Some(MAX_RANGE))?;
    let request = SearchRequest {
        plan: plan(query)?,
        query_text: text,
        start_ns,
        end_ns,
        limit,
        spss,
        progress,
        cancel: tokio_util::sync::CancellationToken::new(),
    };
    let outcome = crate::bounded_query(state, tenant, async |cancel| {
        state.querier.search(tenant, SearchRequest { cancel, ..request }).await
    })
    .await?;
    let traces = outcome.traces.iter().map(trace_metadata).collect();
    let resp = SearchResponse {
        traces,
        metrics: Some(SearchMetrics {
            inspected_traces: outcome.inspected_traces.min(u64::from(u32::MAX)) as u32,
            inspected_bytes: outcome.inspected_bytes,
            total_blocks: outcome.total_blocks,
            completed_jobs: outcome.completed_jobs,
            total_jobs: outcome.total_jobs,
            total_block_bytes: 0,
            inspected_spans: outcome.inspected_spans,
        }),
    };
    Ok(resp)
}

pub(crate) fn trace_metadata(t: &legato_traceql::search::TraceHit) -> TraceSearchMetadata {
    let sets: Vec<SpanSet> = t
        .spansets
        .iter()
        .map(|s| SpanSet {
            spans: s
                .spans
                .iter()
                .map(|sp| Span {
                    span_id: hex::encode(sp.span_id),
                    name: sp.name.clone().unwrap_or_default(),
                    start_time_unix_nano: sp.start_unix_nano,
                    duration_nanos: sp.duration_nanos,
                    attributes: sp.attrs.iter().map(|(k, v)| key_value(k, v)).collect(),
                })
                .collect(),
            matched: s.matched,
            attributes: s.attrs.iter().map(|(k, v)| key_value(k, v)).collect(),
        })
        .collect();
    TraceSearchMetadata {
        trace_id: legato_model::TraceId(t.trace_id).to_short_hex(),
        root_service_name: t
            .root_service_name
            .clone()
            .unwrap_or_else(|| "<root span not yet received>".into()),
        root_trace_name: t.root_trace_name.clone().unwrap_or_default(),
        start_time_unix_nano: t.start_unix_nano,
        duration_ms: t.duration_ms(),
        span_set: sets.first().cloned(),
        span_sets: sets,
        service_stats: t
            .service_stats
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    ServiceStats {
                        span_count: s.span_count,
                        error_count: s.error_count,
                    },
                )
            })
            .collect(),
    }
}

/// Renders a result as protobuf or JSON (per `Accept`) and records the request.
fn respond<T: Message>(
    state: &SharedState,
    headers: &HeaderMap,
    endpoint: &str,
    started: Instant,
    result: Result<T, ApiError>,
    to_json: fn(&T) -> serde_json::Value,
) -> Response {
    let rendered = result.map(|r| render(headers, r.encode_to_vec(), to_json(&r)));
    finish(state, endpoint, started, rendered)
}

/// A lenient `q` for tag endpoints: unparsable or non-filter queries are ignored, as in Tempo.
fn tag_filter(params: &Params) -> Option<legato_querier::TagFilter> {
    let q = param(params, "q")?;
    let query = legato_traceql::parse(q).ok()?;
    if query.metrics.is_some() {
        return None;
    }
    if matches!(&query.pipeline.head, SpansetExpr::Filter(FieldExpr::Static(_))) && query.pipeline.stages.is_empty() {
        return None;
    }
    Plan::new(query).ok().map(|plan| legato_querier::TagFilter {
        plan: Arc::new(plan),
        text: q.to_string(),
    })
}

async fn summary(state: &SharedState, tenant: &TenantId, params: &Params) -> Result<TagSummary, ApiError> {
    ready(state)?;
    let (start, end) = time_range(params, None)?;
    let filter = tag_filter(params);
    crate::bounded_query(state, tenant, async |cancel| {
        state.querier.tags(tenant, filter, start, end, cancel).await
    })
    .await
}

fn scope_param(params: &Params) -> Result<Option<String>, ApiError> {
    match param(params, "scope") {
        None | Some("none") | Some("all") => Ok(None),
        Some(s) if SCOPES.contains(&s) || s == "intrinsic" => Ok(Some(s.to_string())),
        Some(other) => Err(ApiError::BadRequest(format!("invalid scope: {other}"))),
    }
}

fn limited(mut names: Vec<String>, params: &Params) -> Result<Vec<String>, ApiError> {
    let limit = bounded(params, "limit", usize::MAX, usize::MAX, true)?;
    if limit > 0 {
        names.truncate(limit);
    }
    Ok(names)
}

/// `GET /api/search/tags`: tag names, flat.
pub async fn tags_v1(State(state): State<SharedState>, Query(params): Query<Params>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let result = match tenant::from_headers(state.multitenancy_enabled, &headers) {
        Ok(tenant) => tags_v1_response(&state, &tenant, &params).await,
        Err(e) => Err(e),
    };
    respond(&state, &headers, "search_tags", started, result, json::tags_v1)
}

pub(crate) async fn tags_v1_response(
    state: &SharedState,
    tenant: &TenantId,
    params: &Params,
) -> Result<SearchTagsResponse, ApiError> {
    let scope = scope_param(params)?;
    let s = summary(state, tenant, params).await?;
    let names: Vec<String> = match scope.as_deref() {
        Some("intrinsic") => INTRINSICS.iter().map(|s| s.to_string()).collect(),
        Some(scope) => s.names(scope),
        None => {
            let mut all: Vec<String> = SCOPES.iter().flat_map(|sc| s.names(sc)).collect();
            all.sort();
            all.dedup();
            all
        }
    };
    let resp = SearchTagsResponse {
        tag_names: limited(names, params)?,
        metrics: Some(MetadataMetrics::default()),
    };
    Ok(resp)
}

/// `GET /api/v2/search/tags`: tag names by scope.
pub async fn tags_v2(State(state): State<SharedState>, Query(params): Query<Params>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let result = match tenant::from_headers(state.multitenancy_enabled, &headers) {
        Ok(tenant) => tags_v2_response(&state, &tenant, &params).await,
        Err(e) => Err(e),
    };
    respond(&state, &headers, "search_tags_v2", started, result, json::tags_v2)
}

pub(crate) async fn tags_v2_response(
    state: &SharedState,
    tenant: &TenantId,
    params: &Params,
) -> Result<SearchTagsV2Response, ApiError> {
    let scope = scope_param(params)?;
    let s = summary(state, tenant, params).await?;
    let mut scopes = Vec::new();
    for name in SCOPES.iter().filter(|n| scope.as_deref().is_none_or(|s| s == **n)) {
        let tags = limited(s.names(name), params)?;
        if !tags.is_empty() || matches!(*name, "resource" | "span") {
            scopes.push(SearchTagsV2Scope {
                name: name.to_string(),
                tags,
            });
        }
    }
    if scope.as_deref().is_none_or(|s| s == "intrinsic") {
        scopes.push(SearchTagsV2Scope {
            name: "intrinsic".into(),
            tags: INTRINSICS.iter().map(|s| s.to_string()).collect(),
        });
    }
    let resp = SearchTagsV2Response {
        scopes,
        metrics: Some(MetadataMetrics::default()),
    };
    Ok(resp)
}

/// `GET /api/search/tag/{tag}/values`: values of a raw attribute key, as strings.
pub async fn tag_values_v1(
    State(state): State<SharedState>,
    Path(tag): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let result = match tenant::from_headers(state.multitenancy_enabled, &headers) {
        Ok(tenant) => tag_values_v1_response(&state, &tenant, &params, &tag).await,
        Err(e) => Err(e),
    };
    respond(
        &state,
        &headers,
        "search_tag_values",
        started,
        result,
        json::tag_values_v1,
    )
}

pub(crate) async fn tag_values_v1_response(
    state: &SharedState,
    tenant: &TenantId,
    params: &Params,
    tag: &str,
) -> Result<SearchTagValuesResponse, ApiError> {
    check_tag_name(tag)?;
    let s = summary(state, tenant, params).await?;
    let values: Vec<String> = match tag {
        "status.code" => vec!["unset".into(), "ok".into(), "error".into()],
        "error" => vec!["true".into()],
        _ => {
            let field = FieldExpr::Attribute(legato_traceql::ast::Attribute {
                scope: legato_traceql::ast::AttributeScope::Unscoped,
                parent: false,
                name: tag.to_string(),
            });
            let mut v: Vec<String> = s.values(&field).into_iter().map(|t| t.value).collect();
            v.dedup();
            v
        }
    };
    let resp = SearchTagValuesResponse {
        tag_values: limited(values, params)?,
        metrics: Some(MetadataMetrics::default()),
    };
    Ok(resp)
}

/// `GET /api/v2/search/tag/{tag}/values`: typed values of a TraceQL identifier.
pub async fn tag_values_v2(
    State(state): State<SharedState>,
    Path(tag): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let result = match tenant::from_headers(state.multitenancy_enabled, &headers) {
        Ok(tenant) => tag_values_v2_response(&state, &tenant, &params, &tag).await,
        Err(e) => Err(e),
    };
    respond(
        &state,
        &headers,
        "search_tag_values_v2",
        started,
        result,
        json::tag_values_v2,
    )
}

pub(crate) async fn tag_values_v2_response(
    state: &SharedState,
    tenant: &TenantId,
    params: &Params,
    tag: &str,
) -> Result<SearchTagValuesV2Response, ApiError> {
    let field = identifier(tag)?;
    let s = summary(state, tenant, params).await?;
    let values = s.values(&field);
    let limit = bounded(params, "limit", usize::MAX, usize::MAX, true)?;
    let values: Vec<TagValue> = values
        .into_iter()
        .take(if limit == 0 { usize::MAX } else { limit })
        .map(|v| TagValue {
            r#type: v.type_name.into(),
            value: v.value,
        })
        .collect();
    let resp = SearchTagValuesV2Response {
        tag_values: values,
        metrics: Some(MetadataMetrics::default()),
    };
    Ok(resp)
}

/// Longest tag name accepted in a request path.
const MAX_TAG_NAME_BYTES: usize = 1024;

/// Refuses tag names no attribute can have: empty, control characters, path separators, or
/// longer than `MAX_TAG_NAME_BYTES`.
fn check_tag_name(tag: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::BadRequest(format!(
            "please provide a valid tagName: {tag:?} {why}"
        )))
    };
    if tag.trim().is_empty() {
        return bad("is empty");
    }
    if tag.len() > MAX_TAG_NAME_BYTES {
        return bad(&format!("is longer than {MAX_TAG_NAME_BYTES} bytes"));
    }
    if tag.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if tag.contains(['/', '\\']) {
        return bad("contains a path separator");
    }
    Ok(())
}

/// Parses a tag path segment as a TraceQL attribute or intrinsic.
fn identifier(tag: &str) -> Result<FieldExpr, ApiError> {
    check_tag_name(tag)?;
    let bad = || {
        ApiError::BadRequest(format!(
            "please provide a valid tagName: {tag:?} is not a TraceQL attribute or intrinsic"
        ))
    };
    let query = legato_traceql::parse(&format!("{{ {tag} = nil }}")).map_err(|_| bad())?;
    match query.pipeline.head {
        SpansetExpr::Filter(FieldExpr::Compare { lhs, .. })
            if matches!(*lhs, FieldExpr::Attribute(_) | FieldExpr::Intrinsic(_)) =>
        {
            Ok(*lhs)
        }
        _ => Err(bad()),
    }
}

/// Parses a query and plans its spanset pipeline; returns the metrics stage if there is one.
pub(crate) fn plan_for(q: &str) -> Result<(Arc<Plan>, Option<legato_traceql::ast::MetricsStage>), ApiError> {
    let mut query = parse_query(q)?;
    let stage = query.metrics.take();
    Ok((plan(query)?, stage))
}

/// A label or attribute as Tempo's JSON `KeyValue`.
pub(crate) fn attr_key_value(key: &str, v: &AttrValue) -> serde_json::Value {
    let kv = key_value(key, v);
    let value = match kv.value.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => serde_json::json!({"stringValue": s}),
        Some(any_value::Value::IntValue(i)) => serde_json::json!({"intValue": i.to_string()}),
        Some(any_value::Value::DoubleValue(d)) => serde_json::json!({"doubleValue": d}),
        Some(any_value::Value::BoolValue(b)) => serde_json::json!({"boolValue": b}),
        _ => serde_json::json!({"stringValue": format!("{v:?}")}),
    };
    serde_json::json!({"key": key, "value": value})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_format() {
        assert_eq!(parse_time("start", "1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(
            parse_time("start", "1700000000123456789").unwrap(),
            1_700_000_000_123_456_789
        );
        assert_eq!(parse_time("start", "1700000000.5").unwrap(), 1_700_000_000_500_000_000);
        assert_eq!(
            parse_time("start", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert!(parse_time("start", "yesterday").is_err());
    }

    #[test]
    fn logfmt_pairs() {
        assert_eq!(
            logfmt(r#"service.name=cart name="GET /x" x=1"#).unwrap(),
            vec![
                ("service.name".into(), "cart".into()),
                ("name".into(), "GET /x".into()),
                ("x".into(), "1".into())
            ]
        );
        assert!(logfmt("novalue").is_err());
    }
}
