//! `/prometheus/api/v1/*`: a Prometheus-compatible API over the metrics generator's series
//! history, so a Grafana *Prometheus* data source pointed at `http://legato:3200/prometheus`
//! draws the service map and the RED table with no Prometheus. GET and form POST, as the
//! Prometheus data source sends them; Prometheus's JSON shapes and error format.

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use legato_generator::history::History;
use legato_generator::now_ms;
use legato_generator::promql::{self, PromError, Settings};
use legato_model::TenantId;
use serde_json::{Value as Json, json};

use crate::{SharedState, tenant};

/// Most points per series of a range query (Prometheus's limit and message).
const MAX_POINTS: i64 = 11_000;
/// `series`, `labels` and `label values` without `start` look back this far.
const DEFAULT_METADATA_RANGE_MS: i64 = 24 * 3_600_000;

type Params = Vec<(String, String)>;

/// Prometheus's error answer: `{"status":"error","errorType":...,"error":...}`.
fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"status": "error", "errorType": kind, "error": message.into()}).to_string(),
    )
        .into_response()
}

/// Why a request failed, answered in Prometheus's error format.
enum Fail {
    Prom(PromError),
    Timeout(Duration),
    NoHistory,
    Api(crate::ApiError),
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        match self {
            Fail::Prom(PromError::BadData(m)) => error(StatusCode::BAD_REQUEST, "bad_data", m),
            Fail::Prom(PromError::Unavailable(m)) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            Fail::Timeout(after) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("query timed out after {after:?} (querier.search.query_timeout)"),
            ),
            Fail::NoHistory => error(
                StatusCode::NOT_FOUND,
                "unavailable",
                "this process keeps no metrics-generator history (the /prometheus API runs where queries are served)",
            ),
            Fail::Api(e) => e.into_response(),
        }
    }
}

fn bad_data(message: impl Into<String>) -> Fail {
    Fail::Prom(PromError::BadData(message.into()))
}

fn from_prom(e: PromError) -> Fail {
    Fail::Prom(e)
}

fn success(data: Json) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"status": "success", "data": data}).to_string(),
    )
        .into_response()
}

/// Parameters from the query string and, for a form POST, the body.
fn params(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> Params {
    let mut out: Params = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        out.extend(form_urlencoded::parse(body).into_owned());
    }
    out
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A parameter that must be there and not empty.
fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, Fail> {
    param(params, name).ok_or_else(|| bad_data(format!("invalid parameter \"{name}\": missing or empty")))
}

/// Unix seconds (float) or RFC 3339, as Prometheus takes them.
fn parse_time(name: &str, text: &str) -> Result<i64, Fail> {
    if let Ok(secs) = text.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            bad_data(format!(
                "invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp"
            ))
        })
}

/// An optional time parameter, or `default` when it is absent.
fn time_or(params: &Params, name: &str, default: impl FnOnce() -> i64) -> Result<i64, Fail> {
    param(params, name).map_or_else(|| Ok(default()), |v| parse_time(name, v))
}

