//! The servers of Legato's internal RPCs (`proto/internal.proto`): an ingester takes pushes
//! and answers for what it holds; ingesters and queriers run query jobs.

use std::sync::Arc;

use bytes::Bytes;
use legato_model::{TenantId, TraceId};
use legato_proto::internal::ingester_server::{Ingester as IngesterRpc, IngesterServer};
use legato_proto::internal::query_jobs_server::{QueryJobs, QueryJobsServer};
use legato_proto::internal::{
    FindTraceRequest, FindTraceResponse, JobScope as WireScope, MetricsJobRequest, MetricsJobResponse, PushResponse,
    RecentTracesResponse, Rejection, SearchJobRequest, SearchJobResponse, TagSummaryResponse, TenantRequest,
};
use legato_proto::push::{PushError, PushRequest, PushSink, RecentTraces, TraceSegment};
use legato_querier::{JobScope, Querier, SearchRequest};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::app::LateIngester;

/// Internal messages carry whole traces and tenants' recent data.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

pub fn tenant(name: &str) -> Result<TenantId, Status> {
    TenantId::new(name).map_err(|e| Status::invalid_argument(e.to_string()))
}

pub fn push_error_status(e: &PushError) -> Status {
    match e {
        PushError::Overloaded { .. } => Status::resource_exhausted(e.to_string()),
        PushError::Unavailable(_) => Status::unavailable(e.to_string()),
        PushError::Wal(_) => Status::unavailable(e.to_string()),
    }
}

pub fn scope_from_wire(s: Option<WireScope>) -> JobScope {
    match s {
        Some(s) => JobScope {
            shard: s.shard,
            shards: s.shards.max(1),
            recent: s.recent,
            blocks: s.blocks,
        },
        None => JobScope::ALL,
    }
}

