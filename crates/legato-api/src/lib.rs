//! Legato's network surface: Tempo's HTTP query API, OTLP over HTTP and gRPC, the Zipkin and
//! Jaeger receivers (translated to OTLP by `legato-receivers`), `/metrics`,
//! `/ready`, `/status/config`; tenant and body-limit handling; and the one place where errors
//! become HTTP statuses and gRPC codes.
//!
//! Handlers are thin: they parse, call a role (distributor, querier, ingester) and render.

pub mod auth;
mod error;
mod ingest;
pub mod jaeger;
mod jaeger_grpc;
pub mod metrics;
mod metrics_query;
mod otlp_grpc;
mod otlp_http;
mod prometheus;
mod query;
mod search;
mod streaming;
mod tenant;
mod trace_filter;
mod zipkin;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::routing::{get, post};
use legato_distributor::Distributor;
use legato_querier::Querier;
use prometheus_client::registry::Registry;

pub use error::ApiError;
pub(crate) use ingest::{push_translated, read_ingest_body};
pub use jaeger_grpc::jaeger_collector_service;
pub use metrics::ApiMetrics;
pub use otlp_grpc::trace_service;
pub use streaming::streaming_service;

/// Readiness of the process, as `/ready` reports it.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

#[allow(dead_code)]
const STARTING: u8 = 0;
pub(crate) const READY: u8 = 1;
pub(crate) const STOPPING: u8 = 2;

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(READY, Ordering::SeqCst);
    }
    pub fn set_stopping(&self) {
        self.0.store(STOPPING, Ordering::SeqCst);
    }
    fn state(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A hook for `/flush`: cut every live trace into blocks now.
#[async_trait::async_trait]
pub trait Flusher: Send + Sync + 'static {
    async fn flush(&self) -> bool;
}

/// A tenant's `max_bytes_per_trace` (0 = no limit).
pub type TraceSizeLookup = Arc<dyn Fn(&legato_model::TenantId) -> u64 + Send + Sync>;

/// Everything handlers need.
pub struct AppState {
    pub distributor: Arc<Distributor>,
    pub querier: Arc<Querier>,
    pub flusher: Option<Arc<dyn Flusher>>,
    pub readiness: Arc<Readiness>,
    pub registry: Arc<Registry>,
    pub metrics: ApiMetrics,
    /// The effective configuration as YAML, secrets masked.
    pub config_yaml: String,
    pub multitenancy_enabled: bool,
    /// Largest accepted OTLP/HTTP request body, before and after decompression.
    pub max_request_bytes: usize,
    /// `query_frontend.metrics.max_response_series` (0 = no limit).
    pub max_response_series: usize,
    /// `query_frontend.query_end_cutoff`: metrics queries end at least this long before now.
    pub query_end_cutoff: std::time::Duration,
    /// `querier.search.query_timeout`: search, metrics and tag queries.
    pub query_timeout: std::time::Duration,
    /// `querier.trace_by_id.query_timeout`: trace lookups.
    pub trace_by_id_timeout: std::time::Duration,
    /// `max_bytes_per_trace` of each tenant (`overrides.defaults.global` or the tenant's
    /// override; 0 = no limit): a trace whose combined encoding is larger is refused by v1
    /// trace by id (422) and cut by v2 (PARTIAL).
    pub max_bytes_per_trace: TraceSizeLookup,
    /// `auth.credentials_file` loaded: requests must authenticate (`None` = open).
    pub auth: Option<auth::Authenticator>,
    /// `query_frontend.max_concurrent_queries_per_tenant` (0 = no limit).
    pub max_concurrent_queries_per_tenant: usize,
    /// Running queries per tenant, against that limit.
    pub tenant_queries:
        parking_lot::Mutex<std::collections::HashMap<legato_model::TenantId, std::sync::Arc<tokio::sync::Semaphore>>>,
    /// The metrics generator's series history, which `/prometheus` answers from.
    pub history: Option<Arc<legato_generator::history::History>>,
    /// How long a generator series stays present after its last increase
    /// (`metrics_generator.registry.stale_duration`).
    pub promql_presence: std::time::Duration,
}

/// Runs a query with a cancellation token that fires when the query timeout passes or when
/// the caller drops this future (the client went away): scans check it at every trace.
/// A running query's place in its tenant's limit; dropping it frees the place.
pub(crate) type QuerySlot = Option<tokio::sync::OwnedSemaphorePermit>;

/// Takes a place for one more query of `tenant`, or refuses at once (429) when `limit`
/// queries of it are running; `limit` 0 means no limit.
pub(crate) fn query_slot(
    running: &parking_lot::Mutex<
        std::collections::HashMap<legato_model::TenantId, std::sync::Arc<tokio::sync::Semaphore>>,
    >,
    tenant: &legato_model::TenantId,
    limit: usize,
) -> Result<QuerySlot, ApiError> {
    if limit == 0 {
        return Ok(None);
    }
    let semaphore = running
        .lock()
        .entry(tenant.clone())
        .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(limit)))
        .clone();
    semaphore
        .try_acquire_owned()
        .map(Some)
        .map_err(|_| ApiError::TooManyQueries {
            tenant: tenant.to_string(),
            limit,
        })
}

