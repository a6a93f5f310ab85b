//! [`Agent`]: a running `vigil-agent run` (on the host or in a network namespace), its log kept
//! for assertions, stopped with SIGTERM on drop.
use std::{
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use nix::sys::signal::Signal;

use crate::{Controller, Log, NetNs, signal, stop_child, wait_until, workspace_bin};

/// A running `vigil-agent run`, its stderr log kept for assertions.
pub struct Agent {
    child: Child,
    /// Its stderr, line by line: what tests wait for and look through.
    pub log: Log,
}

impl Agent {
    /// Starts `vigil-agent --log-format json run <args>` (metrics off unless `args` say otherwise).
    pub fn run(args: &[&str]) -> Result<Self> {
        Self::run_in(None, args)
    }

    /// As [`Agent::run`], inside `netns` when given.
    pub fn run_in(netns: Option<&NetNs>, args: &[&str]) -> Result<Self> {
        let mut cmd = NetNs::command(netns, workspace_bin("vigil-agent")?);
        cmd.args(["--log-format", "json", "run"]);
        if !args.contains(&"--metrics-listen") {
            cmd.args(["--metrics-listen", "off"]);
        }
        let mut child = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting vigil-agent run")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let log = Log::capture(stderr, "vigil-agent");
        Ok(Self { child, log })
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
        let url = controller.url();
        let mut args = vec![
            "--server",
            server,
            "--controller",
            &url,
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
    }
}
