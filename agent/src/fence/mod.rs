//! The fence: what keeps a deposed primary from acknowledging a client write after a replica has
//! been promoted, whatever its server does (runs on after a SIGSTOP, never heard the controller,
//! ignores CLIENT PAUSE). It lives in the kernel, so it needs nothing from the server.
//!
//! Putting a fence up is two steps, in this order:
//! 1. the packet filter ([`filter`]): `cgroup_skb` programs on the server's cgroup drop every
//!    client packet in and every reply out on the server's port, but for the peers the
//!    [`gate`] lets through (the agent's own connections, and with `keep_replicas` the replicas'
//!    links);
//! 2. then every other connection on the port is destroyed ([`sockets`]), so nothing that was
//!    queued before the filter can be answered later (a reply the filter drops would otherwise
//!    be retransmitted once the fence lifts).
//!
//! Filter first, destroy second: what arrives after the filter is dropped, what came before is
//! destroyed. The filter alone already keeps every reply in, so the controller's Fence may be
//! acknowledged between the two ([`Fence::apply_filter_first`]): the destroying then follows at
//! once, before the agent takes its next command (the only way an ordered fence comes down), so
//! no reply the filter held back is ever let out. The fence is pinned on bpffs ([`mounts`]) and
//! outlives the agent; a restarted agent
//! finds it, keeps it, and lifts it by the same [`rules`] (its record is pinned beside it).
//! With the `kill` method the server is also killed, and the filter holds the server a
//! supervisor restarts until the node is demoted.
//!
//! Every change goes through [`Fence::apply`], one at a time, so lifting and putting up never
//! race; what is up is published on a watch channel.
pub mod filter;
pub mod gate;
pub mod mounts;
pub mod rules;
pub mod sockets;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use nix::{sys::signal::Signal, unistd::Pid};
use tokio::sync::watch;
use vigil_agent_ebpf::{FenceConfig, fence_flags, fence_kind};

use self::{
    filter::{Filter, Prepared},
    gate::{Gate, peer_key},
    rules::{Event, Kind, Record, Step},
    sockets::Destroyed,
};
use crate::{
    error::{AgentError, Result},
    host::target,
};

/// How a fence holds the server off its clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// The packet filter and the destroyed connections: the server runs on, cut off from its
    /// clients, and keeps its replicas in sync when asked to.
    #[default]
    Kernel,
    /// The same, and the server is killed (SIGKILL) too, for operators who would rather restart
    /// a deposed primary than keep it running.
    Kill,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Kill => "kill",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kernel" => Ok(Self::Kernel),
            "kill" => Ok(Self::Kill),
            other => Err(format!("{other:?} is neither \"kernel\" nor \"kill\"")),
        }
    }
}

impl From<Record> for FenceConfig {
    fn from(r: Record) -> Self {
        FenceConfig {
            epoch: r.epoch,
            port: 0, // filled in by the fence, which knows its port
            kind: match r.kind {
                Kind::Ordered => fence_kind::ORDERED,
                Kind::SelfFence => fence_kind::SELF,
            },
            flags: if r.keep_replicas {
                fence_flags::KEEP_REPLICAS
            } else {
                0
            },
            _pad: 0,
        }
    }
}

/// The record pinned with a fence; a kind this agent does not know is taken as ordered, whose
/// rule lifts the least.
fn record_of(c: &FenceConfig) -> Record {
    Record {
        epoch: c.epoch,
        kind: if c.kind == fence_kind::SELF {
            Kind::SelfFence
        } else {
            Kind::Ordered
        },
        keep_replicas: c.flags & fence_flags::KEEP_REPLICAS != 0,
    }
}

/// What the fence is given along with an event.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// The server process, when known (the kernel watcher's target).
    pub pid: Option<u32>,
    /// The replicas' addresses, read just before an ordered fence with `keep_replicas`.
    pub replicas: Vec<SocketAddr>,
}

/// What one [`Fence::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub step: Step,
    /// The fence after it (None: down).
    pub record: Option<Record>,
    /// Connections destroyed (putting up or amending).
    pub destroyed: Destroyed,
}

