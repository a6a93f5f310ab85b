//! A failover's target, chosen off the critical path. The verdicts rank the candidates, but their
//! offsets can be one health poll old, so the candidates are asked for their offsets now. They are
//! asked before the new epoch is persisted, and their answers are awaited alongside the old
//! primary's fence, so the promotion waits for no round of its own:
//!
//! 1. the failover is persisted with the best candidate by the verdicts as its target, and the
//!    candidates beside it (the target is not settled);
//! 2. the old primary is fenced while the answers come in;
//! 3. the target is settled on the highest offset now ([`decision::settle_target`]). Only when
//!    that is another candidate is it persisted again, before anything is sent to it: the
//!    persisted target is always the only node this failover may have promoted;
//! 4. it is promoted.
//!
//! A failover resumed with its target not settled (the controller stopped in between) asks the
//! candidates again once the old primary is fenced, and keeps the persisted target unless that
//! target answers as a replica and another candidate has more data.
use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, timeout_at},
};
use vigil_proto::{
    HostPort,
    v1::{self, command::Action},
};

use super::{
    actor::{Input, Reconciler, Reply},
    commands::step,
    decision,
    settings::PROBE_DEADLINE,
    steps::Plan,
};
use crate::{error::ControllerError, sentinel::topology::Channel};

/// A failover's target that is not settled yet.
pub struct Choice {
    /// The candidates, best first by their verdicts: the target the failover was persisted with
    /// first.
    pub ranked: Vec<String>,
    pub answers: Answers,
}

/// Where the candidates' offsets come from.
pub enum Answers {
    /// Asked when the failover was decided, before its epoch was persisted: their
    /// acknowledgements, each awaited until `PROBE_DEADLINE` after `asked_at`.
    Asked {
        asked_at: Instant,
        pending: Vec<(
            String,
            oneshot::Receiver<Result<v1::CommandAck, ControllerError>>,
        )>,
    },
    /// A failover resumed after a restart: asked once the old primary is fenced. Its persisted
    /// target may have been promoted before the restart.
    Resumed,
}

impl Reconciler {
    /// Asks each of `ranked` for its replication offset now, at the current epoch; the answers
    /// are the failover's to await.
    pub(super) fn ask_offsets(&mut self, ranked: &[String]) -> Answers {
        let epoch = self.state.epoch;
        let pending = ranked
            .iter()
            .map(|node| {
                let (reply, answer) = oneshot::channel();
                self.send_command(node, Action::Probe(v1::Probe {}), epoch, reply);
                (node.clone(), answer)
            })
            .collect();
        Answers::Asked {
            asked_at: Instant::now(),
            pending,
        }
    }

    /// The failover at `epoch` settled its target on `to`: persisted first when it is not the
    /// target persisted with it, then announced (`+selected-slave`). The reply, when one is
    /// asked for, is `to`'s address.
    pub(super) fn on_chosen(&mut self, epoch: u64, to: String, reply: Option<Reply<HostPort>>) {
        let answer = self.settle_target(epoch, &to);
        if let Err(e) = &answer {
            tracing::error!(datastore = %self.name, epoch, to = %to, error = %e, "the failover's target could not be settled");
        }
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }

    fn settle_target(&mut self, epoch: u64, to: &str) -> Result<HostPort, ControllerError> {
        let active = self
            .active
            .as_ref()
            .filter(|a| a.epoch == epoch)
            .ok_or(ControllerError::NotUnderWay(epoch))?;
        let from = active.from.clone();
        let address = self
            .nodes
            .address(to)
            .ok_or_else(|| ControllerError::NotAReplica {
                node: to.to_string(),
                datastore: self.name.clone(),
            })?;
        if active.to != to {
            let in_flight = self
                .state
                .in_flight
                .as_mut()
                .ok_or(ControllerError::NotUnderWay(epoch))?;
            let persisted = std::mem::replace(&mut in_flight.to, to.to_string());
            if let Err(e) = self.save("the failover's target") {
                // The target persisted stays the only one this failover may promote.
                if let Some(f) = self.state.in_flight.as_mut() {
                    f.to = persisted;
                }
                return Err(ControllerError::TargetNotPersisted(Box::new(e)));
            }
            if let Some(a) = self.active.as_mut() {
                a.to = to.to_string();
            }
        }
        tracing::info!(event = "failover_target", datastore = %self.name, epoch, to = %to,
            "the candidates answered: promoting the one with the most data");
        if let Some(old) = &from {
            self.announce(Channel::SelectedSlave, to, self.replica_words(to, old));
        }
        Ok(address)
    }

