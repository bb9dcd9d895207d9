//! `legato-bench encode`: a flush's block encoding alone (`legato_ingester::encode_flushed_block`:
//! Parquet, bloom and tag summary), on one thread, on generated traces held as the ingester
//! holds them (encoded `tempopb.Trace` segments). Prints spans per CPU second and stored bytes
//! per span; run it under `perf record` to see where the encoder's time goes.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::tempopb;
use legato_proto::trace::{ResourceSpans, ScopeSpans};
use prost::Message;

use crate::traffic::{self, Data};

#[derive(clap::Parser)]
pub struct EncodeArgs {
    #[arg(long, value_enum, default_value = "demo")]
    data: Data,
    /// Spans per block.
    #[arg(long, default_value_t = 200_000)]
    spans: usize,
    /// Blocks encoded (the figures are over all of them).
    #[arg(long, default_value_t = 3)]
    blocks: usize,
    #[arg(long)]
    json: bool,
}

/// Process CPU time in seconds (user + system, from /proc/self/stat in 10 ms ticks), so
/// other load on the machine does not count.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3; utime and
    // stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

pub fn encode(args: EncodeArgs) -> anyhow::Result<()> {
    let mut generator = traffic::Generator::with_data(42, args.data);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    // Traces as the ingester holds them: one encoded tempopb.Trace each.
    let mut held: Vec<(TraceId, Vec<bytes::Bytes>)> = Vec::new();
    let mut spans = 0;
    while spans < args.spans {
        let trace = generator.trace(now);
        spans += trace.spans.len();
        let mut per_resource: Vec<(usize, Vec<legato_proto::trace::Span>)> = Vec::new();
        for (resource, span) in trace.spans {
            match per_resource.iter_mut().find(|(r, _)| *r == resource) {
                Some((_, spans)) => spans.push(span),
                None => per_resource.push((resource, vec![span])),
            }
        }
        let batches = per_resource
            .into_iter()
            .map(|(resource, spans)| ResourceSpans {
                resource: Some(generator.resource(resource)),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        let encoded = tempopb::Trace {
            resource_spans: batches,
        }
        .encode_to_vec();
        held.push((TraceId(trace.id), vec![bytes::Bytes::from(encoded)]));
    }
    held.sort_by_key(|(id, _)| *id);
    let otlp_bytes: usize = held.iter().flat_map(|(_, segs)| segs).map(|b| b.len()).sum();
    let (mut encode_cpu, mut stored) = (0.0, 0usize);
    let wall = Instant::now();
    for _ in 0..args.blocks {
        let started = cpu_seconds();
        let block = legato_ingester::encode_flushed_block(&TenantId::single(), BlockId::random(), &held, now)?;
        encode_cpu += cpu_seconds() - started;
        stored = block.data.len() + block.bloom.len();
    }
    let total = (spans * args.blocks) as f64;
    let figures = serde_json::json!({
        "data": format!("{:?}", args.data).to_lowercase(),
        "spans_per_block": spans,
        "otlp_bytes_per_span": otlp_bytes as f64 / spans as f64,
        "encode_spans_per_cpu_sec": total / encode_cpu,
        "stored_bytes_per_span": stored as f64 / spans as f64,
        "wall_sec": wall.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{figures}");
    } else {
        println!(
            "{:<7} {:>9} {:>12} {:>22} {:>10}",
            "data", "spans", "OTLP B/span", "encode spans/CPU-s", "B/span"
        );
        println!(
            "{:<7} {:>9} {:>12.0} {:>22.0} {:>10.1}",
            figures["data"].as_str().unwrap_or_default(),
            spans,
            figures["otlp_bytes_per_span"].as_f64().unwrap_or_default(),
            figures["encode_spans_per_cpu_sec"].as_f64().unwrap_or_default(),
            figures["stored_bytes_per_span"].as_f64().unwrap_or_default(),
        );
    }
    Ok(())
}
