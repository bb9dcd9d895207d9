//! `tempopb.StreamingQuerier`, the gRPC API Grafana uses when streaming is on: served on the
//! gRPC port and, over HTTP/2 cleartext, on the HTTP port. Requests become the same parameter
//! sets the HTTP handlers take, so both paths share parsing, limits and results.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;

use futures::Stream;
use legato_model::TenantId;
use legato_proto::tempopb::search::{
    SearchMetrics as HttpSearchMetrics, SearchResponse, SearchTagValuesResponse, SearchTagValuesV2Response,
    SearchTagsResponse, SearchTagsV2Response,
};
use legato_proto::tempopb::streaming::streaming_querier_server::{StreamingQuerier, StreamingQuerierServer};
use legato_proto::tempopb::streaming::{
    Exemplar, InstantSeries, QueryInstantRequest, QueryInstantResponse, QueryRangeRequest, QueryRangeResponse, Sample,
    SearchMetrics, SearchRequest, SearchTagValuesRequest, SearchTagsRequest, TimeSeries,
};
use legato_traceql::metrics::Series;
use tonic::{Request, Response, Status};

use crate::search::{self, attr_kv_proto, trace_metadata};
use crate::{SharedState, metrics_query};

type Params = HashMap<String, String>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct StreamingService {
    state: SharedState,
}

pub fn streaming_service(state: SharedState) -> StreamingQuerierServer<StreamingService> {
    StreamingQuerierServer::new(StreamingService { state }).max_encoding_message_size(16 << 20)
}

fn tenant_of<T>(state: &SharedState, req: &Request<T>) -> Result<TenantId, Status> {
    crate::auth::grpc_tenant(state, req.metadata()).map_err(Status::from)
}

fn once<T: Send + 'static>(item: Result<T, Status>) -> BoxStream<T> {
    Box::pin(futures::stream::once(async move { item }))
}

fn put(params: &mut Params, key: &str, value: impl ToString, set: bool) {
    if set {
        params.insert(key.to_string(), value.to_string());
    }
}

fn search_params(r: &SearchRequest) -> Params {
    let mut p = Params::new();
    put(&mut p, "q", &r.query, !r.query.is_empty());
    put(&mut p, "limit", r.limit, r.limit > 0);
    put(&mut p, "spss", r.spans_per_span_set, r.spans_per_span_set > 0);
    put(&mut p, "start", r.start, r.start > 0);
    put(&mut p, "end", r.end, r.end > 0);
    put(
        &mut p,
        "minDuration",
        format!("{}ms", r.min_duration_ms),
        r.min_duration_ms > 0,
    );
    put(
        &mut p,
        "maxDuration",
        format!("{}ms", r.max_duration_ms),
        r.max_duration_ms > 0,
    );
    if !r.tags.is_empty() {
        let tags: Vec<String> = r
            .tags
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\"")))
            .collect();
        p.insert("tags".into(), tags.join(" "));
    }
    p
}

fn tags_params(r: &SearchTagsRequest) -> Params {
    let mut p = Params::new();
    put(&mut p, "scope", &r.scope, !r.scope.is_empty());
    put(&mut p, "q", &r.query, !r.query.is_empty());
    put(&mut p, "start", r.start, r.start > 0);
    put(&mut p, "end", r.end, r.end > 0);
    put(&mut p, "limit", r.max_tags_per_scope, r.max_tags_per_scope > 0);
    p
}

fn tag_values_params(r: &SearchTagValuesRequest) -> Params {
    let mut p = Params::new();
    put(&mut p, "q", &r.query, !r.query.is_empty());
    put(&mut p, "start", r.start, r.start > 0);
    put(&mut p, "end", r.end, r.end > 0);
    put(&mut p, "limit", r.max_tag_values, r.max_tag_values > 0);
    p
}

fn labels(labels: &[(String, legato_traceql::value::Value)]) -> Vec<legato_proto::common::KeyValue> {
    labels
        .iter()
        .filter_map(|(k, v)| v.to_attr().map(|a| attr_kv_proto(k, &a)))
        .collect()
}

