//! [`VigilSystem`]: vigil over a safety run's [`Nodes`]: an agent beside each server (in the
//! primary's network namespace when it has one) and one controller on the host.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{CoordinatorKill, Nodes, System, clock::monotonic_ns};
use crate::{Agent, Controller, WAIT, workspace_bin};

/// The data store's name.
pub const DATASTORE: &str = "safety";

/// How long the killed controller stays down before it is started again.
const CONTROLLER_DOWN: Duration = Duration::from_millis(200);

pub struct VigilSystem {
    // Dropped first: the agents stop before the controller, all before the nodes.
    agents: Vec<Agent>,
    pub controller: Controller,
    _dir: tempfile::TempDir,
}

impl VigilSystem {
    /// Starts a controller and an agent per node, each agent beside its server.
    pub fn start(nodes: &Nodes) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("vigil-safety-").tempdir()?;
        // The controller's gRPC port must be reachable from the primary's namespace.
        let grpc_host = nodes.netns().map_or("127.0.0.1", |ns| ns.host_ip.as_str());
        let controller = Controller::start_at(dir.path(), grpc_host, &["--grace-ms", "300"])?;
        let mut agents = Vec::new();
        for i in 0..nodes.ports.len() {
            let advertise = nodes.address(i);
            agents.push(Agent::join(
                nodes.netns_of(i),
                &controller,
                DATASTORE,
                &format!("n{i}"),
                &nodes.local_address(i),
                &["--advertise", &advertise],
            )?);
        }
        Ok(Self {
            agents,
            controller,
            _dir: dir,
        })
    }
}

impl System for VigilSystem {
    fn label(&self) -> String {
        "vigil".into()
    }

    fn endpoints(&self) -> Vec<String> {
        vec![format!("127.0.0.1:{}", self.controller.sentinel)]
    }

    fn service(&self) -> String {
        DATASTORE.into()
    }

    fn wait_ready(&self, nodes: &Nodes) -> Result<()> {
        self.controller
            .wait_store_healthy(DATASTORE, nodes.ports.len(), Some("n0"))
    }

    fn kill_coordinator_mid_failover(&mut self) -> Result<CoordinatorKill> {
        // The controller persists a failover as in flight before it sends any command for it, so
        // the state file is the earliest sign; it is read every 100 µs to kill the controller
        // before the promotion is done, if the kernel schedules us in time.
        let state = self._dir.path().join(format!("{DATASTORE}.json"));
        let deadline = Instant::now() + WAIT;
        while !in_flight(&state) {
            if Instant::now() >= deadline {
                bail!("the controller began no failover within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        self.controller.kill();
        let killed_ns = monotonic_ns();
        let log = self.controller.log.clone();
        std::thread::sleep(CONTROLLER_DOWN);
        // Everything it wrote before dying has been read by now.
        let finished_before = log.contains("\"failover finished\"");
        // Same ports, same state directory: it resumes what it persisted.
        self.controller.restart()?;
        Ok(CoordinatorKill {
            killed_ns,
            finished_before,
        })
    }

    fn switchover(&mut self) -> Result<()> {
        // `timeout` bounds the CLI, whatever the controller does.
        let out = Command::new("timeout")
            .arg("30")
            .arg(workspace_bin("vigil")?)
            .args([
                "--controller",
                &self.controller.url(),
                "failover",
                DATASTORE,
            ])
            .output()?;
        if !out.status.success() {
            bail!(
                "vigil failover {DATASTORE} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Whether the controller's state file holds a failover in flight.
fn in_flight(state: &std::path::Path) -> bool {
    std::fs::read_to_string(state)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|v| !v["in_flight"].is_null())
}

impl Drop for VigilSystem {
    fn drop(&mut self) {
        self.agents.clear();
        self.controller.kill();
    }
}
