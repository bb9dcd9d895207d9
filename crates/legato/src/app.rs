//! Wires the roles together for `target: all` and runs until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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
use legato_storage::{BlockReader, Blocklist, build_object_store, instrument};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::internal::{IngesterService, QueryJobsService};
use crate::cluster::remote::{Clients, ClusterFanout, RemoteIngesters, RingSink};
use crate::cluster::ring_page;
use crate::config::Config;

mod receivers;
use legato_cluster::{Cluster, MemberState, NodeInfo, Role};

/// The ingester, once its WAL replay is done. Pushes before that get a retryable refusal.
#[derive(Default)]
pub struct LateIngester(OnceLock<Arc<Ingester>>);

impl LateIngester {
    pub fn get(&self) -> Option<&Arc<Ingester>> {
        self.0.get()
    }
}

#[async_trait::async_trait]
impl PushSink for LateIngester {
    async fn push(&self, request: PushRequest) -> Result<PushOutcome, PushError> {
        match self.0.get() {
            Some(ingester) => ingester.push(request).await,
            None => Err(PushError::Unavailable("replaying the write-ahead log".into())),
        }
    }

    fn backpressure(&self) -> Option<PushError> {
        self.0.get().and_then(|i| PushSink::backpressure(i.as_ref()))
    }
}

const REPLAYING: &str = "the ingester is still replaying its write-ahead log";

#[async_trait::async_trait]
impl RecentTraces for LateIngester {
    async fn find_trace(&self, tenant: &TenantId, id: &TraceId) -> Vec<ResourceSpans> {
        self.0.get().map(|i| i.find_trace(tenant, id)).unwrap_or_default()
    }

    async fn recent_tag_summary(&self, tenant: &TenantId, filter: Option<&str>) -> Result<Option<Vec<u8>>, String> {
        match self.0.get() {
            Some(i) => RecentTraces::recent_tag_summary(i.as_ref(), tenant, filter).await,
            None => Err(REPLAYING.into()),
        }
    }

    async fn scan_recent(&self, tenant: &TenantId, visit: legato_proto::push::RecentVisitor) -> Result<(), String> {
        self.scan_recent_filtered(tenant, None, visit).await
    }

