//! Issue 14: the `legato` command line run as a process against a running server (trace,
//! search, tags, values, metrics) and against its bucket (blocks list, inspect, verify).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use integration_tests::{Legato, free_port, kv, legato_bin, post_otlp};
use legato_proto::collector::ExportTraceServiceRequest;
use legato_proto::resource::Resource;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span, Status};

const TRACE_ID: [u8; 16] = [0xc1, 0x1c, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];

/// A checkout across three services: the frontend's root calls cart (which reads redis) and
/// payment, whose charge fails.
fn checkout(start: u64) -> ExportTraceServiceRequest {
    const MS: u64 = 1_000_000;
    let span = |id: u8, parent: u8, name: &str, from: u64, to: u64, error: bool| Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: vec![0xa0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: if parent == 0 {
            vec![]
        } else {
            vec![0xa0, 0, 0, 0, 0, 0, 0, parent]
        },
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start + from * MS,
        end_time_unix_nano: start + to * MS,
        attributes: vec![kv("http.route", name)],
        status: Some(Status {
            code: if error { 2 } else { 0 },
            ..Default::default()
        }),
        ..Default::default()
    };
    let service = |name: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", name)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            service("cli-frontend", vec![span(1, 0, "GET /checkout", 0, 1200, false)]),
            service(
                "cli-cart",
                vec![
                    span(2, 1, "GetCart", 20, 400, false),
                    span(3, 2, "redis GET", 30, 34, false),
                ],
            ),
            service(
                "cli-payment",
                vec![
                    span(4, 1, "POST /charge", 420, 1180, false),
                    span(5, 4, "charge card", 450, 1150, true),
                ],
            ),
        ],
    }
}

/// `args` followed by `--url URL`.
fn at<'a>(url: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(["--url", url]);
    all
}

/// Runs `legato ARGS` with plain output (100 columns wide unless ARGS say otherwise).
fn legato(args: &[&str]) -> Output {
    let mut command = Command::new(legato_bin());
    command.args(args).arg("--no-color").env_remove("LEGATO_URL");
    if !args.contains(&"--width") {
        command.args(["--width", "100"]);
    }
    command.output().unwrap()
}

