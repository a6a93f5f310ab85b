//! Maintenance mode (`vigil pause` / `vigil resume`): while a data store is paused the
//! reconciler still judges its primary, raises `primary_down`, and announces it, but starts no
//! failover of its own (the `paused` alert says so); an operator's `vigil failover` still runs,
//! and a failover already under way finishes. The flag is in the persisted state, so it holds
//! across a controller's restart and a change of leader.
use vigil_proto::v1;

use super::actor::Reconciler;
use crate::error::ControllerError;

impl Reconciler {
    /// Pauses (`paused`) or resumes the data store, persisting the change first; idempotent.
    /// Answers with the state as it now is.
    pub(super) fn set_paused(
        &mut self,
        paused: bool,
    ) -> Result<v1::MaintenanceReply, ControllerError> {
        let changed = self.state.paused != paused;
        if changed {
            self.state.paused = paused;
            if let Err(e) = self.save(if paused { "the pause" } else { "the resume" }) {
                self.state.paused = !paused;
                return Err(e);
            }
            self.metrics.paused(&self.name, paused);
            self.publish();
            if paused {
                tracing::warn!(event = "datastore_paused", datastore = %self.name, primary = ?self.state.primary,
                    "paused: no automatic failover until `vigil resume`");
            } else {
                tracing::warn!(event = "datastore_resumed", datastore = %self.name, primary = ?self.state.primary,
                    "resumed: automatic failover is back on");
            }
        }
        Ok(v1::MaintenanceReply {
            datastore: self.name.clone(),
            paused: self.state.paused,
            changed,
            epoch: self.state.epoch,
            primary: self.state.primary.clone().unwrap_or_default(),
        })
    }
}