/// A tenant over `query_frontend.max_concurrent_queries_per_tenant` is answered 429 at once.
pub(crate) async fn bounded_query<T>(
    state: &AppState,
    tenant: &legato_model::TenantId,
    run: impl AsyncFnOnce(tokio_util::sync::CancellationToken) -> Result<T, legato_querier::QueryError>,
) -> Result<T, ApiError> {
    let _slot = query_slot(&state.tenant_queries, tenant, state.max_concurrent_queries_per_tenant)?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let _cancel_on_drop = cancel.clone().drop_guard();
    match tokio::time::timeout(state.query_timeout, run(cancel)).await {
        Ok(result) => result.map_err(|e| match e {
            legato_querier::QueryError::Limit(m) => ApiError::BadRequest(m),
            e => ApiError::Internal(e.to_string()),
        }),
        Err(_) => Err(ApiError::Timeout {
            after: state.query_timeout,
            key: "querier.search.query_timeout",
        }),
    }
}

pub type SharedState = Arc<AppState>;

/// Tempo's HTTP API (port 3200 by default).
pub fn http_api(state: SharedState) -> Router {
    Router::new()
        .route("/api/traces/{id}", get(query::trace_v1))
        .route("/api/v2/traces/{id}", get(query::trace_v2))
        .route(
            "/api/echo",
            get(|| async { ([("content-type", "text/plain; charset=utf-8")], "echo\n") }),
        )
        .route("/api/search", get(search::search))
        .route("/api/search/tags", get(search::tags_v1))
        .route("/api/v2/search/tags", get(search::tags_v2))
        .route("/api/search/tag/{tag}/values", get(search::tag_values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(search::tag_values_v2))
        .route("/api/metrics/query_range", get(metrics_query::query_range))
        .route("/api/metrics/query", get(metrics_query::query_instant))
        .route("/api/status/buildinfo", get(query::buildinfo))
        .route("/ready", get(query::ready))
        .route("/metrics", get(query::metrics))
        .route("/status/config", get(query::status_config))
        .route("/flush", post(query::flush).get(query::post_only))
        .route(
            "/prometheus/api/v1/query",
            get(prometheus::query).post(prometheus::query),
        )
        .route(
            "/prometheus/api/v1/query_range",
            get(prometheus::query_range).post(prometheus::query_range),
        )
        .route(
            "/prometheus/api/v1/series",
            get(prometheus::series).post(prometheus::series),
        )
        .route(
            "/prometheus/api/v1/labels",
            get(prometheus::labels).post(prometheus::labels),
        )
        .route("/prometheus/api/v1/label/{name}/values", get(prometheus::label_values))
        .route("/prometheus/api/v1/status/buildinfo", get(prometheus::buildinfo))
        .route("/prometheus/api/v1/metadata", get(prometheus::empty_object))
        .route(
            "/prometheus/api/v1/query_exemplars",
            get(prometheus::empty_list).post(prometheus::empty_list),
        )
        .route(
            "/prometheus/api/v1/{*rest}",
            get(prometheus::not_found).post(prometheus::not_found),
        )
        .with_state(state.clone())
        // gRPC StreamingQuerier over HTTP/2 cleartext on the same port, as Grafana dials it.
        .merge(tonic::service::Routes::new(streaming_service(state.clone())).into_axum_router())
        .layer(axum::middleware::from_fn_with_state(state, auth::require))
}

/// OTLP/HTTP receiver (port 4318 by default).
pub fn otlp_http(state: SharedState) -> Router {
    receiver(state, Router::new().route("/v1/traces", post(otlp_http::export)))
}

/// Zipkin receiver (port 9411 by default).
pub fn zipkin(state: SharedState, options: legato_receivers::zipkin::ZipkinOptions) -> Router {
    receiver(state, zipkin::routes(options))
}

/// Jaeger Thrift over HTTP receiver (port 14268 by default).
pub fn jaeger_thrift_http(state: SharedState) -> Router {
    receiver(state, Router::new().route("/api/traces", post(jaeger::traces)))
}

/// A receiver's routes with authentication; bodies are limited by the handlers, which
/// also check them after decompression.
fn receiver(state: SharedState, routes: Router<SharedState>) -> Router {
    routes
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_over_its_concurrent_query_limit_is_refused_others_are_not() {
        let running = parking_lot::Mutex::default();
        let (a, b) = (
            legato_model::TenantId::new("a").unwrap(),
            legato_model::TenantId::new("b").unwrap(),
        );
        let first = query_slot(&running, &a, 2).unwrap();
        let second = query_slot(&running, &a, 2).unwrap();
        let refused = query_slot(&running, &a, 2).unwrap_err();
        assert_eq!(refused.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(
            refused.to_string().contains("max_concurrent_queries_per_tenant"),
            "{refused}"
        );
        assert!(
            query_slot(&running, &b, 2).is_ok(),
            "another tenant is not limited by a"
        );
        drop(first);
        assert!(query_slot(&running, &a, 2).is_ok(), "a finished query frees its place");
        drop(second);
        assert!(query_slot(&running, &a, 0).unwrap().is_none(), "0 = no limit");
    }
}
