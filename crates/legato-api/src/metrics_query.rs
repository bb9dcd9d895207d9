//! `/api/metrics/query_range` and `/api/metrics/query` (TraceQL metrics; always JSON).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use legato_model::span::AttrValue;
use legato_traceql::metrics::{Series, default_step_ns};
use serde_json::{Value as Json, json};

use crate::query::{finish, json as json_response};
use crate::search::{attr_key_value, param, parse_time, plan_for, ready};
use crate::{ApiError, SharedState, tenant};

type Params = HashMap<String, String>;

const MAX_RANGE: Duration = Duration::from_secs(24 * 3600);
const MAX_INTERVALS: u64 = 10_000;
const MAX_EXEMPLARS: usize = 100;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `step`: float seconds or a Go duration.
fn parse_step(text: &str) -> Result<u64, ApiError> {
    if let Ok(secs) = text.parse::<f64>()
        && secs > 0.0
        && secs.is_finite()
    {
        return Ok((secs * 1e9) as u64);
    }
    humantime::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero())
        .map(|d| d.as_nanos() as u64)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "invalid step parameter {text:?}: expected seconds or a duration like 30s"
            ))
        })
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    start: u64,
    end: u64,
}

/// The range asked for (`end` defaults to `now`, `start` to `end - since`).
fn range(params: &Params, now: u64) -> Result<Range, ApiError> {
    let end = match param(params, "end") {
        Some(v) => parse_time("end", v)?,
        None => now,
    };
    let start = match param(params, "start") {
        Some(v) => parse_time("start", v)?,
        None => {
            let since = match param(params, "since") {
                Some(v) => humantime::parse_duration(v)
                    .map_err(|e| ApiError::BadRequest(format!("invalid since {v:?}: {e}")))?,
                None => Duration::from_secs(3600),
            };
            end.saturating_sub(since.as_nanos() as u64)
        }
    };
    if end <= start {
        return Err(ApiError::BadRequest("end must be greater than start".into()));
    }
    Ok(Range { start, end })
}

/// Tempo's limit on the range, checked once its end is clamped (`validateQueryRangeReq`).
fn check_duration(r: Range) -> Result<(), ApiError> {
    if r.end - r.start > MAX_RANGE.as_nanos() as u64 {
        return Err(ApiError::BadRequest(format!(
            "metrics query time range exceeds the maximum allowed duration of {}",
            humantime::format_duration(MAX_RANGE)
        )));
    }
    Ok(())
}

/// `query_frontend.query_end_cutoff` as Tempo's frontend applies it to metrics queries
/// (`clampQueryEndForValidation`, `clampQueryEnd` and `clampInstantQueryEnd` in
/// `modules/frontend/metrics_query_range_handler.go` and `metrics_query_handler.go`): the
/// newest data, maybe still incomplete, is left out by pulling an `end` later than `latest`
/// (now − cutoff) back to it. With a cutoff of 0, `latest` is now: a future end is pulled back
/// too. A range left empty is refused.
mod cutoff {
    use super::{ApiError, Range};

    const SECOND: u64 = 1_000_000_000;

    fn within() -> ApiError {
        ApiError::BadRequest("query window falls entirely within query_end_cutoff".into())
    }

    /// A range query's end, before validation and alignment: `latest` when later.
    pub(super) fn range_end(r: Range, latest: u64) -> Result<Range, ApiError> {
        if r.end <= latest {
            return Ok(r);
        }
        if r.start >= latest {
            return Err(within());
        }
        Ok(Range { end: latest, ..r })
    }

    /// A range query's aligned end: alignment rounds the end up, maybe past `latest` again;
    /// then it is `latest` rounded down to the step, so the last step is a whole one.
    pub(super) fn aligned_end(end: u64, step: u64, latest: u64) -> u64 {
        match end > latest {
            true => latest - latest % step,
            false => end,
        }
    }

