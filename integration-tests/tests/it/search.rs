//! TraceQL search and tags over HTTP, as Grafana calls them, on a fixed hand-written dataset:
//! the same answers from live data and, after a flush, from blocks.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use integration_tests::{Legato, Ports, config_yaml, get_json, get_json_query, post_otlp};
use legato_proto::collector::ExportTraceServiceRequest;
use legato_proto::common::{AnyValue, KeyValue, any_value::Value};
use legato_proto::resource::Resource;
use legato_proto::tempopb::search::SearchResponse;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value as Json;

const MS: u64 = 1_000_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

struct SpanSpec {
    service: &'static str,
    id: u8,
    parent: Option<u8>,
    name: &'static str,
    kind: i32,
    offset_ms: u64,
    duration_ms: u64,
    error: bool,
    attrs: Vec<KeyValue>,
}

fn span(
    service: &'static str,
    id: u8,
    parent: Option<u8>,
    name: &'static str,
    kind: i32,
    offset_ms: u64,
    duration_ms: u64,
) -> SpanSpec {
    SpanSpec {
        service,
        id,
        parent,
        name,
        kind,
        offset_ms,
        duration_ms,
        error: false,
        attrs: Vec::new(),
    }
}

fn trace_id(n: u8) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = 0x0a;
    id[15] = n;
    id
}

/// The dataset:
/// - T1: api "GET /" (server, 150 ms) → db "SELECT" (client, 20 ms, db.system=postgresql)
/// - T2: api "GET /" (server, 50 ms) → db "SELECT" (client, error, db.system=mysql)
/// - T3: worker "process" (server, 300 ms, http.status_code=500) → api "GET /health" (client)
fn dataset(base: u64) -> ExportTraceServiceRequest {
    let mut db1 = span("db", 2, Some(1), "SELECT", 3, 10, 20);
    db1.attrs.push(kv("db.system", Value::StringValue("postgresql".into())));
    let mut db2 = span("db", 2, Some(1), "SELECT", 3, 10, 20);
    db2.attrs.push(kv("db.system", Value::StringValue("mysql".into())));
    db2.error = true;
    let mut worker = span("worker", 1, None, "process", 2, 0, 300);
    worker.attrs.push(kv("http.status_code", Value::IntValue(500)));
    let traces = vec![
        (1u8, vec![span("api", 1, None, "GET /", 2, 0, 150), db1]),
        (2u8, vec![span("api", 1, None, "GET /", 2, 0, 50), db2]),
        (3u8, vec![worker, span("api", 2, Some(1), "GET /health", 3, 5, 10)]),
    ];
    let mut resource_spans = Vec::new();
    for (n, spans) in traces {
        for s in spans {
            let start = base + u64::from(n) * 1000 * MS + s.offset_ms * MS;
            let otlp = Span {
                trace_id: trace_id(n).to_vec(),
                span_id: vec![n, 0, 0, 0, 0, 0, 0, s.id],
                parent_span_id: s.parent.map(|p| vec![n, 0, 0, 0, 0, 0, 0, p]).unwrap_or_default(),
                name: s.name.into(),
                kind: s.kind,
                start_time_unix_nano: start,
                end_time_unix_nano: start + s.duration_ms * MS,
                attributes: s.attrs,
                status: Some(Status {
                    code: if s.error { 2 } else { 0 },
                    message: String::new(),
                }),
                ..Default::default()
            };
            resource_spans.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", Value::StringValue(s.service.into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![otlp],
                    ..Default::default()
                }],
                schema_url: String::new(),
            });
        }
    }
    ExportTraceServiceRequest { resource_spans }
}

/// Checks a JSON value uses only the fields Grafana's strict parser knows.
fn assert_known_fields(v: &Json, path: &str) {
    let allowed: &[&str] = match path {
        "" => &["traces", "metrics"],
        "metrics" => &[
            "inspectedTraces",
            "inspectedBytes",
            "totalBlocks",
            "completedJobs",
            "totalJobs",
            "totalBlockBytes",
            "inspectedSpans",
        ],
        "trace" => &[
            "traceID",
            "rootServiceName",
            "rootTraceName",
            "startTimeUnixNano",
            "durationMs",
            "spanSet",
            "spanSets",
            "serviceStats",
        ],
        "spanset" => &["spans", "matched", "attributes"],
        "span" => &["spanID", "name", "startTimeUnixNano", "durationNanos", "attributes"],
        _ => return,
    };
    let obj = v.as_object().unwrap();
    for (k, child) in obj {
        assert!(allowed.contains(&k.as_str()), "unknown field {k:?} at {path:?}");
        match (path, k.as_str()) {
            ("", "metrics") => assert_known_fields(child, "metrics"),
            ("", "traces") => child
                .as_array()
                .unwrap()
                .iter()
                .for_each(|t| assert_known_fields(t, "trace")),
            ("trace", "spanSet") => assert_known_fields(child, "spanset"),
            ("trace", "spanSets") => child
                .as_array()
                .unwrap()
                .iter()
                .for_each(|s| assert_known_fields(s, "spanset")),
            ("spanset", "spans") => child
                .as_array()
                .unwrap()
                .iter()
                .for_each(|s| assert_known_fields(s, "span")),
            _ => {}
        }
    }
}

