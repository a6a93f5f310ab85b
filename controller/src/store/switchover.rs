//! What an operator asks with `vigil failover`: a planned switchover of a live primary with no
//! write lost, or a forced promotion when the primary is already gone. A Redis or Valkey primary
//! hands over through vigil's steps (fenced with its replicas' links kept, the target caught up,
//! promoted, the old primary demoted and its clients disconnected); a Dragonfly target runs
//! `REPLTAKEOVER`. Which, from the primary's current flavour.
use vigil_proto::v1::{self, Flavour, Health, command::Action};

use super::{
    actor::{Reconciler, Reply},
    decision::{self, NodeView, Policy},
    settings::CATCH_UP_WITHIN,
    state::Cause,
    steps::{self, Fencing, Handover, Plan},
    timeline::{Clock, Origin},
};
use crate::{error::ControllerError, hooks::Event};

/// What `vigil failover [--to]` does now.
enum Manual {
    /// The primary is gone: promote `target` as a failover would, fencing first.
    Forced { primary: String, target: String },
    /// The primary is live: hand over by these steps (without their epoch yet).
    Switchover(Plan),
}

impl Reconciler {
    pub(super) fn manual_failover(&mut self, to: Option<String>, reply: Reply<v1::FailoverReply>) {
        // The timeline counts from the request, whatever the primary did before.
        let clock = Clock::new(Origin::Request, tokio::time::Instant::now());
        match self.plan_manual(to) {
            Ok(Manual::Forced { primary, target }) => {
                let cause = Cause::Manual;
                self.start_failover(Some(primary), target, cause, clock, Some(reply), None);
            }
            Ok(Manual::Switchover(mut plan)) => {
                let (from, to) = (plan.from.clone(), plan.to.clone());
                plan.epoch =
                    match self.begin(from.clone(), &to, Cause::Switchover, clock, Vec::new()) {
                        Ok(epoch) => epoch,
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            return;
                        }
                    };
                tracing::warn!(event = "switchover_started", datastore = %self.name, epoch = plan.epoch, from = ?from, to = %to, handover = ?plan.handover, "planned switchover");
                self.hooks.notify(
                    &self.name,
                    Event::SwitchoverStarted,
                    &format!(
                        "epoch {}: switching over from {} to {to}",
                        plan.epoch,
                        from.as_deref().unwrap_or("none")
                    ),
                );
                let start = steps::Start {
                    reply: Some(reply),
                    ..Default::default()
                };
                steps::spawn(self.me.clone(), &self.settings, plan, start);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// What `vigil failover [--to]` would do now, or why it cannot.
    fn plan_manual(&self, to: Option<String>) -> Result<Manual, ControllerError> {
        if self.active.is_some() || self.state.in_flight.is_some() {
            return Err(ControllerError::FailoverInProgress);
        }
        let primary = self
            .state
            .primary
            .clone()
            .ok_or_else(|| ControllerError::NoPrimary(self.name.clone()))?;
        let (Some(p), replicas) = self.nodes.views(&primary) else {
            return Err(ControllerError::NoPrimary(self.name.clone()));
        };
        let policy = Policy {
            in_grace: false,
            ..self.policy()
        };
        let target = self.pick_target(to, &p, &replicas, &policy)?;
        let live = p.fresh(&policy) && matches!(p.health, Health::Healthy | Health::Degraded);
        if !live {
            // The primary is gone: a forced promotion.
            return Ok(Manual::Forced { primary, target });
        }
        let flavour = self
            .nodes
            .get(&primary)
            .map_or(Flavour::Unspecified, |n| n.info.flavour);
        let to_address =
            self.nodes
                .address(&target)
                .ok_or_else(|| ControllerError::NotAReplica {
                    node: target.clone(),
                    datastore: self.name.clone(),
                })?;
        let (fencing, handover) = match flavour {
            // Fence the primary with its replicas' links kept up, wait until the target has
            // every write it had, promote the target; the old primary is then demoted with the
            // others, its clients disconnected.
            Flavour::Redis | Flavour::Valkey => (
                Fencing::Fence {
                    node: primary.clone(),
                    keep_replicas: true,
                    lease_over: self.lease_over(&primary),
                },
                Handover::CatchUpThenPromote,
            ),
            // Dragonfly hands over by itself: the target runs REPLTAKEOVER, which waits until it
            // has caught up, and the old primary shuts down.
            Flavour::Dragonfly => (
                Fencing::None,
                Handover::Run(Action::Switchover(v1::Switchover {
                    target: to_address.to_string(),
                    timeout_secs: CATCH_UP_WITHIN.as_secs() as u32,
                    method: v1::SwitchoverMethod::Repltakeover as i32,
                })),
            ),
            Flavour::Unspecified => return Err(ControllerError::FlavourUnknown(primary)),
        };
        let shuts_down = flavour == Flavour::Dragonfly;
        let repoint = self
            .nodes
            .ids()
            .filter(|id| **id != target && !(shuts_down && **id == primary))
            .cloned()
            .collect();
        Ok(Manual::Switchover(Plan {
            epoch: 0,
            from: Some(primary),
            to: target,
            to_address,
            fencing,
            handover,
            repoint,
        }))
    }

    /// The replica named, if it may be promoted, or the best one.
    fn pick_target(
        &self,
        to: Option<String>,
        primary: &NodeView,
        replicas: &[NodeView],
        policy: &Policy,
    ) -> Result<String, ControllerError> {
        match to {
            Some(id) => match replicas.iter().find(|r| r.id == id) {
                Some(r) if decision::promotable(r, policy) => Ok(id),
                Some(_) => Err(ControllerError::NotPromotable(id)),
                None => Err(ControllerError::NotAReplica {
                    node: id,
                    datastore: self.name.clone(),
                }),
            },
            None => decision::best_replica(replicas, &primary.zone, false, policy)
                .map(|b| b.id.clone())
                .ok_or(ControllerError::NoPromotableReplica),
        }
    }
}
