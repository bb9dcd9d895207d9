//! `legato-bench`: a load generator and query driver that speaks only public protocols (OTLP
//! and Tempo's HTTP API), so it can drive Legato or any other Tempo-compatible backend.

mod encode;
mod pool;
mod servicemap;
mod traffic;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use legato_proto::collector::ExportTraceServiceRequest;
use legato_proto::collector::trace_service_client::TraceServiceClient;
use legato_proto::tempopb::TraceByIdResponse;
use prost::Message;
use tokio::sync::Mutex;

/// The allocator Legato runs with, so `encode` measures the encoder as Legato runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "legato-bench",
    about = "Load generator and query driver for Tempo-compatible backends"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send OpenTelemetry-demo-like traces over OTLP.
    Ingest(IngestArgs),
    /// Trace-by-id lookups of traces sent by `ingest`, checking each returns all its spans.
    Query(QueryArgs),
    /// Stored bytes per span of the blocks under a local directory.
    Blocks(BlocksArgs),
    /// Writes hours of metrics-generator history for a demo topology into a local bucket.
    History(servicemap::HistoryArgs),
    /// Grafana's service-map and RED queries against `/prometheus`, with latencies.
    ServiceMap(servicemap::ServiceMapArgs),
    /// The block encoder alone on one thread: decode + encode spans per CPU second.
    Encode(encode::EncodeArgs),
}

#[derive(Parser)]
struct IngestArgs {
    /// OTLP/gRPC endpoint, HOST:PORT.
    #[arg(long, conflicts_with = "otlp_http")]
    otlp_grpc: Option<String>,
    /// OTLP/HTTP URL, e.g. http://localhost:4318/v1/traces.
    #[arg(long)]
    otlp_http: Option<String>,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Spans per second, or `max`.
    #[arg(long, default_value = "max")]
    rate: String,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    tenant: Option<String>,
    /// Pre-encode this many export requests per connection and resend them with fresh trace
    /// ids (0 = build and encode every request). Makes the generator cheap, so a receiver on
    /// the same machine gets the CPU; the data then repeats except for the ids.
    #[arg(long, default_value_t = 0)]
    pool: usize,
    /// Traces per export request (a Collector batch).
    #[arg(long, default_value_t = 40)]
    traces_per_batch: usize,
    /// The data set: `demo` (as rich as OpenTelemetry-demo traffic) or `legacy` (the first
    /// benchmark's leaner spans, for comparison with earlier figures).
    #[arg(long, value_enum, default_value = "legacy")]
    data: traffic::Data,
    /// Where to write the ids of the traces sent (`hex span_count` per line).
    #[arg(long, default_value = "trace-ids.txt")]
    trace_ids: PathBuf,
    /// Spread trace start times evenly over this much of the past (e.g. `1h`), so a short
    /// run stores data as a long one would for time-ranged queries. 0 = every trace starts now.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    spread: Duration,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Parser)]
struct QueryArgs {
    /// Base URL of the Tempo HTTP API, e.g. http://localhost:3200.
    #[arg(long)]
    http: String,
    #[arg(long, default_value = "trace-ids.txt")]
    trace_ids: PathBuf,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Look every id up once, then stop (instead of random picks for `--duration`).
    #[arg(long)]
    all: bool,
    #[arg(long)]
    tenant: Option<String>,
    /// A file of TraceQL queries (one per line, `#` comments) to run after the lookups.
    #[arg(long)]
    traceql: Option<PathBuf>,
    /// Runs of each TraceQL query, shared among `--concurrency` clients.
    #[arg(long, default_value_t = 5)]
    search_repeats: usize,
    /// A file of TraceQL metrics queries (one per line) for `/api/metrics/query_range` over
    /// the last `--metrics-range`, run `--search-repeats` times each like the searches.
    #[arg(long)]
    metrics: Option<PathBuf>,
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    metrics_range: Duration,
    #[arg(long)]
    json: bool,
}

#[derive(Parser)]
struct BlocksArgs {
    /// `storage.trace.local.path` of the backend.
    #[arg(long)]
    path: PathBuf,
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ingest(args) => ingest(args).await,
        Command::Query(args) => query(args).await,
        Command::Blocks(args) => blocks(args),
        Command::History(args) => servicemap::write_history(args).await,
        Command::ServiceMap(args) => servicemap::service_map(args).await,
        Command::Encode(args) => encode::encode(args),
    }
}

