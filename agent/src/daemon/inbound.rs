//! What the controller sends the daemon, and what goes back: the leader's Welcome (its
//! leadership), desired state (the role and peers it expects, the lease it grants, and the
//! self-fence it may lift), lease grants (the last desired state again, with a new lease),
//! commands (checked, admitted under the leadership and epoch rules, and handed to the command
//! runner in order), and their acks.
//!
//! The leadership rule comes before everything else: desired state from a deposed controller
//! renews no lease and changes nothing, and its commands move no epoch.
use std::time::Duration;

use tokio::time::Instant;
use vigil_proto::v1::{self, controller_message::Msg as Down};

use super::{
    Daemon,
    bounds::{self, Topology},
    lease,
    metrics::EventLabel,
    worker::Done,
};
use crate::{
    error::{AgentError, Result},
    fence::rules::{self as fence_rules, Event, Step},
    server::{
        commands::{Command, Outcome},
        info::Role,
        peers::PeerList,
    },
};

impl Daemon {
    pub(super) fn on_controller(&mut self, m: Down) {
        match m {
            // The link hands on only the Welcome of a controller that leads.
            Down::Welcome(w) => {
                let _ = self.admit_leadership(w.leadership, "a welcome");
            }
            Down::Desired(d) => self.on_desired(d),
            Down::Lease(g) => self.on_lease(g),
            Down::Command(c) => self.on_command(c),
        }
    }

    /// A lease grant on the controller's heartbeat: the desired state this agent last took in,
    /// sent again with this lease, so it renews the lease (and may lift a self-fence) exactly as
    /// that desired state would. One that does not match it (another epoch or leadership: a
    /// desired state it has not seen yet) renews nothing.
    fn on_lease(&mut self, g: v1::LeaseGrant) {
        if self
            .admit_leadership(g.leadership, "a lease grant")
            .is_err()
        {
            return;
        }
        match lease::renewed(self.last_desired.as_ref(), &g) {
            Some(d) => self.on_desired(d),
            None => tracing::debug!(
                epoch = g.epoch,
                leadership = g.leadership,
                "ignoring a lease grant for desired state this agent has not taken in"
            ),
        }
    }

    /// The leadership rule (see `leadership`): a higher leadership becomes the highest (and the
    /// link learns of it, to leave a deposed controller that welcomes it); a lower one is
    /// counted, and said at most now and then, since a deposed leader repeats its desired state.
    fn admit_leadership(&mut self, leadership: u64, what: &'static str) -> Result<()> {
        match self.leadership.admit(leadership) {
            Ok(rose) => {
                if rose {
                    self.link.leadership.send_replace(leadership);
                }
                Ok(())
            }
            Err(e) => {
                self.metrics.stale_leadership.inc();
                if let Some(held_back) = self.stale_log.allow(Instant::now()) {
                    tracing::warn!(
                        got = leadership,
                        highest = self.leadership.highest(),
                        held_back,
                        "ignoring {what} from a controller that no longer leads"
                    );
                }
                Err(e)
            }
        }
    }

    fn on_desired(&mut self, d: v1::DesiredState) {
        // Before anything else: a deposed leader's grant renews no lease, and its epoch, role
        // and peers are not taken in.
        if self
            .admit_leadership(d.leadership, "desired state")
            .is_err()
        {
            return;
        }
        if bounds::epoch_too_far(d.epoch, self.epochs.newest()) {
            tracing::warn!(
                epoch = d.epoch,
                newest = self.epochs.newest(),
                "ignoring desired state whose epoch is too far past any seen"
            );
            return;
        }
        self.epochs.observe(d.epoch);
        self.heartbeat.pace(d.quiet_heartbeat_ms);
        self.last_desired = Some(d.clone());
        self.topology = Topology::new(
            d.peers.iter().map(|p| p.address.as_str()),
            &d.primary_address,
        );
        // First the lease: a desired state that lifts a self-fence also renews it, so the node
        // is not fenced again at the next check.
        let lease = Duration::from_millis(u64::from(d.lease_ms));
        if self.lease.grant(d.lease_seq, lease)
            && let Some(until) = self.lease.until()
        {
            self.lease_end.as_mut().reset(until);
        }
        let expected = Role::try_from(d.role()).ok();
        // Named the primary and granted nothing: the controller is failing this node over and
        // will promote another once the lease is over, whether or not its Fence gets here.
        self.lease_withheld = expected == Some(Role::Primary) && lease.is_zero();
        self.monitor.expected_role = expected;
        self.monitor.expected_primary = match d.primary_address.as_str() {
            "" => None,
            address => match address.parse() {
                Ok(primary) => Some(primary),
                Err(e) => {
                    tracing::warn!(error = %e, "the controller's primary address is not HOST:PORT; not checking which primary this node follows");
                    None
                }
            },
        };
        if d.peers_version != self.peers.version || self.peers.peers.len() != d.peers.len() {
            let list = PeerList {
                version: d.peers_version,
                addresses: d.peers.iter().map(|p| p.address.clone()).collect(),
            };
            self.peers.reset(&list);
            self.peers_tx.send_replace(list);
        }
        if let Some(t) = d.thresholds {
            let mut thresholds = self.monitor.thresholds().clone();
            if t.busy_unhealthy_ms > 0 {
                thresholds.long_stall = Duration::from_millis(u64::from(t.busy_unhealthy_ms));
            }
            if t.ping_misses > 0 {
                thresholds.ping_misses = t.ping_misses;
            }
            self.monitor.set_thresholds(thresholds);
        }
        // A self-fence comes down when the controller says this node is the primary at the epoch
        // the fence began at, and grants it a lease (it is back and failed nothing over), or
        // when the server is a replica as the controller wants (no writes to hold off, and no
        // demotion will ever come to lift it). Reaching the controller again is not enough.
        let server_role = self.monitor.replication().map(|r| r.role);
        let lifting = match expected {
            Some(Role::Primary) if !lease.is_zero() => Some(Event::PrimaryAt { epoch: d.epoch }),
            Some(Role::Replica) if server_role == Some(Role::Replica) => {
                Some(Event::ReplicaAsDesired)
            }
            _ => None,
        };
        if let Some(event) = lifting
            && fence_rules::next(self.fence.record(), event) == Step::Lift
        {
            tracing::warn!(epoch = d.epoch, ?event, "lifting the self-fence");
            self.change_fence(event);
        }
        // A lease withheld after it ran out: fence now, not at the next check.
        self.check_fence();
    }