async fn search(client: &reqwest::Client, legato: &Legato, q: &str, range: (u64, u64)) -> Json {
    // Exactly Grafana's request: q, limit, spss, start, end (seconds), Accept JSON.
    let resp = client
        .get(legato.url("/api/search"))
        .query(&[
            ("q", q),
            ("limit", "20"),
            ("spss", "3"),
            ("start", &range.0.to_string()),
            ("end", &range.1.to_string()),
        ])
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{q}");
    let body: Json = resp.json().await.unwrap();
    assert_known_fields(&body, "");
    body
}

fn trace_ids(body: &Json) -> BTreeSet<String> {
    body["traces"]
        .as_array()
        .map(|ts| ts.iter().map(|t| t["traceID"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn ids(ns: &[u8]) -> BTreeSet<String> {
    ns.iter()
        .map(|n| hex::encode(trace_id(*n)).trim_start_matches('0').to_string())
        .collect()
}

const CASES: &[(&str, &[u8])] = &[
    (
        r#"{resource.service.name="api" && name="GET /" && duration>100ms}"#,
        &[1],
    ),
    ("{status=error}", &[2]),
    (r#"{ span.db.system = "postgresql" }"#, &[1]),
    (
        r#"{resource.service.name="api"} >> {span.db.system="postgresql"}"#,
        &[1],
    ),
    (r#"{resource.service.name="api"} > {status=error}"#, &[2]),
    (r#"{resource.service.name="db"} < {kind=server}"#, &[1, 2]),
    (r#"{kind=server} > {resource.service.name="db"}"#, &[1, 2]),
    ("{ span.http.status_code >= 500 }", &[3]),
    ("{ } | count() > 1", &[1, 2, 3]),
    ("{ } | count() > 2", &[]),
    (r#"{ name =~ "GET.*" }"#, &[1, 2, 3]),
    (r#"{ name !~ "GET.*" && kind = server }"#, &[3]),
    (r#"{ trace:rootService = "worker" }"#, &[3]),
    (r#"{ rootName = "GET /" && traceDuration < 100ms }"#, &[2]),
    (r#"{ .db.system != nil } && { kind = server }"#, &[1, 2]),
    (r#"{ .db.system = nil && resource.service.name = "db" }"#, &[]),
    (r#"{ resource.service.name = "worker" } || { status = error }"#, &[2, 3]),
    (r#"{ resource.service.name = "api" } | avg(duration) > 100ms"#, &[1]),
    (
        r#"{ resource.service.name = "api" } ~ { resource.service.name = "db" }"#,
        &[],
    ),
    ("{ duration > 1s }", &[]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_searches_give_the_same_answers_live_and_from_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let legato = Legato::start_default(dir.path());
    let client = reqwest::Client::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let base = now - 60_000 * MS;
    assert_eq!(post_otlp(&client, &legato, &dataset(base)).await.0, 200);
    let range = (base / 1_000_000_000 - 60, now / 1_000_000_000 + 60);

    for phase in ["live", "blocks"] {
        if phase == "blocks" {
            assert_eq!(client.post(legato.url("/flush")).send().await.unwrap().status(), 204);
        }
        for (q, want) in CASES {
            let body = search(&client, &legato, q, range).await;
            assert_eq!(trace_ids(&body), ids(want), "{phase}: {q}");
        }
        // The first case in detail: span fields and attributes Grafana shows.
        let body = search(&client, &legato, CASES[0].0, range).await;
        let t = &body["traces"][0];
        assert_eq!(t["rootServiceName"], "api");
        assert_eq!(t["rootTraceName"], "GET /");
        assert_eq!(t["durationMs"], 150);
        let span = &t["spanSets"][0]["spans"][0];
        assert_eq!(span["name"], "GET /");
        assert_eq!(span["durationNanos"], "150000000");
        assert_eq!(span["spanID"], "0100000000000001");
        let attrs = span["attributes"].as_array().unwrap();
        assert!(
            attrs
                .iter()
                .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "api"),
            "{attrs:?}"
        );
        assert_eq!(t["spanSets"][0]["matched"], 1);
        assert_eq!(t["spanSet"], t["spanSets"][0]);
    }

    // Protobuf answers decode as tempopb.SearchResponse.
    let resp = client
        .get(legato.url("/api/search"))
        .query(&[("q", "{status=error}")])
        .header("accept", "application/protobuf")
        .send()
        .await
        .unwrap();
    let decoded = SearchResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(decoded.traces.len(), 1);

    // A time range that excludes the data finds nothing.
    let body = search(&client, &legato, "{ }", (range.0 - 100_000, range.0 - 50_000)).await;
    assert!(trace_ids(&body).is_empty());
    // limit caps the result.
    let body: Json = get_json_query(&client, &legato.url("/api/search"), &[("q", "{ }"), ("limit", "2")]).await;
    assert_eq!(trace_ids(&body).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let legato = Legato::start_default(dir.path());
    let client = reqwest::Client::new();
    let get = |params: Vec<(&'static str, &'static str)>| client.get(legato.url("/api/search")).query(&params).send();
    let resp = get(vec![("q", "{ .foo = }")]).await.unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("invalid TraceQL query: parse error at line 1, col"),
        "{text}"
    );
    assert_eq!(get(vec![("q", "{}"), ("tags", "a=b")]).await.unwrap().status(), 400);
    assert_eq!(get(vec![("limit", "0")]).await.unwrap().status(), 400);
    assert_eq!(get(vec![("spss", "1000")]).await.unwrap().status(), 400);
    assert_eq!(get(vec![("start", "100")]).await.unwrap().status(), 400);
    let resp = get(vec![("start", "1000000"), ("end", "2000000")]).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("range specified by start and end exceeds")
    );
    assert_eq!(get(vec![("q", "{ } | rate()")]).await.unwrap().status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_tag_values_as_grafana_asks() {
    let dir = tempfile::tempdir().unwrap();
    let legato = Legato::start_default(dir.path());
    let client = reqwest::Client::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    assert_eq!(post_otlp(&client, &legato, &dataset(now - 60_000 * MS)).await.0, 200);
    for phase in ["live", "blocks"] {
        if phase == "blocks" {
            assert_eq!(client.post(legato.url("/flush")).send().await.unwrap().status(), 204);
        }
        let tags: Json = get_json(&client, &legato.url("/api/v2/search/tags?limit=5000")).await;
        let scope = |name: &str| -> Vec<String> {
            tags["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .map(|s| {
                    s["tags"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(scope("resource"), vec!["service.name"], "{phase}");
        assert_eq!(scope("span"), vec!["db.system", "http.status_code"], "{phase}");
        assert!(scope("intrinsic").contains(&"duration".to_string()));

        // Grafana percent-encodes the identifier; typed values decide quoting.
        let values: Json = get_json(
            &client,
            &legato.url("/api/v2/search/tag/resource.service.name/values?limit=5000&tag=resource.service.name"),
        )
        .await;
        assert_eq!(
            values["tagValues"],
            serde_json::json!([
                {"type": "string", "value": "api"}, {"type": "string", "value": "db"}, {"type": "string", "value": "worker"}
            ])
        );
        let values: Json = get_json(&client, &legato.url("/api/v2/search/tag/span.http.status_code/values")).await;
        assert_eq!(
            values["tagValues"],
            serde_json::json!([{"type": "int", "value": "500"}])
        );
        let values: Json = get_json(&client, &legato.url("/api/v2/search/tag/status/values")).await;
        assert!(
            values["tagValues"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["type"] == "keyword")
        );
        // q narrows values to matching spans.
        let values: Json = get_json_query(
            &client,
            &legato.url("/api/v2/search/tag/span.db.system/values"),
            &[("q", "{ status = error }")],
        )
        .await;
        assert_eq!(
            values["tagValues"],
            serde_json::json!([{"type": "string", "value": "mysql"}]),
            "{phase}"
        );
        let values: Json = get_json(&client, &legato.url("/api/v2/search/tag/name/values")).await;
        assert_eq!(values["tagValues"].as_array().unwrap().len(), 4, "{values}");
        // An encoded space in a quoted identifier arrives decoded once.
        let resp = client
            .get(legato.url("/api/v2/search/tag/span.%22with%20space%22/values"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            client
                .get(legato.url("/api/v2/search/tag/not%20valid/values"))
                .send()
                .await
                .unwrap()
                .status(),
            400
        );

        // v1 fallbacks.
        let v1: Json = get_json(&client, &legato.url("/api/search/tags")).await;
        assert_eq!(
            v1["tagNames"],
            serde_json::json!(["db.system", "http.status_code", "service.name"])
        );
        let v1: Json = get_json(&client, &legato.url("/api/search/tag/service.name/values")).await;
        assert_eq!(v1["tagValues"], serde_json::json!(["api", "db", "worker"]));
        assert_eq!(
            client
                .get(legato.url("/api/search/tags?scope=bogus"))
                .send()
                .await
                .unwrap()
                .status(),
            400
        );
    }
}

/// An instant metrics answer as (labels, value): each label's value printed whatever its type.
fn instant_series(body: &Json) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
    body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    let v = l["value"]
                        .as_object()
                        .and_then(|o| o.values().next())
                        .cloned()
                        .unwrap_or_default();
                    let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                    (l["key"].as_str().unwrap().to_string(), text)
                })
                .collect();
            (labels, s["value"].as_f64().unwrap_or(f64::NAN))
        })
        .collect()
}

/// The string value of label `key` of a series or exemplar.
fn label<'a>(item: &'a Json, key: &str) -> Option<&'a str> {
    item["labels"]
        .as_array()?
        .iter()
        .find(|l| l["key"] == key)
        .and_then(|l| l["value"]["stringValue"].as_str())
}

/// The sample of `series` at the step (of `step_ms`, closed at the right) holding exemplar `e`.
fn sample_at(series: &Json, e: &Json, step_ms: i64) -> Option<f64> {
    let at: i64 = e["timestampMs"].as_str()?.parse().ok()?;
    series["samples"].as_array()?.iter().find_map(|s| {
        let t: i64 = s["timestampMs"].as_str()?.parse().ok()?;
        (t - step_ms < at && at <= t).then(|| s["value"].as_f64()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceql_metrics_as_grafana_sends_them() {
    let dir = tempfile::tempdir().unwrap();
    let legato = Legato::start_default(dir.path());
    let client = reqwest::Client::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let base = now - 600_000 * MS;
    assert_eq!(post_otlp(&client, &legato, &dataset(base)).await.0, 200);
    let (start, end) = (
        (base / 1_000_000_000 - 60).to_string(),
        (now / 1_000_000_000).to_string(),
    );
    let get = |path: &'static str, q: &'static str, extra: Vec<(&'static str, String)>| {
        let mut params = vec![("q", q.to_string()), ("start", start.clone()), ("end", end.clone())];
        params.extend(extra);
        client
            .get(legato.url(path))
            .query(&params)
            .header("accept", "application/json")
            .send()
    };
    // The answer of a request that must succeed.
    let json = async |path: &'static str, q: &'static str, extra: Vec<(&'static str, String)>| -> Json {
        get(path, q, extra).await.unwrap().json().await.unwrap()
    };
    for phase in ["live", "blocks"] {
        if phase == "blocks" {
            assert_eq!(client.post(legato.url("/flush")).send().await.unwrap().status(), 204);
        }
        // Instant: one value per series; strict fields only.
        let body: Json = json(
            "/api/metrics/query",
            "{ } | count_over_time() by (resource.service.name)",
            vec![],
        )
        .await;
        let mut counts: Vec<(String, f64)> = body["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                // Current Tempo's InstantSeries fields only (Tempo 3 clients refuse others).
                for k in s.as_object().unwrap().keys() {
                    assert!(["labels", "value"].contains(&k.as_str()), "unknown instant field {k}");
                }
                (
                    s["labels"][0]["value"]["stringValue"].as_str().unwrap().to_string(),
                    s["value"].as_f64().unwrap(),
                )
            })
            .collect();
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            counts,
            vec![("api".into(), 3.0), ("db".into(), 2.0), ("worker".into(), 1.0)],
            "{phase}"
        );

        // Arithmetic between metrics queries: the share of server spans per service; db has
        // none, so its series has no partner and is dropped, as Tempo does.
        let body = json(
            "/api/metrics/query",
            "({ kind = server } | count_over_time() by (resource.service.name)) / ({ } | count_over_time() by (resource.service.name))",
            vec![],
        )
        .await;
        let mut shares = instant_series(&body);
        shares.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(shares.len(), 2, "{phase}: {body}");
        assert_eq!(
            shares[0].0.get("resource.service.name").map(String::as_str),
            Some("api")
        );
        assert!((shares[0].1 - 2.0 / 3.0).abs() < 1e-9, "{phase}: {shares:?}");
        assert_eq!(
            shares[1].0.get("resource.service.name").map(String::as_str),
            Some("worker")
        );
        assert!((shares[1].1 - 1.0).abs() < 1e-9, "{phase}: {shares:?}");

        // compare(): error spans (the selection) against the rest (the baseline), per value.
        let body = json("/api/metrics/query", "{ } | compare({ status = error })", vec![]).await;
        let series = instant_series(&body);
        let value = |meta: &str, attr: &str, v: &str| {
            series
                .iter()
                .find(|(l, _)| {
                    l.get("__meta_type").map(String::as_str) == Some(meta) && l.get(attr).map(String::as_str) == Some(v)
                })
                .map(|(_, x)| *x)
        };
        assert_eq!(
            value("selection", "resource.service.name", "db"),
            Some(1.0),
            "{phase}: {body}"
        );
        assert_eq!(value("baseline", "resource.service.name", "api"), Some(3.0), "{phase}");
        assert_eq!(value("baseline", "resource.service.name", "db"), Some(1.0), "{phase}");
        assert_eq!(value("selection", "span.db.system", "mysql"), Some(1.0), "{phase}");
        assert_eq!(value("baseline", "span.db.system", "postgresql"), Some(1.0), "{phase}");
        assert_eq!(value("selection", "span.db.system", "postgresql"), None, "{phase}");
        assert!(
            series
                .iter()
                .any(|(l, _)| l.get("__meta_type").map(String::as_str) == Some("baseline_total")),
            "{phase}: {body}"
        );

        // Quantiles as Tempo computes them: server durations 50, 150, 300 ms fall in buckets
        // 2^26, 2^28 and 2^29 ns; p50 reads ⌈1.5⌉ = 2 spans, ending exactly at bucket 2^28.
        let body: Json = json(
            "/api/metrics/query",
            "{ kind = server } | quantile_over_time(duration, .5)",
            vec![],
        )
        .await;
        let p50 = body["series"][0]["value"].as_f64().unwrap();
        assert!((p50 - 0.268_435_456).abs() < 1e-6, "{phase}: p50 {p50}");

        // Range: rate() samples times the step add up to all 6 spans; exemplars carry trace:id.
        let body: Json = json("/api/metrics/query_range", "{ } | rate()", vec![("step", "60s".into())]).await;
        let series = &body["series"][0];
        assert_eq!(series["labels"][0]["key"], "__name__");
        let total: f64 = series["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["value"].as_f64().unwrap() * 60.0)
            .sum();
        assert!((total - 6.0).abs() < 1e-9, "{phase}: {total}");
        assert!(series["samples"][0]["timestampMs"].is_string());
        let exemplar = &series["exemplars"][0];
        assert_eq!(exemplar["labels"][0]["key"], "trace:id");
        // Exemplars as current Tempo answers them: a rate() exemplar is valued at its step's
        // sample (it was 1); one span per trace, two per 1/50 of the range (the three traces
        // start within 3 s, so two or three of them).
        let exemplars = series["exemplars"].as_array().unwrap();
        assert!((2..=3).contains(&exemplars.len()), "{phase}: {series}");
        let mut traces: Vec<&str> = exemplars.iter().map(|e| label(e, "trace:id").unwrap()).collect();
        traces.sort_unstable();
        traces.dedup();
        assert_eq!(traces.len(), exemplars.len(), "{phase}: one per trace: {series}");
        for e in exemplars {
            assert_eq!(e["value"].as_f64(), sample_at(series, e, 60_000), "{phase}: {series}");
        }
        // The query's hint sets the limit, as Tempo's frontend reads it.
        let body: Json = json(
            "/api/metrics/query_range",
            "{ } | rate() with(exemplars=1)",
            vec![("step", "60s".into())],
        )
        .await;
        assert_eq!(
            body["series"][0]["exemplars"].as_array().map(Vec::len),
            Some(1),
            "{phase}: {body}"
        );
        // histogram_over_time: exemplars on the series of their span's bucket, valued at its
        // count in their step (there were none).
        let body: Json = json(
            "/api/metrics/query_range",
            "{ } | histogram_over_time(duration)",
            vec![("step", "60s".into())],
        )
        .await;
        let mut on_buckets = 0;
        for series in body["series"].as_array().unwrap() {
            for e in series["exemplars"].as_array().into_iter().flatten() {
                assert_eq!(e["value"].as_f64(), sample_at(series, e, 60_000), "{phase}: {body}");
                on_buckets += 1;
            }
        }
        assert!(on_buckets >= 2, "{phase}: {body}");
        // compare(): exemplars on the totals, labelled with every attribute of the span
        // (Tempo's select-all fetch), not span:id; valued at the total in their step.
        let body: Json = json(
            "/api/metrics/query_range",
            "{ } | compare({ status = error })",
            vec![("step", "60s".into())],
        )
        .await;
        let with_exemplars: Vec<&Json> = body["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["exemplars"].as_array().is_some_and(|e| !e.is_empty()))
            .collect();
        assert!(!with_exemplars.is_empty(), "{phase}: {body}");
        for series in with_exemplars {
            let meta = label(series, "__meta_type").unwrap();
            assert!(meta.ends_with("_total"), "{phase}: {series}");
            for e in series["exemplars"].as_array().unwrap() {
                assert_eq!(e["value"].as_f64(), sample_at(series, e, 60_000), "{phase}: {series}");
                for key in [
                    "trace:id",
                    "resource.service.name",
                    "name",
                    "kind",
                    "status",
                    "duration",
                ] {
                    assert!(label(e, key).is_some(), "{phase}: {key} in {e}");
                }
                assert!(label(e, "span:id").is_none(), "{phase}: {e}");
            }
        }
        // Current Tempo's TimeSeries fields only, as tempo-cli and tempo-vulture decode them.
        for k in series.as_object().unwrap().keys() {
            assert!(
                ["labels", "samples", "exemplars"].contains(&k.as_str()),
                "unknown series field {k}"
            );
        }
        // Grafana 10.4–11.3 send `query=` and name series by `promLabels`: they get it.
        let old_grafana: Json = get_json_query(
            &client,
            &legato.url("/api/metrics/query_range"),
            &[
                ("query", "{ } | count_over_time() by (resource.service.name)"),
                ("start", start.as_str()),
                ("end", end.as_str()),
            ],
        )
        .await;
        let names: Vec<&str> = old_grafana["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["promLabels"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"{resource.service.name=\"api\"}"), "{phase}: {names:?}");
    }
    // Errors name the problem.
    let resp = get("/api/metrics/query_range", "{ }", vec![]).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("metrics function"));
    let resp = get("/api/metrics/query_range", "{ } | rate()", vec![("step", "1ms".into())])
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("step of"));
    let resp = client
        .get(legato.url("/api/metrics/query_range"))
        .query(&[("q", "{} | rate()"), ("start", "1000000"), ("end", "2000000")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("exceeds the maximum allowed duration")
    );
}

/// Issue 10: a metrics query grouped by a high-cardinality attribute stops at
/// `query_frontend.metrics.max_response_series` with Tempo's PARTIAL status and message,
/// instead of growing without bound; a query under the limit is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_series_are_bounded_with_a_partial_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let extra = "query_frontend:\n  metrics:\n    max_response_series: 4\n";
    let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, extra));
    let client = reqwest::Client::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let base = now - 600_000 * MS;
    assert_eq!(post_otlp(&client, &legato, &dataset(base)).await.0, 200);
    let range = [
        ("start", (base / 1_000_000_000 - 60).to_string()),
        ("end", (now / 1_000_000_000).to_string()),
    ];
    for path in ["/api/metrics/query", "/api/metrics/query_range"] {
        let get = async |q: &str| -> Json {
            let resp = client
                .get(legato.url(path))
                .query(&range)
                .query(&[("q", q)])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path} {q}");
            resp.json().await.unwrap()
        };
        let body = get("{ } | count_over_time() by (span:id)").await;
        assert_eq!(body["series"].as_array().unwrap().len(), 4, "{path}: {body}");
        assert_eq!(body["status"], "PARTIAL", "{path}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Response exceeds maximum series limit of 4, a partial response is returned"),
            "{path}: {body}"
        );
        let body = get("{ } | count_over_time() by (resource.service.name)").await;
        assert_eq!(body["series"].as_array().unwrap().len(), 3, "{path}: {body}");
        assert!(
            body.get("status").is_none() && body.get("message").is_none(),
            "{path}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_streaming_querier_on_grpc_and_http_ports() {
    use legato_proto::tempopb::streaming::streaming_querier_client::StreamingQuerierClient;
    use legato_proto::tempopb::streaming::{
        QueryRangeRequest, SearchRequest, SearchTagValuesRequest, SearchTagsRequest,
    };

    let dir = tempfile::tempdir().unwrap();
    let legato = Legato::start_default(dir.path());
    let client = reqwest::Client::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let base = now - 600_000 * MS;
    assert_eq!(post_otlp(&client, &legato, &dataset(base)).await.0, 200);
    // Half the data in a block, half live: results must combine both.
    assert_eq!(client.post(legato.url("/flush")).send().await.unwrap().status(), 204);
    // A live trace from before the metrics range (2023).
    let (req, _) = integration_tests::otlp_request_at(99, 2, 1_700_000_000_000_000_000);
    assert_eq!(post_otlp(&client, &legato, &req).await.0, 200);

    let ports = legato.ports;
    for port in [ports.grpc, ports.http] {
        let mut querier = StreamingQuerierClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        let request = SearchRequest {
            query: "{ resource.service.name = \"api\" }".into(),
            limit: 20,
            spans_per_span_set: 3,
            ..Default::default()
        };
        let mut stream = querier.search(request).await.unwrap().into_inner();
        let mut messages = Vec::new();
        while let Some(msg) = stream.message().await.unwrap() {
            messages.push(msg);
        }
        assert!(
            messages.len() >= 2,
            "port {port}: progress then final, got {}",
            messages.len()
        );
        let last = messages.last().unwrap();
        let ids: BTreeSet<String> = last.traces.iter().map(|t| t.trace_id.clone()).collect();
        assert_eq!(ids, ids_of(&[1, 2, 3]), "port {port}");
        let metrics = last.metrics.as_ref().unwrap();
        assert_eq!(metrics.completed_jobs, metrics.total_jobs);

        let tags = querier
            .search_tags_v2(SearchTagsRequest {
                scope: "resource".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let tags = tags.into_inner().message().await.unwrap().unwrap();
        assert_eq!(tags.scopes[0].tags, vec!["service.name"]);
        let values = querier
            .search_tag_values_v2(SearchTagValuesRequest {
                tag_name: "span.db.system".into(),
                query: "{ status = error }".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let values = values.into_inner().message().await.unwrap().unwrap();
        assert_eq!(
            values.tag_values.iter().map(|v| v.value.as_str()).collect::<Vec<_>>(),
            vec!["mysql"]
        );

        let range = QueryRangeRequest {
            query: "{ } | count_over_time() by (resource.service.name)".into(),
            start: base - 60_000 * MS,
            end: now,
            step: 60_000 * MS,
            ..Default::default()
        };
        let resp = querier
            .metrics_query_range(range)
            .await
            .unwrap()
            .into_inner()
            .message()
            .await
            .unwrap()
            .unwrap();
        let total: f64 = resp.series.iter().flat_map(|s| &s.samples).map(|s| s.value).sum();
        assert_eq!(
            total, 6.0,
            "the dataset's 6 spans (the live trace is outside the range)"
        );

        // The live trace (not in any block) is found too.
        let request = SearchRequest {
            query: "{ name = \"span-0\" }".into(),
            ..Default::default()
        };
        let mut stream = querier.search(request).await.unwrap().into_inner();
        let mut last = None;
        while let Some(msg) = stream.message().await.unwrap() {
            last = Some(msg);
        }
        assert_eq!(last.unwrap().traces.len(), 1, "port {port}");
    }
    // Errors carry gRPC codes.
    let mut querier = StreamingQuerierClient::connect(format!("http://127.0.0.1:{}", ports.grpc))
        .await
        .unwrap();
    let mut stream = querier
        .search(SearchRequest {
            query: "{ .a = }".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let err = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a bad query must fail"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
}

fn ids_of(ns: &[u8]) -> BTreeSet<String> {
    ids(ns)
}

/// Issue 14: trace-by-id v2 with `q` returns only the matching spans (and, as asked, their
/// descendants and ancestors), marked PARTIAL; without `q` the whole trace; bad `q` is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_by_id_v2_prunes_spans_by_q() {
    let dir = tempfile::tempdir().unwrap();
    let legato = Legato::start_default(dir.path());
    let client = reqwest::Client::new();
    // A chain of six spans, span-0 → span-1 → ... → span-5; span-2 failed.
    let (mut request, trace_id) = integration_tests::otlp_request(77, 6);
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    for i in 1..spans.len() {
        spans[i].parent_span_id = spans[i - 1].span_id.clone();
    }
    spans[2].status = Some(Status {
        code: 2,
        message: "boom".into(),
    });
    assert_eq!(post_otlp(&client, &legato, &request).await.0, 200);
    let id = hex::encode(trace_id);
    let fetch = |params: Vec<(&'static str, &'static str)>| {
        let url = legato.url(&format!("/api/v2/traces/{id}"));
        let client = client.clone();
        async move {
            let resp = client
                .get(url)
                .query(&params)
                .header("accept", "application/protobuf")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap();
            (status, body)
        }
    };
    let names = |body: &[u8]| -> (Vec<String>, i32, String) {
        let resp = legato_proto::tempopb::TraceByIdResponse::decode(body).unwrap();
        let mut names: Vec<String> = resp
            .trace
            .unwrap_or_default()
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.name.clone())
            .collect();
        names.sort();
        (names, resp.status, resp.message)
    };
    let (status, body) = fetch(vec![]).await;
    assert_eq!(status, 200);
    assert_eq!(names(&body).0.len(), 6);
    assert_eq!(names(&body).1, 0, "a whole trace is COMPLETE");

    let (status, body) = fetch(vec![("q", "{ status = error }")]).await;
    assert_eq!(status, 200);
    let (got, partial, message) = names(&body);
    assert_eq!(got, ["span-2"]);
    assert_eq!(partial, 1, "PARTIAL when spans were left out");
    assert!(message.contains("1 of 6"), "{message}");

    let q = ("q", "{ status = error }");
    let (_, body) = fetch(vec![q, ("match_depth", "1")]).await;
    assert_eq!(names(&body).0, ["span-2", "span-3"]);
    let (_, body) = fetch(vec![
        q,
        ("match_depth", "-1"),
        ("keep_hierarchy", "true"),
        ("ancestor_depth", "1"),
    ])
    .await;
    assert_eq!(names(&body).0, ["span-1", "span-2", "span-3", "span-4", "span-5"]);
    let (_, body) = fetch(vec![q, ("keep_hierarchy", "true")]).await;
    assert_eq!(names(&body).0, ["span-0", "span-1", "span-2"]);
    let (_, body) = fetch(vec![("q", "{ name = \"span-0\" }"), ("match_depth", "-1")]).await;
    assert_eq!(names(&body).0.len(), 6);
    assert_eq!(names(&body).1, 0, "nothing left out: COMPLETE");
    let (_, body) = fetch(vec![("q", "{ .nothing = 1 }")]).await;
    assert!(names(&body).0.is_empty());

    // JSON says PARTIAL too.
    let resp = client
        .get(legato.url(&format!("/api/v2/traces/{id}")))
        .query(&[q])
        .send()
        .await
        .unwrap();
    let json: Json = resp.json().await.unwrap();
    assert_eq!(json["status"], "PARTIAL", "{json}");

    for (bad, names_it) in [
        (vec![("q", "{ .a = }")], "invalid TraceQL"),
        (vec![("q", "{ } | count() > 1")], "one spanset filter"),
        (vec![("q", "{ trace:rootName = \"x\" }")], "trace:rootName"),
        (vec![q, ("match_depth", "x")], "match_depth"),
        (vec![q, ("keep_hierarchy", "maybe")], "keep_hierarchy"),
    ] {
        let (status, body) = fetch(bad).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(names_it), "{text}");
    }
}

/// Issue 14: `query_frontend.query_end_cutoff` (Tempo's key and its 30 s default) leaves the
/// newest seconds out of metrics queries, as Tempo's frontend does: an instant query's end
/// moves back by whole seconds, a range query ends at the last whole step before now − 30 s,
/// and a window entirely inside the cutoff is refused. With 0 everything up to now counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_queries_leave_out_the_newest_data_by_the_end_cutoff() {
    let client = reqwest::Client::new();
    let now_ns = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    for (cutoff, counted) in [(None, 2.0), (Some("0s"), 5.0)] {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::free();
        let extra = cutoff
            .map(|c| format!("query_frontend:\n  query_end_cutoff: {c}\n"))
            .unwrap_or_default();
        let legato = Legato::start(dir.path(), ports, &config_yaml(ports, dir.path(), None, &extra));
        // Two spans two minutes ago, three 15 s ago (inside the default cutoff).
        let now = now_ns();
        let (old, _) = integration_tests::otlp_request_at(1, 2, now - 120_000 * MS);
        let (recent, _) = integration_tests::otlp_request_at(2, 3, now - 15_000 * MS);
        assert_eq!(post_otlp(&client, &legato, &old).await.0, 200);
        assert_eq!(post_otlp(&client, &legato, &recent).await.0, 200);
        let get = async |path: &str, params: &[(&str, &str)]| -> Json {
            let url = legato.url(path);
            let query = [&[("q", "{ } | count_over_time()")], params].concat();
            let resp = client.get(&url).query(&query).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path} {query:?}");
            resp.json().await.unwrap()
        };
        let instant = get("/api/metrics/query", &[("since", "5m")]).await;
        assert_eq!(instant["series"][0]["value"], counted, "{cutoff:?}: {instant}");
        let range = get("/api/metrics/query_range", &[("since", "5m"), ("step", "10s")]).await;
        let after_ms = (now_ns() / MS) as i64;
        let samples = range["series"][0]["samples"].as_array().unwrap();
        let total: f64 = samples.iter().map(|s| s["value"].as_f64().unwrap()).sum();
        assert_eq!(total, counted, "{cutoff:?}: {range}");
        let last: i64 = samples.last().unwrap()["timestampMs"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(last % 10_000, 0, "the last step is a whole one: {range}");
        if cutoff.is_none() {
            assert!(last <= after_ms - 30_000, "{last} is within 30 s of {after_ms}");
            // Refused when the whole window is inside the cutoff.
            let start = ((now_ns() - 10_000 * MS) / 1_000_000_000).to_string();
            for path in ["/api/metrics/query", "/api/metrics/query_range"] {
                let resp = client
                    .get(legato.url(path))
                    .query(&[("q", "{ } | count_over_time()"), ("start", start.as_str())])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 400, "{path}");
                let body = resp.text().await.unwrap();
                assert!(
                    body.contains("query window falls entirely within query_end_cutoff"),
                    "{path}: {body}"
                );
            }
        }
    }
}
