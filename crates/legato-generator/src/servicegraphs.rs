//! The service-graphs processor: pairs each call's client and server spans (by trace id and
//! the client span's id) into an edge between two services, with Tempo's series and labels so
//! Grafana draws the service map from them. Producer/consumer pairs are `messaging_system`
//! edges; a client span naming a database is a `database` edge at once; a half left alone for
//! `wait` becomes a `virtual_node` edge when it names its peer (or, for a root server span, an
//! edge from `user`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use legato_proto::common::KeyValue;
use legato_proto::trace::span::SpanKind;
use legato_proto::trace::status::StatusCode;
use legato_proto::trace::{ResourceSpans, Span};
use serde::{Deserialize, Serialize};

use crate::attrs::{any_attr, string_attr};
use crate::registry::{Labels, Registry};

pub const REQUESTS: &str = "traces_service_graph_request_total";
pub const FAILED: &str = "traces_service_graph_request_failed_total";
pub const SERVER_SECONDS: &str = "traces_service_graph_request_server_seconds";
pub const CLIENT_SECONDS: &str = "traces_service_graph_request_client_seconds";

/// `metrics_generator.processor.service_graphs` (Tempo's keys that Legato implements).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceGraphsConfig {
    /// How long a half edge waits for its other half.
    #[serde(with = "legato_storage::config_durations")]
    pub wait: Duration,
    /// Half edges held per tenant; a new one past it is dropped and counted.
    pub max_items: usize,
    /// Request duration buckets, seconds.
    pub histogram_buckets: Vec<f64>,
    /// Span attributes naming the peer of an unpaired span (virtual nodes).
    pub peer_attributes: Vec<String>,
    /// Attributes that make a client span a database call.
    pub database_name_attributes: Vec<String>,
}

impl Default for ServiceGraphsConfig {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(10),
            max_items: 10_000,
            histogram_buckets: (0..8).map(|i| 0.1 * f64::from(1u32 << i)).collect(),
            peer_attributes: vec!["peer.service".into(), "db.name".into(), "db.system".into()],
            database_name_attributes: vec![
                "db.namespace".into(),
                "db.name".into(),
                "db.system".into(),
                "db.system.name".into(),
            ],
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Side {
    service: String,
    seconds: f64,
    failed: bool,
    /// Client: first peer attribute of the span. Server: first peer attribute too (names the
    /// caller of a root span).
    peer: Option<String>,
    /// Server side: the span has no parent.
    root: bool,
    trace_id: String,
}

#[derive(Debug, Default)]
struct Edge {
    client: Option<Side>,
    server: Option<Side>,
    messaging: bool,
}

/// Trace id and the client span's id: the two halves of a call share it.
type EdgeKey = ([u8; 16], Vec<u8>);

/// One tenant's half edges.
#[derive(Debug, Default)]
pub struct Pending {
    edges: HashMap<EdgeKey, Edge>,
    /// Expiry (unix ms) of each half edge, oldest first.
    order: VecDeque<(i64, EdgeKey)>,
    /// Half edges refused because `max_items` were waiting.
    pub dropped: u64,
    /// Half edges that expired without a peer to name (nothing emitted).
    pub expired: u64,
}

pub struct ServiceGraphs {
    cfg: ServiceGraphsConfig,
    bounds: Arc<[f64]>,
}

impl ServiceGraphs {
    pub fn new(cfg: ServiceGraphsConfig) -> Self {
        Self {
            bounds: Arc::from(cfg.histogram_buckets.clone()),
            cfg,
        }
    }

