//! Issue 14: Tempo 3's Go clients (tempo-cli, tempo-vulture) decode responses strictly, so a
//! field current Tempo no longer has (such as `promLabels`, field 3 of `TimeSeries`, now
//! reserved) breaks them. Every JSON response of the query API is checked here against the
//! field lists of current Tempo's protobuf messages (../shared/reference/tempo-api-and-storage.md),
//! as a strict decoder would: an unknown field anywhere fails the test.
#![allow(clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use integration_tests::{Legato, otlp_request_at, post_otlp};
use serde_json::Value as Json;

/// How a field's value is shaped.
#[derive(Clone, Copy)]
enum Shape {
    Scalar,
    Message(&'static str),
    Repeated(&'static str),
    /// `map<string, Message>`.
    Map(&'static str),
}

use Shape::{Map, Message, Repeated, Scalar};

/// The JSON (protojson) field names of each message, as current Tempo defines them.
fn fields(message: &str) -> &'static [(&'static str, Shape)] {
    match message {
        "SearchResponse" => &[
            ("traces", Repeated("TraceSearchMetadata")),
            ("metrics", Message("SearchMetrics")),
        ],
        "TraceSearchMetadata" => &[
            ("traceID", Scalar),
            ("rootServiceName", Scalar),
            ("rootTraceName", Scalar),
            ("startTimeUnixNano", Scalar),
            ("durationMs", Scalar),
            ("spanSet", Message("SpanSet")),
            ("spanSets", Repeated("SpanSet")),
            ("serviceStats", Map("ServiceStats")),
        ],
        "ServiceStats" => &[("spanCount", Scalar), ("errorCount", Scalar)],
        "SpanSet" => &[
            ("spans", Repeated("Span")),
            ("matched", Scalar),
            ("attributes", Repeated("KeyValue")),
        ],
        "Span" => &[
            ("spanID", Scalar),
            ("name", Scalar),
            ("startTimeUnixNano", Scalar),
            ("durationNanos", Scalar),
            ("attributes", Repeated("KeyValue")),
        ],
        "SearchMetrics" => &[
            ("inspectedTraces", Scalar),
            ("inspectedBytes", Scalar),
            ("totalBlocks", Scalar),
            ("completedJobs", Scalar),
            ("totalJobs", Scalar),
            ("totalBlockBytes", Scalar),
            ("inspectedSpans", Scalar),
            ("backendReads", Scalar),
            ("backendBytes", Scalar),
            ("additionalMetrics", Scalar),
        ],
        "MetadataMetrics" => &[
            ("inspectedBytes", Scalar),
            ("totalJobs", Scalar),
            ("completedJobs", Scalar),
            ("totalBlocks", Scalar),
            ("totalBlockBytes", Scalar),
            ("backendReads", Scalar),
            ("backendBytes", Scalar),
            ("additionalMetrics", Scalar),
        ],
        "SearchTagsResponse" => &[("tagNames", Scalar), ("metrics", Message("MetadataMetrics"))],
        "SearchTagsV2Response" => &[
            ("scopes", Repeated("SearchTagsV2Scope")),
            ("metrics", Message("MetadataMetrics")),
        ],
        "SearchTagsV2Scope" => &[("name", Scalar), ("tags", Scalar)],
        "SearchTagValuesResponse" => &[("tagValues", Scalar), ("metrics", Message("MetadataMetrics"))],
        "SearchTagValuesV2Response" => &[
            ("tagValues", Repeated("TagValue")),
            ("metrics", Message("MetadataMetrics")),
        ],
        "TagValue" => &[("type", Scalar), ("value", Scalar)],
        "QueryRangeResponse" => &[
            ("series", Repeated("TimeSeries")),
            ("metrics", Message("SearchMetrics")),
            ("status", Scalar),
            ("message", Scalar),
        ],
        "TimeSeries" => &[
            ("labels", Repeated("KeyValue")),
            ("samples", Repeated("Sample")),
            ("exemplars", Repeated("Exemplar")),
        ],
        "Sample" => &[("timestampMs", Scalar), ("value", Scalar)],
        "Exemplar" => &[
            ("labels", Repeated("KeyValue")),
            ("value", Scalar),
            ("timestampMs", Scalar),
        ],
        "QueryInstantResponse" => &[
            ("series", Repeated("InstantSeries")),
            ("metrics", Message("SearchMetrics")),
            ("status", Scalar),
            ("message", Scalar),
        ],
        "InstantSeries" => &[("labels", Repeated("KeyValue")), ("value", Scalar)],
        "TraceByIDResponse" => &[
            // The trace itself is OTLP (checked by the OTLP tests).
            ("trace", Scalar),
            ("metrics", Message("TraceByIDMetrics")),
            ("status", Scalar),
            ("message", Scalar),
        ],
        "TraceByIDMetrics" => &[
            ("inspectedBytes", Scalar),
            ("backendReads", Scalar),
            ("backendBytes", Scalar),
            ("additionalMetrics", Scalar),
        ],
        "KeyValue" => &[("key", Scalar), ("value", Message("AnyValue"))],
        "AnyValue" => &[
            ("stringValue", Scalar),
            ("boolValue", Scalar),
            ("intValue", Scalar),
            ("doubleValue", Scalar),
            ("arrayValue", Message("ArrayValue")),
            ("kvlistValue", Message("KeyValueList")),
            ("bytesValue", Scalar),
        ],
        "ArrayValue" => &[("values", Repeated("AnyValue"))],
        "KeyValueList" => &[("values", Repeated("KeyValue"))],
        other => panic!("no field list for {other}"),
    }
}

/// Every field of `value` (a `message`) that current Tempo does not define, as paths.
fn unknown_fields(message: &str, value: &Json, path: &str, out: &mut Vec<String>) {
    let Some(object) = value.as_object() else {
        out.push(format!("{path}: expected a {message} object, got {value}"));
        return;
    };
    let known = fields(message);
    for (key, v) in object {
        let here = format!("{path}.{key}");
        match known.iter().find(|(name, _)| name == key).map(|(_, shape)| *shape) {
            None => out.push(format!("{here} (not a field of {message})")),
            Some(Scalar) => {}
            Some(Message(m)) => unknown_fields(m, v, &here, out),
            Some(Repeated(m)) => {
                for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                    unknown_fields(m, item, &format!("{here}[{i}]"), out);
                }
            }
            Some(Map(m)) => {
                for (k, item) in v.as_object().into_iter().flatten() {
                    unknown_fields(m, item, &format!("{here}.{k}"), out);
                }
            }
        }
    }
}