/// `legato ARGS`, which must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = legato(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "legato {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `legato ARGS`, which must fail; its stderr.
fn fails(args: &[&str]) -> String {
    let out = legato(args);
    assert!(
        !out.status.success(),
        "legato {args:?} should fail:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Retries `legato ARGS` until its stdout contains `wanted` (data becomes visible a little
/// after it is acknowledged).
fn eventually(args: &[&str], wanted: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = legato(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && stdout.contains(wanted) {
            return stdout;
        }
        assert!(
            Instant::now() < deadline,
            "legato {args:?} never printed {wanted:?}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_queries_a_running_server_and_reads_its_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let legato_server = Legato::start_default(dir.path());
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Two minutes ago: before the metrics queries' end (now − query_end_cutoff, 30 s, then
    // down to a whole 1 m step).
    assert_eq!(
        post_otlp(&client, &legato_server, &checkout(now - 120_000_000_000))
            .await
            .0,
        200
    );
    let url = legato_server.url("");
    let id = hex::encode(TRACE_ID);
    let run = |args: &[&str]| ok(&at(&url, args));
    // trace: the waterfall in tree order, services, durations, the error marked.
    let waterfall = eventually(&at(&url, &["trace", &id]), "charge card");
    let order: Vec<usize> = [
        "GET /checkout",
        "├─ GetCart",
        "│  └─ redis GET",
        "└─ POST /charge",
        "└─ ✗ charge card",
    ]
    .iter()
    .map(|row| {
        waterfall
            .find(row)
            .unwrap_or_else(|| panic!("{row:?} missing:\n{waterfall}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "rows out of tree order:\n{waterfall}"
    );
    for text in [&id[..], "5 spans", "3 services", "1 error", "cli-payment", "1.20s", "█"] {
        assert!(waterfall.contains(text), "{text:?} missing:\n{waterfall}");
    }
    assert!(!waterfall.contains('\x1b'), "colour without a terminal:\n{waterfall}");
    assert!(
        waterfall.lines().all(|l| l.chars().count() <= 100),
        "wider than --width:\n{waterfall}"
    );
    let raw = json(&run(&["trace", &id, "--json"]));
    assert!(
        raw["trace"]["resourceSpans"].as_array().is_some_and(|b| b.len() == 3),
        "{raw}"
    );

    // search: a table row for the trace; --json parses.
    let query = r#"{ resource.service.name = "cli-payment" && status = error }"#;
    let table = run(&["search", query, "--since", "1h", "--width", "120"]);
    for text in [&id[..], "cli-frontend", "GET /checkout", "1 trace"] {
        assert!(table.contains(text), "{text:?} missing:\n{table}");
    }
    let raw = json(&run(&["search", query, "--since", "1h", "--json"]));
    assert_eq!(raw["traces"][0]["traceID"], id.as_str());

    // tags and values.
    let tags = run(&["tags", "--since", "1h"]);
    for text in ["resource (", "service.name", "span (", "http.route"] {
        assert!(tags.contains(text), "{text:?} missing:\n{tags}");
    }
    assert!(json(&run(&["tags", "--json"]))["scopes"].is_array());
    let values = run(&["values", "resource.service.name", "--since", "1h"]);
    for text in ["cli-frontend", "cli-cart", "cli-payment", "string", "3 values"] {
        assert!(values.contains(text), "{text:?} missing:\n{values}");
    }

    // metrics: a sparkline per service; instant values; --json parses.
    let metrics_query = "{ } | count_over_time() by (resource.service.name)";
    let sparklines = run(&["metrics", metrics_query, "--since", "10m", "--step", "1m"]);
    for text in [r#"{resource.service.name="cli-cart"}"#, "3 series", "min "] {
        assert!(sparklines.contains(text), "{text:?} missing:\n{sparklines}");
    }
    assert!(sparklines.contains(['▁', '▄', '█']), "no sparkline:\n{sparklines}");
    let instant = run(&["metrics", metrics_query, "--since", "10m", "--instant"]);
    assert!(
        instant.contains(r#"{resource.service.name="cli-payment"}"#),
        "{instant}"
    );
    let raw = json(&run(&["metrics", metrics_query, "--since", "10m", "--json"]));
    assert_eq!(raw["series"].as_array().map(Vec::len), Some(3), "{raw}");

    // Failures are clear and exit non-zero.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let refused = fails(&["search", "{}", "--url", &dead]);
    assert!(refused.contains(&format!("cannot connect to {dead}")), "{refused}");
    let bad_query = fails(&at(&url, &["search", "{ nonsense"]));
    assert!(bad_query.contains("HTTP 400"), "{bad_query}");
    let missing = fails(&at(&url, &["trace", "feed"]));
    assert!(missing.contains("trace feed not found"), "{missing}");

    blocks_of_the_bucket(&client, &legato_server, dir.path()).await;
}

/// `legato blocks` over the server's local bucket once the trace is flushed.
async fn blocks_of_the_bucket(client: &reqwest::Client, server: &Legato, dir: &Path) {
    assert_eq!(client.post(server.url("/flush")).send().await.unwrap().status(), 204);
    let bucket = dir.join("blocks");
    let path = bucket.to_str().unwrap();
    let list = eventually(&["blocks", "list", "--path", path], "1 block of 1 tenant");
    for text in ["single-tenant", "TRACES", "5 spans"] {
        assert!(list.contains(text), "{text:?} missing:\n{list}");
    }
    // The same bucket through the server's config file, Tempo-style flag included.
    let config = format!("-config.file={}", server.config.display());
    assert_eq!(ok(&["blocks", "list", &config]), list);
    let metas = json(&ok(&["blocks", "list", "--path", path, "--json"]));
    let block = metas[0]["blockID"].as_str().unwrap().to_string();
    assert_eq!(metas[0]["totalSpans"], 5);

    let inspect = ok(&["blocks", "inspect", &block[..8], "--path", path]);
    for text in [&block[..], "Row groups", "Columns", "trace_id", "legato-v1"] {
        assert!(inspect.contains(text), "{text:?} missing:\n{inspect}");
    }
    let verify = ok(&["blocks", "verify", "--path", path]);
    assert!(
        verify.contains(&format!("ok   single-tenant/{block}  1 trace, 5 spans")),
        "{verify}"
    );
    assert!(verify.contains("verified 1 block: 1 ok, 0 bad"), "{verify}");

    // A copy of the bucket with the data file cut short fails verification.
    let damaged = tempfile::tempdir().unwrap();
    let block_dir = damaged.path().join("single-tenant").join(&block);
    std::fs::create_dir_all(&block_dir).unwrap();
    for entry in std::fs::read_dir(bucket.join("single-tenant").join(&block)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), block_dir.join(entry.file_name())).unwrap();
    }
    let data = block_dir.join("data.parquet");
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let out = legato(&["blocks", "verify", "--path", damaged.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("BAD  single-tenant/{block}: data.parquet is")),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 ok, 1 bad"));

    assert!(fails(&["blocks", "list", "--path", "/nonexistent/blocks"]).contains("no block directory"));
}

/// The server's own flags still work, with the CLI in the same binary.
#[test]
fn server_flags_are_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("legato.yaml");
    std::fs::write(&config, "target: all\n").unwrap();
    let out = Command::new(legato_bin())
        .arg(format!("-config.file={}", config.display()))
        .arg("-config.verify")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "config ok (target all)\n");
    let help = Command::new(legato_bin()).arg("-help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("usage: legato [-config.file=PATH]"));
    let cli_help = Command::new(legato_bin()).arg("help").output().unwrap();
    let text = String::from_utf8_lossy(&cli_help.stdout);
    for word in ["trace", "search", "tags", "values", "metrics", "blocks"] {
        assert!(text.contains(word), "{word} missing from `legato help`:\n{text}");
    }
}