    /// An instant query's end: moved back by the fewest whole seconds that bring it to
    /// `latest` or before (whole seconds keep repeated "last N hours" queries alike).
    pub(super) fn instant_end(r: Range, latest: u64) -> Result<Range, ApiError> {
        if r.end < latest {
            return Ok(r);
        }
        let seconds = (r.end - latest).div_ceil(SECOND);
        let end = r.end.saturating_sub(seconds * SECOND);
        if end <= r.start {
            return Err(within());
        }
        Ok(Range { end, ..r })
    }
}

/// Whether to add `promLabels` to each series: only for Grafana 10.4–11.3, which read it as
/// the series name and send the query as `query=`. Tempo 3 removed the field (field 3 of
/// `TimeSeries` and `InstantSeries` is reserved) and its Go clients (tempo-cli, tempo-vulture),
/// which send `q=`, refuse unknown fields; newer Grafana sends `q=` and names series from
/// `labels`.
fn wants_prom_labels(params: &Params) -> bool {
    param(params, "q").is_none() && param(params, "query").is_some()
}

fn prom_labels(labels: &[(String, legato_traceql::value::Value)]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| match v.to_attr() {
            Some(AttrValue::Str(s)) => format!("{k}=\"{s}\""),
            Some(AttrValue::Int(i)) => format!("{k}={i}"),
            Some(AttrValue::Float(f)) => format!("{k}={f}"),
            Some(AttrValue::Bool(b)) => format!("{k}={b}"),
            Some(AttrValue::Array(items)) => format!("{k}=\"{items:?}\""),
            None => format!("{k}=\"\""),
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn labels_json(labels: &[(String, legato_traceql::value::Value)]) -> Json {
    let kvs: Vec<Json> = labels
        .iter()
        .filter_map(|(k, v)| v.to_attr().map(|a| attr_key_value(k, &a)))
        .collect();
    Json::Array(kvs)
}

/// `{"series": ..., "metrics": ...}`, with Tempo's `status` and `message` when series were
/// left out because of `query_frontend.metrics.max_response_series`.
fn response_json(state: &SharedState, series: Vec<Json>, outcome: &legato_querier::SearchOutcome) -> Json {
    let mut body = json!({"series": series, "metrics": metrics_json(outcome)});
    if let Some(message) = partial_message(state, outcome) {
        body["status"] = json!("PARTIAL");
        body["message"] = json!(message);
    }
    body
}

/// Why an answer is partial (Tempo's message at the series limit, and recent data that could
/// not be read); `None` when it is complete.
pub(crate) fn partial_message(state: &SharedState, outcome: &legato_querier::SearchOutcome) -> Option<String> {
    let series = outcome.series_truncated.then(|| {
        format!(
            "Response exceeds maximum series limit of {}, a partial response is returned. Warning: the accuracy of each individual value is not guaranteed.",
            state.max_response_series
        )
    });
    let missing = outcome
        .missing_data
        .as_ref()
        .map(|why| format!("Partial response: {why}"));
    match (series, missing) {
        (Some(a), Some(b)) => Some(format!("{a} {b}")),
        (a, b) => a.or(b),
    }
}

fn metrics_json(outcome: &legato_querier::SearchOutcome) -> Json {
    let mut m = serde_json::Map::new();
    if outcome.inspected_bytes > 0 {
        m.insert("inspectedBytes".into(), json!(outcome.inspected_bytes.to_string()));
    }
    if outcome.total_jobs > 0 {
        m.insert("totalJobs".into(), json!(outcome.total_jobs));
        m.insert("completedJobs".into(), json!(outcome.completed_jobs));
    }
    if outcome.total_blocks > 0 {
        m.insert("totalBlocks".into(), json!(outcome.total_blocks));
    }
    if outcome.inspected_traces > 0 {
        m.insert("inspectedTraces".into(), json!(outcome.inspected_traces));
    }
    Json::Object(m)
}

pub(crate) async fn run(
    state: &SharedState,
    tenant: &legato_model::TenantId,
    params: &Params,
    instant: bool,
) -> Result<(Vec<Series>, legato_querier::SearchOutcome, u64), ApiError> {
    ready(state)?;
    let q = param(params, "q").or_else(|| param(params, "query")).ok_or_else(|| {
        ApiError::BadRequest("missing q parameter: a TraceQL metrics query such as {} | rate()".into())
    })?;
    let (plan, stage) = plan_for(q)?;
    let Some(stage) = stage else {
        return Err(ApiError::BadRequest(
            "invalid TraceQL metrics query: it needs a metrics function such as | rate() or | count_over_time()".into(),
        ));
    };
    let now = now_ns();
    let asked = range(params, now)?;
    let latest = now.saturating_sub(state.query_end_cutoff.as_nanos() as u64);
    // As Tempo: the default step is of the range asked for, limits are of the range clamped.
    let (r, step) = if instant {
        let r = cutoff::instant_end(asked, latest)?;
        (r, r.end - r.start)
    } else {
        let step = match param(params, "step") {
            Some(s) => parse_step(s)?,
            None => default_step_ns(asked.end - asked.start),
        };
        (cutoff::range_end(asked, latest)?, step)
    };
    check_duration(r)?;
    let intervals = (r.end - r.start).div_ceil(step);
    if intervals > MAX_INTERVALS {
        let min = (r.end - r.start).div_ceil(MAX_INTERVALS);
        return Err(ApiError::BadRequest(format!(
            "step of {} is too small, minimum step for given range is {}",
            humantime::format_duration(Duration::from_nanos(step)),
            humantime::format_duration(Duration::from_nanos(min))
        )));
    }
    let (start, end) = if instant {
        (r.start, r.end)
    } else {
        let (start, end) = align(r.start, r.end, step);
        (start, cutoff::aligned_end(end, step, latest))
    };
    let asked_exemplars = match param(params, "exemplars") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::BadRequest(format!("invalid exemplars parameter {v:?}")))?,
        None => 0,
    };
    let exemplars = exemplar_limit(&plan.query.hints, asked_exemplars);
    let (series, outcome) = crate::bounded_query(state, tenant, async |cancel| {
        let request = legato_querier::MetricsRequest {
            plan,
            stage,
            start_ns: start,
            end_ns: end,
            step_ns: step,
            max_exemplars: if instant { 0 } else { exemplars },
            cancel,
            max_series: state.max_response_series,
            query_text: q.to_string(),
        };
        state.querier.metrics(tenant, request).await
    })
    .await?;
    Ok((series, outcome, step))
}

