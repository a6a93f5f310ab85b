//! [`Controller`]: a running `vigil-controller` on free ports, its log kept; it can be killed
//! and restarted on the same ports and state, and asked what it publishes (the Sentinel
//! endpoint's primary, `vigil status`).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::{Log, WAIT, free_port, stop_child, wait_until, workspace_bin};

/// A running `vigil-controller` on free ports of 127.0.0.1, with its log kept.
pub struct Controller {
    child: Option<Child>,
    /// The address the gRPC port listens on: 127.0.0.1, or a test network's host side.
    grpc_host: String,
    pub grpc: u16,
    pub sentinel: u16,
    data_dir: PathBuf,
    extra: Vec<String>,
    /// Its stderr since the last start, line by line.
    pub log: Log,
}

impl Controller {
    /// Starts a controller keeping its state in `data_dir`, with `extra` flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_at(data_dir, "127.0.0.1", extra)
    }

    /// As [`Controller::start`], with the gRPC port on `grpc_host` (the Sentinel port stays on
    /// 127.0.0.1).
    pub fn start_at(data_dir: &Path, grpc_host: &str, extra: &[&str]) -> Result<Self> {
        let mut c = Self {
            child: None,
            grpc_host: grpc_host.to_string(),
            grpc: free_port()?,
            sentinel: free_port()?,
            data_dir: data_dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: Log::default(),
        };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(workspace_bin("vigil-controller")?);
        cmd.args(["--log-format", "json"]);
        if !self.extra.iter().any(|a| a == "--metrics-listen") {
            cmd.args(["--metrics-listen", "off"]);
        }
        let mut child = cmd
            .args([
                "--grpc-listen",
                &format!("{}:{}", self.grpc_host, self.grpc),
            ])
            .args(["--sentinel-listen", &format!("127.0.0.1:{}", self.sentinel)])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting vigil-controller")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        self.log = Log::capture(stderr, "vigil-controller");
        self.child = Some(child);
        self.log.wait_for("vigil-controller running")?;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.grpc_host, self.grpc)
    }

    /// The running controller's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the controller (SIGKILL: no chance to tidy up) and starts it again on the same ports
    /// and state.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }

    /// The primary's port as the Sentinel endpoint reports it for `datastore`.
    pub fn sentinel_primary(&self, datastore: &str) -> Result<Option<u16>> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.sentinel))?;
        let mut c = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(datastore)
            .query(&mut c)?;
        Ok(addr.and_then(|(_, port)| port.parse().ok()))
    }

    /// The primary's port as the controller holds it for `datastore`, whether or not it is down
    /// (`SENTINEL MASTER`, which, unlike `get-master-addr-by-name`, names a failed primary too).
    pub fn controller_primary(&self, datastore: &str) -> Result<Option<u16>> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.sentinel))?;
        let mut c = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let fields: Vec<String> = match redis::cmd("SENTINEL")
            .arg("master")
            .arg(datastore)
            .query(&mut c)
        {
            Ok(fields) => fields,
            // No primary yet: "No such master".
            Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(fields
            .chunks(2)
            .find(|kv| kv[0] == "port")
            .and_then(|kv| kv.get(1)?.parse().ok()))
    }

    /// Waits until `datastore` has `nodes` nodes, each connected, HEALTHY and with a known role,
    /// and a primary: `primary` when given, any otherwise.
    pub fn wait_store_healthy(
        &self,
        datastore: &str,
        nodes: usize,
        primary: Option<&str>,
    ) -> Result<()> {
        wait_until(WAIT, "every node healthy and linked", || {
            let st = self.status(datastore).ok()?;
            let all = st["nodes"].as_array()?;
            let published = st["primary"].as_str().unwrap_or_default();
            let ok = all.len() == nodes
                && all.iter().all(|n| {
                    n["health"] == "HEALTHY" && n["connected"] == true && n["role"] != "?"
                })
                && primary.map_or(!published.is_empty(), |p| published == p);
            ok.then_some(())
        })
    }

    /// `vigil status <datastore> --json`, run as a user would.
    pub fn status(&self, datastore: &str) -> Result<Value> {
        let out = Command::new(workspace_bin("vigil")?)
            .args(["--controller", &self.url(), "status", datastore, "--json"])
            .output()?;
        if !out.status.success() {
            bail!(
                "vigil status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let all: Value = serde_json::from_slice(&out.stdout)?;
        Ok(all[0].clone())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}
