//! [`RedisServer`]: a real redis-server on 127.0.0.1 (or in a test network namespace), started
//! with no persistence in its own temporary directory and stopped on drop.
use std::{
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::{NetNs, WAIT, free_port, signal, stop_child, wait_until};

/// A real redis-server on 127.0.0.1, with no persistence, in its own temporary directory.
pub struct RedisServer {
    pub port: u16,
    /// The address clients use: 127.0.0.1, or the server's address in a test network namespace.
    pub host: String,
    /// The `--requirepass` it was started with, if any.
    password: Option<String>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Result<Self> {
        Self::start_on(free_port()?)
    }

    pub fn start_on(port: u16) -> Result<Self> {
        Self::start_with(port, &[])
    }

    /// Starts redis-server with extra arguments (e.g. `["--replicaof", "127.0.0.1", "6379"]`).
    pub fn start_with(port: u16, extra: &[&str]) -> Result<Self> {
        Self::start_in(None, "127.0.0.1", port, extra)
    }

    /// Starts redis-server inside `netns` (when given), listening on 127.0.0.1 and on `host`.
    pub fn start_in(netns: Option<&NetNs>, host: &str, port: u16, extra: &[&str]) -> Result<Self> {
        let mut server = Self::spawn_in(netns, host, port, extra)?;
        wait_until(WAIT, "redis-server to answer PING", || server.ping().ok())?;
        if let Ok(Some(status)) = server.child.try_wait() {
            bail!("redis-server on port {port} exited at start: {status}");
        }
        Ok(server)
    }

    /// Starts redis-server on 127.0.0.1:`port` without waiting for it to answer: for a server
    /// the test itself cannot reach (one a fence holds off its clients). The caller waits for it
    /// some other way.
    pub fn spawn_on(port: u16, extra: &[&str]) -> Result<Self> {
        Self::spawn_in(None, "127.0.0.1", port, extra)
    }

    fn spawn_in(netns: Option<&NetNs>, host: &str, port: u16, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("vigil-redis-").tempdir()?;
        let mut bind = vec!["127.0.0.1"];
        if host != "127.0.0.1" {
            // The other address is a test network's private veth: let its peers in without a
            // password (protected mode only admits loopback clients).
            bind.extend([host, "--protected-mode", "no"]);
        }
        let child = NetNs::command(netns, "redis-server")
            .args(["--port", &port.to_string(), "--bind"])
            .args(&bind)
            .args(["--save", "", "--appendonly", "no"])
            // Disk-based sync: Redis 7.0 with diskless sync and no delay sometimes leaves one of two
            // replicas attaching together "linked" but never fed (seen here, without vigil).
            .args([
                "--enable-debug-command",
                "yes",
                "--repl-diskless-sync",
                "no",
                "--dir",
            ])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed? `cargo xtask setup` installs it)")?;
        let password = extra
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].to_string());
        Ok(Self {
            port,
            host: host.to_string(),
            password,
            child,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@{}:{}/", self.host, self.port),
            None => format!("redis://{}:{}/", self.host, self.port),
        }
    }

    pub fn connect(&self) -> Result<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        Ok(client.get_connection_with_timeout(Duration::from_secs(2))?)
    }

    /// What ROLE says first: "master" or "slave".
    pub fn role(&self) -> Result<String> {
        Ok(self.role_and_primary()?.0)
    }

    /// What ROLE says: "master", or "slave" with its primary's port.
    pub fn role_and_primary(&self) -> Result<(String, Option<u16>)> {
        let mut c = self.connect()?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c)?;
        let kind = match role.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            other => format!("{other:?}"),
        };
        let primary_port = match (kind.as_str(), role.get(2)) {
            ("slave", Some(redis::Value::Int(p))) => u16::try_from(*p).ok(),
            _ => None,
        };
        Ok((kind, primary_port))
    }

    pub fn ping(&self) -> Result<()> {
        let mut c = self.connect()?;
        let pong: String = redis::cmd("PING").query(&mut c)?;
        if pong != "PONG" {
            bail!("PING answered {pong:?}");
        }
        Ok(())
    }

    pub fn signal(&self, sig: Signal) -> Result<()> {
        signal(self.pid(), sig)
    }

    /// Waits (bounded) for the server to exit, e.g. after SHUTDOWN or kill -9.
    pub fn wait_exit(&mut self) -> Result<std::process::ExitStatus> {
        let child = &mut self.child;
        wait_until(WAIT, "redis-server to exit", || {
            child.try_wait().ok().flatten()
        })
    }

    /// What the server's main thread is doing, from /proc/PID/syscall: "running" on CPU in user
    /// space, or the number of the syscall it sleeps in.
    pub fn main_thread_syscall(&self) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{}/syscall", self.pid())).ok()?;
        text.split_whitespace().next().map(str::to_string)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}
