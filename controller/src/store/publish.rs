//! What a reconciler tells the world: the primary and replicas clients should use (the view the
//! Sentinel endpoint serves), the Sentinel events that announce changes, and the status an
//! operator reads with `vigil status`.
use tokio::time::Instant;
use vigil_proto::v1;

use super::actor::Reconciler;
use crate::sentinel::topology::{Channel, Event, Member, StoreView};

impl Reconciler {
    /// `host port` of a node, as Sentinel's event messages write an address.
    pub(super) fn address_words(&self, node: &str) -> String {
        self.nodes
            .address(node)
            .map_or("0.0.0.0 0".to_string(), |a| {
                format!("{} {}", a.host, a.port)
            })
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
        let primary_id = self.state.primary.as_deref();
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
            primary_down: self.primary_down,
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
        }
    }
}
