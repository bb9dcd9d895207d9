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
    /// Resource or span attributes added as labels: one label per attribute from the side
    /// that completed the edge, or `client_<attr>` and `server_<attr>` with
    /// `enable_client_server_prefix`.
    pub dimensions: Vec<String>,
    pub enable_client_server_prefix: bool,
    /// Virtual-node edges carry `virtual_node="client"` or `"server"` (the side that has no span).
    pub enable_virtual_node_label: bool,
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
            dimensions: Vec::new(),
            enable_client_server_prefix: false,
            enable_virtual_node_label: false,
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
    /// Values of the configured `dimensions` (resource first, then span), in their order.
    dimensions: Vec<Option<String>>,
}

#[derive(Debug, Default)]
struct Edge {
    client: Option<Side>,
    server: Option<Side>,
    messaging: bool,
}

/// What an emitted edge is besides its two sides.
#[derive(Clone, Copy)]
struct EdgeInfo<'a> {
    connection_type: &'a str,
    failed: bool,
    trace_id: [u8; 16],
    /// The side whose dimensions win for unprefixed labels (the one that completed the edge).
    last_client: bool,
    /// `virtual_node` label value, when enabled and the edge is virtual.
    virtual_node: Option<&'a str>,
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
            dimensions: self
                .cfg
                .dimensions
                .iter()
                .map(|d| {
                    first_attr(&resource.attributes, std::slice::from_ref(d))
                        .or_else(|| first_attr(&span.attributes, std::slice::from_ref(d)))
                })
                .collect(),
        };
        if client {
            if let Some(db) = self.database_peer(resource, span) {
                // A database call is an edge at once: nobody answers it with a span.
                let server = Side {
                    service: db,
                    seconds: side.seconds,
                    ..Side::default()
                };
                let info = EdgeInfo {
                    connection_type: "database",
                    failed: side.failed,
                    trace_id,
                    last_client: true,
                    virtual_node: None,
                };
                self.emit(registry, &side, &server, info, max_active, now_ms);
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
            let info = EdgeInfo {
                connection_type: if edge.messaging { "messaging_system" } else { "" },
                failed: c.failed || s.failed,
                trace_id: c.trace_id,
                last_client: client,
                virtual_node: None,
            };
            self.emit(registry, c, s, info, max_active, now_ms);
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
            let virtual_label = self.cfg.enable_virtual_node_label;
            let (client, server, observed, missing) = match (edge.client, edge.server) {
                (None, Some(server)) if server.root => {
                    let name = server.peer.clone().unwrap_or_else(|| "user".into());
                    (
                        Side {
                            service: name,
                            ..Side::default()
                        },
                        server.clone(),
                        server,
                        "client",
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
                        "server",
                    )
                }
                _ => {
                    pending.expired += 1;
                    continue;
                }
            };
            let info = EdgeInfo {
                connection_type: "virtual_node",
                failed: observed.failed,
                trace_id: observed.trace_id,
                last_client: missing == "server",
                virtual_node: virtual_label.then_some(missing),
            };
            self.emit(registry, &client, &server, info, max_active, now_ms);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        registry: &mut Registry,
        client: &Side,
        server: &Side,
        info: EdgeInfo<'_>,
        max_active: usize,
        now_ms: i64,
    ) {
        let mut labels: Labels = vec![
            ("client".into(), client.service.clone()),
            ("server".into(), server.service.clone()),
        ];
        if !info.connection_type.is_empty() {
            labels.push(("connection_type".into(), info.connection_type.into()));
        }
        let max_name = usize::MAX;
        for (i, dim) in self.cfg.dimensions.iter().enumerate() {
            let value = |side: &Side| side.dimensions.get(i).cloned().flatten();
            if self.cfg.enable_client_server_prefix {
                for (prefix, side) in [("client", client), ("server", server)] {
                    if let Some(v) = value(side) {
                        labels.push((crate::spanmetrics::label_name(&format!("{prefix}_{dim}"), max_name), v));
                    }
                }
            } else {
                let (last, other) = if info.last_client {
                    (client, server)
                } else {
                    (server, client)
                };
                if let Some(v) = value(last).or_else(|| value(other)) {
                    labels.push((crate::spanmetrics::label_name(dim, max_name), v));
                }
            }
        }
        if let Some(v) = info.virtual_node {
            labels.push(("virtual_node".into(), v.into()));
        }
        labels.sort();
        labels.dedup_by(|later, earlier| later.0 == earlier.0);
        let failed = info.failed;
        let exemplar = Some(info.trace_id).filter(|id| *id != [0; 16]);
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use legato_proto::common::{AnyValue, KeyValue, any_value};
    use legato_proto::resource::Resource;
    use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    /// A string attribute.
    pub(crate) fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn batch(service: &str, env: &str, span: Span) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("deployment.environment", env)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// One frontend → checkout call, plus a client span to an uninstrumented peer: the series'
    /// label sets under the given configuration.
    fn label_sets(cfg: ServiceGraphsConfig) -> Vec<Vec<(String, String)>> {
        let client = Span {
            span_id: vec![1; 8],
            parent_span_id: vec![9; 8],
            kind: 3,
            attributes: vec![kv("http.method", "GET")],
            ..Default::default()
        };
        let server = Span {
            span_id: vec![2; 8],
            parent_span_id: vec![1; 8],
            kind: 2,
            attributes: vec![kv("http.method", "POST")],
            ..Default::default()
        };
        let to_peer = Span {
            span_id: vec![3; 8],
            parent_span_id: vec![9; 8],
            kind: 3,
            attributes: vec![kv("peer.service", "payment-gateway")],
            ..Default::default()
        };
        let trace = legato_proto::tempopb::Trace {
            resource_spans: vec![
                batch("frontend", "prod", client),
                batch("checkout", "canary", server),
                batch("frontend", "prod", to_peer),
            ],
        };
        let bytes = trace.encode_to_vec();
        let sg = ServiceGraphs::new(cfg);
        let (mut pending, mut registry) = (Pending::default(), Registry::default());
        legato_proto::span_wire::for_each_span(&bytes, |r, s| {
            sg.observe(&mut pending, &mut registry, [7; 16], r, s, 0, 1_000);
        })
        .unwrap();
        sg.expire(&mut pending, &mut registry, 0, 1_000_000);
        let mut sets: Vec<Vec<(String, String)>> = registry
            .collect(1_000_000, &Vec::new(), false)
            .into_iter()
            .filter(|t| t.labels.iter().any(|l| l.name == "__name__" && l.value == REQUESTS))
            .map(|t| {
                t.labels
                    .into_iter()
                    .filter(|l| l.name != "__name__")
                    .map(|l| (l.name, l.value))
                    .collect()
            })
            .collect();
        sets.sort();
        sets
    }

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sorted(mut sets: Vec<Vec<(String, String)>>) -> Vec<Vec<(String, String)>> {
        sets.sort();
        sets
    }

    #[test]
    fn dimensions_prefixes_and_virtual_node_labels() {
        let plain = label_sets(ServiceGraphsConfig {
            dimensions: vec!["deployment.environment".into(), "http.method".into()],
            ..Default::default()
        });
        assert_eq!(
            plain,
            sorted(vec![
                // The server completed the edge: its values win.
                set(&[
                    ("client", "frontend"),
                    ("deployment_environment", "canary"),
                    ("http_method", "POST"),
                    ("server", "checkout")
                ]),
                set(&[
                    ("client", "frontend"),
                    ("connection_type", "virtual_node"),
                    ("deployment_environment", "prod"),
                    ("server", "payment-gateway")
                ]),
            ])
        );
        let prefixed = label_sets(ServiceGraphsConfig {
            dimensions: vec!["deployment.environment".into()],
            enable_client_server_prefix: true,
            enable_virtual_node_label: true,
            ..Default::default()
        });
        assert_eq!(
            prefixed,
            sorted(vec![
                set(&[
                    ("client", "frontend"),
                    ("client_deployment_environment", "prod"),
                    ("server", "checkout"),
                    ("server_deployment_environment", "canary")
                ]),
                set(&[
                    ("client", "frontend"),
                    ("client_deployment_environment", "prod"),
                    ("connection_type", "virtual_node"),
                    ("server", "payment-gateway"),
                    ("virtual_node", "server"),
                ]),
            ])
        );
    }
}
