//! Tempo query endpoints and the small operational ones.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use legato_model::TraceId;
use legato_proto::tempopb::{PARTIAL_STATUS_PARTIAL, Trace, TraceByIdMetrics, TraceByIdResponse};
use legato_proto::{combine, tempo_json};
use prost::Message;

use crate::trace_filter::SpanFilter;
use crate::{ApiError, READY, STOPPING, SharedState, tenant};

const PROTOBUF: &str = "application/protobuf";

pub(crate) fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(PROTOBUF))
}

/// `start`/`end` in Unix seconds, both optional; `end` must follow `start`.
fn time_range(params: &HashMap<String, String>) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let parse = |key: &str| -> Result<Option<u64>, ApiError> {
        match params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("invalid {key} parameter {v:?}: expected Unix seconds"))),
        }
    };
    let (start, end) = (parse("start")?, parse("end")?);
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        return Err(ApiError::BadRequest(format!(
            "http parameter start must be before end. received start={s} end={e}"
        )));
    }
    Ok((start, end))
}

async fn lookup(
    state: &SharedState,
    headers: &HeaderMap,
    id: &str,
    params: &HashMap<String, String>,
) -> Result<Lookup, ApiError> {
    if state.readiness.state() != READY {
        return Err(ApiError::NotReady);
    }
    let tenant = tenant::from_headers(state.multitenancy_enabled, headers)?;
    let id = TraceId::parse_hex(id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let (start, end) = time_range(params)?;
    let found = tokio::time::timeout(
        state.trace_by_id_timeout,
        state.querier.find_trace(&tenant, &id, start, end),
    )
    .await
    .map_err(|_| ApiError::Timeout {
        after: state.trace_by_id_timeout,
        key: "querier.trace_by_id.query_timeout",
    })?;
    let found = found.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Lookup {
        max_bytes: (state.max_bytes_per_trace)(&tenant),
        id,
        found,
    })
}

/// A trace looked up, and its tenant's `max_bytes_per_trace`.
struct Lookup {
    id: TraceId,
    found: legato_querier::FoundTrace,
    max_bytes: u64,
}

/// Protobuf when the client asks for it, else JSON.
pub(crate) fn render(headers: &HeaderMap, protobuf_bytes: Vec<u8>, json_value: serde_json::Value) -> Response {
    if wants_protobuf(headers) {
        protobuf(protobuf_bytes)
    } else {
        json(&json_value)
    }
}

fn protobuf(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, PROTOBUF)], bytes).into_response()
}

pub(crate) fn json(value: &serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

pub(crate) fn finish(
    state: &SharedState,
    endpoint: &str,
    started: Instant,
    result: Result<Response, ApiError>,
) -> Response {
    let resp = result.unwrap_or_else(IntoResponse::into_response);
    state.metrics.observe(endpoint, resp.status().as_u16(), started);
    resp
}

/// `GET /api/traces/{id}`: the bare trace; 404 when unknown.
pub async fn trace_v1(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let result = async {
        let Lookup {
            found, max_bytes: max, ..
        } = lookup(&state, &headers, &id, &params).await?;
        if found.batches.is_empty() {
            return Ok(StatusCode::NOT_FOUND.into_response());
        }
        if max > 0 && combine::trace_len(&found.batches) as u64 > max {
            return Err(ApiError::TraceTooLarge { max });
        }
        if wants_protobuf(&headers) {
            return Ok(protobuf(
                Trace {
                    resource_spans: found.batches,
                }
                .encode_to_vec(),
            ));
        }
        Ok(json(&tempo_json::trace_v1(&found.batches)))
    }
    .await;
    finish(&state, "trace_by_id_v1", started, result)
}

/// `GET /api/v2/traces/{id}`: `TraceByIDResponse`; an unknown trace is 200 with an empty trace.
pub async fn trace_v2(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let result = async {
        let filter = SpanFilter::from_params(&params)?;
        let Lookup {
            id: trace_id,
            found,
            max_bytes: max,
        } = lookup(&state, &headers, &id, &params).await?;
        let inspected_bytes = found.batches.iter().map(|b| b.encoded_len() as u64).sum();
        // Over `max_bytes_per_trace`, the trace's beginning within the limit (Tempo's message).
        let (batches, too_large) = match usize::try_from(max) {
            Ok(max) if max > 0 => combine::cut_to_size(found.batches, max),
            _ => (found.batches, false),
        };
        let mut notes = Vec::new();
        if too_large {
            notes.push(format!(
                "Trace exceeds maximum size of {max} bytes, a partial trace is returned"
            ));
        }
        let batches = match filter {
            Some(filter) if !batches.is_empty() => {
                let filtered = filter.apply(trace_id.0, batches);
                notes.extend(filtered.message());
                filtered.batches
            }
            _ => batches,
        };
        let message = (!notes.is_empty()).then(|| notes.join("; "));
        let resp = TraceByIdResponse {
            trace: Some(Trace {
                resource_spans: batches,
            }),
            metrics: Some(TraceByIdMetrics {
                inspected_bytes,
                backend_reads: found.blocks_inspected,
                backend_bytes: 0,
            }),
            status: if message.is_some() { PARTIAL_STATUS_PARTIAL } else { 0 },
            message: message.unwrap_or_default(),
        };
        if wants_protobuf(&headers) {
            return Ok(protobuf(resp.encode_to_vec()));
        }
        Ok(json(&tempo_json::trace_by_id_v2(&resp)))
    }
    .await;
    finish(&state, "trace_by_id_v2", started, result)
}

pub async fn buildinfo() -> Response {
    json(&serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("LEGATO_GIT_REVISION").unwrap_or("unknown"),
        "branch": "HEAD",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

pub async fn ready(State(state): State<SharedState>) -> Response {
    match state.readiness.state() {
        READY => (StatusCode::OK, "ready\n").into_response(),
        STOPPING => (StatusCode::SERVICE_UNAVAILABLE, "Application is stopping\n").into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Ingester not ready: replaying the write-ahead log\n",
        )
            .into_response(),
    }
}

pub async fn metrics(State(state): State<SharedState>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return ApiError::Internal(e.to_string()).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub async fn status_config(State(state): State<SharedState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.config_yaml.clone(),
    )
        .into_response()
}

/// `/flush`: cut all live traces into blocks and upload them (Tempo's ingester endpoint).
/// Mutating endpoints answer GET with 405 and say which method to use, so a crawler, a
/// prefetching proxy or a mistyped curl cannot trigger them.
pub async fn post_only(uri: axum::http::Uri) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(axum::http::header::ALLOW, "POST")],
        format!("{} changes state: use POST\n", uri.path()),
    )
        .into_response()
}

pub async fn flush(State(state): State<SharedState>) -> Response {
    match &state.flusher {
        None => (StatusCode::NOT_FOUND, "this process runs no ingester\n").into_response(),
        Some(f) if f.flush().await => StatusCode::NO_CONTENT.into_response(),
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "flush incomplete: some blocks failed to upload and will be retried\n",
        )
            .into_response(),
    }
}
