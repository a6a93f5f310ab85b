//! Commands to agents: the one way a command leaves the reconciler (numbered, on the agent's
//! session, its acknowledgement awaited), and [`step`], which failover tasks use to send one and
//! wait for its acknowledgement with a bound and a few attempts.
use std::time::Duration;

use tokio::{
    sync::{mpsc, oneshot},
    time::timeout,
};
use vigil_proto::v1::{self, command::Action, controller_message::Msg as Down};

use super::actor::{Input, Reconciler, Reply};
use crate::error::ControllerError;

/// A command's acknowledgement, awaited by whoever sent it.
pub(super) type PendingAck = oneshot::Receiver<Result<v1::CommandAck, ControllerError>>;

/// Pause between attempts of a step.
const RETRY_AFTER: Duration = Duration::from_millis(100);

impl Reconciler {
    /// Sends `action` at `epoch` to `node`'s agent; `reply` gets its acknowledgement, or why
    /// there will be none.
    pub(super) fn send_command(
        &mut self,
        node: &str,
        action: Action,
        epoch: u64,
        reply: Reply<v1::CommandAck>,
    ) {
        if !self.leadership.holds(self.term.token) {
            let _ = reply.send(Err(ControllerError::Deposed));
            return;
        }
        let Some(outbox) = self.nodes.outbox(node).cloned() else {
            let _ = reply.send(Err(ControllerError::NotConnected(node.to_string())));
            return;
        };
        let id = self.next_command;
        self.next_command += 1;
        let msg = v1::ControllerMessage {
            msg: Some(Down::Command(v1::Command {
                id,
                epoch,
                action: Some(action),
                leadership: self.term.token,
            })),
        };
        if outbox.try_send(Ok(Box::new(msg))).is_err() {
            let _ = reply.send(Err(ControllerError::SessionFull(node.to_string())));
            return;
        }
        // Bounded: an ack that never comes is dropped when its waiter gives up (see `step`).
        self.pending.retain(|_, r| !r.is_closed());
        self.pending.insert(id, reply);
    }

    /// An agent acknowledged a command: its waiter gets the answer.
    pub(super) fn on_ack(&mut self, node: &str, ack: v1::CommandAck) {
        if let Some(reply) = self.pending.remove(&ack.command_id) {
            let answer = if ack.ok {
                Ok(ack)
            } else {
                Err(ControllerError::Refused {
                    node: node.to_string(),
                    reason: ack.error,
                })
            };
            let _ = reply.send(answer);
        }
    }
}

/// Waits for the acknowledgement of a command sent to `node`, bounded by `deadline`.
pub(super) async fn acked(
    node: &str,
    ack: PendingAck,
    deadline: Duration,
) -> Result<v1::CommandAck, ControllerError> {
    match timeout(deadline, ack).await {
        Ok(answer) => answer.unwrap_or(Err(ControllerError::ReconcilerStopped)),
        Err(_) => Err(ControllerError::NoAnswer {
            node: node.to_string(),
            within: deadline,
        }),
    }
}

/// Sends `action` to `node` through the reconciler and waits for its acknowledgement, up to
/// `attempts` times, each bounded by `deadline`; the last error when none succeeded.
pub(super) async fn step(
    me: &mpsc::Sender<Input>,
    node: &str,
    action: Action,
    epoch: u64,
    deadline: Duration,
    attempts: u32,
) -> Result<v1::CommandAck, ControllerError> {
    let mut last = ControllerError::NotConnected(node.to_string());
    for attempt in 1..=attempts.max(1) {
        let (reply, ack) = oneshot::channel();
        let send = Input::Send {
            node: node.to_string(),
            action: action.clone(),
            epoch,
            reply,
        };
        if me.send(send).await.is_err() {
            return Err(ControllerError::ReconcilerStopped);
        }
        match acked(node, ack, deadline).await {
            Ok(a) => return Ok(a),
            Err(e) => last = e,
        }
        if attempt < attempts {
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }
    Err(last)
}
