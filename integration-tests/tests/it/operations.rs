//! Operational endpoints and start-up configuration errors.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::process::Command;

use integration_tests::{Legato, Ports, config_yaml, legato_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let yaml = config_yaml(ports, dir.path(), None, "");
    let legato = Legato::start(dir.path(), ports, &yaml);
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(legato.url(path)).send();

    let ready = get("/ready").await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready\n");
    let echo = get("/api/echo").await.unwrap();
    assert_eq!(echo.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(echo.text().await.unwrap(), "echo\n");
    let build: serde_json::Value = get("/api/status/buildinfo").await.unwrap().json().await.unwrap();
    assert!(build["version"].is_string() && build["revision"].is_string() && build["goVersion"].is_string());
    let config = get("/status/config").await.unwrap().text().await.unwrap();
    assert!(
        config.contains(&format!("http_listen_port: {}", ports.http)),
        "{config}"
    );
    // Per-tenant families show up once a tenant has sent something.
    let (req, _) = integration_tests::otlp_request(1, 1);
    assert_eq!(integration_tests::post_otlp(&client, &legato, &req).await.0, 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    for name in [
        "legato_distributor_spans_received",
        "legato_distributor_bytes_received",
        "legato_ingester_wal_fsync_seconds",
        "legato_storage_blocks_flushed",
        "legato_storage_flushed_bytes",
        "legato_ingester_flush_failures",
        "legato_api_request_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // Opted out of transparent huge pages (docs/benchmarks.md: they cost a fifth of ingest).
    let status = std::fs::read_to_string(format!("/proc/{}/status", legato.pid().unwrap())).unwrap();
    assert!(status.contains("THP_enabled:\t0"), "{status}");
}

#[test]
fn secrets_are_masked_in_status_config() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    // An S3 backend is configured but never contacted before the first flush.
    let storage = "    backend: s3\n    s3:\n      bucket: b\n      endpoint: 127.0.0.1:1\n      insecure: true\n      access_key: AKIA\n      secret_key: hunter2-secret\n";
    let yaml = config_yaml(ports, dir.path(), Some(storage), "");
    let legato = Legato::start(dir.path(), ports, &yaml);
    let out = Command::new("curl")
        .args(["-s", &legato.url("/status/config")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("secret_key: '********'")
            || text.contains("secret_key: \"********\"")
            || text.contains("secret_key: ********"),
        "{text}"
    );
    assert!(!text.contains("hunter2"));
}

fn start_failure(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(legato_bin())
        .arg(format!("--config.file={}", path.display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "legato must refuse {yaml:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_config_stops_startup_naming_the_key() {
    let err = start_failure("ingester:\n  trace_idle_perod: 5s\n");
    assert!(err.contains("ingester") && err.contains("trace_idle_perod"), "{err}");
    let err = start_failure("ingester:\n  max_block_bytes: lots\n");
    assert!(err.contains("ingester.max_block_bytes"), "{err}");
    let err = start_failure("storage:\n  trace:\n    backend: s3\n");
    assert!(err.contains("storage.trace.s3.bucket"), "{err}");
    let err = start_failure("server:\n  http_listen_port: 70000\n");
    assert!(err.contains("server.http_listen_port"), "{err}");
    let err = start_failure("target: ingesterr\n");
    assert!(err.contains("target"), "{err}");
}

#[test]
fn config_verify_checks_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let run = |yaml: &str, target: &str| {
        let path = dir.path().join("legato.yaml");
        std::fs::write(&path, yaml).unwrap();
        Command::new(legato_bin())
            .arg(format!("-config.file={}", path.display()))
            .arg(format!("-target={target}"))
            .arg("-config.verify")
            .output()
            .unwrap()
    };
    // The default ports are in use by nothing here, but verify must not even try to bind.
    let ok = run("server:\n  http_listen_port: 3200\n", "all");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("config ok"));
    let bad = run("ingester:\n  max_block_bytes: lots\n", "all");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ingester.max_block_bytes"));
}