enum Target {
    Grpc(TraceServiceClient<tonic::transport::Channel>, tonic::transport::Channel),
    Http(reqwest::Client, String),
}

#[derive(Default)]
struct Counters {
    spans: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    throttled: AtomicU64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// An export's answer: `Err((retryable, message))` for a refusal or refused spans.
fn grpc_outcome(
    result: Result<tonic::Response<legato_proto::collector::ExportTraceServiceResponse>, tonic::Status>,
) -> Result<(), (bool, String)> {
    match result {
        Ok(resp) => match resp.into_inner().partial_success {
            Some(p) if p.rejected_spans > 0 => Err((false, p.error_message)),
            _ => Ok(()),
        },
        Err(status) => {
            let retry = matches!(status.code(), tonic::Code::ResourceExhausted | tonic::Code::Unavailable);
            Err((retry, status.to_string()))
        }
    }
}

/// A request built for sending: fresh, or pooled and already encoded.
enum Outgoing {
    Fresh(ExportTraceServiceRequest),
    Encoded(bytes::Bytes),
}

/// What to send: a request to encode, or bytes already encoded.
enum Payload<'a> {
    Message(&'a ExportTraceServiceRequest),
    Encoded(bytes::Bytes),
}

async fn send(target: &mut Target, tenant: &Option<String>, payload: Payload<'_>) -> Result<(), (bool, String)> {
    match (target, payload) {
        (Target::Grpc(_, channel), Payload::Encoded(bytes)) => {
            let mut request = tonic::Request::new(bytes);
            if let Some(t) = tenant
                && let Ok(v) = t.parse()
            {
                request.metadata_mut().insert("x-scope-orgid", v);
            }
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.map_err(|e| (true, format!("connecting: {e}")))?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            );
            grpc_outcome(grpc.unary(request, path, pool::RawCodec).await)
        }
        (Target::Grpc(client, _), Payload::Message(req)) => {
            let mut request = tonic::Request::new(req.clone());
            if let Some(t) = tenant
                && let Ok(v) = t.parse()
            {
                request.metadata_mut().insert("x-scope-orgid", v);
            }
            grpc_outcome(client.export(request).await)
        }
        (Target::Http(client, url), payload) => {
            let body = match payload {
                Payload::Message(req) => bytes::Bytes::from(req.encode_to_vec()),
                Payload::Encoded(bytes) => bytes,
            };
            let mut builder = client
                .post(url.as_str())
                .header("content-type", "application/x-protobuf")
                .body(body);
            if let Some(t) = tenant {
                builder = builder.header("x-scope-orgid", t);
            }
            match builder.send().await {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => {
                    let retry = matches!(resp.status().as_u16(), 429 | 503);
                    Err((retry, format!("HTTP {}", resp.status())))
                }
                Err(e) => Err((true, e.to_string())),
            }
        }
    }
}

