//! The Sentinel endpoint's accept loop: one task per client.
use std::sync::Arc;

use tokio::net::TcpListener;

use super::{connection::client, topology::Published};

/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Serves Sentinel clients on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, published: Arc<Published>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sentinel endpoint: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let published = Arc::clone(&published);
        tokio::spawn(async move {
            if let Err(e) = client(stream, published).await {
                tracing::debug!(%peer, error = %e, "sentinel client closed");
            }
        });
    }
}