    /// The choice a failover resumed with its target not settled makes again, or None when its
    /// target is settled.
    pub(super) fn resumed_choice(&self, to: &str) -> Option<Choice> {
        if self.state.candidates.is_empty() {
            return None;
        }
        let mut ranked = vec![to.to_string()];
        ranked.extend(self.state.candidates.iter().filter(|c| *c != to).cloned());
        Some(Choice {
            ranked,
            answers: Answers::Resumed,
        })
    }

    /// A resumed failover whose target is not settled waits (up to the grace period) for every
    /// candidate's agent, so that each can be asked for its offset.
    pub(super) fn candidates_back(&self) -> bool {
        self.started.elapsed() > self.settings.grace
            || self
                .state
                .candidates
                .iter()
                .all(|c| self.nodes.outbox(c).is_some())
    }
}

/// The target `choice` settles on (None: the plan's is settled already).
pub(super) async fn choose(
    me: &mpsc::Sender<Input>,
    plan: &Plan,
    choice: Option<Choice>,
) -> Option<String> {
    let choice = choice?;
    let mut answers = Vec::new();
    let resumed = matches!(choice.answers, Answers::Resumed);
    match choice.answers {
        Answers::Asked { asked_at, pending } => {
            let deadline = asked_at + PROBE_DEADLINE;
            for (node, answer) in pending {
                if let Ok(Ok(Ok(ack))) = timeout_at(deadline, answer).await {
                    answers.push((node, ack.role(), ack.repl_offset));
                }
            }
        }
        Answers::Resumed => {
            let mut asks = Vec::new();
            for node in choice.ranked.clone() {
                let (me, epoch) = (me.clone(), plan.epoch);
                asks.push(tokio::spawn(async move {
                    let probe = Action::Probe(v1::Probe {});
                    let ack = step(&me, &node, probe, epoch, PROBE_DEADLINE, 1).await;
                    ack.ok().map(|a| (node, a.role(), a.repl_offset))
                }));
            }
            for ask in asks {
                if let Ok(Some(answer)) = ask.await {
                    answers.push(answer);
                }
            }
        }
    }
    decision::settle_target(&choice.ranked, &answers, resumed)
}

/// Tells the reconciler the target `choose` settled on and makes `plan` promote it. The
/// persisted target is told and not waited for: the promote sent next reaches the reconciler
/// after it. Another is persisted first, and waited for.
pub(super) async fn settle(
    me: &mpsc::Sender<Input>,
    plan: &mut Plan,
    to: String,
) -> Result<(), ControllerError> {
    if to == plan.to {
        let chosen = Input::Chosen {
            epoch: plan.epoch,
            to,
            reply: None,
        };
        return me
            .send(chosen)
            .await
            .map_err(|_| ControllerError::ReconcilerStopped);
    }
    let (reply, answer) = oneshot::channel();
    let chosen = Input::Chosen {
        epoch: plan.epoch,
        to: to.clone(),
        reply: Some(reply),
    };
    me.send(chosen)
        .await
        .map_err(|_| ControllerError::ReconcilerStopped)?;
    let address = answer
        .await
        .map_err(|_| ControllerError::ReconcilerStopped)??;
    let old = std::mem::replace(&mut plan.to, to.clone());
    plan.to_address = address;
    plan.repoint.retain(|n| *n != to);
    plan.repoint.push(old);
    Ok(())
}
