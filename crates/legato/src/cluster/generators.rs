//! The metrics generator in microservices mode. Distributors send each trace's spans to the
//! generator that owns the trace id on the `metrics-generator` ring, so the client and server
//! spans of a call (which may arrive in different exports, through different distributors)
//! meet on one generator and pair into a service-graph edge. Sending never blocks ingest: a
//! bounded queue drops (and counts) what a slow or absent generator cannot take. While the
//! cluster has no generator, the distributor's own generator counts the spans.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use legato_cluster::{Cluster, Ring, Role, trace_token};
use legato_generator::Generator;
use legato_generator::metrics::{GeneratorMetrics, ResultLabels};
use legato_model::TenantId;
use legato_proto::internal::GeneratorPushResponse;
use legato_proto::internal::metrics_generator_server::{MetricsGenerator as GeneratorRpc, MetricsGeneratorServer};
use legato_proto::push::{PushRequest, SpanObserver, TraceSegment};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::internal::{MAX_MESSAGE_BYTES, tenant};
use super::remote::Clients;

/// Pushes waiting to be sent; past it, spans are dropped and counted.
const QUEUE: usize = 1024;
/// Pushes in flight at once.
const IN_FLIGHT: usize = 8;
/// How long a view of the generator ring is reused.
const RING_TTL: Duration = Duration::from_secs(1);

/// The distributor's `SpanObserver` in microservices mode.
pub struct GeneratorRouter {
    cluster: Arc<Cluster>,
    local: Option<Arc<Generator>>,
    tx: mpsc::Sender<(String, PushRequest, u64)>,
    metrics: GeneratorMetrics,
    ring: Mutex<Option<(Instant, Arc<Ring>)>>,
}

impl GeneratorRouter {
    /// Starts the sending task; `local` counts spans while the cluster has no generator.
    pub fn start(
        cluster: Arc<Cluster>,
        clients: Arc<Clients>,
        local: Option<Arc<Generator>>,
        metrics: GeneratorMetrics,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<(String, PushRequest, u64)>(QUEUE);
        let sender_metrics = metrics.clone();
        tokio::spawn(async move {
            tokio_stream_from(rx)
                .for_each_concurrent(IN_FLIGHT, |(addr, request, spans)| {
                    let (clients, metrics) = (clients.clone(), sender_metrics.clone());
                    async move {
                        let sent = async { clients.generator(&addr)?.push(request).await }.await;
                        let result = match sent {
                            Ok(_) => "ok",
                            Err(e) => {
                                tracing::debug!(generator = %addr, error = %e.message(), "metrics generator did not take spans");
                                "dropped_unavailable"
                            }
                        };
                        count(&metrics, result, spans);
                    }
                })
                .await;
        });
        Arc::new(Self {
            cluster,
            local,
            tx,
            metrics,
            ring: Mutex::new(None),
        })
    }

    fn ring(&self) -> Arc<Ring> {
        let mut cached = self.ring.lock();
        if let Some((at, ring)) = cached.as_ref()
            && at.elapsed() < RING_TTL
        {
            return ring.clone();
        }
        let ring = Arc::new(self.cluster.ring(Role::MetricsGenerator, 1));
        *cached = Some((Instant::now(), ring.clone()));
        ring
    }
}

fn count(metrics: &GeneratorMetrics, result: &str, spans: u64) {
    metrics
        .forwarded_spans
        .get_or_create(&ResultLabels { result: result.into() })
        .inc_by(spans);
}

fn tokio_stream_from<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl SpanObserver for GeneratorRouter {
    fn observe(&self, tenant: &TenantId, traces: &[TraceSegment]) {
        let ring = self.ring();
        if ring.is_empty() {
            if let Some(local) = &self.local {
                local.observe(tenant, traces);
            }
            return;
        }
        let mut by_owner: HashMap<&str, (Vec<TraceSegment>, u64)> = HashMap::new();
        for seg in traces {
            if let Some(owner) = ring.owner(trace_token(tenant.as_str(), &seg.id)) {
                let (segments, spans) = by_owner.entry(owner.grpc_addr.as_str()).or_default();
                segments.push(seg.clone());
                *spans += u64::from(seg.spans);
            }
        }
        for (addr, (segments, spans)) in by_owner {
            let request = PushRequest {
                tenant: tenant.as_str().to_string(),
                traces: segments,
            };
            if self.tx.try_send((addr.to_string(), request, spans)).is_err() {
                count(&self.metrics, "dropped_queue_full", spans);
            }
        }
    }
}

/// The `metrics-generator` role's RPC: spans in, counted by this process's generator.
pub struct GeneratorService {
    pub generator: Arc<Generator>,
}

impl GeneratorService {
    pub fn server(self) -> MetricsGeneratorServer<Self> {
        MetricsGeneratorServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl GeneratorRpc for GeneratorService {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<GeneratorPushResponse>, Status> {
        let request = request.into_inner();
        let tenant = tenant(&request.tenant)?;
        self.generator.observe(&tenant, &request.traces);
        Ok(Response::new(GeneratorPushResponse {}))
    }
}
