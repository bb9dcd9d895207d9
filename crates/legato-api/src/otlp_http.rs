//! OTLP/HTTP receiver: `POST /v1/traces` with protobuf or JSON bodies, optionally gzip or
//! deflate compressed. Replies in the request's encoding; errors are `google.rpc.Status`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use legato_distributor::{Export, describe_rejections};
use legato_proto::collector::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use legato_proto::otlp_json;
use prost::Message;

use crate::{ApiError, SharedState, read_ingest_body};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, as OTLP/HTTP error bodies carry it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

pub async fn export(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let encoding = match request_encoding(&headers) {
        Ok(e) => e,
        Err(e) => return error_response(Encoding::Json, e),
    };
    let result = handle(&state, &headers, body, encoding).await;
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(error = %e, "OTLP/HTTP export refused");
            error_response(encoding, e)
        }
    };
    state
        .metrics
        .observe("otlp_http_export", resp.status().as_u16(), started);
    resp
}

async fn handle(
    state: &SharedState,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<Response, ApiError> {
    let (tenant, body) = read_ingest_body(state, headers, body).await?;
    // Protobuf goes to the distributor as it came; JSON is decoded, then encoded as protobuf.
    let body = match encoding {
        Encoding::Protobuf => body,
        Encoding::Json => otlp_json::decode_export_request(&body)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
            .encode_to_vec(),
    };
    let outcome = state
        .distributor
        .push(&tenant, Export::Request(&body), body.len())
        .await?;
    let partial_success = (!outcome.rejected.is_empty()).then(|| {
        let (rejected_spans, error_message) = describe_rejections(&outcome.rejected);
        ExportTracePartialSuccess {
            rejected_spans,
            error_message,
        }
    });
    let body = match encoding {
        Encoding::Protobuf => ExportTraceServiceResponse { partial_success }.encode_to_vec(),
        Encoding::Json => {
            let value = match partial_success {
                None => serde_json::json!({}),
                Some(p) => {
                    serde_json::json!({"partialSuccess": {"rejectedSpans": p.rejected_spans.to_string(), "errorMessage": p.error_message}})
                }
            };
            value.to_string().into_bytes()
        }
    };
    Ok(([(header::CONTENT_TYPE, encoding.content_type())], body).into_response())
}

fn request_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let (ct, mime) = crate::ingest::content_type(headers);
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Type {ct:?}: use application/x-protobuf or application/json"
        ))),
    }
}

fn error_response(encoding: Encoding, e: ApiError) -> Response {
    let status = RpcStatus {
        code: e.grpc_code() as i32,
        message: e.to_string(),
    };
    let body = match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": status.code, "message": status.message})
            .to_string()
            .into_bytes(),
    };
    let mut resp = (e.status(), [(header::CONTENT_TYPE, encoding.content_type())], body).into_response();
    if let Some(after) = e.retry_after()
        && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}