/// How many exemplars a range query keeps, as Tempo's frontend decides
/// (`normalizeRequestExemplars` in `modules/frontend/metrics_query_range_handler.go`): the
/// query's `with(exemplars=N)` hint over the `exemplars` parameter (a negative N is 0,
/// `with(exemplars=false)` none), a parameter of 0 or none meaning the most, and never more
/// than the most (100, Tempo's `max_exemplars` default).
fn exemplar_limit(hints: &[(String, legato_traceql::ast::Static)], asked: usize) -> usize {
    use legato_traceql::ast::Static;
    // As Tempo's `Hints.Get`: the first hint of the name with the type asked for.
    let named = || hints.iter().filter(|(k, _)| k == "exemplars").map(|(_, v)| v);
    let int = named().find_map(|v| match v {
        Static::Int(n) => Some(*n),
        _ => None,
    });
    let off = named().find_map(|v| match v {
        Static::Bool(b) => Some(!b),
        _ => None,
    }) == Some(true);
    let limit = match int {
        Some(n) => usize::try_from(n).unwrap_or(0),
        None if off => 0,
        None if asked == 0 => MAX_EXEMPLARS,
        None => asked,
    };
    limit.min(MAX_EXEMPLARS)
}

/// The range a range query is evaluated over, as Tempo's frontend aligns it (`AlignRequest`
/// in `pkg/traceql/engine_metrics.go`): start down and end up to a multiple of the step, so
/// panels line up across refreshes, then start one step earlier (when it can be). Steps are
/// closed at the right and reported at their end (`legato_traceql::metrics`), so the samples
/// run from the aligned start to the aligned end, both included.
fn align(start: u64, end: u64, step: u64) -> (u64, u64) {
    let start = start / step * step;
    let end = end.div_ceil(step) * step;
    match start > step {
        true => (start - step, end),
        false => (start, end),
    }
}

