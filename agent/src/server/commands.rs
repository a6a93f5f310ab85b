//! Carrying out the controller's commands on the local server: the command each action runs,
//! and the role and offset that follow. The epoch rule that guards them is the daemon's
//! (`daemon::epochs`).
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};

use super::{
    conn::ServerConn,
    info::{Flavour, Role},
    poller,
};
use crate::link::wire::Action;

/// Role and offset after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub role: Role,
    pub offset: u64,
}

/// How long one command may take, besides a switchover's own timeout.
const COMMAND_LIMIT: Duration = Duration::from_secs(5);

/// Carries out `action` on `server` and reports the role and offset that follow.
pub async fn execute(
    server: &ServerConn,
    flavour: Option<Flavour>,
    action: &Action,
) -> Result<Outcome, String> {
    let mut conn = server
        .connect(COMMAND_LIMIT)
        .await
        .map_err(|o| format!("cannot reach the server: {o:?}"))?;
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
            // Nothing to change: the answer below is the point.
            cmd.arg("PING");
        }
        Action::Switchover {
            target,
            timeout_secs,
        } => {
            if flavour == Some(Flavour::Dragonfly) {
                // Dragonfly: the target replica takes over; its primary then shuts itself down.
                cmd.arg("REPLTAKEOVER").arg(*timeout_secs);
                wait_for = Some(Role::Primary);
            } else {
                // Redis and Valkey: the primary hands over to its replica and becomes one.
                cmd.arg("FAILOVER")
                    .arg("TO")
                    .arg(&target.host)
                    .arg(target.port)
                    .arg("TIMEOUT")
                    .arg(u64::from(*timeout_secs) * 1000);
                wait_for = Some(Role::Replica);
            }
        }
    }
    let limit = match action {
        Action::Switchover { timeout_secs, .. } => {
            COMMAND_LIMIT + Duration::from_secs(u64::from(*timeout_secs))
        }
        _ => COMMAND_LIMIT,
    };
    timeout(limit, cmd.query_async::<redis::Value>(&mut conn))
        .await
        .map_err(|_| format!("the server did not answer within {limit:?}"))?
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + limit;
    loop {
        let (replication, _) = timeout(COMMAND_LIMIT, poller::ask(&mut conn))
            .await
            .map_err(|_| "the server did not answer ROLE".to_string())??;
        let outcome = Outcome {
            role: replication.role,
            offset: replication.offset,
        };
        // FAILOVER and REPLTAKEOVER finish in the background: wait for the role to turn.
        if wait_for.is_none_or(|r| r == outcome.role) {
            return Ok(outcome);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the switchover did not finish within {limit:?}; the server is still {}",
                outcome.role.as_str()
            ));
        }
        sleep(Duration::from_millis(20)).await;
    }
}
