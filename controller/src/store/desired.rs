//! Desired state: what each agent is told its node should be (role, the primary to follow, its
//! peers to probe) with the current epoch, and, for the primary, its lease.
//!
//! It goes out when it changes, and only then: after every input the reconciler compares what
//! desired state follows from ([`DesiredInputs`]: the epoch, the primary, whether a failover is
//! under way, the peer list) with what it was, and when any of it moved, every agent is sent its
//! new desired state at once. An agent also gets it when its session starts, and again every
//! [`Settings::desired_refresh`](super::Settings) (a refresh, in case one was lost). On the
//! controller's heartbeat the primary gets only a [`v1::LeaseGrant`]: the desired state it has,
//! renewed, in a few bytes. A fleet of agents so costs the controller O(primaries) messages per
//! heartbeat, not O(agents).
//!
//! The lease is granted only to the primary, and not while a failover is under way: from the
//! moment a failover begins, the old primary's lease runs out for good, which is what a
//! failover past an agent that does not answer waits for. That change is itself a change of
//! desired state, so the old primary is told at once that its lease is withheld.
use tokio::time::Instant;
use vigil_proto::v1::{self, Role, controller_message::Msg as Down};

use super::actor::Reconciler;
use crate::metrics::node;

/// What every node's desired state follows from, as it was last sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct DesiredInputs {
    pub epoch: u64,
    pub primary: Option<String>,
    pub failing_over: bool,
    pub peers_version: u32,
}

impl Reconciler {
    fn failing_over(&self) -> bool {
        self.active.is_some() || self.state.in_flight.is_some()
    }

    /// After every input: when what desired state follows from has moved, a new generation of it
    /// goes to every agent now. O(1) when nothing moved.
    pub(super) fn desired_follow(&mut self) {
        let was = &self.desired_inputs;
        if was.epoch == self.state.epoch
            && was.primary == self.state.primary
            && was.failing_over == self.failing_over()
            && was.peers_version == self.nodes.peers_version
        {
            return;
        }
        self.desired_inputs = DesiredInputs {
            epoch: self.state.epoch,
            primary: self.state.primary.clone(),
            failing_over: self.failing_over(),
            peers_version: self.nodes.peers_version,
        };
        self.desired_generation += 1;
        let ids: Vec<String> = self.nodes.ids().cloned().collect();
        for id in ids {
            self.push_desired_to(&id);
        }
    }

    /// Sends `id` its desired state unless its session already has the current one.
    pub(super) fn push_desired_if_stale(&mut self, id: &str) {
        let generation = self.desired_generation;
        if self
            .nodes
            .get(id)
            .is_some_and(|n| n.desired_sent.is_none_or(|(g, _)| g != generation))
        {
            self.push_desired_to(id);
        }
    }

    /// The controller's heartbeat: the primary's lease renewed with a grant, and desired state
    /// sent again to any agent whose session lacks the current one (a full outbox dropped it)
    /// or has not been sent it for [`Settings::desired_refresh`](super::Settings).
    pub(super) fn beat(&mut self) {
        self.export_verdict_ages();
        // A leader whose term ran out (or was paused past it) grants nothing more: a newer
        // leader may already be failing this primary over.
        if !self.leadership.holds(self.term.token) {
            return;
        }
        let now = Instant::now();
        let (generation, refresh) = (self.desired_generation, self.settings.desired_refresh);
        // Empty, and so no allocation, on most heartbeats.
        let due: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.session.is_some())
            .filter(|n| {
                n.desired_sent
                    .is_none_or(|(g, at)| g != generation || now.duration_since(at) >= refresh)
            })
            .map(|n| n.info.id.clone())
            .collect();
        for id in &due {
            self.push_desired_to(id);
        }
        let Some(primary) = self.state.primary.as_deref() else {
            return;
        };
        // Its desired state just went out, with its lease; or could not, and a grant stands for
        // the desired state the agent has.
        if self.failing_over() || due.iter().any(|id| id == primary) {
            return;
        }
        let Some(n) = self.nodes.get_mut(primary) else {
            return;
        };
        // No verdict of this session to grant a lease for yet (see `push_desired_to`).
        if n.last_seq == 0 {
            return;
        }
        let Some(session) = n.session.as_ref() else {
            return;
        };
        let grant = v1::LeaseGrant {
            epoch: self.state.epoch,
            lease_ms: self.settings.lease.as_millis() as u32,
            lease_seq: n.last_seq,
            leadership: self.term.token,
        };
        // A lease counts as granted once it is on its way, never before.
        let sent = session
            .outbox
            .try_send(Ok(Box::new(v1::ControllerMessage {
                msg: Some(Down::Lease(grant)),
            })))
            .is_ok();
        if sent {
            n.lease_granted_at = Some(now);
        }
    }

    /// Each heard node's verdict age, as of now: refreshed on the heartbeat, so a scrape reads
    /// an age at most one heartbeat old, through the series each node keeps (no label is built
    /// on the heartbeat).
    fn export_verdict_ages(&mut self) {
        for n in self.nodes.iter_mut() {
            if let Some(t) = n.heard {
                let series = n.age_series.get_or_insert_with(|| {
                    self.metrics
                        .verdict_age
                        .get_or_create(&node(&self.name, &n.info.id))
                        .clone()
                });
                series.set(t.elapsed().as_secs_f64());
            }
        }
    }

    /// Sends `id` its desired state now, the primary's with its lease.
    pub(super) fn push_desired_to(&mut self, id: &str) {
        // A leader whose term ran out (or was paused past it) grants nothing more: a newer
        // leader may already be failing this primary over.
        if !self.leadership.holds(self.term.token) {
            return;
        }
        let Some(n) = self.nodes.get(id) else {
            return;
        };
        if n.session.is_none() {
            return;
        }
        if self.state.primary.as_deref() == Some(id) && n.last_seq == 0 && !self.failing_over() {
            // The primary's agent has not sent a verdict in this session yet, so there is no
            // lease to grant; a desired state without one would tell it its lease is withheld
            // (a failover from it under way) and, its lease having run out while it had no
            // controller (a restart, a change of leader), it would fence itself. It is sent
            // its desired state with the lease its first verdict earns.
            return;
        }
        let desired = self.desired_for(id);
        let grants = desired.lease_ms > 0;
        let generation = self.desired_generation;
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        let Some(session) = n.session.as_ref() else {
            return;
        };
        // A full outbox means the agent is slow; its session stays without the current
        // generation, and the next heartbeat sends it again. A lease counts as granted once it
        // is on its way, never before.
        let sent = session
            .outbox
            .try_send(Ok(Box::new(v1::ControllerMessage {
                msg: Some(Down::Desired(desired)),
            })))
            .is_ok();
        if sent {
            let now = Instant::now();
            n.desired_sent = Some((generation, now));
            if grants {
                n.lease_granted_at = Some(now);
            }
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
        let lease_seq = match self.nodes.get(id) {
            Some(n) if role == Role::Primary && !self.failing_over() => n.last_seq,
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
            quiet_heartbeat_ms: if role == Role::Replica {
                self.settings.quiet_heartbeat_ms()
            } else {
                0
            },
        }
    }
}
