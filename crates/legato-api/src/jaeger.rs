//! Jaeger receivers: Thrift over HTTP (`POST /api/traces`, a binary-protocol `Batch`, as
//! the Jaeger collector's port 14268 takes it) and the agent's UDP ports (`emitBatch` in the
//! compact or binary protocol). The gRPC `CollectorService` is in `jaeger_grpc`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use legato_receivers::jaeger;
use legato_receivers::jaeger::thrift::AgentProtocol;
use tokio_util::sync::CancellationToken;

use crate::ingest::{accepted_or_error, content_type};
use crate::{ApiError, SharedState, push_translated, read_ingest_body};

pub async fn traces(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let result = receive(&state, &headers, body).await;
    accepted_or_error(&state, "jaeger_thrift_http", started, result)
}

async fn receive(state: &SharedState, headers: &HeaderMap, body: Body) -> Result<(), ApiError> {
    let (content_type, mime) = content_type(headers);
    if !matches!(
        mime.as_str(),
        "application/x-thrift" | "application/vnd.apache.thrift.binary"
    ) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Type {content_type:?}: use application/x-thrift (a binary-protocol jaeger.thrift Batch)"
        )));
    }
    let (tenant, body) = read_ingest_body(state, headers, body).await?;
    let batch = jaeger::thrift::decode_batch(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    push_translated(state, &tenant, &jaeger::to_otlp([batch])).await?;
    Ok(())
}

/// Serves an agent UDP port until `stop`: each datagram is one `emitBatch`, pushed for the
/// default tenant (UDP carries no headers, so multi-tenant setups need HTTP or gRPC).
/// Datagrams are not answered; refusals are counted and logged.
pub async fn serve_agent_udp(
    state: SharedState,
    socket: Arc<tokio::net::UdpSocket>,
    protocol: AgentProtocol,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let endpoint = match protocol {
        AgentProtocol::Compact => "jaeger_thrift_compact",
        AgentProtocol::Binary => "jaeger_thrift_binary",
    };
    // The largest UDP payload; Jaeger clients keep datagrams under 65000 bytes.
    let mut buf = vec![0u8; 65_535];
    loop {
        let len = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            received = socket.recv_from(&mut buf) => received?.0,
        };
        let started = std::time::Instant::now();
        let status = match receive_datagram(&state, &buf[..len], protocol).await {
            Ok(()) => StatusCode::ACCEPTED,
            Err(e) => {
                tracing::debug!(error = %e, endpoint, "Jaeger agent datagram refused");
                e.status()
            }
        };
        state.metrics.observe(endpoint, status.as_u16(), started);
    }
}

async fn receive_datagram(state: &SharedState, datagram: &[u8], protocol: AgentProtocol) -> Result<(), ApiError> {
    let tenant = crate::tenant::resolve(state.multitenancy_enabled, None)?;
    if let Some(e) = state.distributor.backpressure() {
        return Err(e.into());
    }
    let batch =
        jaeger::thrift::decode_emit_batch(datagram, protocol).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    push_translated(state, &tenant, &jaeger::to_otlp([batch])).await?;
    Ok(())
}
