//! [`Watch`]: a running `vigil-agent watch --json`, its stdout parsed into JSON lines that tests
//! wait for (bounded), its stderr echoed.
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::{WAIT, signal, stop_child, wait_until, workspace_bin};

/// A running `vigil-agent watch --json`, its stdout parsed line by line.
pub struct Watch {
    child: Child,
    lines: mpsc::Receiver<Value>,
    /// Every line received so far, in order.
    pub seen: Vec<Value>,
}

impl Watch {
    /// Starts `vigil-agent watch --json` with `args` and waits until it is attached.
    pub fn start(args: &[&str]) -> Result<Self> {
        Self::start_from(&workspace_bin("vigil-agent")?, args)
    }

    /// As [`Watch::start`], with the agent binary at `agent`.
    pub fn start_from(agent: &std::path::Path, args: &[&str]) -> Result<Self> {
        let mut child = Command::new(agent)
            .args(["--log-format", "json", "watch", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting vigil-agent watch")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("vigil-agent printed a line that is not JSON ({e}): {line}")
                    }
                }
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[vigil-agent] {line}");
                if line.contains("\"watching\"") {
                    let _ = ready_tx.send(Ok(()));
                } else if line.starts_with("vigil-agent: error:") {
                    let _ = ready_tx.send(Err(line));
                }
            }
        });
        let mut watch = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        match ready_rx.recv_timeout(WAIT) {
            Ok(Ok(())) => Ok(watch),
            Ok(Err(line)) => {
                stop_child(&mut watch.child);
                bail!("vigil-agent watch failed to start: {line}")
            }
            Err(_) => {
                stop_child(&mut watch.child);
                bail!("vigil-agent watch did not attach within {WAIT:?}")
            }
        }
    }

    /// Waits (bounded) for the next line matching `pred`; every line passed over stays in `seen`.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return Ok(v.clone());
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Ok(v);
                    }
                }
                Err(_) => bail!(
                    "no `{what}` line within {WAIT:?}; lines so far: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for a line whose `event` is `event`.
    pub fn wait_event(&mut self, event: &str) -> Result<Value> {
        self.wait_for(event, |v| v["event"] == event)
    }

    /// Collects whatever arrives within `period` (used only to gather lines, never to time).
    pub fn drain_for(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        while let Ok(v) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(v);
        }
    }

    /// Stops the agent with SIGINT and returns its summary line.
    pub fn finish(mut self) -> Result<Value> {
        signal(self.child.id(), Signal::SIGINT)?;
        let summary = self.wait_event("summary");
        let child = &mut self.child;
        wait_until(WAIT, "vigil-agent to exit", || {
            child.try_wait().ok().flatten()
        })?;
        summary
    }

    pub fn events(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter_map(|v| v["event"].as_str())
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}