/// `GET /api/metrics/query_range`.
pub async fn query_range(
    State(state): State<SharedState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let result = async {
        let (series, outcome, _) = run(
            &state,
            &tenant::from_headers(state.multitenancy_enabled, &headers)?,
            &params,
            false,
        )
        .await?;
        let series: Vec<Json> = series
            .iter()
            .map(|s| {
                let samples: Vec<Json> = s
                    .samples
                    .iter()
                    .map(|(t, v)| json!({"timestampMs": t.to_string(), "value": v}))
                    .collect();
                let exemplars: Vec<Json> = s
                    .exemplars
                    .iter()
                    .map(|e| {
                        json!({
                            "labels": labels_json(&e.labels()),
                            "value": e.value,
                            "timestampMs": e.timestamp_ms.to_string(),
                        })
                    })
                    .collect();
                let mut obj = serde_json::Map::new();
                obj.insert("labels".into(), labels_json(&s.labels));
                if wants_prom_labels(&params) {
                    obj.insert("promLabels".into(), json!(prom_labels(&s.labels)));
                }
                obj.insert("samples".into(), Json::Array(samples));
                if !exemplars.is_empty() {
                    obj.insert("exemplars".into(), Json::Array(exemplars));
                }
                Json::Object(obj)
            })
            .collect();
        Ok(json_response(&response_json(&state, series, &outcome)))
    }
    .await;
    finish(&state, "metrics_query_range", started, result)
}

/// `GET /api/metrics/query`: one value per series over the whole range.
pub async fn query_instant(
    State(state): State<SharedState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let result = async {
        let (series, outcome, _) = run(
            &state,
            &tenant::from_headers(state.multitenancy_enabled, &headers)?,
            &params,
            true,
        )
        .await?;
        let series: Vec<Json> = series
            .iter()
            .filter_map(|s| {
                let value = s.samples.first()?.1;
                let mut obj = json!({"labels": labels_json(&s.labels), "value": value});
                if wants_prom_labels(&params) {
                    obj["promLabels"] = json!(prom_labels(&s.labels));
                }
                Some(obj)
            })
            .collect();
        Ok(json_response(&response_json(&state, series, &outcome)))
    }
    .await;
    finish(&state, "metrics_query", started, result)
}

#[cfg(test)]
mod tests {
    use super::{MAX_EXEMPLARS, Range, align, cutoff, exemplar_limit};

