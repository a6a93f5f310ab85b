//! [`Agent`]: a running `vigil-agent run` (on the host or in a network namespace), its log kept
//! for assertions, stopped with SIGTERM on drop, and the fence it may have pinned for its
//! server's port taken down after it (a fence outlives its agent by design, and one left behind
//! would hold off whatever later listens on that port).
use std::{
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use nix::sys::signal::Signal;

use crate::{Controller, Log, NetNs, PinnedFence, signal, stop_child, wait_until, workspace_bin};

/// A running `vigil-agent run`, its stderr log kept for assertions.
pub struct Agent {
    child: Child,
    /// Its stderr, line by line: what tests wait for and look through.
    pub log: Log,
    /// The port in its `--server` argument, whose fence is taken down once the agent has stopped.
    fence_port: Option<u16>,
}

impl Agent {
    /// Starts `vigil-agent --log-format json run <args>` (metrics off unless `args` say otherwise).
    pub fn run(args: &[&str]) -> Result<Self> {
        Self::run_in(None, args)
    }

    /// As [`Agent::run`], inside `netns` when given.
    pub fn run_in(netns: Option<&NetNs>, args: &[&str]) -> Result<Self> {
        Self::spawn(
            NetNs::command(netns, workspace_bin("vigil-agent")?),
            args,
            &Spawn::default(),
        )
    }

    /// As [`Agent::run`], with `env` added to the agent's environment (NOTIFY_SOCKET, say).
    pub fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let spawn = Spawn {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Spawn::default()
        };
        Self::spawn(
            std::process::Command::new(workspace_bin("vigil-agent")?),
            args,
            &spawn,
        )
    }

    /// As [`Agent::run`], the metrics and health endpoints left at the agent's own default (the
    /// harness otherwise turns them off unless `args` give an address).
    pub fn run_with_default_metrics(args: &[&str]) -> Result<Self> {
        let spawn = Spawn {
            default_metrics: true,
            ..Spawn::default()
        };
        Self::spawn(
            std::process::Command::new(workspace_bin("vigil-agent")?),
            args,
            &spawn,
        )
    }

    /// As [`Agent::run`], the agent binary at `agent` started through `wrapper` (a program and
    /// its arguments that exec the agent, such as `setpriv ... --`), so it runs with the ids and
    /// capabilities the wrapper sets.
    pub fn run_wrapped(wrapper: &[&str], agent: &std::path::Path, args: &[&str]) -> Result<Self> {
        let (program, before) = wrapper
            .split_first()
            .ok_or_else(|| anyhow!("an empty wrapper"))?;
        let mut cmd = std::process::Command::new(program);
        cmd.args(before).arg(agent);
        Self::spawn(cmd, args, &Spawn::default())
    }

    fn spawn(mut cmd: std::process::Command, args: &[&str], spawn: &Spawn) -> Result<Self> {
        cmd.args(["--log-format", "json", "run"]);
        if !spawn.default_metrics && !args.contains(&"--metrics-listen") {
            cmd.args(["--metrics-listen", "off"]);
        }
        cmd.envs(spawn.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting vigil-agent run")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let log = Log::capture(stderr, "vigil-agent");
        Ok(Self {
            child,
            log,
            fence_port: server_port(args),
        })
    }

    /// Kills the agent (SIGKILL) and leaves the fence it pinned up, for a test of what the next
    /// agent makes of it; that test takes the fence down itself.
    pub fn kill_leaving_its_fence(mut self) -> Result<()> {
        self.fence_port = None;
        signal(self.child.id(), Signal::SIGKILL)?;
        Ok(())
    }

    /// Starts the agent of node `node_id` of `datastore`, watching `server` (HOST:PORT) and
    /// reporting to `controller`, inside `netns` when given; `extra` flags follow.
    pub fn join(
        netns: Option<&NetNs>,
        controller: &Controller,
        datastore: &str,
        node_id: &str,
        server: &str,
        extra: &[&str],
    ) -> Result<Self> {
        Self::join_urls(netns, &controller.url(), datastore, node_id, server, extra)
    }

    /// As [`Agent::join`], reporting to the controllers at `urls` (comma-separated: it talks to
    /// the one that leads, and a follower sends it there).
    pub fn join_urls(
        netns: Option<&NetNs>,
        urls: &str,
        datastore: &str,
        node_id: &str,
        server: &str,
        extra: &[&str],
    ) -> Result<Self> {
        let mut args = vec![
            "--server",
            server,
            "--controller",
            urls,
            "--datastore",
            datastore,
            "--node-id",
            node_id,
        ];
        args.extend_from_slice(extra);
        Self::run_in(netns, &args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// How the harness starts an agent beyond its arguments.
#[derive(Default)]
struct Spawn {
    /// Added to the agent's environment.
    env: Vec<(String, String)>,
    /// Leave --metrics-listen to the agent's default rather than turning it off.
    default_metrics: bool,
}

/// The port of the `--server HOST:PORT` argument, if any.
fn server_port(args: &[&str]) -> Option<u16> {
    let at = args.iter().position(|a| *a == "--server")?;
    args.get(at + 1)?.rsplit_once(':')?.1.parse().ok()
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = signal(self.child.id(), Signal::SIGTERM);
        let child = &mut self.child;
        if wait_until(Duration::from_secs(5), "vigil-agent to stop", || {
            child.try_wait().ok().flatten()
        })
        .is_err()
        {
            stop_child(child);
        }
        // Only now: a live agent could put the fence up again. Dropping the pin takes it down.
        if let Some(port) = self.fence_port
            && let Ok(pin) = PinnedFence::of_port(port)
        {
            drop(pin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_taken_down_is_the_one_of_the_server_port() {
        assert_eq!(
            server_port(&["--server", "127.0.0.1:6380", "--node-id", "a"]),
            Some(6380)
        );
        assert_eq!(server_port(&["--server", "[::1]:7000"]), Some(7000));
        assert_eq!(server_port(&["--pid", "12"]), None);
        assert_eq!(server_port(&["--server"]), None);
    }
}