async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let rate: Option<u64> = match args.rate.as_str() {
        "max" => None,
        n => Some(
            n.parse()
                .context("--rate must be a number of spans per second or `max`")?,
        ),
    };
    let make_target = |i: usize| -> anyhow::Result<Target> {
        let _ = i;
        match (&args.otlp_grpc, &args.otlp_http) {
            (Some(addr), _) => {
                let url = if addr.contains("://") {
                    addr.clone()
                } else {
                    format!("http://{addr}")
                };
                let channel = tonic::transport::Endpoint::from_shared(url)?.connect_lazy();
                Ok(Target::Grpc(
                    TraceServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
                    channel,
                ))
            }
            (None, Some(url)) => Ok(Target::Http(reqwest::Client::new(), url.clone())),
            (None, None) => bail!("give --otlp-grpc HOST:PORT or --otlp-http URL"),
        }
    };
    let counters = Arc::new(Counters::default());
    let ids = Arc::new(Mutex::new(Vec::<(String, usize)>::new()));
    let per_batch = args.traces_per_batch.max(1);
    // Pools are built before the clock starts: building them is the generator's work, not
    // the receiver's, and would otherwise count as idle time in the figures.
    let mut workers = Vec::new();
    for worker in 0..args.connections.max(1) {
        let seed = args.seed.wrapping_mul(1000).wrapping_add(worker as u64);
        let pool_size = args.pool;
        let data = args.data;
        let spread = args.spread;
        workers.push(tokio::task::spawn_blocking(move || {
            let mut generator = traffic::Generator::with_data(seed, data);
            let prepared: Vec<pool::Prepared> = (0..pool_size)
                .map(|i| {
                    let base = spread_start(spread, i as u64, pool_size as u64);
                    let traces: Vec<traffic::GeneratedTrace> = (0..per_batch)
                        .map(|k| generator.trace(base + (i * per_batch + k) as u64 * 1000))
                        .collect();
                    pool::Prepared::new(&traffic::batch(&generator, &traces), &traces)
                })
                .collect();
            (seed, generator, prepared)
        }));
    }
    let mut prepared_workers = Vec::new();
    for w in workers {
        prepared_workers.push(w.await?);
    }
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::new();
    for (worker, (seed, mut generator, prepared)) in prepared_workers.into_iter().enumerate() {
        let mut target = make_target(worker)?;
        let counters = counters.clone();
        let ids = ids.clone();
        let tenant = args.tenant.clone();
        let spread = args.spread;
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let mut last_error = None;
            while Instant::now() < deadline {
                if let Some(rate) = rate {
                    let allowed = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                    if counters.spans.load(Ordering::Relaxed) >= allowed {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    }
                }
                sent += 1;
                // Either a fresh request, or a pooled one with new trace ids.
                let (outgoing, trace_ids) = if prepared.is_empty() {
                    let base = spread_start(spread, sent, 1009);
                    let traces: Vec<traffic::GeneratedTrace> = (0..per_batch)
                        .map(|k| generator.trace(base + k as u64 * 1000))
                        .collect();
                    let ids: Vec<([u8; 16], usize)> = traces.iter().map(|t| (t.id, t.spans.len())).collect();
                    (Outgoing::Fresh(traffic::batch(&generator, &traces)), ids)
                } else {
                    let p = &prepared[sent as usize % prepared.len()];
                    let (bytes, ids) = p.instantiate(seed.wrapping_mul(1 << 40).wrapping_add(sent));
                    (Outgoing::Encoded(bytes), ids)
                };
                let spans: usize = trace_ids.iter().map(|t| t.1).sum();
                let bytes = match &outgoing {
                    Outgoing::Fresh(req) => req.encoded_len() as u64,
                    Outgoing::Encoded(b) => b.len() as u64,
                };
                loop {
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    let payload = match &outgoing {
                        Outgoing::Fresh(req) => Payload::Message(req),
                        Outgoing::Encoded(b) => Payload::Encoded(b.clone()),
                    };
                    match send(&mut target, &tenant, payload).await {
                        Ok(()) => {
                            counters.spans.fetch_add(spans as u64, Ordering::Relaxed);
                            counters.bytes.fetch_add(bytes, Ordering::Relaxed);
                            let mut ids = ids.lock().await;
                            ids.extend(trace_ids.iter().map(|(id, n)| (hex::encode(id), *n)));
                            break;
                        }
                        Err((true, msg)) => {
                            // Back-pressure (429 / RESOURCE_EXHAUSTED / 503): retried until the
                            // run ends; not stored, not counted as sent, and not an error.
                            counters.throttled.fetch_add(1, Ordering::Relaxed);
                            last_error = Some(msg);
                            if Instant::now() >= deadline {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err((_, msg)) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            last_error = Some(msg);
                            break;
                        }
                    }
                }
            }
            last_error
        }));
    }
    let progress = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let terminal = std::io::stderr().is_terminal();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if terminal {
                    let secs = started.elapsed().as_secs_f64();
                    let spans = counters.spans.load(Ordering::Relaxed);
                    eprint!(
                        "\r{secs:6.1}s  spans {spans:>10}  {:>9.0} spans/s  errors {}  throttled {}   ",
                        spans as f64 / secs,
                        counters.errors.load(Ordering::Relaxed),
                        counters.throttled.load(Ordering::Relaxed)
                    );
                    let _ = std::io::stderr().flush();
                }
            }
        })
    };
    let mut last_error = None;
    for t in tasks {
        if let Some(e) = t.await? {
            last_error = Some(e);
        }
    }
    progress.abort();
    let secs = started.elapsed().as_secs_f64();
    let ids = ids.lock().await;
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&args.trace_ids).with_context(|| format!("{}", args.trace_ids.display()))?,
    );
    for (id, spans) in ids.iter() {
        writeln!(file, "{id} {spans}")?;
    }
    file.flush()?;
    let spans = counters.spans.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    let throttled = counters.throttled.load(Ordering::Relaxed);
    eprintln!();
    println!(
        "sent {spans} spans in {} traces over {secs:.1}s: {:.0} spans/s, {:.2} MB/s, {} requests, {errors} errors, {throttled} throttled retries",
        ids.len(),
        spans as f64 / secs,
        bytes as f64 / secs / 1e6,
        counters.requests.load(Ordering::Relaxed)
    );
    if let Some(e) = last_error {
        println!("last error: {e}");
    }
    println!("trace ids written to {}", args.trace_ids.display());
    if args.json {
        println!(
            "{}",
            serde_json::json!({"spans": spans, "traces": ids.len(), "seconds": secs, "spans_per_sec": spans as f64 / secs,
                "bytes_per_sec": bytes as f64 / secs, "errors": errors, "throttled": throttled})
        );
    }
    Ok(())
}

