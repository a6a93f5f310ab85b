//! What a reconciler tells the world: the primary and replicas clients should use (the view the
//! Sentinel endpoint serves), the Sentinel events that announce changes, and the status an
//! operator reads with `vigil status`.
//!
//! Events go out in the order Sentinel sends them (see [`Channel`]), and always after the view
//! they announce is published: a client that asks at once, on hearing `+switch-master`, must be
//! told the new primary.
use tokio::time::Instant;
use vigil_proto::{HostPort, v1};

use super::actor::Reconciler;
use crate::sentinel::topology::{
    Channel, Event, Member, StoreView, master_instance, replica_instance,
};

/// An address for a node this controller does not know (it is not in the view either).
fn unknown() -> HostPort {
    HostPort::new("0.0.0.0", 1)
}

impl Reconciler {
    fn address_or_unknown(&self, node: &str) -> HostPort {
        self.nodes.address(node).unwrap_or_else(unknown)
    }

    /// `master <name> <ip> <port>`: how Sentinel's events name `node` as the primary.
    pub(super) fn master_words(&self, node: &str) -> String {
        master_instance(&self.name, &self.address_or_unknown(node))
    }

    /// `slave <ip>:<port> <ip> <port> @ <name> <pip> <pport>`: `node` as a replica of `primary`.
    pub(super) fn replica_words(&self, node: &str, primary: &str) -> String {
        replica_instance(
            &self.address_or_unknown(node),
            &self.name,
            &self.address_or_unknown(primary),
        )
    }

    /// `+switch-master`'s text: `<name> <old-ip> <old-port> <new-ip> <new-port>`.
    pub(super) fn switch_words(&self, old: Option<&str>, new: &str) -> String {
        let old = old.map_or_else(unknown, |o| self.address_or_unknown(o));
        let new = self.address_or_unknown(new);
        format!(
            "{} {} {} {} {}",
            self.name, old.host, old.port, new.host, new.port
        )
    }

    pub(super) fn announce(&self, channel: Channel, node: &str, message: String) {
        self.published.emit(Event {
            datastore: self.name.clone(),
            epoch: self.state.epoch,
            channel,
            node: node.to_string(),
            message,
        });
    }

    pub(super) fn publish(&self) {
        let member = |id: &str| {
            self.nodes.get(id).map(|n| Member {
                node: id.to_string(),
                address: n.info.address.clone(),
                down: n.is_down(),
                disconnected: n.session.is_none(),
            })
        };
        // A failover's new primary is named once its promotion succeeded.
        let (primary_id, primary_down) = match &self.active {
            Some(a) if a.promoted => (Some(a.to.as_str()), false),
            _ => (self.state.primary.as_deref(), self.primary_down),
        };
        let primary = primary_id.and_then(member);
        let replicas = self
            .nodes
            .ids()
            .filter(|id| Some(id.as_str()) != primary_id)
            .filter_map(|id| member(id))
            .collect();
        self.published.set(StoreView {
            name: self.name.clone(),
            epoch: self.state.epoch,
            primary,
            replicas,
            primary_down,
            paused: self.state.paused,
            failing_over: self.active.is_some() || self.state.in_flight.is_some(),
        });
    }

    pub(super) fn status(&self) -> v1::DatastoreStatus {
        let now = Instant::now();
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let v = n.verdict.as_ref();
                v1::NodeStatus {
                    node_id: n.info.id.clone(),
                    address: n.info.address.to_string(),
                    zone: n.info.zone.clone(),
                    role: v.map_or(0, |v| v.role),
                    health: v.map_or(0, |v| v.health),
                    reasons: v.map_or(0, |v| v.reasons),
                    repl_offset: v.map_or(0, |v| v.repl_offset),
                    verdict_age_ms: n
                        .heard
                        .map_or(u64::MAX, |t| now.duration_since(t).as_millis() as u64),
                    connected: n.session.is_some(),
                }
            })
            .collect();
        v1::DatastoreStatus {
            name: self.name.clone(),
            epoch: self.state.epoch,
            primary: self.state.primary.clone().unwrap_or_default(),
            nodes,
            paused: self.state.paused,
            failover_in_flight: self.active.is_some() || self.state.in_flight.is_some(),
        }
    }
}
