//! What the controller publishes: per data store, the primary clients should use and its
//! replicas, plus the Sentinel-style events that announce changes (`+switch-master`, `+sdown`,
//! `+odown`, ...; see [`Channel`]). Written by the reconcilers when something changes; read by the
//! Sentinel endpoint and the `vigil watch` stream.
use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::{broadcast, watch};
use vigil_proto::HostPort;

/// Events kept for slow subscribers; one that falls further behind misses some (and is told).
const EVENT_BACKLOG: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    pub address: HostPort,
    /// Its agent says it is DOWN or UNHEALTHY (Sentinel's `s_down`).
    pub down: bool,
    /// Its agent has no session with the controller (Sentinel's `disconnected`).
    pub disconnected: bool,
}

/// The Sentinel pub/sub channels the controller announces on, named as Sentinel names them. The
/// message texts name instances as Sentinel does: see [`master_instance`] and [`replica_instance`].
///
/// Around a failover Sentinel publishes, in this order: `+sdown` and `+odown` (the primary),
/// `+new-epoch`, `+try-failover`, `+selected-slave`, `+promoted-slave` (the chosen replica),
/// `+failover-end`, `+switch-master`, then `+slave` for every replica of the new primary, the old
/// one included; later `+sdown` for the old primary as a replica while it is dead, and `-sdown`
/// and `+convert-to-slave` when it returns and is demoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// A new primary: `<name> <old-ip> <old-port> <new-ip> <new-port>`. The one event every
    /// Sentinel client library listens to.
    SwitchMaster,
    /// A node is judged failed (subjectively down): `<instance>`, primary or replica.
    Sdown,
    /// It is no longer judged failed: `<instance>`.
    SdownEnded,
    /// The primary is judged failed by the quorum (objectively down): `<master> #quorum 1/1`.
    Odown,
    /// The primary is no longer judged failed by the quorum: `<master>`.
    OdownEnded,
    /// A failover bumped the epoch: `<epoch>`.
    NewEpoch,
    /// A failover of the primary starts: `<master>`.
    TryFailover,
    /// The replica chosen for promotion: `<replica>` (its primary still the failed one).
    SelectedSlave,
    /// The chosen replica was promoted: `<replica>` (its primary still the failed one).
    PromotedSlave,
    /// The failover finished; sent right before `+switch-master`: `<master>` (the old primary).
    FailoverEnd,
    /// No replica could be promoted; the failover is given up: `<master>`.
    FailoverAbortNoGoodSlave,
    /// A node is now a replica of the primary: `<replica>`.
    Slave,
    /// A node that claimed to be primary was told to replicate: `<replica>`.
    ConvertToSlave,
}

impl Channel {
    /// The channel's name, as Sentinel clients subscribe to it.
    pub fn name(self) -> &'static str {
        match self {
            Self::SwitchMaster => "+switch-master",
            Self::Sdown => "+sdown",
            Self::SdownEnded => "-sdown",
            Self::Odown => "+odown",
            Self::OdownEnded => "-odown",
            Self::NewEpoch => "+new-epoch",
            Self::TryFailover => "+try-failover",
            Self::SelectedSlave => "+selected-slave",
            Self::PromotedSlave => "+promoted-slave",
            Self::FailoverEnd => "+failover-end",
            Self::FailoverAbortNoGoodSlave => "-failover-abort-no-good-slave",
            Self::Slave => "+slave",
            Self::ConvertToSlave => "+convert-to-slave",
        }
    }
}

/// How Sentinel's event messages name a primary: `master <name> <ip> <port>`.
pub fn master_instance(name: &str, at: &HostPort) -> String {
    format!("master {name} {} {}", at.host, at.port)
}

