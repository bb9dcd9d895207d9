//! What every receiver over HTTP does before and after translating: the tenant, refusing
//! under back-pressure before the body is read, the size limit before and after
//! decompression, and the push of an OTLP request to the distributor.

use std::io::Read;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use legato_distributor::Export;
use legato_model::TenantId;
use legato_proto::collector::ExportTraceServiceRequest;
use legato_proto::push::PushOutcome;
use prost::Message;

use crate::{ApiError, SharedState, tenant};

/// The request's Content-Type as sent, and its media type alone in lower case.
pub(crate) fn content_type(headers: &HeaderMap) -> (&str, String) {
    let sent = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = sent.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    (sent, mime)
}

/// A translated receiver's answer: 202 as Jaeger and Zipkin servers give, or the error as
/// text; counted under `endpoint`.
pub(crate) fn accepted_or_error(
    state: &SharedState,
    endpoint: &'static str,
    started: std::time::Instant,
    result: Result<(), ApiError>,
) -> Response {
    let response = match result {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => {
            tracing::debug!(error = %e, endpoint, "export refused");
            e.into_response()
        }
    };
    state.metrics.observe(endpoint, response.status().as_u16(), started);
    response
}

/// The tenant and the decompressed body of an ingest request. Under back-pressure the
/// request is refused before its body is read.
pub(crate) async fn read_ingest_body(
    state: &SharedState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(TenantId, Vec<u8>), ApiError> {
    let tenant = tenant::from_headers(state.multitenancy_enabled, headers)?;
    if let Some(e) = state.distributor.backpressure() {
        return Err(e.into());
    }
    let limit = state.max_request_bytes;
    let raw = to_bytes(body, limit.saturating_add(1))
        .await
        .map_err(|_| ApiError::TooLarge { size: limit + 1, limit })?;
    if raw.len() > limit {
        return Err(ApiError::TooLarge { size: raw.len(), limit });
    }
    let body = decompress(headers, &raw, limit)?;
    Ok((tenant, body))
}

/// A translated (Jaeger, Zipkin) request, down the same path as an OTLP export.
pub(crate) async fn push_translated(
    state: &SharedState,
    tenant: &TenantId,
    request: &ExportTraceServiceRequest,
) -> Result<PushOutcome, ApiError> {
    let body = request.encode_to_vec();
    let outcome = state
        .distributor
        .push(tenant, Export::Request(&body), body.len())
        .await?;
    if !outcome.rejected.is_empty() {
        let (rejected, message) = legato_distributor::describe_rejections(&outcome.rejected);
        tracing::debug!(rejected, message, "spans refused from a translated export");
    }
    Ok(outcome)
}

pub(crate) fn decompress(headers: &HeaderMap, raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut out = Vec::new();
    let read = match enc.as_str() {
        "" | "identity" => return Ok(raw.to_vec()),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(raw)
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        "deflate" | "zlib" => flate2::read::ZlibDecoder::new(raw)
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {other:?}: use gzip, deflate or none"
            )));
        }
    };
    read.map_err(|e| ApiError::BadRequest(format!("could not decompress {enc} body: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge { size: out.len(), limit });
    }
    Ok(out)
}