fn time_series(series: &[Series]) -> Vec<TimeSeries> {
    series
        .iter()
        .map(|s| TimeSeries {
            labels: labels(&s.labels),
            samples: s
                .samples
                .iter()
                .map(|(t, v)| Sample {
                    value: *v,
                    timestamp_ms: *t,
                })
                .collect(),
            exemplars: s
                .exemplars
                .iter()
                .map(|e| Exemplar {
                    labels: labels(&e.labels()),
                    value: e.value,
                    timestamp_ms: e.timestamp_ms,
                })
                .collect(),
        })
        .collect()
}

fn outcome_metrics(o: &legato_querier::SearchOutcome) -> Option<SearchMetrics> {
    Some(SearchMetrics {
        inspected_traces: o.inspected_traces.min(u64::from(u32::MAX)) as u32,
        inspected_bytes: o.inspected_bytes,
        total_blocks: o.total_blocks,
        completed_jobs: o.completed_jobs,
        total_jobs: o.total_jobs,
        total_block_bytes: 0,
        inspected_spans: o.inspected_spans,
    })
}

#[tonic::async_trait]
impl StreamingQuerier for StreamingService {
    type SearchStream = BoxStream<SearchResponse>;
    type SearchTagsStream = BoxStream<SearchTagsResponse>;
    type SearchTagsV2Stream = BoxStream<SearchTagsV2Response>;
    type SearchTagValuesStream = BoxStream<SearchTagValuesResponse>;
    type SearchTagValuesV2Stream = BoxStream<SearchTagValuesV2Response>;
    type MetricsQueryRangeStream = BoxStream<QueryRangeResponse>;
    type MetricsQueryInstantStream = BoxStream<QueryInstantResponse>;

