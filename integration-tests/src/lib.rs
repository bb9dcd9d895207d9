//! Helpers for end-to-end tests that start the real `legato` binary (and real S3, GCS and
//! Azure servers or emulators) as separate processes on loopback.

pub mod emulators;
pub mod s3_proxy;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use legato_proto::collector::ExportTraceServiceRequest;
use legato_proto::common::{AnyValue, InstrumentationScope, KeyValue, any_value};
use legato_proto::resource::Resource;
use legato_proto::tempopb::TraceByIdResponse;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

/// The `legato` binary built by this workspace (override with `LEGATO_BIN`).
pub fn legato_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("LEGATO_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/legato")
}

/// A loopback port nothing listens on, for a process a test starts.
///
/// Picked at random below Linux's ephemeral range (32768–60999): a port the kernel handed
/// out for `127.0.0.1:0` is free only until the next outgoing connection of any process
/// takes it as its source port, which made start-ups fail with "Address already in use"
/// when tests ran in parallel. Ports already handed out by this process are not reused.
pub fn free_port() -> u16 {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut rng = rand::rng();
    for _ in 0..10_000 {
        let port = rng.random_range(15_000..32_000);
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port in 15000..32000")
}

/// Ports of one Legato process.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub grpc: u16,
    pub otlp_grpc: u16,
    pub otlp_http: u16,
}

impl Ports {
    pub fn free() -> Self {
        Self {
            http: free_port(),
            grpc: free_port(),
            otlp_grpc: free_port(),
            otlp_http: free_port(),
        }
    }
}

/// The `server` and `distributor` sections: every port on loopback.
fn listeners_yaml(ports: Ports) -> String {
    format!(
        "server:
  http_listen_address: 127.0.0.1
  http_listen_port: {http}
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: {grpc}
  log_level: info
distributor:
  receivers:
    otlp:
      protocols:
        grpc:
          endpoint: 127.0.0.1:{otlp_grpc}
        http:
          endpoint: 127.0.0.1:{otlp_http}
",
        http = ports.http,
        grpc = ports.grpc,
        otlp_grpc = ports.otlp_grpc,
        otlp_http = ports.otlp_http,
    )
}

/// The config every test starts from: loopback ports, storage under `dir`, fast idle cuts.
/// `storage_trace` is the YAML body of `storage.trace` besides `wal` (indented 4 spaces);
/// `extra` is appended at the top level.
pub fn config_yaml(ports: Ports, dir: &Path, storage_trace: Option<&str>, extra: &str) -> String {
    let default_storage = format!(
        "    backend: local\n    local:\n      path: {}\n",
        dir.join("blocks").display()
    );
    format!(
        "target: all
{listeners}ingester:
  trace_idle_period: 1s
  flush_check_period: 200ms
  max_block_duration: 5m
storage:
  trace:
    wal:
      path: {wal}
{storage}{extra}",
        listeners = listeners_yaml(ports),
        wal = dir.join("wal").display(),
        storage = storage_trace.map(str::to_string).unwrap_or(default_storage),
    )
}

/// A running `legato` process.
pub struct Legato {
    pub ports: Ports,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// Set when the HTTP port serves TLS: the CA that signed its certificate.
    pub tls_ca: Option<PathBuf>,
}

impl Legato {
    /// Writes `yaml` next to the data and starts the binary; waits for `/ready`.
    pub fn start(dir: &Path, ports: Ports, yaml: &str) -> Self {
        Self::start_with_ca(dir, ports, yaml, None)
    }

    /// Like `start`, for a config whose HTTP port serves TLS with a certificate `ca` signed.
    pub fn start_with_ca(dir: &Path, ports: Ports, yaml: &str, ca: Option<PathBuf>) -> Self {
        std::fs::create_dir_all(dir).expect("test dir");
        let config = dir.join("legato.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let mut me = Self {
            ports,
            config,
            log: dir.join("legato.log"),
            child: None,
            tls_ca: ca,
        };
        me.spawn();
        me
    }

