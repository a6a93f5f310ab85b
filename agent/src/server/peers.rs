//! The peer prober: each round, RESP PINGs to a few random peers of the same data store (a remote
//! check: the controller weighs what several agents see of one server), and the table of what
//! this agent knows of each peer. It only measures and reports; it never decides
//! health.
use std::{collections::HashMap, time::Duration};

use rand::seq::IndexedRandom;
use redis::aio::MultiplexedConnection;
use tokio::{
    sync::{mpsc, watch},
    time::MissedTickBehavior,
};

use super::{
    MAX_PROBED_PEERS,
    conn::{ServerConn, ping},
    ping_outcome::PingOutcome,
};

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
        // Only the peers a verdict can report on: the controller's list of this node's data
        // store, and no more of it than that.
        let probed = list.addresses.len().min(MAX_PROBED_PEERS);
        let indexes: Vec<usize> = (0..probed).collect();
        let chosen: Vec<usize> = indexes
            .choose_multiple(&mut rand::rng(), per_round)
            .copied()
            .collect();
        for index in chosen {
            let address = &list.addresses[index];
            let outcome = match conns.get_mut(address) {
                Some(c) => ping(c, interval).await,
                None => match credentials.at(address) {
                    Err(e) => PingOutcome::Error(e.to_string()),
                    Ok(peer) => match peer.connect(interval).await {
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
}
