//! The subcommands that talk to a query API: `trace`, `search`, `tags`, `values`, `metrics`.
//! Each fetches JSON, then prints it as it came (`--json`) or renders it.

use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use super::client::{Answer, Api, Endpoint};
use super::range::TimeRange;
use super::text::Style;
use super::{emit, sparkline, table, waterfall};

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Trace id: up to 32 hex digits.
    pub id: String,
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Only blocks overlapping the range are read (faster; may miss spans outside it).
    #[command(flatten)]
    pub range: TimeRange,
    /// Print the trace as the server answered it (JSON).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// A TraceQL query.
    #[arg(default_value = "{}")]
    pub query: String,
    #[command(flatten)]
    pub endpoint: Endpoint,
    #[command(flatten)]
    pub range: TimeRange,
    /// Most traces to return.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Spans returned per spanset (the server's default when unset).
    #[arg(long)]
    pub spss: Option<u32>,
    /// Print the server's answer (JSON).
    #[arg(long)]
    pub json: bool,
}

/// What `tags` and `values` share.
#[derive(Debug, Args)]
pub struct Lookup {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Only spans matching this TraceQL filter count.
    #[arg(long, short)]
    pub query: Option<String>,
    #[command(flatten)]
    pub range: TimeRange,
    /// Print the server's answer (JSON).
    #[arg(long)]
    pub json: bool,
}

impl Lookup {
    fn params(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let mut params = self.range.params(SystemTime::now(), None)?;
        if let Some(q) = &self.query {
            params.push(("q", q.clone()));
        }
        Ok(params)
    }
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// Only this scope: resource, span, intrinsic, event, link or instrumentation.
    #[arg(long)]
    pub scope: Option<String>,
    #[command(flatten)]
    pub lookup: Lookup,
}

#[derive(Debug, Args)]
pub struct ValuesArgs {
    /// A TraceQL attribute: resource.service.name, span.http.route, name, status...
    pub tag: String,
    #[command(flatten)]
    pub lookup: Lookup,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// A TraceQL metrics query, e.g. `{} | rate() by (resource.service.name)`.
    pub query: String,
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Range; --since defaults to 1h.
    #[command(flatten)]
    pub range: TimeRange,
    /// Step between points: a duration (30s, 1m) or seconds (default: the range / 120).
    #[arg(long)]
    pub step: Option<String>,
    /// One value per series over the whole range (/api/metrics/query).
    #[arg(long)]
    pub instant: bool,
    /// Print the server's answer (JSON).
    #[arg(long)]
    pub json: bool,
}

const DEFAULT_METRICS_SINCE: Duration = Duration::from_secs(3600);

fn parse_json(body: &str, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(body).with_context(|| format!("the {what} answer is not JSON"))
}

/// Prints the raw answer (`--json`) or what `render` makes of it.
fn show(body: String, json: bool, what: &str, render: impl FnOnce(&Value) -> String) -> anyhow::Result<()> {
    if json {
        emit(&format!("{}\n", body.trim_end()));
        return Ok(());
    }
    emit(&render(&parse_json(&body, what)?));
    Ok(())
}

pub async fn trace(args: TraceArgs, style: Style) -> anyhow::Result<()> {
    let id = args.id.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("trace id {:?} must be 1 to 32 hex digits", args.id);
    }
    let api = Api::new(&args.endpoint)?;
    let params = args.range.params(SystemTime::now(), None)?;
    // v2 answers 200 with an empty trace when there is none; servers without the v2 route
    // answer 404, so v1 is asked then (as Grafana does).
    let v2 = api.fetch(api.url(&["api", "v2", "traces", &id], &params)).await?;
    let body = match v2 {
        Answer::Ok(body) => body,
        Answer::NotFound => match api.fetch(api.url(&["api", "traces", &id], &params)).await? {
            Answer::Ok(body) => body,
            Answer::NotFound => bail!("trace {id} not found"),
        },
    };
    let doc = parse_json(&body, "trace")?;
    let spans = waterfall::spans_from_json(&doc);
    if spans.is_empty() {
        bail!("trace {id} not found");
    }
    if doc["status"] == "PARTIAL" {
        eprintln!(
            "legato: partial trace: {}",
            doc["message"].as_str().unwrap_or("the server returned part of it")
        );
    }
    if args.json {
        emit(&format!("{}\n", body.trim_end()));
    } else {
        emit(&waterfall::render(&id, &spans, style));
    }
    Ok(())
}

