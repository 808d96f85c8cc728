//! The accept loop shared by the client, admin and metrics listeners.

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

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
            Ok((stream, peer)) => handle(stream, peer),
            Err(e) => {
                tracing::warn!(error = %e, listener = what, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
