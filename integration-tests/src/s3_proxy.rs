//! A faulty S3 endpoint: an HTTP/1.1 proxy in front of a real S3 server that refuses, loses
//! and stalls a share of requests (issue 10's fault tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One HTTP/1.1 exchange on a fresh connection; returns the raw response.
async fn exchange(port: u16, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(request).await?;
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await?;
    Ok(response)
}

/// What the proxy did.
#[derive(Default)]
pub struct ProxyStats {
    pub requests: AtomicU64,
    pub refused: AtomicU64,
    pub lost: AtomicU64,
    pub stalled: AtomicU64,
}

/// The faults a `start_proxy` injects: a share of requests answered 503 without reaching the
/// server, a share forwarded and then answered 500 (the write happened, the answer was lost),
/// and a share stalled for `stall` first. `enabled` turns them on and off.
pub struct Faults {
    pub fail_ratio: f64,
    pub stall_ratio: f64,
    pub stall: Duration,
    pub enabled: AtomicBool,
    pub stats: ProxyStats,
    pub rng: parking_lot::Mutex<u64>,
}

impl Faults {
    pub fn new(fail_ratio: f64, stall_ratio: f64, stall: Duration) -> Arc<Self> {
        Arc::new(Self {
            fail_ratio,
            stall_ratio,
            stall,
            enabled: AtomicBool::new(true),
            stats: ProxyStats::default(),
            rng: parking_lot::Mutex::new(0x9e37_79b9_7f4a_7c15),
        })
    }

    fn roll(&self) -> f64 {
        let mut s = self.rng.lock();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

/// The request head with `Connection: close`, so the server ends the response with EOF.
fn closing(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const LOST: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Serves one client connection: one request, then close.
async fn proxy_one(mut client: TcpStream, upstream: u16, faults: Arc<Faults>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 << 10];
    let end = loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf) {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let body_len = content_length(&head);
    while buf.len() < end + body_len {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    faults.stats.requests.fetch_add(1, Ordering::SeqCst);
    let on = faults.enabled.load(Ordering::SeqCst);
    if on && faults.roll() < faults.stall_ratio {
        faults.stats.stalled.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(faults.stall).await;
    }
    let fate = if on { faults.roll() } else { 1.0 };
    if fate < faults.fail_ratio / 2.0 {
        faults.stats.refused.fetch_add(1, Ordering::SeqCst);
        return client.write_all(REFUSED).await;
    }
    let mut request = closing(&head).into_bytes();
    request.extend_from_slice(&buf[end..end + body_len]);
    let response = exchange(upstream, &request).await?;
    if fate < faults.fail_ratio {
        faults.stats.lost.fetch_add(1, Ordering::SeqCst);
        return client.write_all(LOST).await;
    }
    client.write_all(&response).await
}

/// An HTTP/1.1 proxy in front of an S3 server on `upstream` that injects `faults`; returns
/// its port.
pub async fn start_proxy(upstream: u16, faults: Arc<Faults>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy listener");
    let port = listener.local_addr().expect("proxy address").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let faults = faults.clone();
            tokio::spawn(async move {
                let _ = proxy_one(client, upstream, faults).await;
            });
        }
    });
    port
}
