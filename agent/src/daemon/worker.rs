//! The command runner: carries out the controller's commands one at a time, in the order they
//! came, on one connection to the server (let through the fence, so it still works while the
//! fence is up), and reports each one's outcome. A command's steps on the server and on the
//! fence form one sequence, so a demotion and the lifting of the fence are never two commands
//! that could race:
//!
//! - **Fence**: the replicas' addresses if they are kept (read just before), the fence up (or
//!   kept), then the primary's offset read through the agent's connection (0 when the server
//!   cannot answer, a stopped one say: the fence itself is what matters). A failover's fence
//!   (replicas not kept) is reported done once its filter is up, which already keeps every reply
//!   in, and its connections are destroyed shortly after (or as soon as the next command comes,
//!   before it runs): the controller promotes that much sooner. A planned switchover's keeps the
//!   order filter, destroy, offset, so that offset is the last the fenced primary can reach.
//! - **ReplicateOf** on a primary or a fenced node is its demotion: REPLICAOF, its clients
//!   disconnected, then the fence lifted. On a plain replica it only re-points it.
//! - **Unfence** lifts the fence of a node that stays primary.
//! - Any command after which a primary has become a replica disconnects its clients, so clients
//!   in Sentinel mode look the primary up again at once.
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    error::{AgentError, Result},
    fence::{
        Context, Fence, Unsettled,
        rules::{Event, Step},
    },
    server::{
        clients,
        commands::{self, Action, COMMAND_LIMIT, Command, Outcome},
        conn::ServerConn,
        info::{Replication, Role},
    },
};

/// How long the steps around a fence may wait for the server: they are there for the
/// controller's information, and a stopped server must not hold the fence's ack back long.
const FENCE_QUERY_LIMIT: Duration = Duration::from_millis(500);

/// How long after a failover's fence was reported up its connections are destroyed, at most.
const SETTLE_AFTER: Duration = Duration::from_millis(10);

/// What the daemon knows of the server when it hands over a command.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hints {
    /// The server process (the kernel watcher's target).
    pub pid: Option<u32>,
    /// It is stopped, gone or unhealthy: asking it anything would only wait.
    pub unresponsive: bool,
    /// Its role when the health poller last asked.
    pub role: Option<Role>,
}

/// A command and its outcome.
pub struct Done {
    pub command: Command,
    pub result: Result<Outcome>,
}

/// Starts the runner; commands go in through the sender, outcomes come back on `done`.
pub fn spawn(
    server: ServerConn,
    fence: Fence,
    done: mpsc::Sender<Done>,
) -> (mpsc::Sender<(Command, Hints)>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<(Command, Hints)>(32);
    let mut worker = Worker {
        server,
        fence,
        conn: None,
        unsettled: None,
    };
    let task = tokio::spawn(async move {
        let mut next = rx.recv().await;
        while let Some((command, hints)) = next.take() {
            let result = worker.run(&command, hints).await;
            if done.send(Done { command, result }).await.is_err() {
                return;
            }
            if worker.unsettled.is_none() {
                next = rx.recv().await;
                continue;
            }
            // What the command left to do (a walk of the host's sockets that keeps a CPU busy
            // for milliseconds) waits until its acknowledgement is well on its way and the
            // promotion it allows has likely happened, unless another command comes first: it
            // is always done before the next command may change the fence.
            let came = tokio::select! {
                biased;
                came = rx.recv() => Some(came),
                () = tokio::time::sleep(SETTLE_AFTER) => None,
            };
            worker.settle().await;
            next = match came {
                Some(came) => came,
                None => rx.recv().await,
            };
        }
    });
    (tx, task)
}

struct Worker {
    server: ServerConn,
    fence: Fence,
    /// Kept between commands; dropped after a failure, so the next command starts afresh.
    conn: Option<MultiplexedConnection>,
    /// What the last command's fence left to do once it was reported.
    unsettled: Option<Unsettled>,
}