/// The start time of the `i`-th of `n` slots spread evenly over the last `spread`.
fn spread_start(spread: Duration, i: u64, n: u64) -> u64 {
    let back = spread.as_nanos() as u64 / n.max(1) * (i % n.max(1));
    now_ns().saturating_sub(back)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.trace_ids).with_context(|| format!("{}", args.trace_ids.display()))?;
    let ids: Vec<(String, usize)> = text
        .lines()
        .filter_map(|l| {
            let (id, n) = l.split_once(' ')?;
            Some((id.to_string(), n.trim().parse().ok()?))
        })
        .collect();
    if ids.is_empty() {
        bail!("no trace ids in {}", args.trace_ids.display());
    }
    let ids = Arc::new(ids);
    let client = reqwest::Client::new();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + args.duration;
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency.max(1) {
        let (ids, client, latencies, errors, wrong) = (
            ids.clone(),
            client.clone(),
            latencies.clone(),
            errors.clone(),
            wrong.clone(),
        );
        let base = args.http.trim_end_matches('/').to_string();
        let tenant = args.tenant.clone();
        let (all, concurrency) = (args.all, args.concurrency.max(1));
        tasks.push(tokio::spawn(async move {
            let mut k = worker * 7919;
            let mut next = worker;
            loop {
                let (id, expected) = if all {
                    let Some(entry) = ids.get(next) else { break };
                    next += concurrency;
                    entry
                } else {
                    if Instant::now() >= deadline {
                        break;
                    }
                    k = (k * 1_103_515_245 + 12_345) % (1 << 31);
                    &ids[k % ids.len()]
                };
                let t0 = Instant::now();
                let mut req = client
                    .get(format!("{base}/api/v2/traces/{id}"))
                    .header("accept", "application/protobuf");
                if let Some(t) = &tenant {
                    req = req.header("x-scope-orgid", t);
                }
                let result = async {
                    let resp = req.send().await.map_err(|e| e.to_string())?;
                    if !resp.status().is_success() {
                        return Err(format!("HTTP {}", resp.status()));
                    }
                    let body = resp.bytes().await.map_err(|e| e.to_string())?;
                    let decoded = TraceByIdResponse::decode(body).map_err(|e| e.to_string())?;
                    Ok(legato_proto::span_count(
                        &decoded.trace.map(|t| t.resource_spans).unwrap_or_default(),
                    ))
                }
                .await;
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                match result {
                    Ok(n) if n == *expected => latencies.lock().await.push(ms),
                    Ok(_) => {
                        wrong.fetch_add(1, Ordering::Relaxed);
                        latencies.lock().await.push(ms);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let mut lat = latencies.lock().await.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let (p50, p90, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.9), percentile(&lat, 0.99));
    let (errors, wrong) = (errors.load(Ordering::Relaxed), wrong.load(Ordering::Relaxed));
    println!(
        "trace-by-id: {} lookups, p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, {errors} errors, {wrong} wrong (missing or extra spans)",
        lat.len()
    );
    let searches = match &args.traceql {
        Some(path) => search_set(&client, &args, path, false).await?,
        None => Vec::new(),
    };
    let metrics = match &args.metrics {
        Some(path) => search_set(&client, &args, path, true).await?,
        None => Vec::new(),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"lookups": lat.len(), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "errors": errors, "wrong": wrong, "searches": searches, "metrics": metrics})
        );
    }
    Ok(())
}

fn blocks(args: BlocksArgs) -> anyhow::Result<()> {
    let (mut blocks, mut spans, mut traces, mut data, mut bloom) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut stack = vec![args.path.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "meta.json") {
                let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
                blocks += 1;
                spans += meta["totalSpans"].as_u64().unwrap_or(0);
                traces += meta["totalTraces"].as_u64().unwrap_or(0);
                data += meta["dataSize"].as_u64().unwrap_or(0);
                bloom += meta["bloomSize"].as_u64().unwrap_or(0);
            }
        }
    }
    let per_span = if spans == 0 {
        0.0
    } else {
        (data + bloom) as f64 / spans as f64
    };
    println!(
        "{blocks} blocks, {traces} traces, {spans} spans, {data} data bytes + {bloom} bloom bytes = {per_span:.1} bytes/span"
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"blocks": blocks, "traces": traces, "spans": spans, "data_bytes": data, "bloom_bytes": bloom, "bytes_per_span": per_span})
        );
    }
    Ok(())
}

