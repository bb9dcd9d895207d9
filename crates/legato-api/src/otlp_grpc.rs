//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

use legato_distributor::describe_rejections;
use legato_proto::collector::trace_service_server::{TraceService, TraceServiceServer};
use legato_proto::collector::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tonic::codec::CompressionEncoding;

use crate::{SharedState, tenant};

pub struct OtlpTraceService {
    state: SharedState,
}

/// The tonic service, accepting gzip and zstd and refusing messages over the body limit with
/// RESOURCE_EXHAUSTED.
pub fn trace_service(state: SharedState, max_message_bytes: usize) -> TraceServiceServer<OtlpTraceService> {
    let limit = max_message_bytes;
    TraceServiceServer::new(OtlpTraceService { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit)
}

#[tonic::async_trait]
impl TraceService for OtlpTraceService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let started = std::time::Instant::now();
        let org = request.metadata().get(tenant::ORG_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let result = async {
            let tenant = tenant::resolve(self.state.multitenancy_enabled, org.as_deref())?;
            let request = request.into_inner();
            let size = request.encoded_len();
            let outcome = self.state.distributor.push(&tenant, request, size).await?;
            let partial_success = (!outcome.rejected.is_empty()).then(|| {
                let (rejected_spans, error_message) = describe_rejections(&outcome.rejected);
                ExportTracePartialSuccess { rejected_spans, error_message }
            });
            Ok::<_, crate::ApiError>(ExportTraceServiceResponse { partial_success })
        }
        .await;
        let code = match &result {
            Ok(_) => 200,
            Err(e) => e.status().as_u16(),
        };
        self.state.metrics.observe("otlp_grpc_export", code, started);
        result.map(tonic::Response::new).map_err(tonic::Status::from)
    }
}