    pub fn validate(&self, key: &str) -> Result<(), String> {
        let b = &self.cfg.histogram_buckets;
        if b.is_empty() || b.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("{key}.histogram_buckets must be increasing and not empty"));
        }
        if self.cfg.wait.is_zero() {
            return Err(format!("{key}.wait must be greater than 0"));
        }
        Ok(())
    }

    /// Records the spans of one trace's batches; completed edges go to `registry` at once.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        pending: &mut Pending,
        registry: &mut Registry,
        trace_id: [u8; 16],
        trace_hex: &str,
        batches: &[ResourceSpans],
        max_active: usize,
        now_ms: i64,
    ) {
        for rs in batches {
            let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            let Some(service) = string_attr(resource, "service.name").filter(|s| !s.is_empty()) else {
                continue;
            };
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
                let side = Side {
                    service: service.clone(),
                    seconds: span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e9,
                    failed: span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32),
                    peer: self.first_attr(&span.attributes, &self.cfg.peer_attributes),
                    root: span.parent_span_id.is_empty(),
                    trace_id: trace_hex.to_string(),
                };
                match kind {
                    SpanKind::Client | SpanKind::Producer => {
                        if let Some(db) = self.database_peer(resource, span) {
                            // A database call is an edge at once: nobody answers it with a span.
                            let server = Side {
                                service: db,
                                seconds: side.seconds,
                                ..Side::default()
                            };
                            self.emit(
                                registry,
                                &side,
                                &server,
                                "database",
                                side.failed,
                                &side.trace_id,
                                max_active,
                                now_ms,
                            );
                            continue;
                        }
                        let key = (trace_id, span.span_id.clone());
                        self.half(
                            pending,
                            registry,
                            key,
                            side,
                            true,
                            kind == SpanKind::Producer,
                            max_active,
                            now_ms,
                        );
                    }
                    SpanKind::Server | SpanKind::Consumer => {
                        let key = (trace_id, span.parent_span_id.clone());
                        self.half(
                            pending,
                            registry,
                            key,
                            side,
                            false,
                            kind == SpanKind::Consumer,
                            max_active,
                            now_ms,
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn half(
        &self,
        pending: &mut Pending,
        registry: &mut Registry,
        key: EdgeKey,
        side: Side,
        client: bool,
        messaging: bool,
        max_active: usize,
        now_ms: i64,
    ) {
        if !pending.edges.contains_key(&key) && pending.edges.len() >= self.cfg.max_items {
            pending.dropped += 1;
            return;
        }
        let expires_ms = now_ms + self.cfg.wait.as_millis() as i64;
        let edge = pending.edges.entry(key.clone()).or_insert_with(|| {
            pending.order.push_back((expires_ms, key.clone()));
            Edge::default()
        });
        edge.messaging |= messaging;
        if client {
            edge.client = Some(side);
        } else {
            edge.server = Some(side);
        }
        if let (Some(c), Some(s)) = (&edge.client, &edge.server) {
            let kind = if edge.messaging { "messaging_system" } else { "" };
            let failed = c.failed || s.failed;
            self.emit(registry, c, s, kind, failed, &c.trace_id, max_active, now_ms);
            pending.edges.remove(&key);
        }
    }

    /// Emits the half edges waiting since before `now_ms - wait` that name their peer, as
    /// virtual-node edges; forgets the rest.
    pub fn expire(&self, pending: &mut Pending, registry: &mut Registry, max_active: usize, now_ms: i64) {
        while let Some((expires_ms, _)) = pending.order.front() {
            if *expires_ms > now_ms {
                break;
            }
            let Some((_, key)) = pending.order.pop_front() else {
                break;
            };
            let Some(edge) = pending.edges.remove(&key) else {
                continue; // completed meanwhile
            };
            // A root server span was called by its peer (or a user); a client span called the
            // peer it names. Anything else cannot be drawn.
            let (client, server, observed) = match (edge.client, edge.server) {
                (None, Some(server)) if server.root => {
                    let name = server.peer.clone().unwrap_or_else(|| "user".into());
                    (
                        Side {
                            service: name,
                            ..Side::default()
                        },
                        server.clone(),
                        server,
                    )
                }
                (Some(client), None) if client.peer.is_some() => {
                    let name = client.peer.clone().unwrap_or_default();
                    (
                        client.clone(),
                        Side {
                            service: name,
                            ..Side::default()
                        },
                        client,
                    )
                }
                _ => {
                    pending.expired += 1;
                    continue;
                }
            };
            self.emit(
                registry,
                &client,
                &server,
                "virtual_node",
                observed.failed,
                &observed.trace_id,
                max_active,
                now_ms,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        registry: &mut Registry,
        client: &Side,
        server: &Side,
        connection_type: &str,
        failed: bool,
        trace_hex: &str,
        max_active: usize,
        now_ms: i64,
    ) {
        let mut labels: Labels = vec![
            ("client".into(), client.service.clone()),
            ("server".into(), server.service.clone()),
        ];
        if !connection_type.is_empty() {
            labels.push(("connection_type".into(), connection_type.into()));
        }
        labels.sort();
        let exemplar = Some(trace_hex.trim_start_matches('0').to_string()).filter(|t| !t.is_empty());
        registry.add(REQUESTS, &labels, 1.0, max_active, now_ms);
        if failed {
            registry.add(FAILED, &labels, 1.0, max_active, now_ms);
        }
        registry.observe(
            SERVER_SECONDS,
            &labels,
            &self.bounds,
            server.seconds,
            exemplar.clone(),
            max_active,
            now_ms,
        );
        registry.observe(
            CLIENT_SECONDS,
            &labels,
            &self.bounds,
            client.seconds,
            exemplar,
            max_active,
            now_ms,
        );
    }

    /// The server name of a database call: `peer.service`, `server.address`,
    /// `network.peer.address[:port]`, else the database attribute found; `None` when the span
    /// has none of `database_name_attributes` (resource first, then span).
    fn database_peer(&self, resource: &[KeyValue], span: &Span) -> Option<String> {
        let db = self
            .first_attr(resource, &self.cfg.database_name_attributes)
            .or_else(|| self.first_attr(&span.attributes, &self.cfg.database_name_attributes))?;
        if let Some(p) =
            string_attr(&span.attributes, "peer.service").or_else(|| string_attr(&span.attributes, "server.address"))
        {
            return Some(p);
        }
        if let Some(addr) = string_attr(&span.attributes, "network.peer.address") {
            return Some(match any_attr(&span.attributes, "network.peer.port") {
                Some(port) => format!("{addr}:{port}"),
                None => addr,
            });
        }
        Some(db)
    }

    fn first_attr(&self, attrs: &[KeyValue], keys: &[String]) -> Option<String> {
        keys.iter().find_map(|k| any_attr(attrs, k).filter(|v| !v.is_empty()))
    }
}
