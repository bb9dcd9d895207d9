//! The cloud clients' timeouts and retry policy come from `storage.trace.<backend>` (issue #10
//! for S3; GCS and Azure share the same keys and code): keys, defaults, validation, and their
//! effect on requests to a server that fails or stalls, for each of S3, GCS and Azure.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use legato_storage::object_store::ObjectStoreExt;
use legato_storage::object_store::path::Path;
use legato_storage::{StorageBackend, TraceStorageConfig, build_object_store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn s3_config(yaml_s3: &str) -> TraceStorageConfig {
    let yaml =
        format!("backend: s3\ns3:\n  bucket: b\n  region: us-east-1\n  access_key: k\n  secret_key: s\n{yaml_s3}");
    serde_yaml::from_str(&yaml).unwrap()
}

#[test]
fn defaults_are_production_timeouts_and_a_few_retries() {
    let cfg = s3_config("");
    let s3 = &cfg.s3;
    assert_eq!(s3.client.timeout, Duration::from_secs(30));
    assert_eq!(s3.client.connect_timeout, Duration::from_secs(5));
    assert_eq!(s3.client.max_retries, 5);
    assert_eq!(
        (s3.client.min_backoff, s3.client.max_backoff),
        (Duration::from_millis(100), Duration::from_secs(10))
    );
    assert_eq!(s3.client.retry_timeout, Duration::from_secs(120));
    assert_eq!(cfg.upload_part_size(), 16 << 20);
    cfg.validate().unwrap();
    let retry = s3.retry_config();
    assert_eq!((retry.max_retries, retry.retry_timeout), (5, Duration::from_secs(120)));
    assert_eq!(retry.backoff.base, 2.0);
}

#[test]
fn keys_parse_as_durations_and_counts() {
    let cfg = s3_config(
        "  timeout: 10s\n  connect_timeout: 1s\n  max_retries: 0\n  min_backoff: 50ms\n  max_backoff: 2s\n  retry_timeout: 1m\n",
    );
    assert_eq!(cfg.s3.client.timeout, Duration::from_secs(10));
    assert_eq!(cfg.s3.client.connect_timeout, Duration::from_secs(1));
    assert_eq!(cfg.s3.client.max_retries, 0, "0 disables retries");
    assert_eq!(cfg.s3.client.min_backoff, Duration::from_millis(50));
    assert_eq!(cfg.s3.client.max_backoff, Duration::from_secs(2));
    assert_eq!(cfg.s3.client.retry_timeout, Duration::from_secs(60));
    cfg.validate().unwrap();
    assert!(serde_yaml::from_str::<TraceStorageConfig>("s3:\n  timeout: soon\n").is_err());
}

#[test]
fn part_size_is_tempos_key_and_zero_means_the_default() {
    assert_eq!(s3_config("  part_size: 64MiB\n").upload_part_size(), 64 << 20);
    assert_eq!(s3_config("  part_size: 8388608\n").upload_part_size(), 8 << 20);
    let tempo_default = s3_config("  part_size: 0\n");
    tempo_default.validate().unwrap();
    assert_eq!(tempo_default.upload_part_size(), 16 << 20);
    let mut local = s3_config("  part_size: 64MiB\n");
    local.backend = StorageBackend::Local;
    assert_eq!(local.upload_part_size(), 16 << 20, "other backends use the default");
}

#[test]
fn nonsense_is_refused_naming_the_key() {
    for (yaml, key) in [
        ("  timeout: 0s\n", "storage.trace.s3.timeout"),
        ("  connect_timeout: 0s\n", "storage.trace.s3.connect_timeout"),
        ("  retry_timeout: 0s\n", "storage.trace.s3.retry_timeout"),
        ("  min_backoff: 0s\n", "storage.trace.s3.min_backoff"),
        (
            "  min_backoff: 20s\n  max_backoff: 1s\n",
            "storage.trace.s3.min_backoff",
        ),
    ] {
        let err = s3_config(yaml).validate().unwrap_err().to_string();
        assert!(err.contains(key), "{yaml}: {err}");
    }
    // Only the S3 backend uses them.
    let mut local = s3_config("  timeout: 0s\n");
    local.backend = StorageBackend::Local;
    local.validate().unwrap();
}

fn parse(yaml: &str) -> TraceStorageConfig {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn gcs_and_azure_default_to_tempos_part_sizes_and_the_s3_client_policy() {
    let gcs = parse("backend: gcs\ngcs:\n  bucket_name: b\n");
    gcs.validate().unwrap();
    assert_eq!(gcs.upload_part_size(), 10 << 20, "Tempo's chunk_buffer_size");
    assert_eq!(
        gcs.gcs.client,
        s3_config("").s3.client,
        "same timeouts and retries as S3"
    );
    let azure = parse("backend: azure\nazure:\n  container_name: c\n  storage_account_name: a\n");
    azure.validate().unwrap();
    assert_eq!(azure.upload_part_size(), 3 << 20, "Tempo's buffer_size");
    assert_eq!(azure.azure.endpoint_suffix, "blob.core.windows.net");
    assert_eq!(azure.azure.client, gcs.gcs.client);
    let sized = parse("backend: gcs\ngcs:\n  bucket_name: b\n  chunk_buffer_size: 0\n  max_retries: 1\n");
    assert_eq!((sized.upload_part_size(), sized.gcs.client.max_retries), (10 << 20, 1));
}

#[test]
fn gcs_and_azure_nonsense_is_refused_naming_the_key() {
    let gcs = "backend: gcs\ngcs:\n  bucket_name: b\n";
    let azure = "backend: azure\nazure:\n  container_name: c\n  storage_account_name: a\n";
    for (base, extra, key) in [
        (
            gcs,
            "  chunk_buffer_size: 1MiB\n",
            "storage.trace.gcs.chunk_buffer_size",
        ),
        (gcs, "  timeout: 0s\n", "storage.trace.gcs.timeout"),
        (azure, "  buffer_size: 64KiB\n", "storage.trace.azure.buffer_size"),
        (
            azure,
            "  min_backoff: 20s\n  max_backoff: 1s\n",
            "storage.trace.azure.min_backoff",
        ),
        (
            azure,
            "  endpoint_suffix: \"\"\n",
            "storage.trace.azure.endpoint_suffix",
        ),
        (
            azure,
            "  use_federated_token: true\n  use_managed_identity: true\n",
            "storage.trace.azure.use_federated_token",
        ),
        (
            azure,
            "  storage_account_key: a2V5\n  user_assigned_id: id\n",
            "storage.trace.azure.storage_account_key",
        ),
        (
            azure,
            "  storage_account_key: not base64!\n",
            "storage.trace.azure.storage_account_key",
        ),
    ] {
        let err = parse(&format!("{base}{extra}")).validate().unwrap_err().to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
    // Keys that are not Tempo's (nor Legato's) are refused, as everywhere.
    for yaml in ["gcs:\n  bucket: b\n", "azure:\n  container: c\n"] {
        assert!(serde_yaml::from_str::<TraceStorageConfig>(yaml).is_err(), "{yaml}");
    }
}

/// A tiny HTTP/1.1 server: counts requests and answers each with a 503, or never answers.
async fn bad_server(stall: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = conn.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        counted.fetch_add(1, Ordering::SeqCst);
                        if stall {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        let reply = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
                        if conn.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (endpoint, requests)
}

/// The cloud backends, each pointed at `endpoint` with `client_yaml` (timeouts and retries).
const BACKENDS: [&str; 3] = ["s3", "gcs", "azure"];

fn store_for(backend: &str, endpoint: &str, client_yaml: &str) -> Arc<dyn legato_storage::ObjectStore> {
    let section = match backend {
        "s3" => format!(
            "  bucket: b\n  region: us-east-1\n  access_key: k\n  secret_key: s\n  endpoint: {endpoint}\n  insecure: true\n  forcepathstyle: true\n"
        ),
        "gcs" => format!("  bucket_name: b\n  endpoint: {endpoint}\n  insecure: true\n"),
        _ => format!(
            "  container_name: b\n  storage_account_name: acct\n  storage_account_key: a2V5\n  endpoint_suffix: {endpoint}/acct\n"
        ),
    };
    let yaml = format!("backend: {backend}\n{backend}:\n{section}{client_yaml}");
    let cfg: TraceStorageConfig = serde_yaml::from_str(&yaml).unwrap();
    cfg.validate().unwrap();
    build_object_store(&cfg).unwrap()
}

#[tokio::test]
async fn server_errors_are_retried_max_retries_times() {
    for backend in BACKENDS {
        let (endpoint, requests) = bad_server(false).await;
        let store = store_for(
            backend,
            &endpoint,
            "  max_retries: 2\n  min_backoff: 1ms\n  max_backoff: 5ms\n",
        );
        let err = store.get(&Path::from("t/b/meta.json")).await.unwrap_err();
        assert_eq!(
            requests.load(Ordering::SeqCst),
            3,
            "{backend}: one attempt and two retries: {err}"
        );
        assert!(err.to_string().contains("503"), "{backend}: {err}");

        let (endpoint, requests) = bad_server(false).await;
        let store = store_for(backend, &endpoint, "  max_retries: 0\n");
        store.get(&Path::from("t/b/meta.json")).await.unwrap_err();
        assert_eq!(
            requests.load(Ordering::SeqCst),
            1,
            "{backend}: max_retries 0 disables retries"
        );
        // Uploads go straight to the server too, with no credential lookup first (for insecure
        // GCS that would be the cloud's metadata server).
        let err = store.put(&Path::from("t/b/bloom"), "x".into()).await.unwrap_err();
        assert_eq!(requests.load(Ordering::SeqCst), 2, "{backend}: {err}");
    }
}

#[tokio::test]
async fn a_stalled_request_times_out_after_timeout_and_is_retried() {
    for backend in BACKENDS {
        let (endpoint, requests) = bad_server(true).await;
        let store = store_for(
            backend,
            &endpoint,
            "  timeout: 300ms\n  max_retries: 1\n  min_backoff: 1ms\n  max_backoff: 5ms\n",
        );
        let started = Instant::now();
        let err = store.get(&Path::from("t/b/data.parquet")).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(requests.load(Ordering::SeqCst), 2, "{backend}: {err}");
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(5),
            "{backend}: two attempts of 300ms each, took {took:?}: {err}"
        );
    }
}