/// The fence of one server port: shared by the command runner and the daemon.
#[derive(Clone)]
pub struct Fence {
    inner: Arc<Mutex<Fencer>>,
    state: watch::Sender<Option<Record>>,
}

struct Fencer {
    port: u16,
    /// Where the cgroup v2 hierarchy is mounted.
    cgroup_root: PathBuf,
    method: Method,
    gate: Gate,
    dir: PathBuf,
    filter: Option<Filter>,
    record: Option<Record>,
    /// The next fence, loaded and verified ahead of time so that putting it up is quick.
    prepared: Option<Prepared>,
}

impl Fence {
    /// The fence of the server on `port`, its allow map kept by `gate`. A fence pinned by an
    /// agent before this one is found and kept up.
    pub fn start(port: u16, method: Method, gate: Gate, pid: Option<u32>) -> Result<Self> {
        let dir = filter::pin_dir(&mounts::bpffs()?, port);
        mounts::ensure_writable(&dir)?;
        let mut fencer = Fencer {
            port,
            // Found (or mounted) now rather than when a fence goes up, when every millisecond
            // counts.
            cgroup_root: mounts::cgroup2()?,
            method,
            gate,
            dir,
            filter: None,
            record: None,
            prepared: None,
        };
        fencer.adopt(pid)?;
        let (state, _) = watch::channel(fencer.record);
        Ok(Self {
            inner: Arc::new(Mutex::new(fencer)),
            state,
        })
    }

    /// Loads the next fence ahead of time (see [`filter::Prepared`]), a millisecond through the
    /// loader the kernel probes made (`crate::kernel::loader`).
    pub async fn prepare(&self) {
        let inner = Arc::clone(&self.inner);
        let _ = tokio::task::spawn_blocking(move || lock(&inner).prepare()).await;
    }

    /// The fence now (None: down), and its changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<Record>> {
        self.state.subscribe()
    }

    pub fn record(&self) -> Option<Record> {
        *self.state.borrow()
    }

    /// Applies `event` by the [`rules`]: decided and carried out under one lock, so two changes
    /// never interleave, and on a blocking thread (bpf and netlink system calls).
    pub async fn apply(&self, event: Event, context: Context) -> Result<Applied> {
        let (applied, rest) = self.apply_filter_first(event, context).await?;
        let destroyed = rest.finish().await?;
        Ok(Applied {
            destroyed,
            ..applied
        })
    }

    /// As [`Fence::apply`], but returns once the filter is up: the connections it found are
    /// destroyed (and with the `kill` method the server killed) by [`Unsettled::finish`], which
    /// the caller runs next, before it changes the fence again. The controller's Fence is
    /// acknowledged in between: the filter already keeps every reply in.
    pub async fn apply_filter_first(
        &self,
        event: Event,
        context: Context,
    ) -> Result<(Applied, Unsettled)> {
        let inner = Arc::clone(&self.inner);
        let state = self.state.clone();
        let pid = context.pid;
        let applied = tokio::task::spawn_blocking(move || {
            let mut fencer = lock(&inner);
            let result = fencer.apply(event, &context);
            // Published under the lock, so the watchers see the changes in order.
            state.send_if_modified(|s| std::mem::replace(s, fencer.record) != fencer.record);
            result
        })
        .await
        .map_err(|e| AgentError::io("the fence's thread", std::io::Error::other(e)))??;
        let settle = matches!(applied.step, Step::PutUp(_) | Step::Amend(_));
        let rest = Unsettled {
            fence: settle.then(|| self.clone()),
            pid,
        };
        Ok((applied, rest))
    }
}

/// What a fence put up or amended by [`Fence::apply_filter_first`] still has to do.
#[must_use = "the connections the filter found are destroyed only by `finish`"]
pub struct Unsettled {
    /// The fence whose connections are to go; None when the step put up nothing.
    fence: Option<Fence>,
    pid: Option<u32>,
}