    fn on_command(&mut self, c: v1::Command) {
        let id = c.id;
        let epoch = c.epoch;
        // Before the epoch rule: a deposed leader's command must not raise the newest epoch.
        // The refusal goes back in the ack, which names both leaderships.
        if let Err(e) = self.admit_leadership(c.leadership, "a command") {
            self.ack(id, epoch, Err(e));
            return;
        }
        let command = match Command::try_from(c) {
            Ok(cmd) => cmd,
            Err(e) => {
                tracing::warn!(command = id, error = %e, "refusing a malformed command from the controller");
                self.ack(id, epoch, Err(e));
                return;
            }
        };
        // Before the epoch rule, so a refused command moves no epoch either.
        if let Err(e) = bounds::check(
            &command.action,
            command.epoch,
            self.epochs.newest(),
            &self.topology,
            self.max_pause,
        ) {
            tracing::warn!(command = id, error = %e, "refusing a command past the agent's bounds");
            self.ack(id, epoch, Err(e));
            return;
        }
        if let Err(e) = self.epochs.admit(command.epoch) {
            tracing::warn!(command = id, error = %e, "refusing a stale command");
            self.ack(id, epoch, Err(e));
            return;
        }
        tracing::info!(command = id, epoch, action = ?command.action, "carrying out a controller command");
        let hints = self.hints();
        if let Err(e) = self.commands.try_send((command, hints)) {
            tracing::error!(command = id, error = %e, "the command runner is not taking commands");
            self.ack(
                id,
                epoch,
                Err(AgentError::io(
                    "queueing the command",
                    std::io::Error::other("the agent's command queue is full"),
                )),
            );
        }
    }

    fn ack(&self, id: u64, epoch: u64, result: Result<Outcome>) {
        let label = if result.is_ok() { "ok" } else { "failed" };
        self.metrics
            .commands
            .get_or_create(&EventLabel { event: label })
            .inc();
        let ack = match result {
            Ok(o) => v1::CommandAck {
                command_id: id,
                ok: true,
                error: String::new(),
                role: o.role.map_or(v1::Role::Unspecified, v1::Role::from) as i32,
                repl_offset: o.offset,
                epoch,
                fenced: o.fenced,
            },
            Err(error) => v1::CommandAck {
                command_id: id,
                ok: false,
                error: error.chain(),
                role: 0,
                repl_offset: 0,
                epoch,
                fenced: self.fence.record().is_some(),
            },
        };
        // A full queue means the controller is gone for long; the command's effect stays.
        if self.link.acks.try_send(ack).is_err() {
            tracing::warn!(
                command = id,
                "could not queue the command's ack for the controller"
            );
        }
    }

    pub(super) fn on_done(&mut self, done: Done) {
        let id = done.command.id;
        if let Ok(Outcome {
            role: Some(role), ..
        }) = &done.result
        {
            self.monitor.note_role(*role);
        }
        match &done.result {
            Ok(o) => tracing::info!(
                command = id,
                role = o.role.map_or("unknown", Role::as_str),
                offset = o.offset,
                fenced = o.fenced,
                "command done"
            ),
            Err(e) => tracing::warn!(command = id, error = %e.chain(), "command failed"),
        }
        self.ack(id, done.command.epoch, done.result);
    }
}