    /// Streams traces as blocks complete (each message holds only traces not sent before,
    /// with cumulative metrics), then one final message with the complete result.
    async fn search(&self, request: Request<SearchRequest>) -> Result<Response<Self::SearchStream>, Status> {
        let tenant = tenant_of(&self.state, &request)?;
        let params = search_params(request.get_ref());
        let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
        let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<SearchResponse, Status>>(16);
        let state = self.state.clone();
        tokio::spawn(async move {
            let search = search::search_response(&state, &tenant, &params, Some(progress_tx));
            tokio::pin!(search);
            let mut sent: HashSet<String> = HashSet::new();
            let final_result = loop {
                tokio::select! {
                    biased;
                    Some(snapshot) = progress_rx.recv() => {
                        if out_tx.send(Ok(progress_diff(&snapshot, &mut sent))).await.is_err() {
                            return;
                        }
                    }
                    result = &mut search => break result,
                    // The client went away: dropping the search cancels its scans.
                    () = out_tx.closed() => return,
                }
            };
            // Progress sent in the search's last poll is still queued: it goes first.
            while let Ok(snapshot) = progress_rx.try_recv() {
                if out_tx.send(Ok(progress_diff(&snapshot, &mut sent))).await.is_err() {
                    return;
                }
            }
            let _ = out_tx.send(final_result.map_err(Status::from)).await;
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            out_rx,
        ))))
    }

    async fn search_tags(
        &self,
        request: Request<SearchTagsRequest>,
    ) -> Result<Response<Self::SearchTagsStream>, Status> {
        let tenant = tenant_of(&self.state, &request)?;
        let result = search::tags_v1_response(&self.state, &tenant, &tags_params(request.get_ref())).await;
        Ok(Response::new(once(result.map_err(Status::from))))
    }

    async fn search_tags_v2(
        &self,
        request: Request<SearchTagsRequest>,
    ) -> Result<Response<Self::SearchTagsV2Stream>, Status> {
        let tenant = tenant_of(&self.state, &request)?;
        let result = search::tags_v2_response(&self.state, &tenant, &tags_params(request.get_ref())).await;
        Ok(Response::new(once(result.map_err(Status::from))))
    }

    async fn search_tag_values(
        &self,
        request: Request<SearchTagValuesRequest>,
    ) -> Result<Response<Self::SearchTagValuesStream>, Status> {
        let tenant = tenant_of(&self.state, &request)?;
        let r = request.get_ref();
        let result = search::tag_values_v1_response(&self.state, &tenant, &tag_values_params(r), &r.tag_name).await;
        Ok(Response::new(once(result.map_err(Status::from))))
    }

    async fn search_tag_values_v2(
        &self,
        request: Request<SearchTagValuesRequest>,
    ) -> Result<Response<Self::SearchTagValuesV2Stream>, Status> {
        let tenant = tenant_of(&self.state, &request)?;
        let r = request.get_ref();
        let result = search::tag_values_v2_response(&self.state, &tenant, &tag_values_params(r), &r.tag_name).await;
        Ok(Response::new(once(result.map_err(Status::from))))
    }

    async fn metrics_query_range(
        &self,
        request: Request<QueryRangeRequest>,
    ) -> Result<Response<Self::MetricsQueryRangeStream>, Status> {
        let tenant = tenant_of(&self.state, &request)?;
        let r = request.get_ref();
        let mut p = Params::new();
        put(&mut p, "q", &r.query, true);
        put(&mut p, "start", r.start, r.start > 0);
        put(&mut p, "end", r.end, r.end > 0);
        put(&mut p, "step", format!("{}", r.step as f64 / 1e9), r.step > 0);
        put(&mut p, "exemplars", r.exemplars, r.exemplars > 0);
        let result = metrics_query::run(&self.state, &tenant, &p, false)
            .await
            .map(|(series, outcome, _)| {
                let partial = metrics_query::partial_message(&self.state, &outcome);
                QueryRangeResponse {
                    series: time_series(&series),
                    metrics: outcome_metrics(&outcome),
                    status: i32::from(partial.is_some()),
                    message: partial.unwrap_or_default(),
                }
            });
        Ok(Response::new(once(result.map_err(Status::from))))
    }

    async fn metrics_query_instant(
        &self,
        request: Request<QueryInstantRequest>,
    ) -> Result<Response<Self::MetricsQueryInstantStream>, Status> {
        let tenant = tenant_of(&self.state, &request)?;
        let r = request.get_ref();
        let mut p = Params::new();
        put(&mut p, "q", &r.query, true);
        put(&mut p, "start", r.start, r.start > 0);
        put(&mut p, "end", r.end, r.end > 0);
        let result = metrics_query::run(&self.state, &tenant, &p, true)
            .await
            .map(|(series, outcome, _)| {
                let partial = metrics_query::partial_message(&self.state, &outcome);
                QueryInstantResponse {
                    series: series
                        .iter()
                        .filter_map(|s| {
                            Some(InstantSeries {
                                labels: labels(&s.labels),
                                value: s.samples.first()?.1,
                            })
                        })
                        .collect(),
                    metrics: outcome_metrics(&outcome),
                    status: i32::from(partial.is_some()),
                    message: partial.unwrap_or_default(),
                }
            });
        Ok(Response::new(once(result.map_err(Status::from))))
    }
}

/// A progress message: the traces of `snapshot` not sent before, with cumulative metrics.
fn progress_diff(snapshot: &legato_querier::SearchSnapshot, sent: &mut HashSet<String>) -> SearchResponse {
    let traces: Vec<_> = snapshot
        .traces
        .iter()
        .map(trace_metadata)
        .filter(|t| sent.insert(t.trace_id.clone()))
        .collect();
    SearchResponse {
        traces,
        metrics: Some(HttpSearchMetrics {
            inspected_traces: snapshot.inspected_traces.min(u64::from(u32::MAX)) as u32,
            total_blocks: snapshot.total_blocks,
            completed_jobs: snapshot.completed_jobs,
            total_jobs: snapshot.total_jobs,
            ..Default::default()
        }),
    }
}