    /// Starts with the default test config (`config_yaml` with local storage) on free ports.
    pub fn start_default(dir: &Path) -> Self {
        let ports = Ports::free();
        Self::start(dir, ports, &config_yaml(ports, dir, None, ""))
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(legato_bin())
            .arg(format!("-config.file={}", self.config.display()))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build the workspace first)",
                    legato_bin().display()
                )
            });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.url("/ready");
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("legato exited during start-up ({status}); log:\n{}", self.log_text());
            }
            let mut curl = Command::new("curl");
            if let Some(ca) = &self.tls_ca {
                curl.arg("--cacert").arg(ca);
            }
            if let Ok(out) = curl
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
                .output()
                && out.stdout == b"200"
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("legato did not become ready; log:\n{}", self.log_text());
    }

    /// The process id of the running binary.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        match self.tls_ca {
            Some(_) => format!("https://localhost:{}{path}", self.ports.http),
            None => format!("http://127.0.0.1:{}{path}", self.ports.http),
        }
    }

    pub fn otlp_http_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.ports.otlp_http)
    }

    pub fn otlp_grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.otlp_grpc)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("legato did not stop after SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Legato {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An OTLP request with one trace of `spans` spans (ids derived from `seed`), starting a
/// minute ago: recent enough that no retention applies.
pub fn otlp_request(seed: u64, spans: u64) -> (ExportTraceServiceRequest, [u8; 16]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1_700_000_000_000_000_000);
    otlp_request_at(seed, spans, now - 60_000_000_000)
}

/// `otlp_request` with spans starting at `start_unix_nano`.
pub fn otlp_request_at(seed: u64, spans: u64, start_unix_nano: u64) -> (ExportTraceServiceRequest, [u8; 16]) {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    trace_id[8..].copy_from_slice(&(seed + 1).to_be_bytes());
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: trace_id.to_vec(),
            span_id: (seed * 1000 + i + 1).to_be_bytes().to_vec(),
            parent_span_id: if i == 0 {
                vec![]
            } else {
                (seed * 1000 + 1).to_be_bytes().to_vec()
            },
            name: format!("span-{i}"),
            kind: 2,
            start_time_unix_nano: start_unix_nano + i * 1_000_000,
            end_time_unix_nano: start_unix_nano + i * 1_000_000 + 500_000,
            attributes: vec![kv("http.method", "GET")],
            status: Some(Status::default()),
            ..Default::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "it-service")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "it".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    (request, trace_id)
}

/// Fetches `/api/v2/traces/{id}` as protobuf and returns its span count (0 when absent).
pub async fn span_count_v2(client: &reqwest::Client, legato: &Legato, trace_id: &[u8]) -> usize {
    let (status, spans) = trace_by_id_v2(client, legato, trace_id).await;
    assert_eq!(status, 200);
    spans
}

/// Trace-by-id v2 as protobuf: the HTTP status and, on 200, the trace's span count.
pub async fn trace_by_id_v2(client: &reqwest::Client, legato: &Legato, trace_id: &[u8]) -> (u16, usize) {
    let resp = client
        .get(legato.url(&format!("/api/v2/traces/{}", hex::encode(trace_id))))
        .header("accept", "application/protobuf")
        .send()
        .await
        .expect("query");
    let status = resp.status().as_u16();
    if status != 200 {
        return (status, 0);
    }
    let body = resp.bytes().await.expect("body");
    let decoded = TraceByIdResponse::decode(body).expect("TraceByIDResponse");
    (
        status,
        legato_proto::span_count(&decoded.trace.map(|t| t.resource_spans).unwrap_or_default()),
    )
}

/// POSTs an OTLP protobuf request; returns the HTTP status and body.
pub async fn post_otlp(
    client: &reqwest::Client,
    legato: &Legato,
    request: &ExportTraceServiceRequest,
) -> (u16, Vec<u8>) {
    post_otlp_bytes(client, legato, request.encode_to_vec()).await
}

