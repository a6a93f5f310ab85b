//! A failover's steps, run in a task once its epoch is persisted, in the order that keeps a
//! deposed primary from acknowledging a write: **fence** the old primary (its agent confirms, or
//! its lease is waited out), while a target not settled yet is chosen from its candidates'
//! answers ([`choice`]), **hand over** (promote the target; a planned switchover first waits
//! for the target to catch up with the fenced primary), then **re-point** the other nodes. The
//! reconciler finishes (publishes, persists) when the task reports [`Finished`].
use tokio::{
    sync::mpsc,
    time::{Instant, sleep, sleep_until},
};
use vigil_proto::{
    HostPort,
    v1::{self, command::Action},
};

use super::{
    actor::{Finished, Input, Reply},
    choice::{self, Choice},
    commands::{PendingAck, acked, step},
    settings::{CATCH_UP_POLL, CATCH_UP_WITHIN, Settings},
    timeline::Stage,
};
use crate::error::ControllerError;

/// How the old primary is kept from acknowledging writes before the target is promoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fencing {
    /// No old primary to fence (a data store without one), or one that hands over by itself.
    None,
    /// Ask its agent to fence it; if the agent does not confirm, wait until `lease_over`, when
    /// its lease has surely run out. A planned switchover keeps its replicas' links up, and
    /// goes nowhere without the agent's confirmation.
    Fence {
        node: String,
        keep_replicas: bool,
        lease_over: Instant,
    },
}

/// How the target becomes the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handover {
    /// `REPLICAOF NO ONE` on the target.
    Promote,
    /// A planned switchover: wait until the target has every write the fenced primary had, then
    /// promote it.
    CatchUpThenPromote,
    /// The target runs this (Dragonfly's REPLTAKEOVER), which hands over by itself.
    Run(Action),
}

/// Everything a failover's task needs.
#[derive(Clone, Debug)]
pub struct Plan {
    pub epoch: u64,
    /// The old primary, if there is one.
    pub from: Option<String>,
    pub to: String,
    pub to_address: HostPort,
    pub fencing: Fencing,
    pub handover: Handover,
    /// Nodes re-pointed at the new primary, and awaited; the old primary among them only when it
    /// is live (a planned switchover). A failed old primary is demoted when its agent reports it,
    /// so clients never wait on a stopped server.
    pub repoint: Vec<String>,
}

/// What a failover's task starts with besides its plan.
#[derive(Default)]
pub struct Start {
    /// Whoever asked for the failover (`vigil failover`), told how it ended.
    pub reply: Option<Reply<v1::FailoverReply>>,
    /// The candidates asked for their offsets, when the target is not settled yet.
    pub choice: Option<Choice>,
    /// The old primary's Fence, when it was sent with the epoch (see `begin_fencing`): its
    /// acknowledgement is awaited instead of sending another.
    pub fence_sent: Option<PendingAck>,
}

/// Runs `plan` in a task (settling its target by `start.choice` when given); the reconciler
/// gets [`Input::Done`] when it ends.
pub fn spawn(me: mpsc::Sender<Input>, settings: &Settings, mut plan: Plan, start: Start) {
    let settings = settings.clone();
    let Start {
        reply,
        choice,
        fence_sent,
    } = start;
    tokio::spawn(async move {
        let result = run(&me, &settings, &mut plan, choice, fence_sent).await;
        let _ = me
            .send(Input::Done(Finished {
                epoch: plan.epoch,
                to: plan.to,
                result,
                reply,
            }))
            .await;
    });
}

async fn run(
    me: &mpsc::Sender<Input>,
    s: &Settings,
    plan: &mut Plan,
    choice: Option<Choice>,
    fence_sent: Option<PendingAck>,
) -> Result<Vec<String>, ControllerError> {
    // A fresh failover's candidates answer while the old primary is fenced; a resumed one's are
    // asked once it is (their agents are back by then), since its target may have been promoted.
    let resumed = matches!(&choice, Some(c) if matches!(c.answers, choice::Answers::Resumed));
    let (fenced, chosen) = if resumed {
        let fenced = fence(me, s, plan, fence_sent).await;
        let chosen = match &fenced {
            Ok(_) => choice::choose(me, plan, choice).await,
            Err(_) => None,
        };
        (fenced, chosen)
    } else {
        tokio::join!(
            fence(me, s, plan, fence_sent),
            choice::choose(me, plan, choice)
        )
    };
    let fenced = fenced?;
    let settled = match chosen {
        Some(to) => choice::settle(me, plan, to).await,
        None => Ok(()),
    };
    let handed = match settled {
        Ok(()) => hand_over(me, s, plan, fenced).await,
        Err(e) => Err(e),
    };
    if let Err(e) = handed {
        // The old primary stays the primary: lift the fence this failover put up.
        if let (Fencing::Fence { node, .. }, Some(_)) = (&plan.fencing, fenced) {
            let unfence = Action::Unfence(v1::Unfence {});
            if let Err(u) = step(me, node, unfence, plan.epoch, s.step_deadline, 1).await {
                tracing::error!(node = %node, error = %u, "could not lift the fence after a failed failover");
            }
        }
        return Err(e);
    }
    let promoted = Input::Promoted {
        epoch: plan.epoch,
        to: plan.to.clone(),
    };
    let _ = me.send(promoted).await;
    Ok(repoint(me, s, plan).await)
}

