//! The one connection type for the local server and its peers: where a Redis-protocol server
//! answers and with which credentials, and what connecting or a PING found. Every module that
//! talks to a server (the pinger, the peer prober, the health poller, the command runner)
//! connects through [`ServerConn`].
//!
//! The agent opens its own sockets (rather than letting the redis crate do it) so that a
//! connection to the local server is let through the fence: its local address is bound and
//! registered with the [`Gate`] before the SYN leaves, and given back when the connection closes.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use redis::aio::MultiplexedConnection;
use tokio::{
    net::TcpSocket,
    time::{Instant, timeout},
};
use vigil_proto::{HostPort, ProtoError};

use super::{credentials::SecretString, ping_outcome::PingOutcome, tls::ServerTls};
use crate::fence::gate::{Gate, GatedStream};

/// How to reach a Redis-protocol server. Its Debug output shows no password.
#[derive(Clone, Debug)]
pub struct ServerConn {
    pub address: HostPort,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The local server's fence gate: connections through it are let through any fence. None
    /// for peers, and where no fence is ever put up (`vigil-agent watch`).
    pub gate: Option<Gate>,
    /// TLS for every connection, when the data store's servers speak it (peers share it).
    pub tls: Option<ServerTls>,
}

impl ServerConn {
    /// The same credentials at another address, given as HOST:PORT (peers share the data
    /// store's credentials).
    /// Another server's (a peer's): its connections are not the local fence's business.
    pub fn at(&self, address: &str) -> Result<Self, ProtoError> {
        Ok(Self {
            address: address.parse()?,
            gate: None,
            ..self.clone()
        })
    }

    /// The server at `address`, with no credentials and no gate.
    pub fn new(address: HostPort) -> Self {
        Self {
            address,
            username: None,
            password: None,
            gate: None,
            tls: None,
        }
    }

    fn settings(&self) -> redis::RedisConnectionInfo {
        let mut redis = redis::RedisConnectionInfo::default();
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            use secrecy::ExposeSecret;
            redis = redis.set_password(password.expose_secret());
        }
        redis
    }

    /// A fresh multiplexed connection, bounded by `limit`.
    pub async fn connect(&self, limit: Duration) -> Result<MultiplexedConnection, PingOutcome> {
        match timeout(limit, self.open()).await {
            Err(_) => Err(PingOutcome::Timeout),
            Ok(result) => result,
        }
    }

    async fn open(&self) -> Result<MultiplexedConnection, PingOutcome> {
        let address = (self.address.host.as_str(), self.address.port);
        let candidates: Vec<SocketAddr> = tokio::net::lookup_host(address)
            .await
            .map_err(|e| PingOutcome::Error(format!("resolving {}: {e}", self.address)))?
            .collect();
        let mut last = PingOutcome::Error(format!("{} resolves to no address", self.address));
        for server in candidates {
            let stream = match self.open_at(server).await {
                Ok(stream) => stream,
                Err(e) => {
                    last = classify_io(&e);
                    continue;
                }
            };
            return match &self.tls {
                None => self.speak(stream).await,
                Some(tls) => match tls.connect(&self.address.host, stream).await {
                    Ok(stream) => self.speak(stream).await,
                    Err(e) => Err(PingOutcome::Error(format!(
                        "TLS with {}: {e}",
                        self.address
                    ))),
                },
            };
        }
        Err(last)
    }

    /// A multiplexed connection over `stream` (plain or TLS), logged in.
    async fn speak<S>(&self, stream: S) -> Result<MultiplexedConnection, PingOutcome>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static,
    {
        let (conn, driver) = MultiplexedConnection::new_with_config(
            &self.settings(),
            stream,
            redis::AsyncConnectionConfig::default(),
        )
        .await
        .map_err(|e| classify_error(&e))?;
        // The driver owns the stream (and its place in the gate) until the connection closes.
        tokio::spawn(driver);
        Ok(conn)
    }

    /// A TCP stream to `server`, registered with the gate before it connects.
    async fn open_at(&self, server: SocketAddr) -> io::Result<GatedStream> {
        let socket = if server.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        let registration = match &self.gate {
            Some(gate) => {
                socket.bind(SocketAddr::new(source_address(server)?, 0))?;
                Some(gate.register(socket.local_addr()?))
            }
            None => None,
        };
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        Ok(GatedStream::new(stream, registration))
    }
}

/// The local address the kernel picks to reach `server`: a UDP socket is "connected" (no packet
/// leaves) and asked. The agent binds to it, so the address it registers is the one its packets
/// carry.
fn source_address(server: SocketAddr) -> io::Result<IpAddr> {
    let any = if server.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let probe = UdpSocket::bind(SocketAddr::new(any, 0))?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

/// What a failed connect says about the server.
fn classify_io(e: &io::Error) -> PingOutcome {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => PingOutcome::Refused,
        io::ErrorKind::TimedOut => PingOutcome::Timeout,
        _ => PingOutcome::Error(e.to_string()),
    }
}

/// What a failed connect or request says about the server.
pub(crate) fn classify_error(e: &redis::RedisError) -> PingOutcome {
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.code()
            .is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH" || c == "NOPERM")
    {
        return PingOutcome::AuthFailed(e.to_string());
    }
    if e.is_connection_refusal() {
        return PingOutcome::Refused;
    }
    if e.is_timeout() {
        return PingOutcome::Timeout;
    }
    PingOutcome::Error(e.to_string())
}

/// One PING on `conn`, bounded by `limit`.
pub(crate) async fn ping(conn: &mut MultiplexedConnection, limit: Duration) -> PingOutcome {
    let started = Instant::now();
    match timeout(limit, redis::cmd("PING").query_async::<String>(conn)).await {
        Err(_) => PingOutcome::Timeout,
        Ok(Ok(_)) => PingOutcome::Pong(started.elapsed()),
        Ok(Err(e)) => classify_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_keep_credentials() {
        let local = ServerConn {
            address: HostPort::new("127.0.0.1", 6379),
            username: Some("u".into()),
            password: Some("p".into()),
            gate: Some(Gate::default()),
            tls: None,
        };
        let peer = local.at("10.0.0.2:7000").unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(
            (
                peer.address.host.as_str(),
                peer.address.port,
                peer.password.as_ref().map(|p| p.expose_secret())
            ),
            ("10.0.0.2", 7000, Some("p"))
        );
        assert!(!format!("{local:?}").contains("\"p\""), "{local:?}");
        // A peer's connections are not the local fence's to let through.
        assert!(peer.gate.is_none());
        assert!(local.at("no-port").is_err());
        assert!(local.at("h:notaport").is_err());
    }
}