/// POSTs an OTLP protobuf body as given (well-formed or not); returns the status and body.
pub async fn post_otlp_bytes(client: &reqwest::Client, legato: &Legato, body: Vec<u8>) -> (u16, Vec<u8>) {
    let resp = client
        .post(legato.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("export");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
}

/// A real S3-compatible server process (`moto_server` from PyPI `moto[server]`) on loopback.
pub struct S3Server {
    pub port: u16,
    child: Child,
}

impl S3Server {
    /// Starts `moto_server` (or `$LEGATO_S3_SERVER`) and creates `bucket`.
    pub async fn start(bucket: &str) -> Self {
        let program = std::env::var("LEGATO_S3_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = free_port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program}: {e}; install it with `pip install 'moto[server]'` (ci/setup.sh does)")
            });
        let server = Self { port, child };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(resp) = client.put(format!("{}/{bucket}", server.endpoint())).send().await {
                assert!(
                    resp.status().is_success(),
                    "creating bucket {bucket}: {}",
                    resp.status()
                );
                return server;
            }
            assert!(Instant::now() < deadline, "{program} did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `storage.trace` YAML fragment (indented for `config_yaml`) for `bucket`.
    pub fn storage_yaml(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "    backend: s3\n    s3:\n      bucket: {bucket}\n      endpoint: 127.0.0.1:{}\n      region: us-east-1\n      access_key: test\n      secret_key: test\n      insecure: true\n      forcepathstyle: true\n      prefix: \"{prefix}\"\n",
            self.port
        )
    }

    /// An object_store client for the bucket, to inspect what Legato wrote.
    pub fn store(&self, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("s3 client");
        std::sync::Arc::new(s3)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The object store Legato builds from a `storage.trace` YAML fragment (as `config_yaml`
/// takes it, indented 4 spaces): the same client, prefix and settings the binary would use.
pub fn store_from_yaml(storage_trace: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
    let dedented: String = storage_trace
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let cfg: legato_storage::TraceStorageConfig =
        serde_yaml::from_str(&dedented).unwrap_or_else(|e| panic!("storage.trace {dedented}: {e}"));
    cfg.validate().expect("valid storage.trace");
    legato_storage::build_object_store(&cfg).expect("object store")
}

/// A node's gossip port and the seed it joins through.
#[derive(Debug, Clone, Copy)]
pub struct Gossip {
    pub port: u16,
    pub seed: u16,
}

/// Where the nodes of a test cluster live: their directories under `root`, one S3 bucket,
/// one gossip seed.
#[derive(Debug, Clone, Copy)]
pub struct ClusterSite<'a> {
    pub root: &'a Path,
    pub s3_port: u16,
    pub seed_port: u16,
}

impl ClusterSite<'_> {
    /// Starts node `name` (in `root/name`) with role `target`, gossiping on `gossip`, from
    /// `cluster_node_yaml` with `extra`, edited by `edit`.
    pub fn start(
        &self,
        target: &str,
        name: &str,
        gossip: u16,
        extra: &str,
        edit: impl FnOnce(String) -> String,
    ) -> (Legato, Ports) {
        let dir = self.root.join(name);
        let ports = Ports::free();
        let gossip = Gossip {
            port: gossip,
            seed: self.seed_port,
        };
        let yaml = edit(cluster_node_yaml(
            target,
            name,
            ports,
            gossip,
            &dir,
            self.s3_port,
            extra,
        ));
        (Legato::start(&dir, ports, &yaml), ports)
    }
}

/// A node config with one replica per trace instead of `cluster_node_yaml`'s three.
pub fn one_replica(yaml: String) -> String {
    yaml.replace("replication_factor: 3", "replication_factor: 1")
}

/// The config of one node of a microservices cluster on loopback: role `target`, gossip on
/// `gossip_port` seeded by `seeds`, S3 (`s3_port`, bucket `traces`) as the bucket.
/// `extra` is appended at the top level (it must not repeat `ingester`, `storage` or
/// `memberlist`).
pub fn cluster_node_yaml(
    target: &str,
    name: &str,
    ports: Ports,
    gossip: Gossip,
    dir: &Path,
    s3_port: u16,
    extra: &str,
) -> String {
    let seed = format!("\"127.0.0.1:{}\"", gossip.seed);
    let gossip_port = gossip.port;
    format!(
        "target: {target}
{listeners}memberlist:
  node_name: {name}
  bind_addr: [127.0.0.1]
  bind_port: {gossip_port}
  join_members: [{seeds}]
  gossip_interval: 100ms
ingester:
  trace_idle_period: 1s
  flush_check_period: 200ms
  max_block_duration: 3s
  complete_block_timeout: 1m
  lifecycler:
    ring:
      replication_factor: 3
    num_tokens: 64
storage:
  trace:
    blocklist_poll: 1s
    wal:
      path: {wal}
    backend: s3
    s3:
      bucket: traces
      endpoint: 127.0.0.1:{s3_port}
      region: us-east-1
      access_key: test
      secret_key: test
      insecure: true
      forcepathstyle: true
{extra}",
        listeners = listeners_yaml(ports),
        seeds = seed,
        wal = dir.join("wal").display(),
    )
}

/// A free UDP port for gossip.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free udp port")
}

/// GETs `url` and parses the body as JSON (panics on any failure).
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    get_json_query(client, url, &[("", ""); 0]).await
}

/// GETs `url` with query parameters `params` and returns the body as JSON (panics on any
/// failure).
pub async fn get_json_query<P: serde::Serialize + ?Sized>(
    client: &reqwest::Client,
    url: &str,
    params: &P,
) -> serde_json::Value {
    let resp = client.get(url).query(params).send().await.expect("GET");
    resp.json().await.expect("JSON body")
}

/// GETs `url` and returns the body as text (panics on any failure).
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    let resp = client.get(url).send().await.expect("GET");
    resp.text().await.expect("text body")
}

/// The value of the sample whose line starts with `series` (a name with its labels, as
/// Prometheus's text format writes it) in a `/metrics` page; 0 when absent.
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
