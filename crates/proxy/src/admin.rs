//! The admin interface (MySQL protocol on `admin.listen`). Being written; see the module doc when done.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// Serves the admin interface until `cancel`.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, cancel: CancellationToken) {
    let _ = (shared, listener);
    cancel.cancelled().await;
}
