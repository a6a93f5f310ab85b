//! The controller's commands as domain types ([`Action`], [`Command`], [`Outcome`]), and the one
//! server command behind each action that has one. How the actions are carried out, with the
//! fence, one at a time, is the daemon's (`daemon::worker`); the epoch rule that guards them is
//! `daemon::epochs`.
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::time::{Instant, sleep, timeout};
use vigil_proto::HostPort;

use super::{
    info::{Replication, Role},
    poller,
};
use crate::error::{AgentError, Result};

/// What the controller asks the agent to do to its server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Promote,
    /// Planned switchover to `target`, allowed `timeout_secs`, by the command `method` names.
    Switchover {
        target: HostPort,
        timeout_secs: u32,
        method: SwitchoverMethod,
    },
    /// Replicate from the primary at this address; on a primary or a fenced node, its demotion.
    ReplicateOf(HostPort),
    /// Put the kernel fence up (or keep it), letting the replicas' links through with
    /// `keep_replicas`.
    Fence {
        keep_replicas: bool,
    },
    /// Lift the fence of a node that stays primary.
    Unfence,
    /// Report role and offset, changing nothing.
    Probe,
}

/// How a live primary hands over by itself. Redis and Valkey hand over through the controller's
/// own steps (Fence with keep_replicas, the target caught up, Promote, ReplicateOf); only
/// Dragonfly's takeover is a server command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchoverMethod {
    /// Dragonfly: `REPLTAKEOVER secs` on the target replica, which becomes the primary (the old
    /// primary then shuts itself down).
    ReplTakeover,
}

/// A controller command: the action, and the epoch that guards it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub id: u64,
    pub epoch: u64,
    pub action: Action,
}

/// What the controller is told after a command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The server's role after it; None when the server could not say (stopped, say).
    pub role: Option<Role>,
    /// Its replication offset; after a Fence, the primary's offset once fenced.
    pub offset: u64,
    /// The fence is up after it.
    pub fenced: bool,
}

impl Outcome {
    pub fn of(replication: Option<&Replication>, fenced: bool) -> Self {
        Self {
            role: replication.map(|r| r.role),
            offset: replication.map_or(0, |r| r.offset),
            fenced,
        }
    }
}

/// How long one server command may take, besides a switchover's own timeout.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(5);

/// The server command that carries out `action` and the role to wait for after it, for the
/// actions that have one (the fence's are the agent's own, in the kernel).
fn server_command(action: &Action) -> Option<(redis::Cmd, Option<Role>)> {
    let mut cmd = redis::Cmd::new();
    let mut wait_for = None;
    match action {
        Action::Promote => {
            cmd.arg("REPLICAOF").arg("NO").arg("ONE");
        }
        Action::ReplicateOf(primary) => {
            cmd.arg("REPLICAOF").arg(&primary.host).arg(primary.port);
        }
        Action::Switchover {
            timeout_secs,
            method: SwitchoverMethod::ReplTakeover,
            ..
        } => {
            // Dragonfly: this replica takes over; its primary then shuts itself down.
            cmd.arg("REPLTAKEOVER").arg(*timeout_secs);
            wait_for = Some(Role::Primary);
        }
        Action::Fence { .. } | Action::Unfence | Action::Probe => return None,
    }
    Some((cmd, wait_for))
}

/// Role and offset now, from a fresh INFO, bounded by `limit`.
pub async fn observe(conn: &mut MultiplexedConnection, limit: Duration) -> Result<Replication> {
    let (replication, _) = timeout(limit, poller::ask(conn))
        .await
        .map_err(|_| AgentError::NoRoleAnswer)??;
    Ok(replication)
}

/// Runs `action`'s server command on `conn` (nothing for the actions that have none) and, for
/// those that finish in the background, waits for the role to turn.
pub async fn run(conn: &mut MultiplexedConnection, action: &Action) -> Result<()> {
    let Some((cmd, wait_for)) = server_command(action) else {
        return Ok(());
    };
    let limit = match action {
        Action::Switchover { timeout_secs, .. } => {
            COMMAND_LIMIT + Duration::from_secs(u64::from(*timeout_secs))
        }
        _ => COMMAND_LIMIT,
    };
    timeout(limit, cmd.query_async::<redis::Value>(conn))
        .await
        .map_err(|_| AgentError::NoAnswer(limit))??;
    let Some(want) = wait_for else {
        return Ok(());
    };
    let deadline = Instant::now() + limit;
    loop {
        let role = observe(conn, COMMAND_LIMIT).await?.role;
        if role == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(AgentError::SwitchoverUnfinished {
                limit,
                role: role.as_str(),
            });
        }
        sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command's words, as the server receives them.
    fn words(action: &Action) -> Option<(Vec<String>, Option<Role>)> {
        let (cmd, wait_for) = server_command(action)?;
        let words = cmd
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                other => panic!("not a plain argument: {other:?}"),
            })
            .collect();
        Some((words, wait_for))
    }

    #[test]
    fn a_takeover_runs_repltakeover_and_waits_to_be_primary() {
        let takeover = Action::Switchover {
            target: HostPort::new("10.0.0.2", 6380),
            timeout_secs: 5,
            method: SwitchoverMethod::ReplTakeover,
        };
        assert_eq!(
            words(&takeover),
            Some((
                ["REPLTAKEOVER", "5"].map(String::from).to_vec(),
                Some(Role::Primary)
            ))
        );
    }

    #[test]
    fn role_changes_run_their_one_command_and_the_fence_none() {
        for (action, want) in [
            (Action::Promote, vec!["REPLICAOF", "NO", "ONE"]),
            (
                Action::ReplicateOf(HostPort::new("10.0.0.1", 6379)),
                vec!["REPLICAOF", "10.0.0.1", "6379"],
            ),
        ] {
            let want: Vec<String> = want.into_iter().map(String::from).collect();
            assert_eq!(words(&action), Some((want, None)), "{action:?}");
        }
        // The fence is the kernel's, not a server command; a probe only asks.
        for action in [
            Action::Fence {
                keep_replicas: true,
            },
            Action::Unfence,
            Action::Probe,
        ] {
            assert_eq!(words(&action), None, "{action:?}");
        }
    }
}