    #[test]
    fn exemplar_limits_as_tempo_normalizes_them() {
        let hints = |q: &str| legato_traceql::parse(q).unwrap().hints;
        let plain = hints("{ } | rate()");
        // Tempo's TestNormalizeRequestExemplars cases: no hint → the parameter, 0 → the most,
        // capped at the most.
        assert_eq!(exemplar_limit(&plain, 7), 7);
        assert_eq!(exemplar_limit(&plain, 0), MAX_EXEMPLARS);
        assert_eq!(exemplar_limit(&plain, 5_000), MAX_EXEMPLARS);
        // The hint wins over the parameter, capped too; negative is none; false is none;
        // true changes nothing.
        assert_eq!(exemplar_limit(&hints("{ } | rate() with(exemplars=3)"), 50), 3);
        assert_eq!(exemplar_limit(&hints("{ } | rate() with(exemplars=0)"), 50), 0);
        assert_eq!(
            exemplar_limit(&hints("{ } | rate() with(exemplars=500)"), 0),
            MAX_EXEMPLARS
        );
        assert_eq!(exemplar_limit(&hints("{ } | rate() with(exemplars=-4)"), 50), 0);
        assert_eq!(exemplar_limit(&hints("{ } | rate() with(exemplars=false)"), 50), 0);
        assert_eq!(exemplar_limit(&hints("{ } | rate() with(exemplars=true)"), 50), 50);
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn range_queries_align_as_tempo_with_one_step_before_the_start() {
        // [1000.5 s, 1995 s] by 10 s: evaluated over (990 s, 2000 s], samples at 1000 … 2000 s.
        assert_eq!(align(1_000 * S + S / 2, 1_995 * S, 10 * S), (990 * S, 2_000 * S));
        // Already aligned: the end stays, the start moves back a step.
        assert_eq!(align(1_000 * S, 2_000 * S, 10 * S), (990 * S, 2_000 * S));
        // A start within the first step stays at 0.
        assert_eq!(align(5 * S, 95 * S, 10 * S), (0, 100 * S));
    }

    /// A range query's end as Tempo's frontend leaves it: clamped, aligned, clamped again.
    fn range_end(start: u64, end: u64, step: u64, latest: u64) -> u64 {
        let r = cutoff::range_end(Range { start, end }, latest).unwrap();
        let (_, end) = align(r.start, r.end, step);
        cutoff::aligned_end(end, step, latest)
    }

    #[test]
    fn range_query_ends_are_cut_off_as_tempo_cuts_them() {
        // Tempo's TestQueryRangeHandlerWithEndCutoff: step 10 s, cutoff 30 s, now 0.123 s past
        // a step boundary (1000 s), start 100 s before now.
        let now = 1_000 * S + 123_000_000;
        let latest = now - 30 * S;
        let start = now - 100 * S;
        let end = |asked: u64| range_end(start, asked, 10 * S, latest);
        // Up to now, or just before: the end of the last whole step before now − 30 s.
        assert_eq!(end(now), 970 * S);
        assert_eq!(end(now - 100_000_000), 970 * S);
        // Well before the cutoff: aligned up as usual (to the right), not clamped.
        assert_eq!(end(now - 50 * S), 960 * S);
        // 33 s before now aligns up to 970 s, which is before now − 30 s: kept.
        assert_eq!(end(now - 33 * S), 970 * S);
        // A cutoff of 0 still pulls a future end back to now.
        assert_eq!(range_end(start, now + 60 * S, 10 * S, now), 1_000 * S);
        // A window inside the cutoff is refused.
        let inside = cutoff::range_end(
            Range {
                start: now - 10 * S,
                end: now,
            },
            latest,
        );
        assert!(inside.unwrap_err().to_string().contains("within query_end_cutoff"));
    }

    #[test]
    fn instant_query_ends_move_back_by_whole_seconds() {
        // Tempo's TestClampInstantQueryEnd: a "last 6 hours" query ending 0.123456789 s past
        // a second keeps a whole number of seconds once clamped.
        let now = 100_000 * S + 500_000_000;
        let latest = now - 30 * S;
        let asked = Range {
            start: 100_000 * S + 123_456_789 - 6 * 3_600 * S,
            end: 100_000 * S + 123_456_789,
        };
        let r = cutoff::instant_end(asked, latest).unwrap();
        assert_eq!(r.start, asked.start);
        assert_eq!(
            r.end,
            asked.end - 30 * S,
            "29.62 s past the cutoff: 30 whole seconds back"
        );
        assert_eq!((r.end - r.start) % S, 0);
        // An end before the cutoff is kept as it is.
        let early = Range {
            start: 0,
            end: latest - 1,
        };
        assert_eq!(cutoff::instant_end(early, latest).unwrap(), early);
        // A window inside the cutoff is refused.
        let inside = Range {
            start: now - 10 * S,
            end: now,
        };
        assert!(cutoff::instant_end(inside, latest).is_err());
    }
}
