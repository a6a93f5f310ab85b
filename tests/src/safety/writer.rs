//! [`Writer`]: one `tests/clients/safety_writer.py` process (redis-py), on the host or in a
//! node's network namespace, writing until stopped; its attempts read back as [`Attempt`]s.
use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::attempt::{Attempt, Kind};
use crate::{NetNs, signal, stop_child, wait_until};

/// The writer script, beside this crate's sources.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/safety_writer.py");

/// The hard bound on a writer's life, whatever happens to the test that started it.
const MAX_SECONDS: &str = "180";

/// How a writer finds the primary.
#[derive(Clone, Debug)]
pub enum Mode {
    /// redis-py in Sentinel mode: `endpoints` (HOST:PORT) name the primary of `service`.
    Sentinel {
        endpoints: Vec<String>,
        service: String,
    },
    /// A pool on one fixed HOST:PORT (the first primary), reconnecting there after errors.
    Direct { address: String },
}

/// A running writer; stopped (SIGTERM, then kill) on drop.
pub struct Writer {
    pub id: String,
    /// It finds the primary through the Sentinel endpoint(s).
    pub via_endpoint: bool,
    child: Child,
    out: PathBuf,
}

impl Writer {
    /// Starts writer `id` in `netns` (the host when None), its lines going to a file in `dir`.
    pub fn start(
        id: &str,
        mode: &Mode,
        kind: Kind,
        netns: Option<&NetNs>,
        dir: &std::path::Path,
    ) -> Result<Self> {
        let out = dir.join(format!("{id}.jsonl"));
        let mut cmd = NetNs::command(netns, "python3");
        cmd.arg(SCRIPT).args(["--id", id, "--out"]).arg(&out);
        cmd.args(["--kind", if kind == Kind::Wait { "wait" } else { "plain" }]);
        cmd.args(["--max-seconds", MAX_SECONDS]);
        match mode {
            Mode::Sentinel { endpoints, service } => {
                cmd.args(["--mode", "sentinel", "--service", service]);
                for e in endpoints {
                    cmd.args(["--addr", e]);
                }
                // Short, as Sentinel-mode applications set it: a stalled primary is given up on
                // and the endpoint asked again.
                cmd.args(["--socket-timeout", "0.5"]);
            }
            Mode::Direct { address } => {
                // Long, as a pool left near its defaults (redis-py's is no timeout at all): a
                // request queued on a stalled primary is answered when it resumes.
                cmd.args([
                    "--mode",
                    "direct",
                    "--addr",
                    address,
                    "--socket-timeout",
                    "10",
                ]);
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the writer (python3 with redis-py)")?;
        Ok(Self {
            id: id.to_string(),
            via_endpoint: matches!(mode, Mode::Sentinel { .. }),
            child,
            out,
        })
    }

    /// Every attempt so far, from whole lines only (the last may still be being written).
    pub fn attempts(&self) -> Result<Vec<Attempt>> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .filter(|l| !l.is_empty())
            .map(Attempt::parse)
            .collect()
    }

    /// Waits until this writer has had a write acknowledged.
    pub fn wait_first_ack(&self, limit: Duration) -> Result<()> {
        wait_until(
            limit,
            &format!("a first acknowledged write from {}", self.id),
            || {
                self.attempts()
                    .ok()
                    .filter(|a| a.iter().any(Attempt::acknowledged))
                    .map(drop)
            },
        )
    }

    /// Stops the writer after the attempt in flight (bounded) and returns all its attempts.
    pub fn finish(mut self) -> Result<Vec<Attempt>> {
        let _ = signal(self.child.id(), Signal::SIGTERM);
        let child = &mut self.child;
        // An attempt in flight may wait out a long socket timeout before the writer sees the signal.
        let status = wait_until(Duration::from_secs(15), "the writer to stop", || {
            child.try_wait().ok().flatten()
        });
        if status.is_err() {
            stop_child(&mut self.child);
        }
        let attempts = self.attempts()?;
        if attempts.is_empty() {
            bail!("writer {} recorded nothing", self.id);
        }
        Ok(attempts)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}
