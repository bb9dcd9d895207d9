//! Starts the Zipkin and Jaeger receivers that `distributor.receivers` names: HTTP ones are
//! returned as routers with their TLS settings for the caller to serve with the others, gRPC
//! (with its TLS) and UDP ones are spawned.

use std::sync::Arc;

use legato_api::SharedState;
use legato_receivers::jaeger::thrift::AgentProtocol;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ReceiversConfig;
use crate::tls::TlsServerConfig;

/// A receiver's HTTP listener, its routes, its TLS settings and their config key.
pub(super) type HttpReceiver<'a> = (TcpListener, axum::Router, &'a TlsServerConfig, &'static str);

pub(super) async fn start<'a>(
    receivers: &'a ReceiversConfig,
    state: &SharedState,
    servers: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    stop: &CancellationToken,
    max_grpc_message_bytes: usize,
) -> anyhow::Result<Vec<HttpReceiver<'a>>> {
    let mut http = Vec::new();
    if let Some(zipkin) = &receivers.zipkin {
        let key = "distributor.receivers.zipkin.endpoint";
        let listener = super::bind(key, &zipkin.endpoint).await?;
        tracing::info!(endpoint = %zipkin.endpoint, tls = zipkin.tls.enabled(), "Zipkin receiver listening");
        http.push((
            listener,
            legato_api::zipkin(state.clone(), zipkin.options()),
            &zipkin.tls,
            "distributor.receivers.zipkin.tls",
        ));
    }
    let Some(jaeger) = &receivers.jaeger else {
        return Ok(http);
    };
    let protocols = &jaeger.protocols;
    if let Some(thrift_http) = &protocols.thrift_http {
        let key = "distributor.receivers.jaeger.protocols.thrift_http.endpoint";
        let listener = super::bind(key, &thrift_http.endpoint).await?;
        tracing::info!(endpoint = %thrift_http.endpoint, tls = thrift_http.tls.enabled(), "Jaeger thrift_http receiver listening");
        http.push((
            listener,
            legato_api::jaeger_thrift_http(state.clone()),
            &thrift_http.tls,
            "distributor.receivers.jaeger.protocols.thrift_http.tls",
        ));
    }
    if let Some(grpc) = &protocols.grpc {
        let key = "distributor.receivers.jaeger.protocols.grpc.endpoint";
        let listener = super::bind(key, &grpc.endpoint).await?;
        tracing::info!(endpoint = %grpc.endpoint, tls = grpc.tls.enabled(), "Jaeger grpc receiver listening");
        let service = legato_api::jaeger_collector_service(state.clone(), max_grpc_message_bytes);
        let mut builder = crate::tls::tonic_builder(&grpc.tls, "distributor.receivers.jaeger.protocols.grpc.tls")?;
        let stop = stop.clone();
        servers.spawn(async move {
            builder
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop.cancelled_owned(),
                )
                .await
                .map_err(anyhow::Error::from)
        });
    }
    let udp = [
        (
            "distributor.receivers.jaeger.protocols.thrift_compact.endpoint",
            protocols.thrift_compact.as_ref().map(|p| &p.endpoint),
            AgentProtocol::Compact,
        ),
        (
            "distributor.receivers.jaeger.protocols.thrift_binary.endpoint",
            protocols.thrift_binary.as_ref().map(|p| &p.endpoint),
            AgentProtocol::Binary,
        ),
    ];
    for (key, endpoint, protocol) in udp {
        let Some(endpoint) = endpoint else { continue };
        let socket = tokio::net::UdpSocket::bind(endpoint.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("{key}: cannot listen on {endpoint}/udp: {e}"))?;
        tracing::info!(%endpoint, ?protocol, "Jaeger agent receiver listening (udp)");
        let (state, stop) = (state.clone(), stop.clone());
        servers.spawn(async move {
            legato_api::jaeger::serve_agent_udp(state, Arc::new(socket), protocol, stop)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    Ok(http)
}