impl Unsettled {
    /// Destroys every connection on the port the fence does not let through (and kills the
    /// server with the `kill` method), if the fence is still up.
    pub async fn finish(self) -> Result<Destroyed> {
        let Some(fence) = self.fence else {
            return Ok(Destroyed::default());
        };
        let pid = self.pid;
        let inner = Arc::clone(&fence.inner);
        tokio::task::spawn_blocking(move || {
            let fencer = lock(&inner);
            if fencer.record.is_none() {
                return Ok(Destroyed::default());
            }
            let destroyed = fencer.destroy()?;
            if fencer.method == Method::Kill {
                fencer.kill(pid);
            }
            Ok(destroyed)
        })
        .await
        .map_err(|e| AgentError::io("the fence's thread", std::io::Error::other(e)))?
    }
}

impl Fence {
    /// Destroys every connection on the server's port but the agent's own: how a demoted
    /// server's clients are disconnected when the server has no `CLIENT KILL TYPE` (Dragonfly).
    /// Under the fence's lock, so it never interleaves with a fence going up or down.
    pub async fn disconnect_clients(&self) -> Result<Destroyed> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let fencer = lock(&inner);
            let gate = &fencer.gate;
            sockets::destroy_unlisted(fencer.port, |peer| gate.is_registered(peer))
        })
        .await
        .map_err(|e| AgentError::io("the fence's thread", std::io::Error::other(e)))?
    }
}

fn lock(inner: &Mutex<Fencer>) -> MutexGuard<'_, Fencer> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fencer {
    fn adopt(&mut self, pid: Option<u32>) -> Result<()> {
        let gate = self.gate.clone();
        let port = self.port;
        let root = &self.cgroup_root;
        let found = Filter::find(
            &self.dir,
            || cgroup_for(root, port, pid),
            |map| gate.open(map),
        )?;
        if let Some(filter) = found {
            let record = record_of(&filter.config()?);
            tracing::warn!(
                port,
                epoch = record.epoch,
                kind = record.kind.as_str(),
                "a fence from before this agent started is up: keeping it until the controller lifts it"
            );
            self.record = Some(record);
            self.filter = Some(filter);
        }
        Ok(())
    }

    fn apply(&mut self, event: Event, context: &Context) -> Result<Applied> {
        let step = rules::next(self.record, event);
        match step {
            Step::Stay => {}
            Step::PutUp(record) => self.put_up(record, context)?,
            Step::Amend(record) => self.amend(record, context)?,
            Step::Lift => self.lift()?,
        }
        Ok(Applied {
            step,
            record: self.record,
            destroyed: Destroyed::default(),
        })
    }

    /// Loads the next fence ahead of time, unless one is up or loaded already. A failure here
    /// is only logged: putting the fence up tries again, and says why if it fails.
    fn prepare(&mut self) {
        if self.filter.is_some() || self.prepared.is_some() {
            return;
        }
        match Prepared::load() {
            Ok(p) => self.prepared = Some(p),
            Err(e) => tracing::warn!(error = %e.chain(), "could not load the fence ahead of time"),
        }
    }

    fn config(&self, record: Record) -> FenceConfig {
        FenceConfig {
            port: u32::from(self.port),
            ..record.into()
        }
    }

    /// The filter up; its connections are destroyed after (see [`Unsettled`]).
    fn put_up(&mut self, record: Record, context: &Context) -> Result<()> {
        let cgroup = cgroup_for(&self.cgroup_root, self.port, context.pid)?;
        let replicas = if record.keep_replicas {
            context.replicas.as_slice()
        } else {
            &[]
        };
        let prepared = match self.prepared.take() {
            Some(p) => p,
            None => Prepared::load()?,
        };
        let gate = self.gate.clone();
        let put = Filter::put_up(prepared, &self.dir, &cgroup, self.config(record), |map| {
            gate.open(map)?;
            gate.set_replicas(replicas);
            Ok(())
        });
        let filter = match put {
            Ok(filter) => filter,
            Err(e) => {
                // Half a fence is no fence: take away whatever did go up.
                self.gate.close();
                let _ = std::fs::remove_dir_all(&self.dir);
                return Err(e);
            }
        };
        tracing::warn!(
            port = self.port,
            cgroup = %cgroup.display(),
            epoch = record.epoch,
            kind = record.kind.as_str(),
            keep_replicas = replicas.len(),
            "fence up: the server's clients are cut off in the kernel"
        );
        self.filter = Some(filter);
        self.record = Some(record);
        Ok(())
    }

    /// The filter's policy changed; its connections are destroyed after (see [`Unsettled`]).
    fn amend(&mut self, record: Record, context: &Context) -> Result<()> {
        let config = self.config(record);
        let Some(filter) = self.filter.as_mut() else {
            // A record without its filter cannot happen; were it to, the fence goes up afresh.
            return self.put_up(record, context);
        };
        filter.set_config(config)?;
        let replicas = if record.keep_replicas {
            context.replicas.as_slice()
        } else {
            &[]
        };
        self.gate.set_replicas(replicas);
        self.record = Some(record);
        Ok(())
    }

    /// Destroys every connection on the port the fence does not let through.
    fn destroy(&self) -> Result<Destroyed> {
        let gate = &self.gate;
        let destroyed = sockets::destroy_unlisted(self.port, |peer| gate.allows(&peer_key(peer)))?;
        tracing::info!(
            port = self.port,
            destroyed = destroyed.destroyed,
            kept = destroyed.kept,
            "the fence destroyed the server's client connections"
        );
        Ok(destroyed)
    }

    fn kill(&self, hint: Option<u32>) {
        // Only a process seen listening on the port is killed, never one that merely got a
        // dead server's pid.
        let port = self.port;
        let listening =
            hint.filter(|&pid| target::listening_ports(pid).is_ok_and(|p| p.contains(&port)));
        let Some(pid) = listening.or_else(|| target::listener_owner(port).ok().flatten()) else {
            tracing::warn!(
                port = self.port,
                "fence method kill: no server process to kill"
            );
            return;
        };
        match nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL) {
            Ok(()) => tracing::warn!(pid, "fence method kill: killed the server"),
            Err(e) => {
                tracing::error!(pid, error = %e, "fence method kill: could not kill the server")
            }
        }
    }

    fn lift(&mut self) -> Result<()> {
        if let Some(filter) = &self.filter {
            let (ingress, egress) = filter.drops();
            // On an error the fence stays as it is (up, as far as anyone can tell), with the
            // gate still keeping the agent's connections in its allow map.
            filter.remove()?;
            tracing::warn!(
                port = self.port,
                held_back_in = ingress,
                held_back_out = egress,
                "fence lifted"
            );
        }
        self.filter = None;
        self.gate.close();
        self.record = None;
        self.prepare();
        Ok(())
    }
}

