//! What a reconciler exports about its data store to Prometheus ([`crate::metrics`]): each node's
//! health (as a state label), connection and verdict age, and the store's epoch and primary as
//! persisted. The reconciler owns these series: it sets them as things change and removes them
//! when it stops, so a controller that no longer leads serves none of them, and a former primary
//! has no `datastore_primary` series.
use vigil_proto::v1::Health;

use super::actor::Reconciler;
use crate::metrics::{DatastoreLabel, node};

impl Reconciler {
    /// A node's health series, after a verdict or once it is known (`unknown` until its first).
    pub(super) fn export_health(&self, id: &str, health: Health) {
        self.metrics.node_health(&self.name, id, health);
    }

    /// Whether `id`'s agent has a session now.
    pub(super) fn export_connected(&self, id: &str, connected: bool) {
        self.metrics
            .node_connected(&node(&self.name, id), connected);
    }

    /// The epoch and primary as persisted; a former primary's series is removed.
    pub(super) fn export_state(&mut self) {
        let epoch = i64::try_from(self.state.epoch).unwrap_or(i64::MAX);
        self.metrics
            .datastore_epoch
            .get_or_create(&DatastoreLabel {
                datastore: self.name.clone(),
            })
            .set(epoch);
        if self.exported_primary == self.state.primary {
            return;
        }
        if let Some(old) = self.exported_primary.take() {
            self.metrics
                .datastore_primary
                .remove(&node(&self.name, &old));
        }
        if let Some(new) = &self.state.primary {
            self.metrics
                .datastore_primary
                .get_or_create(&node(&self.name, new))
                .set(1);
        }
        self.exported_primary = self.state.primary.clone();
    }

    /// The reconciler stops (its term is over): none of its series stays behind, and its agents,
    /// whose sessions end with it, are no longer counted as connected.
    pub(super) fn unexport(&mut self) {
        for id in self.nodes.ids() {
            self.metrics.forget_node(&node(&self.name, id));
        }
        if let Some(old) = self.exported_primary.take() {
            self.metrics
                .datastore_primary
                .remove(&node(&self.name, &old));
        }
        let store = DatastoreLabel {
            datastore: self.name.clone(),
        };
        self.metrics.datastore_epoch.remove(&store);
        self.metrics.paused.remove(&store);
    }
}
