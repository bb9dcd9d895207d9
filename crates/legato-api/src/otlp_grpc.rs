//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`. Requests
//! arrive with their resource spans still encoded (`legato_proto::otlp_raw`); the distributor
//! checks and splits them from the wire format.

use legato_distributor::{Export, describe_rejections};
use legato_proto::collector::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use legato_proto::otlp_raw::RawExportTraceServiceRequest;
use legato_proto::otlp_raw::trace_service_server::{TraceService, TraceServiceServer};
use prost::Message;
use tonic::codec::CompressionEncoding;

use crate::SharedState;

pub struct OtlpTraceService {
    state: SharedState,
    max_message_bytes: usize,
}

/// The tonic service, accepting gzip and zstd and refusing messages over the limit with
/// RESOURCE_EXHAUSTED. Tonic itself answers OUT_OF_RANGE past its own limit, so that one is
/// set to a multiple of ours as a hard guard and ours is checked in the handler. Under
/// back-pressure exports are refused (RESOURCE_EXHAUSTED) before their message is read.
pub fn trace_service(
    state: SharedState,
    max_message_bytes: usize,
) -> tonic::service::interceptor::InterceptedService<TraceServiceServer<OtlpTraceService>, Backpressure> {
    let server = TraceServiceServer::new(OtlpTraceService {
        state: state.clone(),
        max_message_bytes,
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .accept_compressed(CompressionEncoding::Zstd)
    .send_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(max_message_bytes.saturating_mul(4));
    tonic::service::interceptor::InterceptedService::new(server, Backpressure(state, "otlp_grpc_export"))
}

/// Refuses an export while the distributor's sink is surely full, before tonic reads and
/// decodes the message: a retry storm then costs a header check per export. The refusal is
/// counted under the endpoint named.
#[derive(Clone)]
pub struct Backpressure(pub(crate) SharedState, pub(crate) &'static str);

impl tonic::service::Interceptor for Backpressure {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match self.0.distributor.backpressure() {
            None => Ok(request),
            Some(e) => {
                let e = crate::ApiError::from(e);
                self.0
                    .metrics
                    .observe(self.1, e.status().as_u16(), std::time::Instant::now());
                Err(tonic::Status::from(e))
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for OtlpTraceService {
    async fn export(
        &self,
        request: tonic::Request<RawExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let started = std::time::Instant::now();
        let tenant = crate::auth::grpc_tenant(&self.state, request.metadata());
        let result = async {
            let tenant = tenant?;
            let request = request.into_inner();
            let size = within_limit(request.encoded_len(), self.max_message_bytes)?;
            let outcome = self
                .state
                .distributor
                .push(&tenant, Export::ResourceSpans(&request.resource_spans), size)
                .await?;
            let partial_success = (!outcome.rejected.is_empty()).then(|| {
                let (rejected_spans, error_message) = describe_rejections(&outcome.rejected);
                ExportTracePartialSuccess {
                    rejected_spans,
                    error_message,
                }
            });
            Ok::<_, crate::ApiError>(ExportTraceServiceResponse { partial_success })
        }
        .await;
        answer(&self.state, "otlp_grpc_export", started, result)
    }
}

/// A message's size, refused (RESOURCE_EXHAUSTED) over `limit`.
pub(crate) fn within_limit(size: usize, limit: usize) -> Result<usize, crate::ApiError> {
    if size > limit {
        return Err(crate::ApiError::TooLarge { size, limit });
    }
    Ok(size)
}

/// A gRPC receiver's answer, counted under `endpoint`.
pub(crate) fn answer<T>(
    state: &SharedState,
    endpoint: &'static str,
    started: std::time::Instant,
    result: Result<T, crate::ApiError>,
) -> Result<tonic::Response<T>, tonic::Status> {
    let code = match &result {
        Ok(_) => 200,
        Err(e) => e.status().as_u16(),
    };
    state.metrics.observe(endpoint, code, started);
    result.map(tonic::Response::new).map_err(tonic::Status::from)
}
