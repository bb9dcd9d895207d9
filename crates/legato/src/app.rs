//! Wires the roles together for `target: all` and runs until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use legato_api::{ApiMetrics, AppState, Flusher, Readiness};
use legato_distributor::Distributor;
use legato_distributor::metrics::DistributorMetrics;
use legato_ingester::metrics::IngesterMetrics;
use legato_ingester::{Ingester, IngesterDeps};
use legato_model::{Clock, SystemClock, TenantId, TraceId};
use legato_proto::push::{PushError, PushOutcome, PushRequest, PushSink, RecentTraces};
use legato_proto::trace::ResourceSpans;
use legato_querier::Querier;
use legato_querier::metrics::QuerierMetrics;
use legato_storage::metrics::StorageMetrics;
use legato_storage::{BlockReader, Blocklist, build_object_store};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The ingester, once its WAL replay is done. Pushes before that get a retryable refusal.
#[derive(Default)]
struct LateIngester(OnceLock<Arc<Ingester>>);

#[async_trait::async_trait]
impl PushSink for LateIngester {
    async fn push(&self, request: PushRequest) -> Result<PushOutcome, PushError> {
        match self.0.get() {
            Some(ingester) => ingester.push(request).await,
            None => Err(PushError::Unavailable("replaying the write-ahead log".into())),
        }
    }
}

#[async_trait::async_trait]
impl RecentTraces for LateIngester {
    async fn find_trace(&self, tenant: &TenantId, id: &TraceId) -> Vec<ResourceSpans> {
        self.0.get().map(|i| i.find_trace(tenant, id)).unwrap_or_default()
    }

    async fn recent_tag_summary(&self, tenant: &TenantId) -> Option<Vec<u8>> {
        match self.0.get() {
            Some(i) => RecentTraces::recent_tag_summary(i.as_ref(), tenant).await,
            None => None,
        }
    }

