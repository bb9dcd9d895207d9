//! The service-graphs processor: pairs each call's client and server spans (by trace id and
//! the client span's id) into an edge between two services, with Tempo's series and labels so
//! Grafana draws the service map from them. Producer/consumer pairs are `messaging_system`
//! edges; a client span naming a database is a `database` edge at once; a half left alone for
//! `wait` becomes a `virtual_node` edge when it names its peer (or, for a root server span, an
//! edge from `user`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;
use legato_proto::span_wire::{Attrs, ResourceRef, SpanRef};
use legato_proto::trace::span::SpanKind;
use legato_proto::trace::status::StatusCode;
use serde::{Deserialize, Serialize};

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
    trace_id: [u8; 16],
}

#[derive(Debug, Default)]
struct Edge {
    client: Option<Side>,
    server: Option<Side>,
    messaging: bool,
}

/// Trace id and the client span's id: the two halves of a call share it.
type EdgeKey = ([u8; 16], [u8; 8]);

/// A span id as a key part (ids of another length are zero-padded or cut).
fn span_key(id: &[u8]) -> [u8; 8] {
    let mut k = [0u8; 8];
    let n = id.len().min(8);
    k[..n].copy_from_slice(&id[..n]);
    k
}

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

    /// Records one span of a trace; completed edges go to `registry` at once.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        pending: &mut Pending,
        registry: &mut Registry,
        trace_id: [u8; 16],
        resource: &ResourceRef<'_>,
        span: &SpanRef<'_>,
        max_active: usize,
        now_ms: i64,
    ) {
        let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
        let client = match kind {
            SpanKind::Client | SpanKind::Producer => true,
            SpanKind::Server | SpanKind::Consumer => false,
            _ => return,
        };
        if resource.service_name.is_empty() {
            return;
        }
        let side = Side {
            service: resource.service_name.to_string(),
            seconds: span.seconds(),
            failed: span.status_code == StatusCode::Error as i32,
            peer: first_attr(&span.attributes, &self.cfg.peer_attributes),
            root: span.parent_span_id.is_empty(),
            trace_id,
        };
        if client {
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
                    trace_id,
                    max_active,
                    now_ms,
                );
                return;
            }
            let key = (trace_id, span_key(span.span_id));
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
        } else {
            let key = (trace_id, span_key(span.parent_span_id));
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
        let edge = pending.edges.entry(key).or_insert_with(|| {
            pending.order.push_back((expires_ms, key));
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
            self.emit(registry, c, s, kind, failed, c.trace_id, max_active, now_ms);
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
                observed.trace_id,
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
        trace_id: [u8; 16],
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
        let hex = legato_model::TraceId(trace_id).to_hex();
        let exemplar = Some(hex.trim_start_matches('0')).filter(|t| !t.is_empty());
        registry.add(REQUESTS, &labels, 1.0, max_active, now_ms);
        if failed {
            registry.add(FAILED, &labels, 1.0, max_active, now_ms);
        }
        registry.observe(
            SERVER_SECONDS,
            &labels,
            &self.bounds,
            server.seconds,
            exemplar,
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
    fn database_peer(&self, resource: &ResourceRef<'_>, span: &SpanRef<'_>) -> Option<String> {
        let db = first_attr(&resource.attributes, &self.cfg.database_name_attributes)
            .or_else(|| first_attr(&span.attributes, &self.cfg.database_name_attributes))?;
        let attrs = &span.attributes;
        if let Some(p) = attrs.str("peer.service").or_else(|| attrs.str("server.address")) {
            return Some(p.to_string());
        }
        if let Some(addr) = attrs.str("network.peer.address") {
            return Some(match attrs.get("network.peer.port").and_then(|p| p.label()) {
                Some(port) => format!("{addr}:{port}"),
                None => addr.to_string(),
            });
        }
        Some(db)
    }
}

/// The first of `keys` that `attrs` has with a non-empty value, as a label.
fn first_attr(attrs: &Attrs<'_>, keys: &[String]) -> Option<String> {
    keys.iter()
        .find_map(|k| attrs.get(k).and_then(|v| v.label()).filter(|v| !v.is_empty()))
        .map(|v| v.into_owned())
}
