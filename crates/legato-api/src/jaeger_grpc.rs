//! Jaeger gRPC receiver: `jaeger.api_v2.CollectorService/PostSpans` (port 14250 by default),
//! gzip accepted. The batch is translated to OTLP and pushed as an OTLP export is; errors
//! are the OTLP receiver's gRPC codes.

use legato_receivers::jaeger;
use legato_receivers::jaeger::proto::api_v2::collector_service_server::{CollectorService, CollectorServiceServer};
use legato_receivers::jaeger::proto::api_v2::{PostSpansRequest, PostSpansResponse};
use prost::Message;
use tonic::codec::CompressionEncoding;

use crate::otlp_grpc::{Backpressure, answer, within_limit};
use crate::{ApiError, SharedState, push_translated};

const ENDPOINT: &str = "jaeger_grpc_post_spans";

pub struct JaegerCollector {
    state: SharedState,
    max_message_bytes: usize,
}

/// The tonic service; as for OTLP/gRPC, messages over `max_message_bytes` are
/// RESOURCE_EXHAUSTED and exports are refused under back-pressure before they are read.
pub fn jaeger_collector_service(
    state: SharedState,
    max_message_bytes: usize,
) -> tonic::service::interceptor::InterceptedService<CollectorServiceServer<JaegerCollector>, Backpressure> {
    let server = CollectorServiceServer::new(JaegerCollector {
        state: state.clone(),
        max_message_bytes,
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(max_message_bytes.saturating_mul(4));
    tonic::service::interceptor::InterceptedService::new(server, Backpressure(state, ENDPOINT))
}

#[tonic::async_trait]
impl CollectorService for JaegerCollector {
    async fn post_spans(
        &self,
        request: tonic::Request<PostSpansRequest>,
    ) -> Result<tonic::Response<PostSpansResponse>, tonic::Status> {
        let started = std::time::Instant::now();
        let tenant = crate::auth::grpc_tenant(&self.state, request.metadata());
        let result = async {
            let tenant = tenant?;
            let request = request.into_inner();
            within_limit(request.encoded_len(), self.max_message_bytes)?;
            let batch = request.batch.unwrap_or_default();
            let batch = jaeger::proto::from_proto(batch).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            push_translated(&self.state, &tenant, &jaeger::to_otlp([batch])).await?;
            Ok(PostSpansResponse {})
        }
        .await;
        answer(&self.state, ENDPOINT, started, result)
    }
}
