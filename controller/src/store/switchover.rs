//! What an operator asks with `vigil failover`: a planned switchover of a live primary, which the
//! servers carry out themselves with no write lost (`FAILOVER TO` on a Redis or Valkey primary,
//! `REPLTAKEOVER` on a Dragonfly replica, chosen from the primary's current flavour), or a forced
//! promotion when the primary is already gone.
use vigil_proto::v1::{self, Flavour, Health, command::Action};

use super::{
    actor::{Reconciler, Reply},
    decision::{self, NodeView, Policy},
    settings::SWITCHOVER_TIMEOUT_SECS,
    state::Cause,
};
use crate::error::ControllerError;

/// Which node runs a planned switchover, and with which method, for a primary of `flavour`.
pub fn switchover_plan<'a>(
    flavour: Flavour,
    _primary: &'a str,
    target: &'a str,
) -> Option<(&'a str, v1::SwitchoverMethod)> {
    match flavour {
        // Dragonfly has no FAILOVER: the replica takes over, and its primary shuts down.
        Flavour::Dragonfly => Some((target, v1::SwitchoverMethod::Repltakeover)),
        Flavour::Redis | Flavour::Valkey => None,
        Flavour::Unspecified => None,
    }
}

impl Reconciler {
    pub(super) fn manual_failover(&mut self, to: Option<String>, reply: Reply<v1::FailoverReply>) {
        match self.plan_manual(to) {
            Ok(Plan::Forced { primary, target }) => {
                self.start_failover(Some(primary), target, Cause::Manual, Some(reply));
            }
            Ok(Plan::Switchover {
                primary,
                target,
                actor,
                action,
            }) => {
                let epoch = match self.begin(Some(primary.clone()), &target, Cause::Switchover) {
                    Ok(epoch) => epoch,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                tracing::warn!(event = "switchover_started", datastore = %self.name, epoch, from = %primary, to = %target, runs = %actor, "planned switchover");
                self.spawn_steps(
                    epoch,
                    Some(primary),
                    target,
                    Some(reply),
                    Some((actor, action)),
                );
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// What `vigil failover [--to]` would do now, or why it cannot.
    fn plan_manual(&self, to: Option<String>) -> Result<Plan, ControllerError> {
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
        let live =
            p.fresh(policy.silence) && matches!(p.health, Health::Healthy | Health::Degraded);
        if !live {
            // The primary is gone: a forced promotion.
            return Ok(Plan::Forced { primary, target });
        }
        let flavour = self
            .nodes
            .get(&primary)
            .map_or(Flavour::Unspecified, |n| n.info.flavour);
        let (actor, method) = switchover_plan(flavour, &primary, &target)
            .ok_or_else(|| ControllerError::FlavourUnknown(primary.clone()))?;
        let address = self
            .nodes
            .address(&target)
            .ok_or_else(|| ControllerError::NotAReplica {
                node: target.clone(),
                datastore: self.name.clone(),
            })?;
        let action = Action::Switchover(v1::Switchover {
            target: address.to_string(),
            timeout_secs: SWITCHOVER_TIMEOUT_SECS,
            method: method as i32,
        });
        Ok(Plan::Switchover {
            actor: actor.to_string(),
            primary,
            target,
            action,
        })
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

enum Plan {
    Forced {
        primary: String,
        target: String,
    },
    Switchover {
        primary: String,
        target: String,
        /// The node that runs `action`.
        actor: String,
        action: Action,
    },
}
