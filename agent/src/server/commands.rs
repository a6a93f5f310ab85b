//! Carrying out the controller's commands on the local server: what the controller can ask
//! ([`Action`]), the command each action runs, and the role and offset that follow. The epoch
//! rule that guards them is the daemon's (`daemon::epochs`).
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};
use vigil_proto::HostPort;

use super::{conn::ServerConn, info::Role, poller};
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
    /// Replicate from the primary at this address.
    ReplicateOf(HostPort),
    Fence {
        pause_ms: u32,
    },
    Unfence,
    /// Report role and offset, changing nothing.
    Probe,
}

/// How a live primary hands over. The controller picks the method from the servers' flavour and
/// sends the command to the node that runs it; the agent runs what it is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchoverMethod {
    /// Redis and Valkey: `FAILOVER TO host port` on the primary, which becomes a replica.
    FailoverTo,
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

/// Role and offset after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub role: Role,
    pub offset: u64,
}

/// How long one command may take, besides a switchover's own timeout.
const COMMAND_LIMIT: Duration = Duration::from_secs(5);

/// The server command that carries out `action`, and the role to wait for after it, for the
/// actions that finish in the background.
fn server_command(action: &Action) -> (redis::Cmd, Option<Role>) {
    let mut cmd = redis::Cmd::new();
    let mut wait_for = None;
    match action {
        Action::Promote => {
            cmd.arg("REPLICAOF").arg("NO").arg("ONE");
        }
        Action::ReplicateOf(primary) => {
            cmd.arg("REPLICAOF").arg(&primary.host).arg(primary.port);
        }
        Action::Fence { pause_ms } => {
            cmd.arg("CLIENT").arg("PAUSE").arg(*pause_ms).arg("WRITE");
        }
        Action::Unfence => {
            cmd.arg("CLIENT").arg("UNPAUSE");
        }
        Action::Probe => {
            // Nothing to change: the answer that follows is the point.
            cmd.arg("PING");
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
        Action::Switchover {
            target,
            timeout_secs,
            method: SwitchoverMethod::FailoverTo,
        } => {
            // Redis and Valkey: this primary hands over to its replica and becomes one.
            cmd.arg("FAILOVER")
                .arg("TO")
                .arg(&target.host)
                .arg(target.port)
                .arg("TIMEOUT")
                .arg(u64::from(*timeout_secs) * 1000);
            wait_for = Some(Role::Replica);
        }
    }
    (cmd, wait_for)
}

/// Carries out `action` on `server` and reports the role and offset that follow.
pub async fn execute(server: &ServerConn, action: &Action) -> Result<Outcome> {
    let mut conn = server
        .connect(COMMAND_LIMIT)
        .await
        .map_err(AgentError::Unreachable)?;
    let (cmd, wait_for) = server_command(action);
    let limit = match action {
        Action::Switchover { timeout_secs, .. } => {
            COMMAND_LIMIT + Duration::from_secs(u64::from(*timeout_secs))
        }
        _ => COMMAND_LIMIT,
    };
    timeout(limit, cmd.query_async::<redis::Value>(&mut conn))
        .await
        .map_err(|_| AgentError::NoAnswer(limit))??;
    let deadline = Instant::now() + limit;
    loop {
        let (replication, _) = timeout(COMMAND_LIMIT, poller::ask(&mut conn))
            .await
            .map_err(|_| AgentError::NoRoleAnswer)??;
        let outcome = Outcome {
            role: replication.role,
            offset: replication.offset,
        };
        // FAILOVER and REPLTAKEOVER finish in the background: wait for the role to turn.
        if wait_for.is_none_or(|r| r == outcome.role) {
            return Ok(outcome);
        }
        if Instant::now() >= deadline {
            return Err(AgentError::SwitchoverUnfinished {
                limit,
                role: outcome.role.as_str(),
            });
        }
        sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command's words, as the server receives them.
    fn words(action: &Action) -> (Vec<String>, Option<Role>) {
        let (cmd, wait_for) = server_command(action);
        let words = cmd
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                other => panic!("not a plain argument: {other:?}"),
            })
            .collect();
        (words, wait_for)
    }

    #[test]
    fn a_switchover_runs_exactly_the_command_its_method_names() {
        let switchover = |method| Action::Switchover {
            target: HostPort::new("10.0.0.2", 6380),
            timeout_secs: 5,
            method,
        };
        assert_eq!(
            words(&switchover(SwitchoverMethod::FailoverTo)),
            (
                ["FAILOVER", "TO", "10.0.0.2", "6380", "TIMEOUT", "5000"]
                    .map(String::from)
                    .to_vec(),
                Some(Role::Replica)
            )
        );
        assert_eq!(
            words(&switchover(SwitchoverMethod::ReplTakeover)),
            (
                ["REPLTAKEOVER", "5"].map(String::from).to_vec(),
                Some(Role::Primary)
            )
        );
    }

    #[test]
    fn the_other_actions_run_their_one_command_and_wait_for_nothing() {
        for (action, want) in [
            (Action::Promote, vec!["REPLICAOF", "NO", "ONE"]),
            (
                Action::ReplicateOf(HostPort::new("10.0.0.1", 6379)),
                vec!["REPLICAOF", "10.0.0.1", "6379"],
            ),
            (
                Action::Fence { pause_ms: 5000 },
                vec!["CLIENT", "PAUSE", "5000", "WRITE"],
            ),
            (Action::Unfence, vec!["CLIENT", "UNPAUSE"]),
            (Action::Probe, vec!["PING"]),
        ] {
            let want: Vec<String> = want.into_iter().map(String::from).collect();
            assert_eq!(words(&action), (want, None), "{action:?}");
        }
    }
}