/// Float seconds or a duration (`15s`, `1m`).
fn parse_step(text: &str) -> Result<i64, Fail> {
    let ms = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() => (secs * 1000.0).round() as i64,
        _ => humantime::parse_duration(text)
            .map(|d| d.as_millis() as i64)
            .map_err(|_| {
                bad_data(format!(
                    "invalid parameter \"step\": cannot parse \"{text}\" to a valid duration"
                ))
            })?,
    };
    if ms <= 0 {
        return Err(bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    Ok(ms)
}

struct Ctx {
    history: std::sync::Arc<History>,
    tenant: TenantId,
    settings: Settings,
    timeout: Duration,
}

fn ctx(state: &SharedState, headers: &HeaderMap) -> Result<Ctx, Fail> {
    let Some(history) = state.history.clone() else {
        return Err(Fail::NoHistory);
    };
    let tenant = tenant::from_headers(state.multitenancy_enabled, headers).map_err(Fail::Api)?;
    Ok(Ctx {
        history,
        tenant,
        settings: Settings {
            presence_ms: state.promql_presence.as_millis() as i64,
        },
        timeout: state.query_timeout,
    })
}

async fn timed<T>(ctx: &Ctx, run: impl Future<Output = Result<T, PromError>>) -> Result<T, Fail> {
    match tokio::time::timeout(ctx.timeout, run).await {
        Ok(r) => r.map_err(from_prom),
        Err(_) => Err(Fail::Timeout(ctx.timeout)),
    }
}

pub(crate) async fn query(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let result = async {
        let ctx = ctx(&state, &headers)?;
        let text = required(&p, "query")?;
        let t = time_or(&p, "time", now_ms)?;
        let value = timed(&ctx, promql::instant(&ctx.history, &ctx.tenant, text, t, ctx.settings)).await?;
        Ok::<_, Fail>(success(promql::instant_json(&value, t)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn query_range(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let result = async {
        let ctx = ctx(&state, &headers)?;
        let text = required(&p, "query")?;
        let start = parse_time("start", required(&p, "start")?)?;
        let end = parse_time("end", required(&p, "end")?)?;
        let step = parse_step(required(&p, "step")?)?;
        if end < start {
            return Err(bad_data(
                "invalid parameter \"end\": end timestamp must not be before start time",
            ));
        }
        if (end - start) / step > MAX_POINTS {
            return Err(bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let series = timed(
            &ctx,
            promql::range(&ctx.history, &ctx.tenant, text, start, end, step, ctx.settings),
        )
        .await?;
        Ok(success(promql::matrix_json(&series)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `match[]`, `start` and `end` of the metadata endpoints.
fn metadata_scope(p: &Params) -> Result<(Vec<promql::Selector>, i64, i64), Fail> {
    let matches: Vec<String> = p
        .iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| v.clone())
        .collect();
    let selectors = promql::parse_selectors(&matches).map_err(from_prom)?;
    let end = time_or(p, "end", now_ms)?;
    let start = time_or(p, "start", || end - DEFAULT_METADATA_RANGE_MS)?;
    Ok((selectors, start, end))
}

async fn matching_series(
    state: &SharedState,
    headers: &HeaderMap,
    p: &Params,
) -> Result<Vec<legato_generator::history::SeriesLabels>, Fail> {
    let ctx = ctx(state, headers)?;
    let (selectors, start, end) = metadata_scope(p)?;
    timed(&ctx, promql::series(&ctx.history, &ctx.tenant, &selectors, start, end)).await
}

pub(crate) async fn series(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    if !p.iter().any(|(k, _)| k == "match[]") {
        return bad_data("no match[] parameter provided").into_response();
    }
    match matching_series(&state, &headers, &p).await {
        Ok(found) => success(Json::Array(found.iter().map(promql::metric_json).collect())),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn labels(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    match matching_series(&state, &headers, &p).await {
        Ok(found) => {
            let names: std::collections::BTreeSet<&String> = found.iter().flatten().map(|(k, _)| k).collect();
            success(json!(names))
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn label_values(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    match matching_series(&state, &headers, &p).await {
        Ok(found) => {
            let values: std::collections::BTreeSet<&String> = found
                .iter()
                .flatten()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
                .collect();
            success(json!(values))
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn buildinfo() -> Response {
    // A Prometheus version Grafana enables its current features for; `legato` names us.
    success(json!({
        "version": "2.53.0",
        "revision": concat!("legato-", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

/// `metadata` and `query_exemplars`: Grafana asks; nothing to tell.
pub(crate) async fn empty_object() -> Response {
    success(json!({}))
}

pub(crate) async fn empty_list() -> Response {
    success(json!([]))
}

/// Anything else under `/prometheus/api/v1`.
pub(crate) async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "this Prometheus API endpoint is not served by Legato (see docs/prometheus-api.md)",
    )
}