/// Tells the reconciler that the failover of `plan` reached `stage`, for its timeline.
async fn reached(me: &mpsc::Sender<Input>, plan: &Plan, stage: Stage) {
    let _ = me
        .send(Input::Reached {
            epoch: plan.epoch,
            to: plan.to.clone(),
            stage,
        })
        .await;
}

/// Makes the old primary unable to acknowledge writes. Returns its replication offset once
/// fenced when its agent confirmed, None when its lease was waited out instead.
async fn fence(
    me: &mpsc::Sender<Input>,
    s: &Settings,
    plan: &Plan,
    sent: Option<PendingAck>,
) -> Result<Option<u64>, ControllerError> {
    let Fencing::Fence {
        node,
        keep_replicas,
        lease_over,
    } = &plan.fencing
    else {
        return Ok(None);
    };
    let answer = match sent {
        // Sent with the epoch: only its acknowledgement is awaited.
        Some(ack) => acked(node, ack, s.fence_deadline).await,
        None => {
            let action = Action::Fence(v1::Fence {
                keep_replicas: *keep_replicas,
            });
            step(me, node, action, plan.epoch, s.fence_deadline, 1).await
        }
    };
    match answer {
        Ok(ack) => {
            reached(me, plan, Stage::Fenced).await;
            Ok(Some(ack.repl_offset))
        }
        // The agent is there and says it cannot fence: promoting could make two primaries.
        Err(e @ ControllerError::Refused { .. }) => Err(ControllerError::NotFenced {
            node: node.clone(),
            source: Box::new(e),
        }),
        Err(e) if *keep_replicas => Err(ControllerError::NotFenced {
            node: node.clone(),
            source: Box::new(e),
        }),
        Err(e) => {
            tracing::warn!(node = %node, error = %e, "the old primary's agent did not confirm its fence; waiting out its lease");
            sleep_until(*lease_over).await;
            reached(me, plan, Stage::LeaseExpired).await;
            Ok(None)
        }
    }
}

async fn hand_over(
    me: &mpsc::Sender<Input>,
    s: &Settings,
    plan: &Plan,
    fenced_offset: Option<u64>,
) -> Result<(), ControllerError> {
    let promote = || Action::Promote(v1::Promote {});
    let (action, attempts) = match &plan.handover {
        Handover::Promote => (promote(), s.step_attempts),
        Handover::CatchUpThenPromote => {
            catch_up(me, plan, fenced_offset.unwrap_or(0)).await?;
            reached(me, plan, Stage::CaughtUp).await;
            (promote(), s.step_attempts)
        }
        Handover::Run(action) => (action.clone(), 1),
    };
    step(me, &plan.to, action, plan.epoch, s.step_deadline, attempts)
        .await
        .map(|_| ())
        .map_err(|e| ControllerError::Promote {
            node: plan.to.clone(),
            source: Box::new(e),
        })
}

/// Waits (bounded) until the target reports at least `offset`, the fenced primary's.
async fn catch_up(
    me: &mpsc::Sender<Input>,
    plan: &Plan,
    offset: u64,
) -> Result<(), ControllerError> {
    let deadline = Instant::now() + CATCH_UP_WITHIN;
    let mut last = 0;
    while Instant::now() < deadline {
        let probe = Action::Probe(v1::Probe {});
        if let Ok(ack) = step(me, &plan.to, probe, plan.epoch, CATCH_UP_WITHIN, 1).await {
            last = ack.repl_offset;
            if last >= offset {
                return Ok(());
            }
        }
        sleep(CATCH_UP_POLL).await;
    }
    Err(ControllerError::NotCaughtUp {
        node: plan.to.clone(),
        offset: last,
        wanted: offset,
    })
}

/// Re-points every node of `plan.repoint` at once; returns those that failed, each with why.
async fn repoint(me: &mpsc::Sender<Input>, s: &Settings, plan: &Plan) -> Vec<String> {
    let mut waits = Vec::new();
    for node in plan.repoint.clone() {
        let action = Action::ReplicateOf(v1::ReplicateOf {
            address: plan.to_address.to_string(),
        });
        let (me, epoch, deadline, attempts) =
            (me.clone(), plan.epoch, s.step_deadline, s.step_attempts);
        waits.push(tokio::spawn(async move {
            let r = step(&me, &node, action, epoch, deadline, attempts).await;
            (node, r)
        }));
    }
    let mut failed = Vec::new();
    for w in waits {
        if let Ok((node, Err(e))) = w.await {
            failed.push(format!("{node}: {e}"));
        }
    }
    failed
}
