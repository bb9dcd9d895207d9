//! Zipkin receiver: `POST /api/v2/spans` with a JSON or protobuf (`zipkin.proto3`) list of
//! spans and `POST /api/v1/spans` with a v1 JSON or Thrift list, optionally gzip or deflate
//! compressed; answered 202 as a Zipkin server does.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::ingest::{accepted_or_error, content_type};
use crate::{ApiError, SharedState, push_translated, read_ingest_body};

pub async fn spans_v2(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let result = receive(&state, &headers, body, decoder_v2).await;
    accepted_or_error(&state, "zipkin_spans", started, result)
}

pub async fn spans_v1(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let result = receive(&state, &headers, body, decoder_v1).await;
    accepted_or_error(&state, "zipkin_spans", started, result)
}

async fn receive(
    state: &SharedState,
    headers: &HeaderMap,
    body: Body,
    decoder: fn(&HeaderMap) -> Result<Decoder, ApiError>,
) -> Result<(), ApiError> {
    let decode = decoder(headers)?;
    let (tenant, body) = read_ingest_body(state, headers, body).await?;
    let request = decode(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    push_translated(state, &tenant, &request).await?;
    Ok(())
}

type Decoder = fn(&[u8]) -> Result<legato_receivers::ExportTraceServiceRequest, legato_receivers::ReceiveError>;

/// Zipkin servers take a body without a Content-Type as JSON.
fn decoder_v2(headers: &HeaderMap) -> Result<Decoder, ApiError> {
    let (content_type, mime) = content_type(headers);
    match mime.as_str() {
        "" | "application/json" => Ok(legato_receivers::zipkin::from_json),
        "application/x-protobuf" | "application/protobuf" => Ok(legato_receivers::zipkin::from_protobuf),
        "application/x-thrift" => Err(ApiError::UnsupportedMediaType(
            "Zipkin v1 Thrift goes to /api/v1/spans".into(),
        )),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Type {content_type:?}: use application/json or application/x-protobuf"
        ))),
    }
}

fn decoder_v1(headers: &HeaderMap) -> Result<Decoder, ApiError> {
    let (content_type, mime) = content_type(headers);
    match mime.as_str() {
        "" | "application/json" => Ok(legato_receivers::zipkin_v1::from_json),
        "application/x-thrift" => Ok(legato_receivers::zipkin_v1::from_thrift),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Type {content_type:?} for Zipkin v1: use application/json or application/x-thrift"
        ))),
    }
}
