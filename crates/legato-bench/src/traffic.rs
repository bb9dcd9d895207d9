//! Synthetic traffic modelled on the OpenTelemetry demo: ten services, realistic trace trees
//! (depth and fan-out), span kinds, ~10 attributes per span with realistic cardinalities,
//! errors, slow outliers and events.

use legato_proto::common::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status, span};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const SERVICES: &[(&str, &str)] = &[
    ("frontend", "nodejs"),
    ("cart", "dotnet"),
    ("checkout", "go"),
    ("payment", "nodejs"),
    ("shipping", "rust"),
    ("email", "ruby"),
    ("currency", "cpp"),
    ("product-catalog", "go"),
    ("recommendation", "python"),
    ("ad", "java"),
];

const ROUTES: &[&str] = &[
    "/api/cart",
    "/api/checkout",
    "/api/products/{id}",
    "/api/recommendations",
    "/api/currency",
    "/api/shipping",
    "/",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT"];
const DB: &[&str] = &["redis", "postgresql", "mongodb"];
const CALLS: &[(usize, &[usize])] = &[(0, &[1, 7, 8, 9, 6]), (2, &[1, 3, 4, 5, 6, 7]), (8, &[7]), (4, &[6])];

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, Value::IntValue(v))
}

/// One generated trace: its id and spans per service index.
pub struct GeneratedTrace {
    pub id: [u8; 16],
    pub spans: Vec<(usize, Span)>,
}

