//! Synthetic traffic modelled on the OpenTelemetry demo: ten services, realistic trace trees
//! (depth and fan-out), span kinds, ~10 attributes per span with realistic cardinalities,
//! errors, slow outliers and events.
//!
//! Two data sets: `legacy` (the first benchmark's: one pod per service, ten resource
//! attributes, short values) and `demo` (as rich as OpenTelemetry-demo traffic: three pods per
//! service, one a canary in another namespace, fourteen resource attributes, long values such
//! as user agents and SQL, a fresh id per request in several attributes, gRPC message events
//! on RPC spans, and `exception` events with a stack trace on error spans).

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

/// Which data set to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Data {
    Legacy,
    Demo,
}

/// One generated trace: its id and spans per resource index.
pub struct GeneratedTrace {
    pub id: [u8; 16],
    pub spans: Vec<(usize, Span)>,
}

pub struct Generator {
    rng: StdRng,
    resources: Vec<Resource>,
    /// The service of each resource.
    resource_service: Vec<usize>,
    /// Demo data: the pod (resource) each service uses in the trace being generated.
    pods: Vec<usize>,
    data: Data,
    now_ns: u64,
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "python-requests/2.32.3 locust/2.32.4 (load generator; +https://github.com/open-telemetry/opentelemetry-demo)",
];

const QUERIES: &[&str] = &[
    "SELECT p.id, p.name, p.description, p.picture, p.price_units, p.price_nanos, p.categories FROM catalog.products p WHERE p.id = $1",
    "UPDATE carts SET items = jsonb_set(items, '{quantity}', to_jsonb($2::int)), updated_at = now() WHERE user_id = $1 RETURNING items",
    "INSERT INTO orders (order_id, user_id, shipping_tracking_id, total_units, total_nanos, currency_code, created_at) VALUES ($1, $2, $3, $4, $5, $6, now())",
];

