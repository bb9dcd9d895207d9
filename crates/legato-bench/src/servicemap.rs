//! The service-map benchmark: `history` writes hours of metrics-generator history for an
//! OpenTelemetry-demo-like topology into a local bucket (what a generator running that long
//! would have written, merged hourly as the compactor does); `service-map` then sends the
//! queries Grafana's service map and RED table send to a running Legato's `/prometheus`,
//! over the whole range, and prints their latencies.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use legato_generator::history::History;
use legato_generator::now_ms;
use legato_generator::remote_write::{Label, Sample, TimeSeries};
use legato_model::TenantId;
use legato_storage::object_store::ObjectStore;
use legato_storage::object_store::local::LocalFileSystem;

#[derive(Parser)]
pub struct HistoryArgs {
    /// `storage.trace.local.path` of the Legato that will answer.
    #[arg(long)]
    path: PathBuf,
    /// Hours of history, ending now.
    #[arg(long, default_value_t = 24)]
    hours: i64,
}

#[derive(Parser)]
pub struct ServiceMapArgs {
    /// Base URL of Legato's HTTP API, e.g. http://localhost:3200.
    #[arg(long)]
    http: String,
    /// The dashboard range (`$__range`), in hours.
    #[arg(long, default_value_t = 24)]
    hours: u64,
    #[arg(long, default_value_t = 20)]
    repeats: usize,
}

/// Edges of the topology: client, server, connection type.
const EDGES: &[(&str, &str, &str)] = &[
    ("user", "frontend-proxy", "virtual_node"),
    ("frontend-proxy", "frontend", ""),
    ("frontend", "cart", ""),
    ("frontend", "checkout", ""),
    ("frontend", "currency", ""),
    ("frontend", "product-catalog", ""),
    ("frontend", "recommendation", ""),
    ("frontend", "ad", ""),
    ("frontend", "shipping", ""),
    ("checkout", "cart", ""),
    ("checkout", "currency", ""),
    ("checkout", "email", ""),
    ("checkout", "payment", ""),
    ("checkout", "product-catalog", ""),
    ("checkout", "shipping", ""),
    ("checkout", "kafka", "messaging_system"),
    ("kafka", "accounting", "messaging_system"),
    ("kafka", "fraud-detection", "messaging_system"),
    ("cart", "valkey", "database"),
    ("shipping", "quote", ""),
    ("recommendation", "product-catalog", ""),
    ("accounting", "postgresql", "database"),
];

const SERVICES: &[&str] = &[
    "frontend-proxy",
    "frontend",
    "cart",
    "checkout",
    "currency",
    "product-catalog",
    "recommendation",
    "ad",
    "shipping",
    "email",
    "payment",
    "quote",
    "accounting",
    "fraud-detection",
];

fn ts(name: &str, labels: &[(&str, String)], value: f64) -> TimeSeries {
    let mut all: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label {
            name: (*k).into(),
            value: v.clone(),
        })
        .collect();
    all.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    all.push(Label {
        name: "__metrics_gen_instance".into(),
        value: "bench".into(),
    });
    all.sort_by(|a, b| a.name.cmp(&b.name));
    TimeSeries {
        labels: all,
        samples: vec![Sample { value, timestamp: 0 }],
        exemplars: Vec::new(),
    }
}

/// A histogram's series (cumulative buckets, sum, count) after `n` observations spread
/// over the bounds.
fn histogram(out: &mut Vec<TimeSeries>, name: &str, labels: &[(&str, String)], bounds: &[f64], n: f64) {
    let mut cumulative = 0.0;
    for (i, b) in bounds.iter().enumerate() {
        cumulative += n / (2f64).powi(i as i32 + 1);
        let mut l = labels.to_vec();
        l.push(("le", format!("{b}")));
        out.push(ts(&format!("{name}_bucket"), &l, cumulative.floor()));
    }
    let mut l = labels.to_vec();
    l.push(("le", "+Inf".into()));
    out.push(ts(&format!("{name}_bucket"), &l, n));
    out.push(ts(&format!("{name}_sum"), labels, n * 0.05));
    out.push(ts(&format!("{name}_count"), labels, n));
}

/// Every series of the topology, with cumulative values after `minutes` minutes.
fn collection(minutes: f64) -> Vec<TimeSeries> {
    let sg_bounds: Vec<f64> = (0..8).map(|i| 0.1 * 2f64.powi(i)).collect();
    let sm_bounds: Vec<f64> = (0..14).map(|i| 0.002 * 2f64.powi(i)).collect();
    let mut out = Vec::new();
    for (i, (client, server, kind)) in EDGES.iter().enumerate() {
        let labels = [
            ("client", client.to_string()),
            ("server", server.to_string()),
            ("connection_type", kind.to_string()),
        ];
        let calls = minutes * 60.0 * (5.0 + i as f64);
        out.push(ts("traces_service_graph_request_total", &labels, calls));
        out.push(ts(
            "traces_service_graph_request_failed_total",
            &labels,
            (calls / 50.0).floor(),
        ));
        histogram(
            &mut out,
            "traces_service_graph_request_server_seconds",
            &labels,
            &sg_bounds,
            calls,
        );
        histogram(
            &mut out,
            "traces_service_graph_request_client_seconds",
            &labels,
            &sg_bounds,
            calls,
        );
    }
    for (s, service) in SERVICES.iter().enumerate() {
        for op in 0..6 {
            for (kind, status) in [
                ("SPAN_KIND_SERVER", "STATUS_CODE_UNSET"),
                ("SPAN_KIND_SERVER", "STATUS_CODE_ERROR"),
                ("SPAN_KIND_CLIENT", "STATUS_CODE_UNSET"),
                ("SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET"),
            ] {
                let labels = [
                    ("service", service.to_string()),
                    ("span_name", format!("{service} op{op}")),
                    ("span_kind", kind.to_string()),
                    ("status_code", status.to_string()),
                ];
                let error = if status == "STATUS_CODE_ERROR" { 0.02 } else { 1.0 };
                let calls = (minutes * 60.0 * (1.0 + (s + op) as f64) * error).floor();
                out.push(ts("traces_spanmetrics_calls_total", &labels, calls));
                out.push(ts("traces_spanmetrics_size_total", &labels, calls * 450.0));
                histogram(&mut out, "traces_spanmetrics_latency", &labels, &sm_bounds, calls);
            }
        }
    }
    out
}