/// The server's process: `hint` (the kernel watcher's target, which follows a restarted
/// server) while it lives, else whoever listens on `port` (a scan of every process, the slow
/// way, when no watcher knows).
fn server_pid(port: u16, hint: Option<u32>) -> Option<u32> {
    hint.filter(|&pid| target::process_exists(pid))
        .or_else(|| target::listener_owner(port).ok().flatten())
}

/// The cgroup a fence on `port` attaches to: the server process's, or, with no server running
/// (it crashed, or has not started), the root of the hierarchy, so that whichever server starts
/// on the port is fenced too.
fn cgroup_for(root: &Path, port: u16, hint: Option<u32>) -> Result<PathBuf> {
    match server_pid(port, hint) {
        Some(pid) => mounts::cgroup_of(root, pid),
        None => {
            tracing::warn!(
                port,
                "no server process on the port: fencing the port host-wide"
            );
            Ok(root.to_path_buf())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_pinned_with_a_fence_reads_back_the_same() {
        for record in [
            Record {
                epoch: 7,
                kind: Kind::Ordered,
                keep_replicas: true,
            },
            Record {
                epoch: 9,
                kind: Kind::SelfFence,
                keep_replicas: false,
            },
        ] {
            assert_eq!(record_of(&FenceConfig::from(record)), record);
        }
        // A kind from a newer agent is read as the one that lifts the least.
        let unknown = FenceConfig {
            kind: 77,
            ..FenceConfig::default()
        };
        assert_eq!(record_of(&unknown).kind, Kind::Ordered);
        assert_eq!("kill".parse(), Ok(Method::Kill));
        assert!("pause".parse::<Method>().is_err());
    }
}
