//! TLS on every listener and on the internal gRPC clients, from Tempo's keys
//! (`server.http_tls_config`, `server.grpc_tls_config`, the OTLP receivers' `tls` blocks,
//! `ingester_client.grpc_client_config`). rustls with the aws-lc provider; no OpenSSL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// A listener's TLS settings (dskit's `http_tls_config` / `grpc_tls_config` keys; the
/// Collector's receiver `tls` blocks use the same file keys). No `cert_file` = plain TCP.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CA that client certificates must chain to (mutual TLS).
    pub client_ca_file: PathBuf,
    /// `NoClientCert` (default without `client_ca_file`), `VerifyClientCertIfGiven`, or
    /// `RequireAndVerifyClientCert` (default with `client_ca_file`).
    pub client_auth_type: String,
}

impl TlsServerConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }

    /// No key of the block is given (a half-given block is set, and refused by `validate`).
    pub fn is_unset(&self) -> bool {
        self == &Self::default()
    }

    /// Checks the combination and that every file reads and parses; `key` names the block.
    pub fn validate(&self, key: &str) -> anyhow::Result<()> {
        self.rustls(key, &[]).map(|_| ())
    }

    fn client_auth(&self, key: &str) -> anyhow::Result<ClientAuth> {
        let has_ca = !self.client_ca_file.as_os_str().is_empty();
        let auth = match (self.client_auth_type.as_str(), has_ca) {
            ("" | "NoClientCert", false) => ClientAuth::None,
            ("" | "RequireAndVerifyClientCert", true) => ClientAuth::Require,
            ("VerifyClientCertIfGiven", true) => ClientAuth::IfGiven,
            ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", false) => {
                bail!(
                    "{key}.client_auth_type {:?} needs {key}.client_ca_file",
                    self.client_auth_type
                )
            }
            ("NoClientCert", true) => bail!("{key}.client_ca_file is set but client_auth_type is NoClientCert"),
            (other, _) => bail!(
                "{key}.client_auth_type {other:?} is not supported: use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ),
        };
        Ok(auth)
    }

    /// The rustls server config, offering `alpn` protocols.
    pub fn rustls(&self, key: &str, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        if !self.enabled() || self.key_file.as_os_str().is_empty() {
            bail!("{key} needs both cert_file and key_file");
        }
        let certs = read_certs(&self.cert_file, &format!("{key}.cert_file"))?;
        let private_key = PrivateKeyDer::from_pem_file(&self.key_file)
            .with_context(|| format!("{key}.key_file: no PEM private key in {}", self.key_file.display()))?;
        // The provider is named, not taken from the process default, so which crypto features
        // other crates turn on in rustls cannot change or break it.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .with_context(|| format!("{key}: TLS protocol versions"))?;
        let builder = match self.client_auth(key)? {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let roots = root_store(&self.client_ca_file, &format!("{key}.client_ca_file"))?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match auth {
                    ClientAuth::IfGiven => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                builder.with_client_cert_verifier(verifier.build().with_context(|| format!("{key}.client_ca_file"))?)
            }
        };
        let mut config = builder
            .with_single_cert(certs, private_key)
            .with_context(|| format!("{key}: certificate and key do not match"))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

enum ClientAuth {
    None,
    IfGiven,
    Require,
}

fn read_certs(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{key}: bad PEM in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{key}: no certificate in {}", path.display());
    }
    Ok(certs)
}

fn root_store(path: &Path, key: &str) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(path, key)? {
        roots
            .add(cert)
            .with_context(|| format!("{key}: not a usable CA certificate"))?;
    }
    Ok(roots)
}

/// Accepts TCP connections and completes TLS handshakes off the accept loop (a slow or
/// silent client cannot hold up others), for `axum::serve`.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// A handshake that has not finished in this long is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a TLS connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The acceptor task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A tonic server builder, serving TLS when `cfg` has a certificate.
pub fn tonic_builder(cfg: &TlsServerConfig, key: &str) -> anyhow::Result<tonic::transport::Server> {
    let builder = tonic::transport::Server::builder();
    if !cfg.enabled() {
        return Ok(builder);
    }
    Ok(builder.tls_config(tonic_server(cfg, key)?)?)
}

/// tonic's server TLS from the same settings.
fn tonic_server(cfg: &TlsServerConfig, key: &str) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let cert = std::fs::read(&cfg.cert_file).with_context(|| format!("{key}.cert_file"))?;
    let private_key = std::fs::read(&cfg.key_file).with_context(|| format!("{key}.key_file"))?;
    let mut tls =
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, private_key));
    match cfg.client_auth(key)? {
        ClientAuth::None => {}
        auth => {
            let ca = std::fs::read(&cfg.client_ca_file).with_context(|| format!("{key}.client_ca_file"))?;
            tls = tls
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(matches!(auth, ClientAuth::IfGiven));
        }
    }
    Ok(tls)
}

/// `ingester_client.grpc_client_config`: how this process dials other roles' gRPC ports
/// (Tempo's key names).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcClientConfig {
    pub tls_enabled: bool,
    /// Client certificate and key, for servers that require one (mutual TLS).
    pub tls_cert_path: PathBuf,
    pub tls_key_path: PathBuf,
    /// CA that servers' certificates must chain to.
    pub tls_ca_path: PathBuf,
    /// Name to check in servers' certificates (default: the host dialled).
    pub tls_server_name: String,
    /// Not supported: always refused, so a config that relies on it fails loudly.
    pub tls_insecure_skip_verify: bool,
}

impl GrpcClientConfig {
    pub fn validate(&self, key: &str) -> anyhow::Result<()> {
        self.tonic(key).map(|_| ())
    }

    /// The channel TLS, or `None` for plain connections.
    pub fn tonic(&self, key: &str) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        if self.tls_insecure_skip_verify {
            bail!("{key}.tls_insecure_skip_verify is not supported: give the servers' CA in {key}.tls_ca_path");
        }
        if !self.tls_enabled {
            return Ok(None);
        }
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if self.tls_ca_path.as_os_str().is_empty() {
            bail!("{key}.tls_ca_path is required when tls_enabled is true");
        }
        read_certs(&self.tls_ca_path, &format!("{key}.tls_ca_path"))?;
        let ca = std::fs::read(&self.tls_ca_path).with_context(|| format!("{key}.tls_ca_path"))?;
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(ca));
        match (
            self.tls_cert_path.as_os_str().is_empty(),
            self.tls_key_path.as_os_str().is_empty(),
        ) {
            (true, true) => {}
            (false, false) => {
                let cert = std::fs::read(&self.tls_cert_path).with_context(|| format!("{key}.tls_cert_path"))?;
                let private_key = std::fs::read(&self.tls_key_path).with_context(|| format!("{key}.tls_key_path"))?;
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, private_key));
            }
            _ => bail!("{key}: tls_cert_path and tls_key_path go together"),
        }
        if !self.tls_server_name.is_empty() {
            tls = tls.domain_name(self.tls_server_name.clone());
        }
        Ok(Some(tls))
    }
}