    async fn scan_recent_filtered(
        &self,
        tenant: &TenantId,
        prefilter: Option<legato_proto::push::RecentPrefilter>,
        visit: legato_proto::push::RecentVisitor,
    ) -> Result<(), String> {
        match self.0.get() {
            Some(i) => RecentTraces::scan_recent_filtered(i.as_ref(), tenant, prefilter, visit).await,
            None => Err(REPLAYING.into()),
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

/// What this process runs, from `target`.
struct Roles {
    ingester: bool,
    distributor: bool,
    querier: bool,
}

impl Roles {
    fn of(target: &str) -> Roles {
        let all = target == "all";
        Roles {
            ingester: all || target == "ingester",
            distributor: all || target == "distributor",
            querier: all || target == "querier",
        }
    }

    fn cluster_roles(target: &str) -> Vec<Role> {
        Role::parse(target).into_iter().collect()
    }
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let roles = Roles::of(&cfg.target);
    let mut registry = Registry::default();
    let storage_metrics = StorageMetrics::default();
    let ingester_metrics = IngesterMetrics::default();
    let distributor_metrics = DistributorMetrics::default();
    let querier_metrics = QuerierMetrics::default();
    let api_metrics = ApiMetrics::default();
    let compactor_metrics = legato_compactor::CompactorMetrics::default();
    compactor_metrics.register(&mut registry);
    storage_metrics.register(&mut registry);
    ingester_metrics.register(&mut registry);
    distributor_metrics.register(&mut registry);
    querier_metrics.register(&mut registry);
    api_metrics.register(&mut registry);
    api_metrics.set_build_info(&cfg.target);
    let generator_metrics = legato_generator::metrics::GeneratorMetrics::default();
    generator_metrics.register(&mut registry);

    // Every request to the bucket is counted (legato_storage_object_store_requests{op}).
    let store = instrument(build_object_store(&cfg.storage.trace)?, &storage_metrics);
    let reader = Arc::new(BlockReader::new(store.clone(), storage_metrics.clone()));
    let late = Arc::new(LateIngester::default());
    let readiness = Arc::new(Readiness::default());
    let rf = cfg.replication_factor();

    let http_addr = listen_addr(&cfg.server.http_listen_address, cfg.server.http_listen_port);
    let grpc_addr = listen_addr(&cfg.server.grpc_listen_address, cfg.server.grpc_listen_port);
    let http = bind("server.http_listen_port", &http_addr).await?;
    let grpc = bind("server.grpc_listen_port", &grpc_addr).await?;

    // Microservices mode: join the gossip cluster (JOINING until this node can serve).
    let cluster = if cfg.microservices() {
        let info = NodeInfo {
            roles: Roles::cluster_roles(&cfg.target),
            grpc_port: cfg.server.grpc_listen_port,
            http_port: cfg.server.http_listen_port,
            num_tokens: cfg.ingester.lifecycler.num_tokens,
        };
        Some(Arc::new(Cluster::join(&cfg.memberlist, info).await?))
    } else {
        None
    };
    let clients = Arc::new(Clients::new(
        cfg.ingester_client
            .grpc_client_config
            .tonic("ingester_client.grpc_client_config")?,
    ));

    // The blocks this process reads: the bucket (polled), except on an ingester, which
    // answers for the blocks it flushed itself until queriers have surely seen them.
    let blocklist = Arc::new(Blocklist::new(
        cfg.storage.trace.blocklist_poll_stale_tenant_index,
        clock.clone(),
    ));
    let polls_bucket = !(cfg.microservices() && roles.ingester) && cfg.target != "compactor";
    let recent: Arc<dyn RecentTraces> = match &cluster {
        Some(cluster) if !roles.ingester => Arc::new(RemoteIngesters {
            cluster: cluster.clone(),
            clients: clients.clone(),
            replication_factor: rf,
        }),
        _ => late.clone(),
    };
    let mut querier = Querier::new(vec![recent], reader, blocklist.clone(), querier_metrics)
        .with_max_recent_bytes(cfg.querier.search.max_recent_bytes.0);
    if let Some(cluster) = cluster.as_ref().filter(|_| !roles.ingester && !roles.querier) {
        querier = querier.with_fanout(Arc::new(ClusterFanout {
            cluster: cluster.clone(),
            clients: clients.clone(),
            blocklist: blocklist.clone(),
            query_shards: cfg.query_frontend.trace_by_id.query_shards,
            replication_factor: rf,
            max_retries: cfg.query_frontend.max_retries,
            concurrent_jobs: cfg.query_frontend.search.concurrent_jobs,
            next: Default::default(),
        }));
    }
    let querier = Arc::new(querier);
    let sink: Arc<dyn PushSink> = match &cluster {
        Some(cluster) => Arc::new(RingSink {
            cluster: cluster.clone(),
            clients: clients.clone(),
            replication_factor: rf,
            overloaded_until: Default::default(),
        }),
        None => late.clone(),
    };
    // The generator's series history in the bucket: written by the generator, read by the
    // `/prometheus` API wherever queries are served, merged by the compactor. The last day's
    // service graphs are read in the background, so the first service map is quick.
    let history = Arc::new(legato_generator::history::History::new(store.clone()));
    if roles.querier || cfg.target == "query-frontend" {
        let history = history.clone();
        tokio::spawn(async move {
            match history.warm(legato_generator::now_ms(), 24).await {
                Ok(files) => tracing::debug!(files, "generator history warmed"),
                Err(e) => tracing::warn!(error = %e, "reading generator history at start failed"),
            }
        });
    }
    // The metrics generator sees every accepted span before sampling.
    let generator = cfg.generator_enabled()?.then(|| {
        Arc::new(
            legato_generator::Generator::new(
                cfg.metrics_generator.clone(),
                cfg.processors_lookup(),
                generator_metrics.clone(),
            )
            .with_history(history.clone()),
        )
    });
    let mut distributor = Distributor::new(
        sink,
        cfg.overrides.defaults.ingestion,
        clock.clone(),
        distributor_metrics,
    )
    .with_sampling(cfg.sampling_lookup()?)
    .with_max_attribute_bytes_per_tenant(cfg.max_attribute_bytes_lookup()?);
    match (&cluster, &generator) {
        // Microservices mode: each trace's spans go to the generator that owns its id.
        (Some(cluster), _) if roles.distributor => {
            distributor = distributor.with_observer(crate::cluster::generators::GeneratorRouter::start(
                cluster.clone(),
                clients.clone(),
                generator.clone(),
                generator_metrics.clone(),
            ));
        }
        (_, Some(generator)) => distributor = distributor.with_observer(generator.clone()),
        _ => {}
    }
    let distributor = Arc::new(distributor);
    let otlp = &cfg.distributor.receivers.otlp.protocols;
    let state = Arc::new(AppState {
        distributor,
        querier: querier.clone(),
        flusher: roles.ingester.then(|| late.clone() as Arc<dyn Flusher>),
        readiness: readiness.clone(),
        registry: Arc::new(registry),
        metrics: api_metrics,
        config_yaml: cfg.masked_yaml(),
        multitenancy_enabled: cfg.multitenancy_enabled,
        max_request_bytes: otlp.http.max_request_body_size.0 as usize,
        max_response_series: cfg.query_frontend.metrics.max_response_series,
        query_end_cutoff: cfg.query_frontend.query_end_cutoff,
        query_timeout: cfg.querier.search.query_timeout,
        trace_by_id_timeout: cfg.querier.trace_by_id.query_timeout,
        max_bytes_per_trace: cfg.max_bytes_per_trace_lookup()?,
        auth: cfg.auth.load()?,
        max_concurrent_queries_per_tenant: cfg.query_frontend.max_concurrent_queries_per_tenant,
        tenant_queries: parking_lot::Mutex::default(),
        history: Some(history.clone()),
        promql_presence: cfg.metrics_generator.registry.stale_duration,
    });

    tracing::info!(target = %cfg.target, http = %http_addr, grpc = %grpc_addr,
        backend = ?cfg.storage.trace.backend, replication_factor = rf, "legato listening");

    let cancel = CancellationToken::new();
    // Awaited at shutdown: its last collection is written to the history.
    let generator_task = generator.as_ref().map(|g| tokio::spawn(g.clone().run(cancel.clone())));
    let servers_stop = CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();
    let grpc_limit = otlp.grpc.max_recv_msg_size_mib << 20;
    let mut http_router = legato_api::http_api(state.clone());
    if let Some(cluster) = &cluster {
        http_router = http_router.merge(ring_page::router(cluster.clone(), rf));
    }
    let server_tls = &cfg.server;
    let receiver_tls = &cfg.distributor.receivers.otlp.protocols;
    let mut routers = vec![(http, http_router, &server_tls.http_tls_config, "server.http_tls_config")];
    let mut grpc_listeners = vec![(grpc, true, &server_tls.grpc_tls_config, "server.grpc_tls_config")];
    if roles.distributor {
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
        tracing::info!(otlp_grpc = %otlp.grpc.endpoint, otlp_http = %otlp.http.endpoint, "OTLP receivers listening");
        routers.push((
            otlp_http,
            legato_api::otlp_http(state.clone()),
            &receiver_tls.http.tls,
            "distributor.receivers.otlp.protocols.http.tls",
        ));
        grpc_listeners.push((
            otlp_grpc,
            false,
            &receiver_tls.grpc.tls,
            "distributor.receivers.otlp.protocols.grpc.tls",
        ));
        let translated = receivers::start(
            &cfg.distributor.receivers,
            &state,
            &mut servers,
            &servers_stop,
            grpc_limit,
        )
        .await?;
        routers.extend(translated);
    }
    for (listener, router, tls, key) in routers {
        let stop = servers_stop.clone();
        if tls.enabled() {
            // h2 first: Grafana's gRPC streaming shares the HTTP port.
            let listener = crate::tls::TlsListener::new(listener, tls.rustls(key, &[b"h2", b"http/1.1"])?)?;
            servers.spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
                    .map_err(anyhow::Error::from)
            });
            continue;
        }
        servers.spawn(async move {
            // Small responses must not wait for Nagle + delayed ACK (a 40 ms stall per request).
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .map_err(anyhow::Error::from)
        });
    }
    for (listener, main_port, tls, key) in grpc_listeners {
        let stop = servers_stop.clone();
        let otlp_svc =
            (!main_port || cfg.target == "all").then(|| legato_api::trace_service(state.clone(), grpc_limit));
        // The gRPC port serves Grafana's StreamingQuerier and, between roles, the internal RPCs.
        let streaming = main_port.then(|| legato_api::streaming_service(state.clone()));
        let ingester_rpc = (main_port && cluster.is_some() && roles.ingester).then(|| {
            IngesterService {
                ingester: late.clone(),
                querier: querier.clone(),
            }
            .server()
        });
        let jobs_rpc = (main_port && cluster.is_some() && (roles.ingester || roles.querier)).then(|| {
            QueryJobsService {
                querier: querier.clone(),
            }
            .server()
        });
        let generator_rpc = (main_port && cfg.target == "metrics-generator")
            .then(|| generator.clone())
            .flatten()
            .map(|generator| crate::cluster::generators::GeneratorService { generator }.server());
        let mut builder = crate::tls::tonic_builder(tls, key)?;
        servers.spawn(async move {
            builder
                .add_optional_service(otlp_svc)
                .add_optional_service(streaming)
                .add_optional_service(ingester_rpc)
                .add_optional_service(jobs_rpc)
                .add_optional_service(generator_rpc)
                .serve_with_incoming_shutdown(
                    // See the HTTP servers: no Nagle on responses.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop.cancelled_owned(),
                )
                .await
                .map_err(anyhow::Error::from)
        });
    }

    // An ingester replays its WAL before it reports ready and takes writes.
    let mut ingester_task = None;
    if roles.ingester {
        let wal_dir = cfg.storage.trace.wal.path.clone();
        let deps = IngesterDeps {
            wal_fs: Arc::new(legato_ingester::wal::StdFs),
            store: store.clone(),
            blocklist: blocklist.clone(),
            metrics: ingester_metrics,
            storage_metrics,
            clock: clock.clone(),
            tail: cfg.tail_sampling_lookup()?,
        };
        let (ingester_cfg, limits) = (cfg.ingester.clone(), cfg.ingest_limits_lookup()?);
        let (ingester, stats) =
            tokio::task::spawn_blocking(move || Ingester::open(ingester_cfg, limits, &wal_dir, deps))
                .await?
                .with_context(|| format!("opening the WAL at {}", cfg.storage.trace.wal.path.display()))?;
        let _ = late.0.set(ingester.clone());
        tracing::info!(
            replayed_traces = stats.traces,
            torn_tails = stats.torn_tails,
            "WAL replayed"
        );
        ingester_task = Some(tokio::spawn(ingester.clone().run(cancel.clone())));
    }
    if polls_bucket {
        if let Err(e) = querier.poll_blocklist().await {
            tracing::warn!(error = %e, "initial blocklist poll failed; will retry");
        }
        tokio::spawn(
            querier
                .clone()
                .run_poller(cfg.storage.trace.blocklist_poll, cancel.clone()),
        );
    } else if roles.ingester {
        // Forget flushed blocks once queriers have had time to list them.
        let (blocklist, clock, keep) = (blocklist.clone(), clock.clone(), cfg.ingester.complete_block_timeout);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let cutoff = clock.now_nanos().saturating_sub(keep.as_nanos() as u64);
                for tenant in blocklist.tenants() {
                    for meta in blocklist.blocks(&tenant) {
                        if meta.created_at_unix_nano < cutoff {
                            blocklist.remove(&tenant, meta.block_id);
                        }
                    }
                }
            }
        });
    }
    if cfg.target == "all" || cfg.target == "compactor" {
        let owns: legato_compactor::Ownership = match &cluster {
            // Jobs and tenant housekeeping are shared among compactors through their ring.
            Some(cluster) => {
                let cluster = cluster.clone();
                Arc::new(move |key: &str| {
                    cluster
                        .ring(Role::Compactor, 1)
                        .owner(legato_cluster::fnv1a(&[key.as_bytes()]))
                        .is_some_and(|m| m.id == cluster.self_id())
                })
            }
            None => legato_compactor::owns_everything(),
        };
        let compactor = Arc::new(
            legato_compactor::Compactor::new(
                legato_compactor::CompactorDeps {
                    store: store.clone(),
                    blocklist: blocklist.clone(),
                    clock: clock.clone(),
                    retention: cfg.retention_lookup()?,
                    owns: owns.clone(),
                    metrics: compactor_metrics,
                },
                cfg.compactor.compaction.clone(),
            )
            .with_upload_part_size(cfg.storage.trace.upload_part_size())
            .with_retention_policies(cfg.retention_policies_lookup()?),
        );
        tokio::spawn(compactor.run(cancel.clone()));
        tokio::spawn(compact_history(
            history.clone(),
            owns.clone(),
            cfg.retention_lookup()?,
            cfg.compactor.compaction.block_retention,
            cancel.clone(),
        ));
    }
    if let Some(cluster) = &cluster {
        cluster.set_state(MemberState::Active).await;
    }
    readiness.set_ready();
    tracing::info!(target = %cfg.target, "ready");

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
    if let Some(cluster) = &cluster {
        // Distributors stop sending here once gossip spreads LEAVING; reads keep working
        // while the ingester flushes below.
        cluster.set_state(MemberState::Leaving).await;
        tokio::time::sleep(cfg.memberlist.gossip_interval * 5).await;
    }
    cancel.cancel();
    if let Some(task) = generator_task {
        task.await.context("metrics generator task")?;
    }
    if let Some(task) = ingester_task {
        task.await.context("ingester task")?;
    }
    servers_stop.cancel();
    while servers.join_next().await.is_some() {}
    if let Some(cluster) = cluster.and_then(|c| Arc::try_unwrap(c).ok()) {
        cluster.leave(Duration::from_millis(200)).await;
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Every 10 minutes, for the tenants whose housekeeping this compactor owns: merges each
/// finished hour of generator history into one file and deletes hours past retention.
async fn compact_history(
    history: Arc<legato_generator::history::History>,
    owns: legato_compactor::Ownership,
    retention: legato_compactor::RetentionLookup,
    default_retention: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let tenants = match history.tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "listing generator history failed");
                continue;
            }
        };
        let now = legato_generator::now_ms();
        for tenant in tenants {
            if !owns(&legato_compactor::index_key(&tenant)) {
                continue;
            }
            let keep = retention(&tenant).unwrap_or(default_retention);
            if let Err(e) = history.compact(&tenant, now, keep).await {
                tracing::warn!(%tenant, error = %e, "merging generator history failed");
            }
        }
    }
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
