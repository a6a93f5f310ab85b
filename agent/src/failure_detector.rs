//! The failure detector: RESP PINGs to the local server on a dedicated connection, and to a few
//! random peers of the same data store each round (the seed's remote check: the controller weighs
//! what several agents see of one server).
//!
//! Tasks here only measure and report through channels; they never decide health.
use std::{collections::HashMap, time::Duration};

use rand::seq::IndexedRandom;
use redis::aio::MultiplexedConnection;
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior, timeout},
};

/// How to reach a Redis-protocol server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConn {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl ServerConn {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The same credentials at another address (peers share the data store's credentials).
    pub fn at(&self, address: &str) -> Option<Self> {
        let (host, port) = address.rsplit_once(':')?;
        Some(Self {
            host: host.to_string(),
            port: port.parse().ok()?,
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
        let addr = redis::ConnectionAddr::Tcp(self.host.clone(), self.port);
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

fn classify_error(e: &redis::RedisError) -> PingOutcome {
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

async fn ping(conn: &mut MultiplexedConnection, limit: Duration) -> PingOutcome {
    let started = Instant::now();
    match timeout(limit, redis::cmd("PING").query_async::<String>(conn)).await {
        Err(_) => PingOutcome::Timeout,
        Ok(Ok(_)) => PingOutcome::Pong(started.elapsed()),
        Ok(Err(e)) => classify_error(&e),
    }
}

/// Pings the local server every `interval` (each PING may take up to `interval`) and reports
/// every outcome. Reconnects after a broken connection, never faster than `interval`.
pub async fn local_pinger(server: ServerConn, interval: Duration, tx: mpsc::Sender<PingOutcome>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn: Option<MultiplexedConnection> = None;
    loop {
        ticker.tick().await;
        let outcome = match conn.as_mut() {
            Some(c) => ping(c, interval).await,
            None => match server.connect(interval).await {
                Ok(mut c) => {
                    let outcome = ping(&mut c, interval).await;
                    conn = Some(c);
                    outcome
                }
                Err(outcome) => outcome,
            },
        };
        // A timed-out PING leaves the connection usable (the reply is dropped when it comes);
        // any other failure means a new connection next round.
        if !matches!(outcome, PingOutcome::Pong(_) | PingOutcome::Timeout) {
            conn = None;
        }
        if tx.send(outcome).await.is_err() {
            return; // the monitor is gone
        }
    }
}

/// The latest peer list from the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerList {
    pub version: u32,
    pub addresses: Vec<String>,
}

/// One peer probe's result, for the peer at `index` of list `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProbe {
    pub version: u32,
    pub index: usize,
    pub outcome: PingOutcome,
}

/// Each `interval`, PINGs up to `per_round` random peers and reports each outcome.
pub async fn peer_prober(
    credentials: ServerConn,
    mut peers: watch::Receiver<PeerList>,
    per_round: usize,
    interval: Duration,
    tx: mpsc::Sender<PeerProbe>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Connections kept between rounds, at most one per peer in the current list.
    let mut conns: HashMap<String, MultiplexedConnection> = HashMap::new();
    loop {
        ticker.tick().await;
        let list = peers.borrow_and_update().clone();
        conns.retain(|addr, _| list.addresses.contains(addr));
        let indexes: Vec<usize> = (0..list.addresses.len()).collect();
        let chosen: Vec<usize> = indexes
            .choose_multiple(&mut rand::rng(), per_round)
            .copied()
            .collect();
        for index in chosen {
            let address = &list.addresses[index];
            let outcome = match conns.get_mut(address) {
                Some(c) => ping(c, interval).await,
                None => match credentials.at(address) {
                    None => {
                        PingOutcome::Error(format!("peer address {address:?} is not host:port"))
                    }
                    Some(peer) => match peer.connect(interval).await {
                        Ok(mut c) => {
                            let o = ping(&mut c, interval).await;
                            conns.insert(address.clone(), c);
                            o
                        }
                        Err(o) => o,
                    },
                },
            };
            if !matches!(outcome, PingOutcome::Pong(_)) {
                conns.remove(address);
            }
            if tx
                .send(PeerProbe {
                    version: list.version,
                    index,
                    outcome,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// What the agent knows of each peer in the current list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerTable {
    pub version: u32,
    pub peers: Vec<PeerState>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerState {
    pub probed: bool,
    pub reachable: bool,
    pub last_rtt: Option<Duration>,
    pub consecutive_failures: u32,
}

impl PeerTable {
    /// A new list: everything known about the old one is dropped.
    pub fn reset(&mut self, list: &PeerList) {
        self.version = list.version;
        self.peers = vec![PeerState::default(); list.addresses.len()];
    }

    pub fn record(&mut self, probe: &PeerProbe) {
        if probe.version != self.version {
            return; // about a list we no longer hold
        }
        let Some(p) = self.peers.get_mut(probe.index) else {
            return;
        };
        p.probed = true;
        match probe.outcome {
            PingOutcome::Pong(rtt) => {
                p.reachable = true;
                p.last_rtt = Some(rtt);
                p.consecutive_failures = 0;
            }
            _ => {
                p.reachable = false;
                p.consecutive_failures = p.consecutive_failures.saturating_add(1);
            }
        }
    }

    /// (probed, unreachable) bitmasks over the first 64 peers.
    pub fn bits(&self) -> (u64, u64) {
        self.peers
            .iter()
            .take(64)
            .enumerate()
            .fold((0, 0), |(probed, down), (i, p)| {
                (
                    probed | (u64::from(p.probed) << i),
                    down | (u64::from(p.probed && !p.reachable) << i),
                )
            })
    }

    /// Peers answering now, out of all peers. (0, 0) with no peers known.
    pub fn reachable(&self) -> (usize, usize) {
        (
            self.peers.iter().filter(|p| p.reachable).count(),
            self.peers.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_table_tracks_reachability_per_list_version() {
        let mut t = PeerTable::default();
        t.reset(&PeerList {
            version: 2,
            addresses: vec!["a:1".into(), "b:2".into(), "c:3".into()],
        });
        t.record(&PeerProbe {
            version: 2,
            index: 0,
            outcome: PingOutcome::Pong(Duration::from_micros(80)),
        });
        t.record(&PeerProbe {
            version: 2,
            index: 1,
            outcome: PingOutcome::Timeout,
        });
        t.record(&PeerProbe {
            version: 2,
            index: 1,
            outcome: PingOutcome::Refused,
        });
        // A result about the previous list is ignored.
        t.record(&PeerProbe {
            version: 1,
            index: 2,
            outcome: PingOutcome::Timeout,
        });
        assert_eq!(t.bits(), (0b011, 0b010));
        assert_eq!(t.peers[1].consecutive_failures, 2);
        assert_eq!(t.reachable(), (1, 3));
        t.record(&PeerProbe {
            version: 2,
            index: 1,
            outcome: PingOutcome::Pong(Duration::from_micros(90)),
        });
        assert_eq!(t.bits(), (0b011, 0b000));
        assert_eq!(t.peers[1].consecutive_failures, 0);
    }

    #[test]
    fn peer_addresses_keep_credentials() {
        let local = ServerConn {
            host: "127.0.0.1".into(),
            port: 6379,
            username: Some("u".into()),
            password: Some("p".into()),
        };
        let peer = local.at("10.0.0.2:7000").unwrap();
        assert_eq!(
            (peer.host.as_str(), peer.port, peer.password.as_deref()),
            ("10.0.0.2", 7000, Some("p"))
        );
        assert!(local.at("no-port").is_none());
        assert!(local.at("h:notaport").is_none());
    }
}
