//! What the controller publishes: per data store, the primary clients should use and its
//! replicas, plus the Sentinel-style events that announce changes (`+switch-master`, `+sdown`,
//! `-sdown`, `+odown`). Written by the reconcilers when something changes; read by the Sentinel
//! endpoint and the `vigil watch` stream.
use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use tokio::sync::broadcast;
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

/// The Sentinel pub/sub channels the controller announces on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// A new primary: `<name> <old-ip> <old-port> <new-ip> <new-port>`.
    SwitchMaster,
    /// The primary is judged failed (subjectively down).
    Sdown,
    /// It is no longer judged failed.
    SdownEnded,
    /// The primary is judged failed by the quorum (objectively down).
    Odown,
}

impl Channel {
    /// The channel's name, as Sentinel clients subscribe to it.
    pub fn name(self) -> &'static str {
        match self {
            Self::SwitchMaster => "+switch-master",
            Self::Sdown => "+sdown",
            Self::SdownEnded => "-sdown",
            Self::Odown => "+odown",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreView {
    pub name: String,
    pub epoch: u64,
    pub primary: Option<Member>,
    pub replicas: Vec<Member>,
    /// The primary is judged failed right now (Sentinel's subjective down).
    pub primary_down: bool,
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

pub struct Published {
    stores: RwLock<BTreeMap<String, StoreView>>,
    events: broadcast::Sender<Event>,
}

impl Published {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            stores: RwLock::new(BTreeMap::new()),
            events: broadcast::channel(EVENT_BACKLOG).0,
        })
    }

    pub fn set(&self, view: StoreView) {
        let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
        stores.insert(view.name.clone(), view);
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

    pub fn emit(&self, event: Event) {
        // No subscriber is fine: nobody is listening right now.
        let _ = self.events.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}
