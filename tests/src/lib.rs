//! The harness vigil's suites and benches share: real `redis-server` processes on 127.0.0.1,
//! the real `vigil-agent` binary, and cleanup of exactly the processes each test started (by the
//! pid it got, never by a pattern). Every wait is bounded.
//!
//! Layout, one type per module, every public item re-exported here:
//! - `redis_server`: [`RedisServer`], a real redis-server the tests start, signal and kill.
//! - `fixture`: [`Fixture`], a test-only program of this workspace (the deadlock fixture).
//! - `watch`: [`Watch`], `vigil-agent watch --json` with its stdout parsed line by line.
//! - `log`: [`Log`], a child's stderr captured line by line, for [`Agent`] and [`Controller`].
//! - `certs`: [`Certs`], an installation's certificates made by `vigil certs`, and the flags
//!   that hand them to the controller, the agents and the CLI.
//! - `agent`: [`Agent`], a running `vigil-agent run`.
//! - `controller`: [`Controller`], a running `vigil-controller` (alone on a data directory, or one
//!   of several on etcd), what it publishes and whether it leads ([`Leadership`]).
//! - `etcd`: [`EtcdCluster`], a real etcd cluster whose members tests kill and restart, on plain
//!   HTTP or on TLS with client certificates ([`EtcdTls`]).
//! - `fence`: [`PinnedFence`], the fence an agent pins for a port, and [`RawClient`], which tells
//!   exactly what a server (or the fence in front of it) sent back.
//! - `servers`: [`Servers`], a data store's redis-servers by index, killed and started again.
//! - `store`: [`VigilStore`], a primary and replicas with an agent beside each and a controller.
//! - `ha_store`: [`ControllerTrio`], three controllers on one [`EtcdCluster`], and [`HaStore`], a
//!   primary and two replicas with an agent each reporting to the trio.
//! - `netns`: [`NetNs`], a network namespace joined to the host by a veth pair.
//! - `http`: [`http_get`], one GET to a daemon's metrics and health port.
//! - `scrape`: [`MetricsPage`], one scrape of a daemon's `/metrics`, parsed into series.
//! - `keys`: [`write_keys`] and [`count_keys`], the writes the scenarios count.
//! - `public_bin`: [`PublicBin`], a copy of a workspace binary that any user can run.
//! - `safety`: the safety matrix (faults, writers, role monitor, checker), used as
//!   `vigil_tests::safety::...`.
//!
//! This file keeps the small helpers all of them use: the bounded [`WAIT`], [`serial`],
//! [`require_root`], [`free_port`], [`wait_until`], [`signal`], [`output_within`], and where the
//! workspace's binaries are ([`workspace_bin`], [`use_bin_dir`]) and whether their logs are
//! echoed ([`quiet`]).
mod agent;
mod certs;
mod controller;
mod etcd;
mod fence;
mod fixture;
mod ha_store;
mod http;
mod keys;
mod log;
mod netns;
mod public_bin;
mod redis_server;
pub mod safety;
mod scrape;
mod servers;
mod store;
mod watch;

use std::{
    io::Read,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

pub use agent::Agent;
pub use certs::Certs;
pub use controller::{Controller, LEADER_LEASE_SECS, Leadership};
pub use etcd::{ETCD_TIMINGS, EtcdCluster, EtcdTls};
pub use fence::{Answer, PinnedFence, RawClient};
pub use fixture::Fixture;
pub use ha_store::{ControllerTrio, HaStore};
pub use http::http_get;
pub use keys::{count_keys, write_keys};
pub use log::Log;
pub use netns::NetNs;
pub use public_bin::PublicBin;
pub use redis_server::RedisServer;
pub use scrape::{MetricsPage, Series};
pub use servers::Servers;
pub use store::VigilStore;
pub use watch::Watch;

/// The capabilities the agent's README tells operators to grant (as `setpriv` and systemd name
/// them, without `CAP_`), spelled out here so that a change to the agent's own table breaks the
/// suites that run it with these alone, and the deploy files that grant them.
pub const AGENT_CAPABILITIES: &[&str] = &[
    "bpf",
    "perfmon",
    "sys_ptrace",
    "dac_read_search",
    "net_admin",
];

/// Longest any single wait in the harness may take before it gives up with an error.
pub const WAIT: Duration = Duration::from_secs(15);

static SERIAL: Mutex<()> = Mutex::new(());

/// Kernel tests run one at a time: they share two cores, and a parallel test's CPU load would
/// change what a "busy" or "starved" server looks like.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Panics with a clear message unless running as root. CI runs as root, so nothing is skipped.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads eBPF programs and needs root: run `cargo xtask test` as root"
    );
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `probe` every millisecond until it returns Some, for at most `limit`.
pub fn wait_until<T>(
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("gave up after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `signal` to a process this test started.
pub fn signal(pid: u32, signal: Signal) -> Result<()> {
    kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("sending {signal} to {pid}"))
}

/// Runs `cmd` to the end and returns its output, or kills it (by its pid) and fails once it has
/// run for `limit`: a CLI asking a stopped process would otherwise wait forever, since the
/// kernel still accepts connections on a stopped process's listening socket.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    // Read both pipes on threads, so a child that writes more than a pipe holds still finishes.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = match wait_until(limit, "the command to finish", || {
        child.try_wait().ok().flatten()
    }) {
        Ok(status) => status,
        Err(e) => {
            stop_child(&mut child);
            return Err(e.context(format!("{:?} {:?}", cmd.get_program(), cmd.get_args())));
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Kills a child this harness started, unless it already exited, and reaps it.
pub(crate) fn stop_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = child.kill();
    let _ = child.wait();
}

static BIN_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops echoing the agents' and controller's logs to stderr (demos and benches print their own).
pub fn quiet() {
    QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn echo(prefix: &str, line: &str) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("[{prefix}] {line}");
    }
}

/// Makes [`workspace_bin`] take binaries from `dir` (e.g. target/release for demos and benches).
pub fn use_bin_dir(dir: PathBuf) {
    let _ = BIN_DIR.set(dir);
}

/// Path of a binary built from this workspace: the folder given to [`use_bin_dir`], else
/// `$VIGIL_BIN_DIR/<name>`, else next to the running executable (`target/<profile>/deps/..` holds
/// the workspace's binaries).
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let chosen = BIN_DIR
        .get()
        .cloned()
        .or_else(|| std::env::var_os("VIGIL_BIN_DIR").map(PathBuf::from));
    let dir = match chosen {
        Some(dir) => dir,
        None => {
            let exe = std::env::current_exe()?;
            let mut dir = exe
                .parent()
                .ok_or_else(|| anyhow!("test executable has no folder"))?
                .to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the workspace first (`cargo build --workspace --bins`)",
            path.display()
        );
    }
    Ok(path)
}