/// How Sentinel's event messages name a replica, with the primary it belongs to:
/// `slave <ip>:<port> <ip> <port> @ <name> <primary-ip> <primary-port>`. Clients such as Lettuce
/// look for `@ <name> ` to tell which data store an event is about.
pub fn replica_instance(at: &HostPort, name: &str, primary: &HostPort) -> String {
    format!(
        "slave {at} {} {} @ {name} {} {}",
        at.host, at.port, primary.host, primary.port
    )
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreView {
    pub name: String,
    pub epoch: u64,
    pub primary: Option<Member>,
    pub replicas: Vec<Member>,
    /// The primary is judged failed right now (Sentinel's objective down: the decision to fail
    /// over). The endpoint names no primary meanwhile.
    pub primary_down: bool,
    /// Maintenance mode: no automatic failover (`vigil status` on any controller shows it).
    pub paused: bool,
    /// A failover has begun and not finished.
    pub failing_over: bool,
}

/// One announcement on a Sentinel `channel`, with its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub datastore: String,
    pub epoch: u64,
    pub channel: Channel,
    pub node: String,
    pub message: String,
}

/// Another controller's Sentinel endpoint, as `SENTINEL sentinels` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherSentinel {
    pub name: String,
    pub address: HostPort,
}

pub struct Published {
    stores: RwLock<BTreeMap<String, StoreView>>,
    events: broadcast::Sender<Event>,
    /// Bumped on every [`Published::set`], so the views can be mirrored to etcd as they change.
    changes: watch::Sender<u64>,
    /// The other controllers' Sentinel endpoints.
    others: RwLock<Vec<OtherSentinel>>,
    /// A follower has read the leader's views from etcd at least once: what it serves is the
    /// leader's, not what it happened to hold.
    synced: AtomicBool,
}

impl Published {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            stores: RwLock::new(BTreeMap::new()),
            events: broadcast::channel(EVENT_BACKLOG).0,
            changes: watch::channel(0).0,
            others: RwLock::new(Vec::new()),
            synced: AtomicBool::new(false),
        })
    }

    /// The leader's views were read from etcd (a follower's readiness).
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    /// Whether the leader's views were ever read from etcd.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn set(&self, view: StoreView) {
        let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
        if stores.get(&view.name) == Some(&view) {
            return;
        }
        stores.insert(view.name.clone(), view);
        drop(stores);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Wakes on every change of a view.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn set_others(&self, others: Vec<OtherSentinel>) {
        *self.others.write().unwrap_or_else(|p| p.into_inner()) = others;
    }

    /// The other controllers' Sentinel endpoints.
    pub fn others(&self) -> Vec<OtherSentinel> {
        self.others
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn get(&self, name: &str) -> Option<StoreView> {
        self.stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn all(&self) -> Vec<StoreView> {
        self.stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Announces `event`. Publish the view it announces first ([`Published::set`]): a client
    /// that asks on hearing `+switch-master` (ioredis does) must find the new primary, as it
    /// would at Sentinel, which switches before its next command.
    pub fn emit(&self, event: Event) {
        // No subscriber is fine: nobody is listening right now.
        let _ = self.events.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_instances_as_sentinel_does() {
        let (p, r) = (
            HostPort::new("127.0.0.1", 7000),
            HostPort::new("127.0.0.1", 7001),
        );
        assert_eq!(master_instance("cache", &p), "master cache 127.0.0.1 7000");
        assert_eq!(
            replica_instance(&r, "cache", &p),
            "slave 127.0.0.1:7001 127.0.0.1 7001 @ cache 127.0.0.1 7000"
        );
        let (p6, r6) = (HostPort::new("::1", 7000), HostPort::new("::1", 7001));
        assert_eq!(
            replica_instance(&r6, "cache", &p6),
            "slave [::1]:7001 ::1 7001 @ cache ::1 7000"
        );
    }

    #[test]
    fn channel_names_are_sentinels() {
        let all = [
            Channel::SwitchMaster,
            Channel::Sdown,
            Channel::SdownEnded,
            Channel::Odown,
            Channel::OdownEnded,
            Channel::NewEpoch,
            Channel::TryFailover,
            Channel::SelectedSlave,
            Channel::PromotedSlave,
            Channel::FailoverEnd,
            Channel::FailoverAbortNoGoodSlave,
            Channel::Slave,
            Channel::ConvertToSlave,
        ];
        let mut names: Vec<&str> = all.iter().map(|c| c.name()).collect();
        assert!(names.iter().all(|n| n.starts_with(['+', '-'])));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(Channel::OdownEnded.name(), "-odown");
        assert_eq!(Channel::FailoverEnd.name(), "+failover-end");
    }
}
