//! The metrics listener: `GET /metrics` (Prometheus text format), `GET /healthz` (liveness: 200 while the
//! process serves) and `GET /readyz` (200 while at least one backend can be used: the writer is reachable
//! or a replica serves reads; 503 otherwise, so an orchestrator stops sending clients that would only get
//! errors, without emptying a Service during a master-only outage).
//!
//! Three fixed GET routes, one request per connection, bounded request size and time: a hand-written
//! responder is a few dozen lines, where an HTTP library (hyper and its stack) would add more to the build
//! than the whole proxy; nothing here parses anything beyond the request line.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Shared;

const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the endpoints until `cancel`.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, cancel: CancellationToken) {
    crate::listen::accept_loop(&listener, &cancel, "metrics", |stream, _| {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            // HTTPS with `metrics.tls`: the tls: section's certificate, as in force now.
            let config = shared.config.load_full();
            let tls = config.tls.as_ref().filter(|_| config.metrics.as_ref().is_some_and(|m| m.tls));
            let served = async {
                match tls {
                    Some(tls) => handle(&shared, tls.acceptor.accept(stream).await?).await,
                    None => handle(&shared, stream).await,
                }
            };
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, served).await;
        });
    })
    .await;
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(shared: &Shared, mut stream: S) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|b| *b == b'\r' || *b == b'\n').next().unwrap_or_default();
    let mut parts = std::str::from_utf8(line).unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", crate::metrics::render(shared)),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") => match ready(shared) {
            Ok(()) => ("200 OK", "text/plain", "ready\n".to_string()),
            Err(why) => ("503 Service Unavailable", "text/plain", format!("not ready: {why}\n")),
        },
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Ready when some backend can be used: the writer is reachable or a replica serves reads.
fn ready(shared: &Shared) -> Result<(), String> {
    let topology = shared.topology.load();
    let health = shared.health.load();
    let writer_ok = health.writer(&topology.master).is_ok_and(|w| health.reachable(w));
    let reads_ok = topology.replicas.iter().any(|r| health.serves_reads(&r.addr));
    if writer_ok || reads_ok {
        Ok(())
    } else {
        Err("no backend is reachable".into())
    }
}
