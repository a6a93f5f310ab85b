//! The health poller: asks the server about its role, replication and memory (ROLE,
//! INFO replication, INFO memory, and INFO server once per connection for the flavour) and
//! reports each answer. The verdict engine compares it with what the controller expects.
use std::time::Duration;

use tokio::{
    sync::mpsc,
    time::{MissedTickBehavior, timeout},
};

use super::{
    conn::ServerConn,
    info::{self, Flavour, Memory, Replication},
};
use crate::error::{AgentError, Result};

/// One round of questions.
#[derive(Debug)]
pub struct HealthSample {
    pub flavour: Option<Flavour>,
    pub replication: Result<Replication>,
    pub memory: Option<Memory>,
}

/// Asks the three questions once on `conn`.
pub async fn ask(conn: &mut redis::aio::MultiplexedConnection) -> Result<(Replication, Memory)> {
    let (repl, role, mem): (String, redis::Value, String) = redis::pipe()
        .cmd("INFO")
        .arg("replication")
        .cmd("ROLE")
        .cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await?;
    let mut replication = info::replication_from_info(&info::parse_info(&repl))?;
    // ROLE names Dragonfly's sync phases more finely than INFO does.
    if let Ok(from_role) = info::replication_from_role(&role)
        && from_role.role == replication.role
        && from_role.sync != info::SyncState::None
    {
        replication.sync = from_role.sync;
    }
    Ok((replication, info::memory_from_info(&info::parse_info(&mem))))
}

/// The server's flavour, from INFO server.
pub async fn flavour(conn: &mut redis::aio::MultiplexedConnection) -> Option<Flavour> {
    let text: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .ok()?;
    Some(Flavour::detect(&info::parse_info(&text)))
}

/// Polls every `interval`; each round is bounded by `interval` too.
pub async fn health_poller(server: ServerConn, interval: Duration, tx: mpsc::Sender<HealthSample>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn = None;
    let mut known_flavour = None;
    loop {
        ticker.tick().await;
        if conn.is_none() {
            match server.connect(interval).await {
                Ok(mut c) => {
                    known_flavour = timeout(interval, flavour(&mut c)).await.ok().flatten();
                    conn = Some(c);
                }
                Err(outcome) => {
                    if tx
                        .send(HealthSample {
                            flavour: None,
                            replication: Err(AgentError::Unreachable(outcome)),
                            memory: None,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let sample = match timeout(interval, ask(c)).await {
            Ok(Ok((replication, memory))) => HealthSample {
                flavour: known_flavour,
                replication: Ok(replication),
                memory: Some(memory),
            },
            Ok(Err(e)) => {
                conn = None;
                HealthSample {
                    flavour: known_flavour,
                    replication: Err(e),
                    memory: None,
                }
            }
            // A slow server: keep the connection, report nothing new this round.
            Err(_) => continue,
        };
        if tx.send(sample).await.is_err() {
            return;
        }
    }
}