/// A response to check: its message, path and query parameters.
type Check<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);

#[test]
fn the_checker_finds_a_field_tempo_no_longer_has() {
    let series = serde_json::json!({"series": [{"labels": [], "promLabels": "{}", "samples": []}]});
    let mut out = Vec::new();
    unknown_fields("QueryRangeResponse", &series, "$", &mut out);
    assert_eq!(out, ["$.series[0].promLabels (not a field of TimeSeries)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_response_has_only_fields_current_tempo_defines() {
    let dir = tempfile::tempdir().unwrap();
    let legato = Legato::start_default(dir.path());
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    for seed in 0..5 {
        // Two minutes ago: inside the metrics ranges once their end is cut off (now − 30 s,
        // down to a whole 60 s step), so those answers have series to check.
        let (request, id) = otlp_request_at(9000 + seed, 4, now_ns - 120_000_000_000);
        assert_eq!(post_otlp(&client, &legato, &request).await.0, 200);
        ids.push(id);
    }
    let now = now_ns / 1_000_000_000;
    let (start, end) = ((now - 600).to_string(), (now + 60).to_string());
    let range = [("start", start.as_str()), ("end", end.as_str())];
    let id = hex::encode(ids[0]);
    let checks: Vec<Check> = vec![
        (
            "SearchResponse",
            "/api/search".into(),
            vec![("q", "{ }"), ("limit", "3")],
        ),
        (
            "SearchResponse",
            "/api/search".into(),
            vec![(
                "q",
                "{ span.http.method = \"GET\" } | select(name, resource.service.name)",
            )],
        ),
        (
            "SearchResponse",
            "/api/search".into(),
            vec![("q", "{ } | by(resource.service.name)")],
        ),
        ("SearchTagsResponse", "/api/search/tags".into(), vec![]),
        ("SearchTagsV2Response", "/api/v2/search/tags".into(), vec![]),
        (
            "SearchTagValuesResponse",
            "/api/search/tag/service.name/values".into(),
            vec![],
        ),
        (
            "SearchTagValuesV2Response",
            "/api/v2/search/tag/resource.service.name/values".into(),
            vec![],
        ),
        (
            "QueryRangeResponse",
            "/api/metrics/query_range".into(),
            [
                vec![("q", "{ } | rate() by (resource.service.name)"), ("step", "60s")],
                range.to_vec(),
            ]
            .concat(),
        ),
        (
            "QueryRangeResponse",
            "/api/metrics/query_range".into(),
            [vec![("q", "{ } | quantile_over_time(duration, .9)")], range.to_vec()].concat(),
        ),
        (
            "QueryInstantResponse",
            "/api/metrics/query".into(),
            [vec![("q", "{ } | count_over_time() by (name)")], range.to_vec()].concat(),
        ),
        ("TraceByIDResponse", format!("/api/v2/traces/{id}"), vec![]),
        (
            "TraceByIDResponse",
            format!("/api/v2/traces/{id}"),
            vec![("q", "{ name = \"span-1\" }")],
        ),
    ];
    let mut problems = Vec::new();
    for (message, path, params) in &checks {
        let resp = client.get(legato.url(path)).query(params).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path} {params:?}");
        let body: Json = resp.json().await.unwrap();
        unknown_fields(message, &body, &format!("{path}?{params:?}"), &mut problems);
    }
    assert!(
        problems.is_empty(),
        "fields current Tempo does not define:\n{}",
        problems.join("\n")
    );
}
