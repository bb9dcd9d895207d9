//! Clients of the internal RPCs: the distributor's ring sink, the querier's view of the
//! ingesters, and the query frontend's fan-out of jobs to ingesters and queriers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use legato_cluster::{Cluster, MemberState, Role, trace_token};
use legato_model::span::TraceData;
use legato_model::{TenantId, TraceId};
use legato_proto::internal::ingester_client::IngesterClient;
use legato_proto::internal::query_jobs_client::QueryJobsClient;
use legato_proto::internal::{FindTraceRequest, SearchJobRequest, TenantRequest};
use legato_proto::push::{PushError, PushOutcome, PushRequest, PushSink, RecentTraces, RejectReason, Rejection};
use legato_proto::trace::ResourceSpans;
use legato_querier::{Fanout, FoundTrace, JobScope, QueryError, SearchOutcome, SearchRequest, SearchSnapshot};
use legato_storage::Blocklist;
use legato_traceql::search::TraceHit;
use parking_lot::Mutex;
use prost::Message;
use tonic::transport::{Channel, Endpoint};

use super::internal::{MAX_MESSAGE_BYTES, scope_to_wire};

/// One lazily connected channel per peer address; a channel reconnects by itself when the
/// peer comes back.
#[derive(Default)]
pub struct Clients {
    channels: Mutex<HashMap<String, Channel>>,
    /// TLS for every internal call (`ingester_client.grpc_client_config`); `None` = plain.
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Clients {
    pub fn new(tls: Option<tonic::transport::ClientTlsConfig>) -> Self {
        Self {
            channels: Mutex::default(),
            tls,
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, tonic::Status> {
        if let Some(c) = self.channels.lock().get(addr) {
            return Ok(c.clone());
        }
        let bad = |e: tonic::transport::Error| tonic::Status::internal(format!("bad peer address {addr}: {e}"));
        let endpoint = match &self.tls {
            Some(tls) => Endpoint::from_shared(format!("https://{addr}"))
                .map_err(bad)?
                .tls_config(tls.clone())
                .map_err(bad)?,
            None => Endpoint::from_shared(format!("http://{addr}")).map_err(bad)?,
        };
        let channel = endpoint
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .connect_lazy();
        self.channels.lock().insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    pub fn ingester(&self, addr: &str) -> Result<IngesterClient<Channel>, tonic::Status> {
        Ok(IngesterClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    pub fn generator(
        &self,
        addr: &str,
    ) -> Result<legato_proto::internal::metrics_generator_client::MetricsGeneratorClient<Channel>, tonic::Status> {
        Ok(
            legato_proto::internal::metrics_generator_client::MetricsGeneratorClient::new(self.channel(addr)?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
    }

    pub fn jobs(&self, addr: &str) -> Result<QueryJobsClient<Channel>, tonic::Status> {
        Ok(QueryJobsClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

fn status_to_push_error(addr: &str, s: &tonic::Status) -> PushError {
    match s.code() {
        tonic::Code::ResourceExhausted => PushError::Overloaded {
            buffered: 0,
            limit: 0,
            limit_key: "a remote ingester's limit",
            retry_after: Duration::from_secs(1),
        },
        _ => PushError::Unavailable(format!("ingester {addr}: {}", s.message())),
    }
}

/// The distributor's sink: each trace goes to `replication_factor` ingesters picked by the
/// ring; a push is acknowledged when every trace reached a write quorum.
pub struct RingSink {
    pub cluster: Arc<Cluster>,
    pub clients: Arc<Clients>,
    pub replication_factor: usize,
    /// Until when (and with what error) pushes are refused without trying: set when a push
    /// missed its write quorum because ingesters were over their memory limit, for the
    /// `retry_after` they asked for (at most a second), so a retry storm is answered cheaply.
    pub overloaded_until: Mutex<Option<(std::time::Instant, PushError)>>,
}

#[async_trait::async_trait]
impl PushSink for RingSink {
    fn backpressure(&self) -> Option<PushError> {
        let mut until = self.overloaded_until.lock();
        match until.as_ref() {
            Some((at, e)) if std::time::Instant::now() < *at => Some(e.clone()),
            Some(_) => {
                *until = None;
                None
            }
            None => None,
        }
    }

    async fn push(&self, request: PushRequest) -> Result<PushOutcome, PushError> {
        let ring = self.cluster.ring(Role::Ingester, self.replication_factor);
        if ring.is_empty() {
            return Err(PushError::Unavailable("no ACTIVE ingester in the ring".into()));
        }
        let quorum = ring.write_quorum();
        let mut per_ingester: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, segment) in request.traces.iter().enumerate() {
            for member in ring.replicas(trace_token(&request.tenant, &segment.id)) {
                per_ingester.entry(member.grpc_addr.clone()).or_default().push(i);
            }
        }
        let calls = per_ingester.into_iter().map(|(addr, indexes)| {
            let sub = PushRequest {
                tenant: request.tenant.clone(),
                traces: indexes.iter().map(|i| request.traces[*i].clone()).collect(),
            };
            let client = self.clients.ingester(&addr);
            async move {
                let result = match client {
                    Ok(mut c) => c.push(sub).await.map(|r| r.into_inner()),
                    Err(e) => Err(e),
                };
                (addr, indexes, result)
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut acks = vec![0usize; request.traces.len()];
        // Replicas refuse the same spans for the same reasons: count each reason once.
        let mut rejected: HashMap<RejectReason, Rejection> = HashMap::new();
        let mut failure: Option<PushError> = None;
        for (addr, indexes, result) in results {
            match result {
                Ok(resp) => {
                    for i in indexes {
                        acks[i] += 1;
                    }
                    for r in resp.rejected {
                        let Some(reason) = RejectReason::parse(&r.reason) else {
                            continue;
                        };
                        let entry = rejected.entry(reason).or_insert(Rejection {
                            reason,
                            spans: 0,
                            message: r.message.clone(),
                        });
                        entry.spans = entry.spans.max(r.spans);
                    }
                }
                Err(status) => {
                    tracing::warn!(ingester = %addr, error = %status.message(), "push to ingester failed");
                    let e = status_to_push_error(&addr, &status);
                    // Prefer telling the client to slow down over "unavailable".
                    if failure.is_none() || matches!(e, PushError::Overloaded { .. }) {
                        failure = Some(e);
                    }
                }
            }
        }
        if let Some(short) = acks.iter().copied().min().filter(|a| *a < quorum) {
            let why = format!(
                "write quorum not reached: {short} of {} replicas acknowledged, {quorum} needed",
                ring.replication_factor().min(ring.members().len())
            );
            return Err(match failure {
                Some(e @ PushError::Overloaded { .. }) => {
                    // Refuse without trying for a moment: the ingesters asked for a pause.
                    let pause = e.retry_after().min(Duration::from_secs(1));
                    *self.overloaded_until.lock() = Some((std::time::Instant::now() + pause, e.clone()));
                    e
                }
                Some(e) => PushError::Unavailable(format!("{why}; {e}")),
                None => PushError::Unavailable(why),
            });
        }
        Ok(PushOutcome {
            rejected: rejected.into_values().collect(),
        })
    }
}

/// What all live ingesters hold, for tags and metrics computed on this node.
pub struct RemoteIngesters {
    pub cluster: Arc<Cluster>,
    pub clients: Arc<Clients>,
    /// Each trace is on this many ingesters: fewer failures than this lose nothing.
    pub replication_factor: usize,
}

impl RemoteIngesters {
    fn addrs(&self) -> Vec<String> {
        ingester_addrs(&self.cluster)
    }

    /// The answers of every ingester, or why they do not cover all recent data: as many
    /// failures as the replication factor (or every ingester failing) may leave traces out.
    fn gather<T>(&self, results: Vec<(String, Result<T, tonic::Status>)>) -> Result<Vec<T>, (Vec<T>, String)> {
        let total = results.len();
        let mut ok = Vec::with_capacity(total);
        let mut failed = Vec::new();
        for (addr, result) in results {
            match result {
                Ok(v) => ok.push(v),
                Err(e) => {
                    tracing::warn!(ingester = %addr, error = %e.message(), "ingester did not answer a query");
                    failed.push(format!("{addr}: {}", e.message()));
                }
            }
        }
        if !may_miss_data(failed.len(), total, self.replication_factor) {
            return Ok(ok);
        }
        let why = format!(
            "{} of {total} ingesters did not answer (replication factor {}), recent data may be missing: {}",
            failed.len(),
            self.replication_factor,
            failed.join("; ")
        );
        Err((ok, why))
    }
}

/// gRPC addresses of every live ingester, leaving ones included (they answer reads until
/// they have flushed).
pub(super) fn ingester_addrs(cluster: &Cluster) -> Vec<String> {
    cluster
        .members_with(Role::Ingester)
        .into_iter()
        .map(|m| m.grpc_addr)
        .collect()
}

#[async_trait::async_trait]
impl RecentTraces for RemoteIngesters {
    async fn find_trace(&self, tenant: &TenantId, id: &TraceId) -> Vec<ResourceSpans> {
        let calls = self.addrs().into_iter().map(|addr| {
            let req = FindTraceRequest {
                tenant: tenant.as_str().to_string(),
                trace_id: bytes::Bytes::copy_from_slice(&id.0),
                scope: Some(scope_to_wire(JobScope::ALL)),
                start: 0,
                end: 0,
            };
            let client = self.clients.jobs(&addr);
            async move {
                let resp = client?.find_trace(req).await?.into_inner();
                legato_proto::tempopb::Trace::decode(resp.trace.as_ref())
                    .map_err(|e| tonic::Status::internal(e.to_string()))
            }
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .flat_map(|t| t.resource_spans)
            .collect()
    }

    /// Each ingester summarises its data (with a filter: the spans it matches) and sends the
    /// summary, not its traces.
    async fn recent_tag_summary(&self, tenant: &TenantId, filter: Option<&str>) -> Result<Option<Vec<u8>>, String> {
        let calls = self.addrs().into_iter().map(|addr| {
            let req = TenantRequest {
                tenant: tenant.as_str().to_string(),
                filter: filter.unwrap_or_default().to_string(),
            };
            let client = self.clients.ingester(&addr);
            async move {
                let result =
                    async { Ok::<_, tonic::Status>(client?.recent_tag_summary(req).await?.into_inner()) }.await;
                (addr, result)
            }
        });
        let responses = self
            .gather(futures::future::join_all(calls).await)
            .map_err(|(_, why)| why)?;
        let mut merged = legato_traceql::tags::TagSummary::default();
        for resp in responses {
            if let Some(s) = resp
                .present
                .then(|| legato_traceql::tags::TagSummary::from_json(&resp.summary))
                .flatten()
            {
                merged.merge(&s);
            }
        }
        Ok(Some(merged.to_json()))
    }

    /// Gathers the ingesters' held traces (replicas deduplicated) and visits them; fails,
    /// after visiting what arrived, when missing ingesters may leave traces out.
    async fn scan_recent(&self, tenant: &TenantId, visit: legato_proto::push::RecentVisitor) -> Result<(), String> {
        let calls = self.addrs().into_iter().map(|addr| {
            let req = TenantRequest {
                tenant: tenant.as_str().to_string(),
                filter: String::new(),
            };
            let client = self.clients.ingester(&addr);
            async move {
                let result = async { Ok::<_, tonic::Status>(client?.recent_traces(req).await?.into_inner()) }.await;
                (addr, result)
            }
        });
        let (responses, missing) = match self.gather(futures::future::join_all(calls).await) {
            Ok(all) => (all, None),
            Err((some, why)) => (some, Some(why)),
        };
        for (trace, bytes) in combine_replicas(responses).await {
            if !visit(trace, bytes) {
                break;
            }
        }
        missing.map_or(Ok(()), Err)
    }
}

/// Held traces from several ingesters, each trace's replicated copies combined into one,
/// with the bytes all its copies took.
async fn combine_replicas(responses: Vec<legato_proto::internal::RecentTracesResponse>) -> Vec<(TraceData, u64)> {
    tokio::task::spawn_blocking(move || {
        // Replicas hold the same spans: gather every copy per trace, then deduplicate.
        let mut by_trace: HashMap<[u8; 16], (Vec<ResourceSpans>, u64)> = HashMap::new();
        for resp in responses {
            for seg in resp.traces {
                let Ok(id) = <[u8; 16]>::try_from(seg.id.as_ref()) else {
                    continue;
                };
                if let Ok(t) = legato_proto::tempopb::Trace::decode(seg.data.as_ref()) {
                    let (parts, bytes) = by_trace.entry(id).or_default();
                    parts.extend(t.resource_spans);
                    *bytes += seg.data.len() as u64;
                }
            }
        }
        by_trace
            .into_iter()
            .map(|(id, (parts, bytes))| {
                let trace = legato_proto::span_view::trace_data(id, &legato_proto::combine::combine(parts));
                (trace, bytes)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Runs a block job on the querier at `first` (modulo their number); a job that fails is
/// retried on the next ones, up to `max_retries` times. Returns the last querier asked.
pub(super) async fn on_a_querier<T, F, Fut>(
    queriers: &[String],
    first: usize,
    max_retries: usize,
    call: F,
) -> (String, Result<T, tonic::Status>)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut attempt = 0;
    loop {
        let addr = queriers[(first + attempt) % queriers.len()].clone();
        match call(addr.clone()).await {
            Ok(v) => return (addr, Ok(v)),
            Err(e) if attempt < max_retries.min(queriers.len().saturating_sub(1).max(1)) => {
                tracing::warn!(querier = %addr, error = %e.message(), "query job failed; retrying elsewhere");
                attempt += 1;
            }
            Err(e) => return (addr, Err(e)),
        }
    }
}

/// Whether `failed` of `asked` ingesters not answering may leave traces out: every trace is
/// on `replication_factor` ingesters, so fewer failures than that lose nothing unless all fail.
pub(super) fn may_miss_data(failed: usize, asked: usize, replication_factor: usize) -> bool {
    failed > 0 && (failed >= replication_factor.max(1) || failed == asked)
}

/// The query frontend: a trace lookup or search becomes one job per ingester (recent data)
/// plus block shards spread over the queriers, run in parallel and merged.
pub struct ClusterFanout {
    pub cluster: Arc<Cluster>,
    pub clients: Arc<Clients>,
    /// The frontend's own view of the bucket, to size the block shards.
    pub blocklist: Arc<Blocklist>,
    pub query_shards: u32,
    pub replication_factor: usize,
    pub max_retries: usize,
    pub concurrent_jobs: usize,
    pub next: AtomicUsize,
}

/// Target blocks per block job.
pub(super) const BLOCKS_PER_JOB: usize = 4;

enum Target {
    Ingester(String),
    Shard(u32, u32),
}

impl ClusterFanout {
    /// gRPC addresses of the active queriers.
    pub(super) fn queriers(&self) -> Vec<String> {
        self.cluster
            .members_with(Role::Querier)
            .into_iter()
            .filter(|m| m.state == MemberState::Active)
            .map(|m| m.grpc_addr)
            .collect()
    }

    fn plan(&self, tenant: &TenantId) -> Result<(Vec<Target>, Vec<String>), QueryError> {
        let ingesters = ingester_addrs(&self.cluster);
        let queriers = self.queriers();
        let blocks = self.blocklist.blocks(tenant).len();
        let shards = (blocks.div_ceil(BLOCKS_PER_JOB).max(queriers.len()) as u32).clamp(1, self.query_shards.max(1));
        if queriers.is_empty() && blocks > 0 {
            return Err(QueryError::Job("no querier is available to read blocks".into()));
        }
        let mut targets: Vec<Target> = ingesters.into_iter().map(Target::Ingester).collect();
        if !queriers.is_empty() {
            targets.extend((0..shards).map(|s| Target::Shard(s, shards)));
        }
        Ok((targets, queriers))
    }

    /// Runs `call` for each target; a block shard that fails is retried on other queriers.
    /// Ingester jobs may fail up to replication factor - 1 times (replicas hold the data).
    async fn run_jobs<T, F, Fut>(
        &self,
        tenant: &TenantId,
        call: F,
        mut on_result: impl FnMut(T),
    ) -> Result<(), QueryError>
    where
        F: Fn(String, JobScope) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let (targets, queriers) = self.plan(tenant)?;
        let ingester_jobs = targets.iter().filter(|t| matches!(t, Target::Ingester(_))).count();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let call = &call;
        let queriers = &queriers;
        let max_retries = self.max_retries;
        let mut jobs = futures::stream::iter(targets.into_iter().enumerate().map(|(i, target)| async move {
            match target {
                Target::Ingester(addr) => {
                    let r = call(addr.clone(), JobScope::ALL).await;
                    (true, addr, r)
                }
                Target::Shard(shard, shards) => {
                    let scope = JobScope {
                        shard,
                        shards,
                        recent: false,
                        blocks: true,
                    };
                    let (addr, r) = on_a_querier(queriers, start + i, max_retries, |addr| call(addr, scope)).await;
                    (false, addr, r)
                }
            }
        }))
        .buffer_unordered(self.concurrent_jobs.max(1));
        let mut ingester_failures = 0usize;
        while let Some((is_ingester, addr, result)) = jobs.next().await {
            match result {
                Ok(v) => on_result(v),
                Err(e) if e.code() == tonic::Code::FailedPrecondition => {
                    return Err(QueryError::Limit(e.message().to_string()));
                }
                Err(e) if is_ingester => {
                    tracing::warn!(ingester = %addr, error = %e.message(), "ingester query job failed");
                    ingester_failures += 1;
                    if may_miss_data(ingester_failures, ingester_jobs, self.replication_factor) {
                        return Err(QueryError::Job(format!(
                            "{ingester_failures} ingesters failed to answer (replication factor {}); last: {addr}: {}",
                            self.replication_factor,
                            e.message()
                        )));
                    }
                }
                Err(e) => return Err(QueryError::Job(format!("querier {addr}: {}", e.message()))),
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Fanout for ClusterFanout {
    async fn find_trace(
        &self,
        tenant: &TenantId,
        id: &TraceId,
        start: Option<u64>,
        end: Option<u64>,
    ) -> Result<FoundTrace, QueryError> {
        let mut parts: Vec<ResourceSpans> = Vec::new();
        let mut inspected = 0u64;
        self.run_jobs(
            tenant,
            |addr, scope| {
                let req = FindTraceRequest {
                    tenant: tenant.as_str().to_string(),
                    trace_id: bytes::Bytes::copy_from_slice(&id.0),
                    scope: Some(scope_to_wire(scope)),
                    start: start.unwrap_or(0),
                    end: end.unwrap_or(0),
                };
                let client = self.clients.jobs(&addr);
                async move {
                    let resp = client?.find_trace(req).await?.into_inner();
                    let trace = legato_proto::tempopb::Trace::decode(resp.trace.as_ref())
                        .map_err(|e| tonic::Status::internal(e.to_string()))?;
                    Ok((trace, resp.blocks_inspected))
                }
            },
            |(trace, blocks)| {
                parts.extend(trace.resource_spans);
                inspected += blocks;
            },
        )
        .await?;
        Ok(FoundTrace {
            batches: legato_proto::combine::combine(parts),
            blocks_inspected: inspected,
        })
    }

    async fn search(&self, tenant: &TenantId, req: SearchRequest) -> Result<SearchOutcome, QueryError> {
        let limit = req.limit.max(1);
        let mut merged: HashMap<[u8; 16], TraceHit> = HashMap::new();
        let mut total = SearchOutcome::default();
        let progress = req.progress.clone();
        self.run_jobs(
            tenant,
            |addr, scope| {
                let job = SearchJobRequest {
                    tenant: tenant.as_str().to_string(),
                    scope: Some(scope_to_wire(scope)),
                    query: req.query_text.clone(),
                    start_ns: req.start_ns.unwrap_or(0),
                    end_ns: req.end_ns.unwrap_or(0),
                    limit: req.limit as u32,
                    spss: req.spss as u32,
                };
                let client = self.clients.jobs(&addr);
                async move {
                    let resp = client?.search(job).await?.into_inner();
                    serde_json::from_slice::<SearchOutcome>(&resp.outcome)
                        .map_err(|e| tonic::Status::internal(format!("bad search job answer: {e}")))
                }
            },
            |outcome: SearchOutcome| {
                total.inspected_traces += outcome.inspected_traces;
                total.inspected_spans += outcome.inspected_spans;
                total.inspected_bytes += outcome.inspected_bytes;
                total.total_blocks += outcome.total_blocks;
                total.completed_jobs += 1;
                for hit in outcome.traces {
                    match merged.get_mut(&hit.trace_id) {
                        Some(existing) => existing.merge(hit),
                        None => {
                            merged.insert(hit.trace_id, hit);
                        }
                    }
                }
                if let Some(tx) = &progress {
                    let mut traces: Vec<TraceHit> = merged.values().cloned().collect();
                    traces.sort_by_key(|h| std::cmp::Reverse(h.start_unix_nano));
                    traces.truncate(limit);
                    let _ = tx.send(SearchSnapshot {
                        traces,
                        inspected_traces: total.inspected_traces,
                        completed_jobs: total.completed_jobs,
                        total_jobs: total.completed_jobs,
                        total_blocks: total.total_blocks,
                    });
                }
            },
        )
        .await?;
        let mut traces: Vec<TraceHit> = merged.into_values().collect();
        traces.sort_by_key(|h| std::cmp::Reverse(h.start_unix_nano));
        traces.truncate(limit);
        for t in &mut traces {
            t.cap_spans(req.spss);
        }
        total.traces = traces;
        total.total_jobs = total.completed_jobs;
        Ok(total)
    }

    async fn metrics(
        &self,
        tenant: &TenantId,
        req: legato_querier::MetricsRequest,
    ) -> Result<(Vec<legato_traceql::metrics::Series>, SearchOutcome), QueryError> {
        self.metrics_jobs(tenant, req).await
    }
}