fn uuid_like(rng: &mut StdRng) -> String {
    let a: u128 = rng.random();
    let h = format!("{a:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn stack_trace(service: &str, rng: &mut StdRng) -> String {
    let frames = rng.random_range(8..20);
    let mut out = format!("Error: upstream {service} request failed: rpc error: code = Unavailable\n");
    for f in 0..frames {
        out.push_str(&format!(
            "    at {service}.handlers.process{f} (/usr/src/app/{service}/handlers/process_{f}.js:{}:{})\n",
            rng.random_range(10..400),
            rng.random_range(5..80)
        ));
    }
    out
}

impl Generator {
    pub fn with_data(seed: u64, data: Data) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut resources = Vec::new();
        let mut resource_service = Vec::new();
        for (svc, (name, lang)) in SERVICES.iter().enumerate() {
            match data {
                Data::Legacy => {
                    let pod = rng.random_range(0..3);
                    resources.push(Resource {
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
                    });
                    resource_service.push(svc);
                }
                Data::Demo => {
                    for pod in 0..3 {
                        // The third pod is a canary of the next version in its own namespace.
                        let canary = pod == 2;
                        let namespace = if canary { "otel-demo-canary" } else { "otel-demo" };
                        let version = if canary { "2.1.0-rc.1" } else { "2.0.2" };
                        let hash = format!("{:x}", rng.random::<u32>());
                        let pod_name = format!("{name}-{hash}-{}", &uuid_like(&mut rng)[..5]);
                        let node = format!(
                            "ip-10-0-{}-{}.eu-west-1.compute.internal",
                            rng.random_range(0..4),
                            rng.random_range(1..250)
                        );
                        resources.push(Resource {
                            attributes: vec![
                                s("service.name", *name),
                                s("service.namespace", "opentelemetry-demo"),
                                s("service.version", version),
                                s("service.instance.id", uuid_like(&mut rng)),
                                s("k8s.pod.name", pod_name),
                                s("k8s.node.name", node.clone()),
                                s("k8s.namespace.name", namespace),
                                s(
                                    "k8s.deployment.name",
                                    format!("{name}{}", if canary { "-canary" } else { "" }),
                                ),
                                s("host.name", node),
                                s("cloud.provider", "aws"),
                                s("cloud.region", "eu-west-1"),
                                s("telemetry.sdk.name", "opentelemetry"),
                                s("telemetry.sdk.language", *lang),
                                s("telemetry.sdk.version", "1.28.0"),
                            ],
                            ..Default::default()
                        });
                        resource_service.push(svc);
                    }
                }
            }
        }
        Self {
            rng,
            resources,
            resource_service,
            pods: (0..SERVICES.len()).collect(),
            data,
            now_ns: 0,
        }
    }

    /// Resources in `batch` order, with their service.
    fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// The resource a span of `service` goes under in the current trace.
    fn resource_of_span(&self, service: usize) -> usize {
        match self.data {
            Data::Legacy => service,
            Data::Demo => self.pods[service],
        }
    }

    pub fn resource(&self, index: usize) -> Resource {
        self.resources[index].clone()
    }

    /// A trace starting at `start_ns`.
    pub fn trace(&mut self, start_ns: u64) -> GeneratedTrace {
        self.now_ns = start_ns;
        let mut id = [0u8; 16];
        self.rng.fill(&mut id);
        let mut spans = Vec::with_capacity(24);
        if self.data == Data::Demo {
            // Each service's pod for this trace (the canary gets a tenth of the traffic).
            for svc in 0..SERVICES.len() {
                let pod = if self.rng.random_bool(0.1) {
                    2
                } else {
                    self.rng.random_range(0..2)
                };
                self.pods[svc] = svc * 3 + pod;
            }
        }
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
        if self.data == Data::Demo {
            attributes[7] = s(
                "user_agent.original",
                USER_AGENTS[self.rng.random_range(0..USER_AGENTS.len())],
            );
            attributes.push(s(
                "url.query",
                format!(
                    "currencyCode=EUR&sessionId={}&ref=recommendation-{}",
                    uuid_like(&mut self.rng),
                    self.rng.random_range(0..40)
                ),
            ));
            attributes.push(s(
                "client.address",
                format!("10.0.{}.{}", self.rng.random_range(0..8), self.rng.random_range(1..250)),
            ));
            match service {
                2 => attributes.push(s("app.order.id", uuid_like(&mut self.rng))),
                3 => attributes.push(s("app.payment.transaction.id", uuid_like(&mut self.rng))),
                4 => attributes.push(s("app.shipping.tracking.id", uuid_like(&mut self.rng))),
                _ => {}
            }
        }
        let resource = self.resource_of_span(service);
        out.push((
            resource,
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
        let max_depth = if self.data == Data::Demo { 4 } else { 3 };
        if depth < max_depth {
            for (k, &callee) in callees.iter().enumerate() {
                // Demo data: every service with callees calls at least its first one.
                let forced = self.data == Data::Demo && k == 0;
                if !forced && !self.rng.random_bool(0.7) {
                    continue;
                }
                // A client span in the caller, the server span in the callee.
                let mut client_id = [0u8; 8];
                self.rng.fill(&mut client_id);
                let client_idx = out.len();
                let resource = self.resource_of_span(service);
                out.push((
                    resource,
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
                if self.data == Data::Demo {
                    // gRPC message events, as the gRPC instrumentations record them.
                    for (k, (kind, at)) in [("SENT", cursor + 20_000), ("RECEIVED", end + 40_000)]
                        .into_iter()
                        .enumerate()
                    {
                        out[client_idx].1.events.push(span::Event {
                            time_unix_nano: at,
                            name: "message".into(),
                            attributes: vec![
                                s("message.type", kind),
                                i("message.id", k as i64 + 1),
                                i("message.uncompressed_size", self.rng.random_range(40..4000)),
                            ],
                            dropped_attributes_count: 0,
                        });
                    }
                }
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
            let query = match self.data {
                Data::Legacy => "SELECT * FROM products WHERE id = ?",
                Data::Demo => QUERIES[self.rng.random_range(0..QUERIES.len())],
            };
            let resource = self.resource_of_span(service);
            out.push((
                resource,
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
                        s("db.query.text", query),
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
            let mut attributes = vec![
                s("exception.type", "RuntimeError"),
                s("exception.message", "connection reset by peer"),
            ];
            if self.data == Data::Demo {
                attributes.push(s(
                    "exception.stacktrace",
                    stack_trace(SERVICES[service].0, &mut self.rng),
                ));
            }
            let server = &mut out[server_idx].1;
            server.events.push(span::Event {
                time_unix_nano: end - 10_000,
                name: "exception".into(),
                attributes,
                dropped_attributes_count: 0,
            });
        }
        end
    }
}

/// Groups spans of several traces into one export request, one resource per service, like a
/// Collector's batch processor.
pub fn batch(generator: &Generator, traces: &[GeneratedTrace]) -> legato_proto::collector::ExportTraceServiceRequest {
    let mut per_resource: Vec<Vec<Span>> = vec![Vec::new(); generator.resource_count()];
    for t in traces {
        for (resource, span) in &t.spans {
            per_resource[*resource].push(span.clone());
        }
    }
    let resource_spans = per_resource
        .into_iter()
        .enumerate()
        .filter(|(_, spans)| !spans.is_empty())
        .map(|(resource, spans)| (resource, generator.resource_service[resource], spans))
        .map(|(resource, svc, spans)| ResourceSpans {
            resource: Some(generator.resource(resource)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The demo data set has the shape issue 13 names: 14 resource attributes, trees of
    /// 5-27 spans (~12 on average), ~450 bytes of OTLP per span, a canary pod, exception
    /// events with stack traces on error spans and gRPC message events on RPC spans.
    #[test]
    fn demo_data_is_as_rich_as_the_opentelemetry_demo() {
        let mut g = Generator::with_data(3, Data::Demo);
        let traces: Vec<GeneratedTrace> = (0..2000).map(|k| g.trace(1_000_000_000 + k)).collect();
        let sizes: Vec<usize> = traces.iter().map(|t| t.spans.len()).collect();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        let (min, max) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
        let request = batch(&g, &traces[..40]);
        let spans: usize = traces[..40].iter().map(|t| t.spans.len()).sum();
        let per_span = request.encoded_len() as f64 / spans as f64;
        let all: Vec<&Span> = traces.iter().flat_map(|t| t.spans.iter().map(|(_, s)| s)).collect();
        let stack_traces = all
            .iter()
            .flat_map(|s| &s.events)
            .filter(|e| e.attributes.iter().any(|a| a.key == "exception.stacktrace"))
            .count();
        let messages = all
            .iter()
            .flat_map(|s| &s.events)
            .filter(|e| e.name == "message")
            .count();
        let canary = request.resource_spans.iter().any(|rs| {
            rs.resource
                .as_ref()
                .unwrap()
                .attributes
                .iter()
                .any(|a| a.key == "k8s.namespace.name" && format!("{:?}", a.value).contains("canary"))
        });
        eprintln!("demo data: spans per trace {min}..{max}, mean {mean:.1}; {per_span:.0} bytes of OTLP per span");
        assert!(
            min >= 4 && max <= 40 && (9.0..=16.0).contains(&mean),
            "spans per trace {min}..{max}, mean {mean}"
        );
        assert!((300.0..=700.0).contains(&per_span), "{per_span} bytes per span");
        assert!(
            request
                .resource_spans
                .iter()
                .all(|rs| rs.resource.as_ref().unwrap().attributes.len() == 14)
        );
        assert!(stack_traces > 0 && messages > 0 && canary);
    }
}
