//! What comes in from agents: sessions opening and closing, and verdicts. A verdict updates its
//! node, may adopt the first primary of a new data store, raises the alerts it shows, corrects a
//! node in the wrong role, and, from the primary, has the primary judged at once.
use tokio::time::Instant;
use vigil_proto::{
    Reason,
    v1::{self, Health, Role, command::Action},
};

use super::{
    actor::Reconciler,
    nodes::{NodeInfo, Outbox, Session},
    settings::CORRECT_EVERY,
};
use crate::{alerts::Alert, sentinel::topology::Channel};

impl Reconciler {
    pub(super) fn on_session(&mut self, info: NodeInfo, outbox: Outbox, session: u64) {
        let (id, address) = (info.id.clone(), info.address.clone());
        if let Err(e) = self.nodes.register(info) {
            // The agent was welcomed before its node was looked at here: its session ends now,
            // with the reason. Node ids come from the network; the data store stays as it is.
            let _ = outbox.try_send(Err(tonic::Status::resource_exhausted(e.to_string())));
            self.alert(
                Alert::TooManyNodes,
                &format!("{e}: is an agent misconfigured, or are hellos forged?"),
            );
            return;
        }
        tracing::info!(datastore = %self.name, node = %id, address = %address, "agent connected");
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        // A session that replaces one whose close has not arrived yet (a reconnect) is the same
        // agent: the node stays connected, and the old session's close is then ignored.
        n.session = Some(Session {
            id: session,
            outbox,
        });
        // A new session numbers its verdicts anew: no lease until it has sent one.
        n.last_seq = 0;
        // And has been sent no desired state yet.
        n.desired_sent = None;
        let health = n.health();
        self.export_connected(&id, true);
        self.export_health(&id, health);
        // The node's address may be new to this controller (after a restart): republish.
        self.publish();
        // A node new to the data store (or moved) is news to every agent; this one is sent
        // its desired state either way.
        self.desired_follow();
        self.push_desired_if_stale(&id);
    }

    pub(super) fn on_closed(&mut self, node: &str, session: u64) {
        if let Some(n) = self.nodes.get_mut(node)
            && n.session.as_ref().is_some_and(|s| s.id == session)
        {
            n.session = None;
            self.export_connected(node, false);
            tracing::info!(datastore = %self.name, node = %node, "agent disconnected");
            self.publish();
        }
    }

    pub(super) fn on_verdict(&mut self, node: &str, verdict: v1::Verdict, received: Instant) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let role = verdict.role();
        let health = verdict.health();
        let reasons = Reason::from_bits_truncate(verdict.reasons);
        let was_down = n.is_down();
        let health_before = n.health();
        let first_of_session = n.last_seq == 0;
        n.take_verdict(verdict, received);

        let down_changed = n.is_down() != was_down;
        if first_of_session && self.state.primary.as_deref() == Some(node) {
            // The primary's lease waits for this verdict (see `push_desired_to`): at once.
            self.push_desired_to(node);
        }
        if health != health_before {
            self.export_health(node, health);
        }
        if down_changed {
            // Sentinel clients filter replicas by their s_down flag; some refresh on the event.
            self.publish();
            if let Some(primary) = self.state.primary.clone()
                && primary != node
            {
                let channel = if self.nodes.get(node).is_some_and(|n| n.is_down()) {
                    Channel::Sdown
                } else {
                    Channel::SdownEnded
                };
                self.announce(channel, node, self.replica_words(node, &primary));
            }
        }
        if self.state.primary.is_none() && role == Role::Primary && self.active.is_none() {
            self.adopt_primary(node);
        }
        let is_primary = self.state.primary.as_deref() == Some(node);
        if !is_primary && health == Health::Down {
            self.alert(
                Alert::ReplicaDown,
                &format!("replica {node} is down; the primary is unaffected"),
            );
        }
        if reasons.contains(Reason::FENCED) {
            self.alert(
                Alert::FencedPrimary,
                &format!("node {node} reports its writes fenced"),
            );
        }
        // A down server cannot be corrected; the first verdict once it is back corrects it at once,
        // not after the pause a failed correction would start.
        if health != Health::Down {
            self.correct_role(node, role, reasons);
        }
        if is_primary {
            self.evaluate(Some(received));
        }
    }

    /// A new data store: the first node that says it is primary becomes the primary.
    fn adopt_primary(&mut self, node: &str) {
        self.state.primary = Some(node.to_string());
        self.state.epoch = self.state.epoch.max(1);
        let _ = self.save("the adopted primary");
        tracing::info!(datastore = %self.name, node, epoch = self.state.epoch, "adopted the primary");
        self.publish();
        // Its first lease at once, answering the verdict it was adopted on, not at the next
        // tick: a primary never granted a lease never fences itself, so one cut off in between
        // would take writes beside the replica promoted in its place.
        self.push_desired_to(node);
    }

    /// Demotes a node that claims to be primary but is not, and re-points a replica that
    /// follows the wrong primary; at most once per [`CORRECT_EVERY`] per node.
    fn correct_role(&mut self, node: &str, role: Role, reasons: Reason) {
        let wrong = role == Role::Primary
            || (role == Role::Replica && reasons.contains(Reason::WRONG_PRIMARY));
        // The usual verdict: a node in its role, nothing to look up.
        if !wrong || self.active.is_some() {
            return;
        }
        let Some(primary) = self.state.primary.clone() else {
            return;
        };
        if node == primary {
            return;
        }
        let Some(address) = self.nodes.address(&primary) else {
            return;
        };
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        if n.last_corrected
            .is_some_and(|t| t.elapsed() < CORRECT_EVERY)
        {
            return;
        }
        n.last_corrected = Some(Instant::now());
        self.alert(
            Alert::RoleDiscrepancy,
            &format!(
                "node {node} reports {} but the primary is {primary}: pointing it at {address}",
                role.as_str_name()
            ),
        );
        let (reply, _ignored) = tokio::sync::oneshot::channel();
        let action = Action::ReplicateOf(v1::ReplicateOf {
            address: address.to_string(),
        });
        self.send_command(node, action, self.state.epoch, reply);
        if role == Role::Primary {
            self.announce(
                Channel::ConvertToSlave,
                node,
                self.replica_words(node, &primary),
            );
        }
    }
}