impl Worker {
    async fn conn(&mut self, limit: Duration) -> Result<&mut MultiplexedConnection> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self
                .server
                .connect(limit)
                .await
                .map_err(AgentError::Unreachable)?,
        };
        Ok(self.conn.insert(conn))
    }

    /// Role and offset now, or None when the server does not say within `limit`.
    async fn observe(&mut self, limit: Duration) -> Option<Replication> {
        let result = match self.conn(limit).await {
            Ok(conn) => commands::observe(conn, limit).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(error = %e, "the server did not say its role");
                self.conn = None;
                None
            }
        }
    }

    fn fenced(&self) -> bool {
        self.fence.record().is_some()
    }

    /// Destroys the connections a fence that was reported up found on the port.
    async fn settle(&mut self) {
        let Some(unsettled) = self.unsettled.take() else {
            return;
        };
        if let Err(e) = unsettled.finish().await {
            // The filter is up and keeps every reply in; the connections stay, unanswered.
            tracing::error!(error = %e.chain(), "the fence could not destroy the server's connections");
        }
    }

    async fn run(&mut self, command: &Command, hints: Hints) -> Result<Outcome> {
        let result = match &command.action {
            Action::Fence { keep_replicas } => {
                self.fence_up(command.epoch, *keep_replicas, hints).await
            }
            Action::Unfence => self.unfence(hints).await,
            Action::ReplicateOf(_) => self.replicate_of(&command.action, hints).await,
            Action::Promote | Action::Switchover { .. } | Action::Probe => {
                self.on_server(&command.action).await
            }
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn fence_up(&mut self, epoch: u64, keep_replicas: bool, hints: Hints) -> Result<Outcome> {
        let mut replicas = Vec::new();
        if keep_replicas && !hints.unresponsive {
            let asked = match self.conn(FENCE_QUERY_LIMIT).await {
                Ok(conn) => clients::replicas(conn, FENCE_QUERY_LIMIT).await,
                Err(e) => Err(e),
            };
            match asked {
                Ok(found) => replicas = found,
                Err(e) => {
                    self.conn = None;
                    tracing::warn!(error = %e, "could not list the replicas to keep; fencing them off too");
                }
            }
        }
        let context = Context {
            pid: hints.pid,
            replicas,
        };
        let event = Event::Ordered {
            epoch,
            keep_replicas,
        };
        let applied = if keep_replicas {
            self.fence.apply(event, context).await?
        } else {
            let (applied, rest) = self.fence.apply_filter_first(event, context).await?;
            self.unsettled = Some(rest);
            applied
        };
        let replication = if hints.unresponsive {
            None
        } else {
            self.observe(FENCE_QUERY_LIMIT).await
        };
        Ok(Outcome::of(replication.as_ref(), applied.record.is_some()))
    }

    async fn unfence(&mut self, hints: Hints) -> Result<Outcome> {
        let applied = self.fence.apply(Event::Unfence, Context::default()).await?;
        if applied.step == Step::Stay {
            tracing::info!("unfence: no fence is up");
        }
        let replication = if hints.unresponsive {
            None
        } else {
            self.observe(FENCE_QUERY_LIMIT).await
        };
        Ok(Outcome::of(replication.as_ref(), applied.record.is_some()))
    }

    /// REPLICAOF, and on a primary or a fenced node the rest of its demotion.
    async fn replicate_of(&mut self, action: &Action, hints: Hints) -> Result<Outcome> {
        // Asked even of a server that looks unresponsive: REPLICAOF needs it to answer anyway,
        // and a primary's demotion must not pass for a replica's re-pointing.
        let before = match self.observe(FENCE_QUERY_LIMIT).await {
            Some(r) => Some(r.role),
            None => hints.role,
        };
        let demotion = before == Some(Role::Primary) || self.fenced();
        commands::run(self.conn(COMMAND_LIMIT).await?, action).await?;
        if demotion {
            let killed = self.disconnect_clients().await?;
            tracing::info!(
                killed,
                "demoted: the server's clients were disconnected to look the primary up again"
            );
            self.fence.apply(Event::Demoted, Context::default()).await?;
        }
        let after = commands::observe(self.conn(COMMAND_LIMIT).await?, COMMAND_LIMIT).await?;
        Ok(Outcome::of(Some(&after), self.fenced()))
    }

    /// The commands that are the server's alone: promote, a takeover, a probe.
    async fn on_server(&mut self, action: &Action) -> Result<Outcome> {
        let before = match action {
            Action::Switchover { .. } => self.observe(COMMAND_LIMIT).await.map(|r| r.role),
            _ => None,
        };
        let conn = self.conn(COMMAND_LIMIT).await?;
        commands::run(conn, action).await?;
        let after = commands::observe(conn, COMMAND_LIMIT).await?;
        // A server that stopped being the primary through what the agent ran: its clients go.
        if before == Some(Role::Primary) && after.role == Role::Replica {
            self.disconnect_clients().await?;
        }
        Ok(Outcome::of(Some(&after), self.fenced()))
    }

    /// Disconnects the server's normal and pub/sub clients with CLIENT KILL TYPE, or, on a
    /// server without it, every connection on its port but the agent's own, in the kernel.
    async fn disconnect_clients(&mut self) -> Result<usize> {
        let done = clients::disconnect(self.conn(COMMAND_LIMIT).await?, COMMAND_LIMIT).await;
        if !done.refused {
            return Ok(done.killed);
        }
        let destroyed = self.fence.disconnect_clients().await?;
        tracing::info!(
            destroyed = destroyed.destroyed,
            "the server has no CLIENT KILL TYPE: its clients' connections were destroyed in the kernel"
        );
        Ok(done.killed + destroyed.destroyed)
    }
}