    async fn recent_traces(&self, tenant: &TenantId) -> Vec<legato_model::span::TraceData> {
        match self.0.get() {
            Some(i) => RecentTraces::recent_traces(i.as_ref(), tenant).await,
            None => Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl Flusher for LateIngester {
    async fn flush(&self) -> bool {
        match self.0.get() {
            Some(i) => i.flush_all().await,
            None => false,
        }
    }
}

fn listen_addr(address: &str, port: u16) -> String {
    let host = if address.is_empty() { "0.0.0.0" } else { address };
    format!("{host}:{port}")
}

async fn bind(key: &str, addr: &str) -> anyhow::Result<TcpListener> {
    let sock: SocketAddr = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("{key}: cannot resolve {addr}"))?
        .next()
        .with_context(|| format!("{key}: no address for {addr}"))?;
    TcpListener::bind(sock)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut registry = Registry::default();
    let storage_metrics = StorageMetrics::default();
    let ingester_metrics = IngesterMetrics::default();
    let distributor_metrics = DistributorMetrics::default();
    let querier_metrics = QuerierMetrics::default();
    let api_metrics = ApiMetrics::default();
    storage_metrics.register(&mut registry);
    ingester_metrics.register(&mut registry);
    distributor_metrics.register(&mut registry);
    querier_metrics.register(&mut registry);
    api_metrics.register(&mut registry);

    let store = build_object_store(&cfg.storage.trace)?;
    let blocklist = Arc::new(Blocklist::default());
    let reader = Arc::new(BlockReader::new(store.clone(), storage_metrics.clone()));
    let late = Arc::new(LateIngester::default());
    let readiness = Arc::new(Readiness::default());
    let distributor = Arc::new(Distributor::new(
        late.clone(),
        cfg.overrides.defaults.ingestion,
        clock.clone(),
        distributor_metrics,
    ));
    let querier = Arc::new(Querier::new(
        vec![late.clone()],
        reader,
        blocklist.clone(),
        querier_metrics,
    ));
    let otlp = &cfg.distributor.receivers.otlp.protocols;
    let state = Arc::new(AppState {
        distributor,
        querier: querier.clone(),
        flusher: Some(late.clone()),
        readiness: readiness.clone(),
        registry: Arc::new(registry),
        metrics: api_metrics,
        config_yaml: cfg.masked_yaml(),
        multitenancy_enabled: cfg.multitenancy_enabled,
        max_request_bytes: otlp.http.max_request_body_size.0 as usize,
    });

    let http_addr = listen_addr(&cfg.server.http_listen_address, cfg.server.http_listen_port);
    let grpc_addr = listen_addr(&cfg.server.grpc_listen_address, cfg.server.grpc_listen_port);
    let http = bind("server.http_listen_port", &http_addr).await?;
    let grpc = bind("server.grpc_listen_port", &grpc_addr).await?;
    let otlp_grpc = bind(
        "distributor.receivers.otlp.protocols.grpc.endpoint",
        &otlp.grpc.endpoint,
    )
    .await?;
    let otlp_http = bind(
        "distributor.receivers.otlp.protocols.http.endpoint",
        &otlp.http.endpoint,
    )
    .await?;
    tracing::info!(http = %http_addr, grpc = %grpc_addr, otlp_grpc = %otlp.grpc.endpoint, otlp_http = %otlp.http.endpoint,
        backend = ?cfg.storage.trace.backend, "legato listening");

    let cancel = CancellationToken::new();
    let servers_stop = CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();
    let grpc_limit = otlp.grpc.max_recv_msg_size_mib << 20;
    for (listener, router) in [
        (http, legato_api::http_api(state.clone())),
        (otlp_http, legato_api::otlp_http(state.clone())),
    ] {
        let stop = servers_stop.clone();
        servers.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .map_err(anyhow::Error::from)
        });
    }
    for (listener, streaming) in [(otlp_grpc, false), (grpc, true)] {
        let stop = servers_stop.clone();
        let svc = legato_api::trace_service(state.clone(), grpc_limit);
        // The gRPC port also serves Grafana's StreamingQuerier.
        let querier = streaming.then(|| legato_api::streaming_service(state.clone()));
        servers.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .add_optional_service(querier)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    stop.cancelled_owned(),
                )
                .await
                .map_err(anyhow::Error::from)
        });
    }

    // Replay the WAL, then report ready.
    let wal_dir = cfg.storage.trace.wal.path.clone();
    let deps = IngesterDeps {
        store: store.clone(),
        blocklist: blocklist.clone(),
        metrics: ingester_metrics,
        storage_metrics,
        clock: clock.clone(),
    };
    let (ingester_cfg, limits) = (cfg.ingester.clone(), cfg.ingest_limits());
    let (ingester, stats) = tokio::task::spawn_blocking(move || Ingester::open(ingester_cfg, limits, &wal_dir, deps))
        .await?
        .with_context(|| format!("opening the WAL at {}", cfg.storage.trace.wal.path.display()))?;
    if let Err(e) = querier.poll_blocklist().await {
        tracing::warn!(error = %e, "initial blocklist poll failed; will retry");
    }
    let _ = late.0.set(ingester.clone());
    readiness.set_ready();
    tracing::info!(replayed_traces = stats.traces, torn_tails = stats.torn_tails, "ready");

    let ingester_task = tokio::spawn(ingester.clone().run(cancel.clone()));
    tokio::spawn(
        querier
            .clone()
            .run_poller(cfg.storage.trace.blocklist_poll, cancel.clone()),
    );

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutdown signal received"),
        Some(res) = servers.join_next() => {
            match res {
                Ok(Ok(())) => tracing::error!("a server stopped unexpectedly"),
                Ok(Err(e)) => tracing::error!(error = %e, "a server failed"),
                Err(e) => tracing::error!(error = %e, "a server task panicked"),
            }
        }
    }
    readiness.set_stopping();
    servers_stop.cancel();
    while servers.join_next().await.is_some() {}
    cancel.cancel();
    ingester_task.await.context("ingester task")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
