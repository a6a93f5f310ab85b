//! The Sentinel endpoint's accept loop: one task per client, at most `max_clients` at once, over
//! TLS when configured. Accepting pauses while the process is out of file descriptors
//! ([`Acceptor`]).
use std::{net::SocketAddr, os::fd::AsRawFd, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_rustls::TlsAcceptor;
use vigil_proto::accept::Acceptor;

use super::{
    connection::{Peer, client},
    endpoint::{Endpoint, Options, Stats},
    topology::Published,
};

/// A client has this long to finish its TLS handshake: one that stalls in it holds a descriptor
/// and a client slot without ever reaching AUTH or the idle timeout.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Clients past `max_clients` told so at once, at most: beyond these, one more is simply closed,
/// so a flood cannot make the refusals themselves grow.
const MAX_REFUSING: usize = 64;

const MAX_CLIENTS_REACHED: &[u8] = b"-ERR max number of clients reached\r\n";

/// Serves Sentinel clients on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    published: Arc<Published>,
    options: Options,
    tls: Option<TlsAcceptor>,
) {
    let listen = listener.local_addr().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "sentinel endpoint: its own address is unknown; SENTINEL MYID will not say which endpoint it is");
        SocketAddr::from(([0, 0, 0, 0], 0))
    });
    let permits = Arc::new(Semaphore::new(options.max_clients));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let endpoint = Arc::new(Endpoint::new(published, listen, options));
    tracing::info!(
        myid = %endpoint.myid, %listen, tls = tls.is_some(),
        auth = endpoint.options.credentials.is_some(),
        max_clients = endpoint.options.max_clients,
        idle_timeout = ?endpoint.options.idle_timeout,
        "sentinel endpoint serving"
    );
    let mut acceptor = Acceptor::new(listener, "sentinel endpoint");
    loop {
        let (stream, peer) = acceptor.accept().await;
        Stats::count(&endpoint.stats.connections);
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // Told at once, as Redis tells it, rather than left waiting in the backlog.
            Stats::count(&endpoint.stats.rejected);
            if let Ok(refusal) = Arc::clone(&refusing).try_acquire_owned() {
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, refuse(stream, tls)).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let endpoint = Arc::clone(&endpoint);
        let tls = tls.clone();
        tokio::spawn(async move {
            let who = Peer::of(&stream);
            let served = match tls {
                None => client(stream, who, endpoint).await,
                Some(tls) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => client(stream, who, endpoint).await,
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "sentinel client closed");
            }
            drop(permit);
        });
    }
}

/// Tells a client past `max_clients` so, over TLS when the endpoint speaks it, and closes.
async fn refuse(stream: TcpStream, tls: Option<TlsAcceptor>) {
    match tls {
        None => tell(stream).await,
        Some(tls) => {
            if let Ok(stream) = tls.accept(stream).await {
                tell(stream).await;
            }
        }
    }
}

async fn tell(mut stream: impl AsyncRead + AsyncWrite + Unpin) {
    let _ = stream.write_all(MAX_CLIENTS_REACHED).await;
    let _ = stream.shutdown().await;
}

impl Peer {
    fn of(stream: &TcpStream) -> Self {
        let addr = |a: std::io::Result<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        Self {
            addr: addr(stream.peer_addr()),
            laddr: addr(stream.local_addr()),
            fd: stream.as_raw_fd(),
        }
    }
}
