//! The accept loop shared by the client, admin and metrics listeners.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// TCP keepalive on every client and backend socket: a peer that vanished without a FIN or RST (a host
/// that died, a dropped NAT entry) is noticed after about a minute instead of never.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// Turns TCP keepalive on (best effort: a failure is logged, the connection works without it).
pub(crate) fn keepalive(stream: &TcpStream) {
    let params = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&params) {
        tracing::debug!(error = %e, "cannot turn TCP keepalive on");
    }
}

/// Accepts connections on `listener` and hands each to `handle` until `cancel`. A failed accept (e.g. out of
/// file descriptors) is logged and retried after a short pause, so the loop never spins; open connections
/// are unaffected.
pub(crate) async fn accept_loop<F>(listener: &TcpListener, cancel: &CancellationToken, what: &str, mut handle: F)
where
    F: FnMut(TcpStream, std::net::SocketAddr),
{
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                keepalive(&stream);
                handle(stream, peer)
            }
            Err(e) => {
                tracing::warn!(error = %e, listener = what, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