pub fn scope_to_wire(s: JobScope) -> WireScope {
    WireScope {
        shard: s.shard,
        shards: s.shards,
        recent: s.recent,
        blocks: s.blocks,
    }
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

pub struct IngesterService {
    pub ingester: Arc<LateIngester>,
    /// This node's querier, whose recent data is the ingester: filtered tag summaries.
    pub querier: Arc<Querier>,
}

impl IngesterService {
    pub fn server(self) -> IngesterServer<Self> {
        IngesterServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl IngesterRpc for IngesterService {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let outcome = self
            .ingester
            .push(request.into_inner())
            .await
            .map_err(|e| push_error_status(&e))?;
        Ok(Response::new(PushResponse {
            rejected: outcome
                .rejected
                .into_iter()
                .map(|r| Rejection {
                    reason: r.reason.as_str().to_string(),
                    spans: r.spans,
                    message: r.message,
                })
                .collect(),
        }))
    }

    async fn recent_traces(&self, request: Request<TenantRequest>) -> Result<Response<RecentTracesResponse>, Status> {
        let tenant = tenant(&request.into_inner().tenant)?;
        let Some(ingester) = self.ingester.get() else {
            return Err(Status::unavailable("replaying the write-ahead log"));
        };
        let traces = ingester
            .recent_segments(&tenant)
            .into_iter()
            .flat_map(|(id, segments)| {
                let id = Bytes::copy_from_slice(&id.0);
                segments.into_iter().map(move |data| TraceSegment {
                    id: id.clone(),
                    data,
                    spans: 0,
                })
            })
            .collect();
        Ok(Response::new(RecentTracesResponse { traces }))
    }

    async fn recent_tag_summary(
        &self,
        request: Request<TenantRequest>,
    ) -> Result<Response<TagSummaryResponse>, Status> {
        let r = request.into_inner();
        let tenant = tenant(&r.tenant)?;
        let summary = match r.filter.as_str() {
            "" => self
                .ingester
                .recent_tag_summary(&tenant, None)
                .await
                .map_err(Status::unavailable)?,
            text => {
                // The filter is evaluated here, against the traces this ingester holds.
                let query = legato_traceql::parse(text).map_err(|e| Status::invalid_argument(e.to_string()))?;
                let plan =
                    legato_traceql::eval::Plan::new(query).map_err(|e| Status::invalid_argument(e.to_string()))?;
                let filter = legato_querier::TagFilter {
                    plan: Arc::new(plan),
                    text: text.to_string(),
                };
                let cancel = tokio_util::sync::CancellationToken::new();
                let _cancel_on_drop = cancel.clone().drop_guard();
                let summary = self
                    .querier
                    .held_tags(&tenant, Some(&filter), cancel)
                    .await
                    .map_err(|e| match e {
                        legato_querier::QueryError::Limit(m) => Status::failed_precondition(m),
                        e => Status::unavailable(e.to_string()),
                    })?;
                Some(summary.to_json())
            }
        };
        Ok(Response::new(TagSummaryResponse {
            present: summary.is_some(),
            summary: summary.map(Bytes::from).unwrap_or_default(),
        }))
    }
}

/// Query jobs against this node's `Querier`: on an ingester it sees the ingester's data and
/// the blocks it flushed recently; on a querier, the bucket.
pub struct QueryJobsService {
    pub querier: Arc<Querier>,
}

impl QueryJobsService {
    pub fn server(self) -> QueryJobsServer<Self> {
        QueryJobsServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl QueryJobs for QueryJobsService {
    async fn find_trace(&self, request: Request<FindTraceRequest>) -> Result<Response<FindTraceResponse>, Status> {
        let r = request.into_inner();
        let tenant = tenant(&r.tenant)?;
        let id: [u8; 16] = r
            .trace_id
            .as_ref()
            .try_into()
            .map_err(|_| Status::invalid_argument("trace_id must be 16 bytes"))?;
        let found = self
            .querier
            .find_trace_scoped(
                &tenant,
                &TraceId(id),
                nonzero(r.start),
                nonzero(r.end),
                scope_from_wire(r.scope),
            )
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let trace = legato_proto::tempopb::Trace {
            resource_spans: found.batches,
        };
        Ok(Response::new(FindTraceResponse {
            trace: trace.encode_to_vec().into(),
            blocks_inspected: found.blocks_inspected,
        }))
    }

    async fn search(&self, request: Request<SearchJobRequest>) -> Result<Response<SearchJobResponse>, Status> {
        let r = request.into_inner();
        let tenant = tenant(&r.tenant)?;
        let query = legato_traceql::parse(&r.query).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let plan = legato_traceql::eval::Plan::new(query).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let req = SearchRequest {
            plan: Arc::new(plan),
            query_text: r.query,
            start_ns: nonzero(r.start_ns),
            end_ns: nonzero(r.end_ns),
            limit: r.limit as usize,
            spss: r.spss as usize,
            progress: None,
            cancel: tokio_util::sync::CancellationToken::new(),
        };
        // Dropped with this handler when the frontend goes away: the job's scans stop.
        let _cancel_on_drop = req.cancel.clone().drop_guard();
        let outcome = self
            .querier
            .search_scoped(&tenant, req, scope_from_wire(r.scope))
            .await
            .map_err(job_status)?;
        let json = serde_json::to_vec(&outcome).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(SearchJobResponse { outcome: json.into() }))
    }

    async fn metrics(&self, request: Request<MetricsJobRequest>) -> Result<Response<MetricsJobResponse>, Status> {
        use legato_proto::internal::metrics_job_request::Mode;
        use legato_querier::{MetricsScope, Pieces};
        let r = request.into_inner();
        let tenant = tenant(&r.tenant)?;
        let mut query = legato_traceql::parse(&r.query).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let stage = query
            .metrics
            .take()
            .ok_or_else(|| Status::invalid_argument("not a TraceQL metrics query"))?;
        let plan = legato_traceql::eval::Plan::new(query).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let cancel = tokio_util::sync::CancellationToken::new();
        // Dropped with this handler when the frontend goes away: the job's scans stop.
        let _cancel_on_drop = cancel.clone().drop_guard();
        let mode = r.mode();
        if mode == Mode::List {
            let keys = self
                .querier
                .held_pieces(&tenant, r.start_ns, r.end_ns, cancel)
                .await
                .map_err(job_status)?;
            return Ok(Response::new(MetricsJobResponse {
                pieces: super::metrics_fanout::encode_pieces(&keys),
                ..Default::default()
            }));
        }
        let listed: std::collections::HashSet<_> = super::metrics_fanout::decode_pieces(&r.pieces)
            .map_err(Status::invalid_argument)?
            .into_iter()
            .collect();
        let pieces = match mode {
            Mode::All | Mode::List => Pieces::All,
            Mode::Only => Pieces::Only(Arc::new(listed)),
            Mode::Skip => Pieces::Skip(Arc::new(listed)),
        };
        let blocks = match r.blocks.is_empty() {
            true => None,
            false => Some(
                serde_json::from_slice::<Vec<Arc<legato_storage::BlockMeta>>>(&r.blocks)
                    .map_err(|e| Status::invalid_argument(format!("bad block list: {e}")))?,
            ),
        };
        let req = legato_querier::MetricsRequest {
            plan: Arc::new(plan),
            stage,
            start_ns: r.start_ns,
            end_ns: r.end_ns,
            step_ns: r.step_ns,
            max_exemplars: r.max_exemplars as usize,
            max_series: r.max_series as usize,
            cancel,
            query_text: r.query,
        };
        let scope = MetricsScope {
            scope: scope_from_wire(r.scope),
            blocks,
            pieces,
        };
        let (partial, outcome) = self
            .querier
            .metrics_scoped(&tenant, req, scope)
            .await
            .map_err(job_status)?;
        let internal = |e: serde_json::Error| Status::internal(e.to_string());
        Ok(Response::new(MetricsJobResponse {
            partial: serde_json::to_vec(&partial).map_err(internal)?.into(),
            outcome: serde_json::to_vec(&outcome).map_err(internal)?.into(),
            pieces: Bytes::new(),
        }))
    }
}

/// A query job's error for the frontend: a limit is the client's error (FAILED_PRECONDITION),
/// anything else a failed job.
fn job_status(e: legato_querier::QueryError) -> Status {
    match e {
        legato_querier::QueryError::Limit(m) => Status::failed_precondition(m),
        e => Status::internal(e.to_string()),
    }
}