/// Writes `hours` of history ending now, one collection per minute, merged per hour.
pub async fn write_history(args: HistoryArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.path).with_context(|| format!("creating {}", args.path.display()))?;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&args.path)?);
    let history = History::new(store);
    let tenant = TenantId::single();
    let started = Instant::now();
    let end = now_ms() - now_ms() % 60_000;
    let start = end - args.hours * 3_600_000;
    let mut series = 0;
    let mut t = start;
    while t < end {
        let collected = collection(((t - start) / 60_000 + 1) as f64);
        series = collected.len();
        history.record(&tenant, t + 30_000, &collected);
        history.flush(t + 90_000, false).await;
        t += 60_000;
    }
    history.flush(end, true).await;
    let merged = history
        .compact(&tenant, end + 2 * 3_600_000, Duration::from_secs(30 * 24 * 3600))
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "history: {} hours, {series} series per minute, {} merged hour files, in {:.1} s",
        args.hours,
        merged.files_written,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Grafana's service-map and RED-table queries over `range`.
fn queries(range: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in [
        "traces_service_graph_request_server_seconds_sum",
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
        "traces_service_graph_request_server_seconds_bucket",
    ] {
        out.push((
            format!("rate {m}"),
            format!("sum by (client, server) (rate({m}[{range}]))"),
        ));
        out.push((
            format!("labels {m}"),
            format!("group by (client, connection_type, server) ({m})"),
        ));
    }
    out.push((
        "RED rate".into(),
        format!(r#"topk(5, sum(rate(traces_spanmetrics_calls_total{{span_kind="SPAN_KIND_SERVER"}}[{range}])) by (span_name))"#),
    ));
    out.push((
        "RED errors".into(),
        format!(
            r#"topk(5, sum(rate(traces_spanmetrics_calls_total{{span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_ERROR"}}[{range}])) by (span_name))"#
        ),
    ));
    out.push((
        "RED p90".into(),
        format!(r#"histogram_quantile(.9, sum(rate(traces_spanmetrics_latency_bucket{{span_name="checkout op1"}}[{range}])) by (le))"#),
    ));
    out
}

async fn run_query(client: &reqwest::Client, url: &str, q: &str) -> anyhow::Result<usize> {
    let body: serde_json::Value = client.post(url).form(&[("query", q)]).send().await?.json().await?;
    anyhow::ensure!(body["status"] == "success", "{q}: {body}");
    Ok(body["data"]["result"].as_array().map_or(0, Vec::len))
}

/// Sends the map's queries `repeats` times: each alone, then all at once as Grafana does.
pub async fn service_map(args: ServiceMapArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("{}/prometheus/api/v1/query", args.http.trim_end_matches('/'));
    let range = format!("{}s", args.hours * 3600);
    let queries = queries(&range);
    let mut maps = Vec::new();
    let mut per_query: Vec<Vec<f64>> = vec![Vec::new(); queries.len()];
    let mut results = vec![0; queries.len()];
    for _ in 0..args.repeats {
        let started = Instant::now();
        let all = futures_join(&client, &url, &queries).await?;
        maps.push(started.elapsed().as_secs_f64() * 1000.0);
        for (i, (_, q)) in queries.iter().enumerate() {
            let started = Instant::now();
            results[i] = run_query(&client, &url, q).await?;
            per_query[i].push(started.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::ensure!(
            all.iter().sum::<usize>() > 0,
            "the service map is empty: write history first"
        );
    }
    let first = maps[0];
    maps.sort_by(f64::total_cmp);
    println!(
        "service map over {} h ({} queries at once, as Grafana sends them): first {first:.1} ms, p50 {:.1} ms, p99 {:.1} ms over {} runs",
        args.hours,
        queries.len(),
        crate::percentile(&maps, 0.5),
        crate::percentile(&maps, 0.99),
        args.repeats
    );
    for (i, (name, _)) in queries.iter().enumerate() {
        per_query[i].sort_by(f64::total_cmp);
        println!(
            "  {name:<62} {:>4} series  p50 {:>7.1} ms  p99 {:>7.1} ms",
            results[i],
            crate::percentile(&per_query[i], 0.5),
            crate::percentile(&per_query[i], 0.99)
        );
    }
    Ok(())
}

async fn futures_join(client: &reqwest::Client, url: &str, queries: &[(String, String)]) -> anyhow::Result<Vec<usize>> {
    let mut tasks = Vec::new();
    for (_, q) in queries {
        let (client, url, q) = (client.clone(), url.to_string(), q.clone());
        tasks.push(tokio::spawn(async move { run_query(&client, &url, &q).await }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}
