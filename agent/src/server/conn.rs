//! The one connection type for the local server and its peers: where a Redis-protocol server
//! answers and with which credentials, and what connecting or a PING found. Every module that
//! talks to a server (the pinger, the peer prober, the health poller, the command runner)
//! connects through [`ServerConn`].
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::time::{Instant, timeout};
use vigil_proto::{HostPort, ProtoError};

/// How to reach a Redis-protocol server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConn {
    pub address: HostPort,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl ServerConn {
    /// The same credentials at another address, given as HOST:PORT (peers share the data
    /// store's credentials).
    pub fn at(&self, address: &str) -> Result<Self, ProtoError> {
        Ok(Self {
            address: address.parse()?,
            ..self.clone()
        })
    }

    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        let mut redis = redis::RedisConnectionInfo::default();
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        let addr = redis::ConnectionAddr::Tcp(self.address.host.clone(), self.address.port);
        let info = redis::IntoConnectionInfo::into_connection_info(addr)?.set_redis_settings(redis);
        redis::Client::open(info)
    }

    /// A fresh multiplexed connection, bounded by `limit`.
    pub async fn connect(&self, limit: Duration) -> Result<MultiplexedConnection, PingOutcome> {
        let client = self
            .client()
            .map_err(|e| PingOutcome::Error(e.to_string()))?;
        match timeout(limit, client.get_multiplexed_async_connection()).await {
            Err(_) => Err(PingOutcome::Timeout),
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(classify_error(&e)),
        }
    }
}

/// What one PING found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PingOutcome {
    Pong(Duration),
    /// No answer within the interval (the request may still be queued at the server).
    Timeout,
    /// Nothing listens at the address.
    Refused,
    /// The server refused our credentials.
    AuthFailed(String),
    Error(String),
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
        };
        let peer = local.at("10.0.0.2:7000").unwrap();
        assert_eq!(
            (
                peer.address.host.as_str(),
                peer.address.port,
                peer.password.as_deref()
            ),
            ("10.0.0.2", 7000, Some("p"))
        );
        assert!(local.at("no-port").is_err());
        assert!(local.at("h:notaport").is_err());
    }
}
