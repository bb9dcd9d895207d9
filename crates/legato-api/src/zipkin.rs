//! Zipkin receiver: `POST /api/v2/spans` with a JSON or protobuf (`zipkin.proto3`) list of
//! spans and `POST /api/v1/spans` with a v1 JSON or Thrift list, optionally gzip or deflate
//! compressed; answered 202 as a Zipkin server does.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use legato_receivers::zipkin::ZipkinOptions;

use crate::ingest::{accepted_or_error, content_type};
use crate::{ApiError, SharedState, push_translated, read_ingest_body};

async fn spans_v2(state: SharedState, options: ZipkinOptions, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let result = receive(&state, options, &headers, body, decoder_v2).await;
    accepted_or_error(&state, "zipkin_spans", started, result)
}

async fn spans_v1(state: SharedState, options: ZipkinOptions, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let result = receive(&state, options, &headers, body, decoder_v1).await;
    accepted_or_error(&state, "zipkin_spans", started, result)
}

/// The routes of a Zipkin receiver with `options`.
pub fn routes(options: ZipkinOptions) -> axum::Router<SharedState> {
    let v2 =
        move |State(state): State<SharedState>, headers: HeaderMap, body: Body| spans_v2(state, options, headers, body);
    let v1 =
        move |State(state): State<SharedState>, headers: HeaderMap, body: Body| spans_v1(state, options, headers, body);
    axum::Router::new()
        .route("/api/v2/spans", axum::routing::post(v2))
        .route("/api/v1/spans", axum::routing::post(v1))
}

async fn receive(
    state: &SharedState,
    options: ZipkinOptions,
    headers: &HeaderMap,
    body: Body,
    decoder: fn(&HeaderMap) -> Result<Decoder, ApiError>,
) -> Result<(), ApiError> {
    let decode = decoder(headers)?;
    let (tenant, body) = read_ingest_body(state, headers, body).await?;
    let request = decode(&body, options).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    push_translated(state, &tenant, &request).await?;
    Ok(())
}

type Decoder =
    fn(&[u8], ZipkinOptions) -> Result<legato_receivers::ExportTraceServiceRequest, legato_receivers::ReceiveError>;

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
        // Thrift binary annotations carry their types: no string to parse (as in the Collector).
        "application/x-thrift" => Ok(|body, _| legato_receivers::zipkin_v1::from_thrift(body)),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Type {content_type:?} for Zipkin v1: use application/json or application/x-thrift"
        ))),
    }
}