pub struct Generator {
    rng: StdRng,
    resources: Vec<Resource>,
    now_ns: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let resources = SERVICES
            .iter()
            .map(|(name, lang)| {
                let pod = rng.random_range(0..3);
                Resource {
                    attributes: vec![
                        s("service.name", *name),
                        s("service.namespace", "opentelemetry-demo"),
                        s("service.version", "1.12.0"),
                        s("deployment.environment", "production"),
                        s("k8s.namespace.name", "otel-demo"),
                        s(
                            "k8s.pod.name",
                            format!("{name}-7d9f8b-{pod}x{}", rng.random_range(100..999)),
                        ),
                        s(
                            "k8s.node.name",
                            format!(
                                "ip-10-0-{}-{}.ec2.internal",
                                rng.random_range(0..4),
                                rng.random_range(1..250)
                            ),
                        ),
                        s("telemetry.sdk.language", *lang),
                        s("telemetry.sdk.name", "opentelemetry"),
                        s("host.arch", "amd64"),
                    ],
                    ..Default::default()
                }
            })
            .collect();
        Self {
            rng,
            resources,
            now_ns: 0,
        }
    }

    pub fn resource(&self, service: usize) -> Resource {
        self.resources[service].clone()
    }

    /// A trace starting at `start_ns`.
    pub fn trace(&mut self, start_ns: u64) -> GeneratedTrace {
        self.now_ns = start_ns;
        let mut id = [0u8; 16];
        self.rng.fill(&mut id);
        let mut spans = Vec::with_capacity(24);
        let slow = self.rng.random_bool(0.01);
        let root_service = if self.rng.random_bool(0.8) { 0 } else { 2 };
        self.span(&id, root_service, None, start_ns, 0, slow, &mut spans);
        GeneratedTrace { id, spans }
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        trace: &[u8; 16],
        service: usize,
        parent: Option<[u8; 8]>,
        start: u64,
        depth: usize,
        slow: bool,
        out: &mut Vec<(usize, Span)>,
    ) -> u64 {
        let mut span_id = [0u8; 8];
        self.rng.fill(&mut span_id);
        let server_idx = out.len();
        let route = ROUTES[self.rng.random_range(0..ROUTES.len())];
        let method = METHODS[self.rng.random_range(0..METHODS.len())];
        let error = self.rng.random_bool(0.02);
        let mut attributes = vec![
            s("http.request.method", method),
            s("http.route", route),
            i("http.response.status_code", if error { 500 } else { 200 }),
            s("url.scheme", "http"),
            s("server.address", SERVICES[service].0),
            i("server.port", 8080),
            s("network.protocol.version", "1.1"),
            s(
                "user_agent.original",
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
            ),
            s("app.user.id", format!("user-{}", self.rng.random_range(0..5000))),
            s("app.session.id", format!("{:016x}", self.rng.random::<u64>())),
        ];
        if service == 7 || service == 1 {
            attributes.push(s(
                "app.product.id",
                format!("OLJCESPC7Z{}", self.rng.random_range(0..10)),
            ));
        }
        out.push((
            service,
            Span {
                trace_id: trace.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
                name: format!("{method} {route}"),
                kind: 2,
                start_time_unix_nano: start,
                attributes,
                ..Default::default()
            },
        ));
        let mut cursor = start + self.rng.random_range(50_000..400_000);
        let callees: &[usize] = CALLS
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, c)| *c)
            .unwrap_or(&[]);
        if depth < 3 {
            for &callee in callees {
                if !self.rng.random_bool(0.7) {
                    continue;
                }
                // A client span in the caller, the server span in the callee.
                let mut client_id = [0u8; 8];
                self.rng.fill(&mut client_id);
                let client_idx = out.len();
                out.push((
                    service,
                    Span {
                        trace_id: trace.to_vec(),
                        span_id: client_id.to_vec(),
                        parent_span_id: span_id.to_vec(),
                        name: format!("{}/{}", SERVICES[callee].0, "Call"),
                        kind: 3,
                        start_time_unix_nano: cursor,
                        attributes: vec![
                            s("rpc.system", "grpc"),
                            s("rpc.service", format!("oteldemo.{}Service", SERVICES[callee].0)),
                            s("rpc.method", "Call"),
                            s("server.address", SERVICES[callee].0),
                            i("server.port", 8080),
                            i("rpc.grpc.status_code", 0),
                        ],
                        ..Default::default()
                    },
                ));
                let end = self.span(trace, callee, Some(client_id), cursor + 100_000, depth + 1, slow, out);
                let client_end = end + 80_000;
                out[client_idx].1.end_time_unix_nano = client_end;
                cursor = client_end + self.rng.random_range(10_000..50_000);
            }
        }
        if matches!(service, 1 | 7 | 3) {
            let db = DB[service % DB.len()];
            let mut db_id = [0u8; 8];
            self.rng.fill(&mut db_id);
            let dur = if slow {
                200_000_000
            } else {
                self.rng.random_range(200_000..3_000_000)
            };
            out.push((
                service,
                Span {
                    trace_id: trace.to_vec(),
                    span_id: db_id.to_vec(),
                    parent_span_id: span_id.to_vec(),
                    name: format!("{db} query"),
                    kind: 3,
                    start_time_unix_nano: cursor,
                    end_time_unix_nano: cursor + dur,
                    attributes: vec![
                        s("db.system", db),
                        s("db.operation.name", "SELECT"),
                        s("db.namespace", "shop"),
                        s("db.query.text", "SELECT * FROM products WHERE id = ?"),
                        s("server.address", format!("{db}.otel-demo.svc")),
                        i("server.port", 5432),
                    ],
                    ..Default::default()
                },
            ));
            cursor += dur;
        }
        let end = cursor + self.rng.random_range(20_000..200_000);
        let server = &mut out[server_idx].1;
        server.end_time_unix_nano = end;
        if error {
            server.status = Some(Status {
                code: 2,
                message: "internal error".into(),
            });
            server.events.push(span::Event {
                time_unix_nano: end - 10_000,
                name: "exception".into(),
                attributes: vec![
                    s("exception.type", "RuntimeError"),
                    s("exception.message", "connection reset by peer"),
                ],
                dropped_attributes_count: 0,
            });
        }
        end
    }
}

/// Groups spans of several traces into one export request, one resource per service, like a
/// Collector's batch processor.
pub fn batch(generator: &Generator, traces: &[GeneratedTrace]) -> legato_proto::collector::ExportTraceServiceRequest {
    let mut per_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    for t in traces {
        for (svc, span) in &t.spans {
            per_service[*svc].push(span.clone());
        }
    }
    let resource_spans = per_service
        .into_iter()
        .enumerate()
        .filter(|(_, spans)| !spans.is_empty())
        .map(|(svc, spans)| ResourceSpans {
            resource: Some(generator.resource(svc)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: format!("{}-instrumentation", SERVICES[svc].0),
                    version: "1.0.0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    legato_proto::collector::ExportTraceServiceRequest { resource_spans }
}
