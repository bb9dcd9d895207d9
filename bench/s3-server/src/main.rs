//! Benchmark-only S3 server (bench/run.sh): the file-system S3 service of the s3s-fs crate
//! (objects are plain files under ROOT/<bucket>/), served with TCP_NODELAY on every
//! connection. s3s-fs's own binary leaves Nagle's algorithm on, so on a kept-alive connection
//! the last segment of every response waits for the client's delayed ACK: about 44 ms per
//! ranged GET, which would swamp the trace-lookup figures. Real S3 and MinIO do not stall so.
//!
//! Usage: bench-s3-server [--host H] [--port P] [--access-key K --secret-key S] ROOT

use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use s3s_fs::FileSystem;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (mut host, mut port) = ("127.0.0.1".to_string(), 8014u16);
    let (mut access_key, mut secret_key, mut root) = (None, None, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--host" => host = value()?,
            "--port" => port = value()?.parse()?,
            "--access-key" => access_key = Some(value()?),
            "--secret-key" => secret_key = Some(value()?),
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}").into()),
            _ => root = Some(PathBuf::from(arg)),
        }
    }
    let root = root.ok_or("usage: bench-s3-server [--host H] [--port P] [--access-key K --secret-key S] ROOT")?;
    let fs = FileSystem::new(&root).map_err(|e| format!("{}: {e:?}", root.display()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    if let (Some(key), Some(secret)) = (access_key, secret_key) {
        builder.set_auth(SimpleAuth::from_single(key, secret));
    }
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    let http = Builder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