pub async fn search(args: SearchArgs, style: Style) -> anyhow::Result<()> {
    let api = Api::new(&args.endpoint)?;
    let mut params = vec![("q", args.query.clone()), ("limit", args.limit.to_string())];
    if let Some(spss) = args.spss {
        params.push(("spss", spss.to_string()));
    }
    params.extend(args.range.params(SystemTime::now(), None)?);
    let body = api.get(&["api", "search"], &params).await?;
    show(body, args.json, "search", |doc| {
        table::render_search(&table::hits_from_json(doc), style)
    })
}

pub async fn tags(args: TagsArgs, style: Style) -> anyhow::Result<()> {
    let api = Api::new(&args.lookup.endpoint)?;
    let mut params = args.lookup.params()?;
    if let Some(scope) = &args.scope {
        params.push(("scope", scope.clone()));
    }
    let body = api.get(&["api", "v2", "search", "tags"], &params).await?;
    show(body, args.lookup.json, "tags", |doc| table::render_tags(doc, style))
}

pub async fn values(args: ValuesArgs, style: Style) -> anyhow::Result<()> {
    let api = Api::new(&args.lookup.endpoint)?;
    let segments = ["api", "v2", "search", "tag", &args.tag, "values"];
    let body = api.get(&segments, &args.lookup.params()?).await?;
    show(body, args.lookup.json, "tag values", |doc| {
        table::render_values(doc, style)
    })
}

pub async fn metrics(args: MetricsArgs, style: Style) -> anyhow::Result<()> {
    let api = Api::new(&args.endpoint)?;
    let (start, end) = args
        .range
        .resolve(SystemTime::now(), Some(DEFAULT_METRICS_SINCE))?
        .unwrap_or_default();
    let mut params = vec![
        ("q", args.query.clone()),
        ("start", start.to_string()),
        ("end", end.to_string()),
    ];
    if args.instant {
        let body = api.get(&["api", "metrics", "query"], &params).await?;
        return show(body, args.json, "metrics", |doc| sparkline::render_instant(doc, style));
    }
    // Without --step, about 120 points: enough for a sparkline, and the grid is known.
    let step_ms = match &args.step {
        Some(step) => step_millis(step)?,
        None => ((end - start) * 1000 / 120).max(1000) / 1000 * 1000,
    };
    params.push(("step", args.step.clone().unwrap_or_else(|| format!("{step_ms}ms"))));
    let body = api.get(&["api", "metrics", "query_range"], &params).await?;
    let window = sparkline::Window {
        start_ms: start * 1000,
        end_ms: end * 1000,
        step_ms,
    };
    show(body, args.json, "metrics", |doc| {
        sparkline::render_range(&sparkline::series_from_json(doc), window, style)
    })
}

/// `--step` in milliseconds: a duration (`30s`, `1m`) or (fractional) seconds, as Tempo takes.
fn step_millis(step: &str) -> anyhow::Result<u64> {
    if let Ok(seconds) = step.parse::<f64>()
        && seconds > 0.0
    {
        return Ok((seconds * 1000.0).round() as u64);
    }
    let d = humantime::parse_duration(step).with_context(|| format!("--step {step:?}: expected 30s, 1m or seconds"))?;
    Ok(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_as_durations_or_seconds() {
        assert_eq!(step_millis("1m").unwrap(), 60_000);
        assert_eq!(step_millis("15").unwrap(), 15_000);
        assert_eq!(step_millis("0.5").unwrap(), 500);
        assert!(step_millis("soon").is_err());
    }
}