/// Runs each TraceQL query of `path` `--search-repeats` times, shared among `--concurrency`
/// clients; prints latency percentiles and scan rate per query. `metrics` sends them to
/// `/api/metrics/query_range` over the last `--metrics-range` instead of `/api/search`.
async fn search_set(
    client: &reqwest::Client,
    args: &QueryArgs,
    path: &std::path::Path,
    metrics: bool,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let base = args.http.trim_end_matches('/').to_string();
    let mut out = Vec::new();
    for q in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let repeats = args.search_repeats.max(1);
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency.max(1) {
            let (client, base, next, q) = (client.clone(), base.clone(), next.clone(), q.to_string());
            let tenant = args.tenant.clone();
            let range = args.metrics_range;
            tasks.push(tokio::spawn(async move {
                // (latency ms, inspected spans, traces or series) of each answered request; errors.
                let (mut answered, mut errors) = (Vec::new(), 0u64);
                while next.fetch_add(1, Ordering::Relaxed) < repeats as u64 {
                    let t0 = Instant::now();
                    let mut req = if metrics {
                        let end = now_ns();
                        let start = end.saturating_sub(range.as_nanos() as u64);
                        client.get(format!("{base}/api/metrics/query_range")).query(&[
                            ("q", q.clone()),
                            ("start", start.to_string()),
                            ("end", end.to_string()),
                        ])
                    } else {
                        client
                            .get(format!("{base}/api/search"))
                            .query(&[("q", q.as_str()), ("limit", "20")])
                    };
                    if let Some(t) = &tenant {
                        req = req.header("x-scope-orgid", t);
                    }
                    let body = match req.send().await {
                        Ok(resp) if resp.status().is_success() => resp.json::<serde_json::Value>().await.ok(),
                        _ => None,
                    };
                    let Some(body) = body else {
                        errors += 1;
                        continue;
                    };
                    let ms = t0.elapsed().as_secs_f64() * 1000.0;
                    let spans = body["metrics"]["inspectedSpans"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .or_else(|| body["metrics"]["inspectedSpans"].as_u64())
                        .unwrap_or(0u64);
                    let found = body[if metrics { "series" } else { "traces" }]
                        .as_array()
                        .map_or(0, |a| a.len());
                    answered.push((ms, spans, found));
                }
                (answered, errors)
            }));
        }
        let (mut answered, mut errors) = (Vec::new(), 0u64);
        for t in tasks {
            let (a, e) = t.await?;
            answered.extend(a);
            errors += e;
        }
        let mut times: Vec<f64> = answered.iter().map(|a| a.0).collect();
        times.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        let spans = answered.iter().map(|a| a.1).max().unwrap_or(0);
        let found = answered.last().map_or(0, |a| a.2);
        let rate = if p50 > 0.0 { spans as f64 / (p50 / 1000.0) } else { 0.0 };
        let what = if metrics { "series" } else { "traces" };
        println!(
            "{} p50 {p50:8.1} ms  p99 {p99:8.1} ms  {spans:>10} spans inspected  {:>6.2} M spans/s  {found:>3} {what}  {errors} errors  {q}",
            if metrics { "metrics" } else { "search " },
            rate / 1e6
        );
        out.push(serde_json::json!({"query": q, "p50_ms": p50, "p99_ms": p99, "inspected_spans": spans, "spans_per_sec": rate, what: found, "errors": errors, "latencies_ms": times}));
    }
    Ok(out)
}
