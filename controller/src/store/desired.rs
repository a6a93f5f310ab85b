//! Desired state: what each agent is told its node should be (role, the primary to follow, its
//! peers to probe) with the current epoch, and, for the primary, its lease. Sent when an agent
//! connects, after a failover, and to every agent on the controller's heartbeat.
//!
//! The lease is granted only to the primary, and not while a failover is under way: from the
//! moment a failover begins, the old primary's lease runs out for good, which is what a
//! failover past an agent that does not answer waits for.
use tokio::time::Instant;
use vigil_proto::v1::{self, Role, controller_message::Msg as Down};

use super::actor::Reconciler;

impl Reconciler {
    pub(super) fn push_desired(&mut self) {
        self.export_verdict_ages();
        let ids: Vec<String> = self.nodes.ids().cloned().collect();
        for id in ids {
            self.push_desired_to(&id);
        }
    }

    pub(super) fn push_desired_to(&mut self, id: &str) {
        // A leader whose term ran out (or was paused past it) grants nothing more: a newer
        // leader may already be failing this primary over.
        if !self.leadership.holds(self.term.token) {
            return;
        }
        let Some(outbox) = self.nodes.outbox(id) else {
            return;
        };
        let desired = self.desired_for(id);
        if desired.role() == Role::Primary
            && desired.lease_ms == 0
            && self.active.is_none()
            && self.state.in_flight.is_none()
        {
            // The primary's agent has not sent a verdict in this session yet, so there is no
            // lease to grant; a desired state without one would tell it its lease is withheld
            // (a failover from it under way) and, its lease having run out while it had no
            // controller (a restart, a change of leader), it would fence itself. It is sent
            // its desired state with the lease its first verdict earns.
            return;
        }
        let grants = desired.lease_ms > 0;
        // A full outbox means the agent is slow; the next push carries the same state. A lease
        // counts as granted once it is on its way, never before.
        let sent = outbox
            .try_send(Ok(v1::ControllerMessage {
                msg: Some(Down::Desired(desired)),
            }))
            .is_ok();
        if sent
            && grants
            && let Some(n) = self.nodes.get_mut(id)
        {
            n.lease_granted_at = Some(Instant::now());
        }
    }

    /// What node `id` should be now.
    pub(super) fn desired_for(&self, id: &str) -> v1::DesiredState {
        let primary = self.state.primary.as_deref();
        let role = match primary {
            Some(p) if p == id => Role::Primary,
            Some(_) => Role::Replica,
            None => Role::Unspecified,
        };
        let primary_address = match (role, primary) {
            (Role::Replica, Some(p)) => self
                .nodes
                .address(p)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let failing_over = self.active.is_some() || self.state.in_flight.is_some();
        let lease_seq = match self.nodes.get(id) {
            Some(n) if role == Role::Primary && !failing_over => n.last_seq,
            _ => 0,
        };
        let peers = self
            .nodes
            .peers_of(id)
            .map(|n| v1::Peer {
                node_id: n.info.id.clone(),
                address: n.info.address.to_string(),
            })
            .collect();
        v1::DesiredState {
            epoch: self.state.epoch,
            role: role as i32,
            primary_address,
            peers,
            peers_version: self.nodes.peers_version,
            thresholds: None,
            lease_ms: if lease_seq > 0 {
                self.settings.lease.as_millis() as u32
            } else {
                0
            },
            lease_seq,
            leadership: self.term.token,
        }
    }
}
