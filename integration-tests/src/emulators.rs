//! Real object-store emulators on loopback: Azurite (npm, in `integration-tests/emulators`)
//! for the Azure backend. `ci/setup.sh` installs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

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
    let Ok(resp) = client
        .put(format!(
            "http://127.0.0.1:{port}/{AZURITE_ACCOUNT}/{container}?restype=container"
        ))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}"))
        .header("content-length", "0")
        .send()
        .await
    else {
        return false;
    };
    let status = resp.status();
    assert!(
        status.is_success(),
        "creating container {container}: {status} {}",
        resp.text().await.unwrap_or_default()
    );
    true
}
