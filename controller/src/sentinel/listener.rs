//! The Sentinel endpoint's accept loop: one task per client, at most [`MAX_CLIENTS`] at once.
use std::{net::SocketAddr, sync::Arc};

use tokio::{io::AsyncWriteExt, net::TcpListener, sync::Semaphore};

use super::{
    connection::client,
    endpoint::{Endpoint, MAX_CLIENTS, Stats},
    topology::Published,
};

/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Serves Sentinel clients on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, published: Arc<Published>) {
    let listen = listener.local_addr().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "sentinel endpoint: its own address is unknown; SENTINEL MYID will not say which endpoint it is");
        SocketAddr::from(([0, 0, 0, 0], 0))
    });
    let endpoint = Arc::new(Endpoint::new(published, listen));
    tracing::info!(myid = %endpoint.myid, %listen, "sentinel endpoint serving");
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sentinel endpoint: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        Stats::count(&endpoint.stats.connections);
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // Told at once, as Redis tells it, rather than left waiting in the backlog.
            Stats::count(&endpoint.stats.rejected);
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let endpoint = Arc::clone(&endpoint);
        tokio::spawn(async move {
            if let Err(e) = client(stream, endpoint).await {
                tracing::debug!(%peer, error = %e, "sentinel client closed");
            }
            drop(permit);
        });
    }
}
