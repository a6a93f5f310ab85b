//! [`VigilStore`]: a data store run by vigil on 127.0.0.1 (a primary and replicas of
//! redis-server, an agent beside each, a controller), with faults a test or bench can inject; over
//! mutual TLS with certificates from `vigil certs` when started with [`VigilStore::start_tls`].
use anyhow::{Result, anyhow};

use crate::{Agent, Certs, Controller, RedisServer, Servers};

/// A data store run by vigil: one primary and `replicas` replicas of real redis-server, an agent
/// beside each, and a controller, all on 127.0.0.1.
pub struct VigilStore {
    // Dropped in this order: agents and controller stop before the servers they watch.
    pub agents: Vec<Agent>,
    pub controller: Controller,
    pub servers: Servers,
    pub name: String,
    pub ports: Vec<u16>,
    /// The installation's certificates, when it runs over TLS.
    pub certs: Option<Certs>,
    _dir: tempfile::TempDir,
}

impl VigilStore {
    /// Starts everything and waits (bounded) until every node is healthy and linked.
    pub fn start(
        name: &str,
        replicas: usize,
        controller_args: &[&str],
        agent_args: &[&str],
    ) -> Result<Self> {
        Self::start_with(name, replicas, None, controller_args, agent_args)
    }

    /// As [`VigilStore::start`], everything over mutual TLS: `vigil certs` makes the CA and the
    /// certificates of the controller, the operator and nodes `n0`..`n<replicas>`.
    pub fn start_tls(
        name: &str,
        replicas: usize,
        controller_args: &[&str],
        agent_args: &[&str],
    ) -> Result<Self> {
        let nodes: Vec<String> = (0..=replicas).map(|i| format!("n{i}")).collect();
        let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let certs = Certs::make(name, &nodes)?;
        Self::start_with(name, replicas, Some(certs), controller_args, agent_args)
    }

    fn start_with(
        name: &str,
        replicas: usize,
        certs: Option<Certs>,
        controller_args: &[&str],
        agent_args: &[&str],
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("vigil-store-").tempdir()?;
        let controller = match &certs {
            Some(c) => Controller::start_tls(dir.path(), c, controller_args)?,
            None => Controller::start(dir.path(), controller_args)?,
        };
        let servers = Servers::start(replicas)?;
        let ports = servers.ports();
        let agents =
            servers.join_agents_with(&controller.url(), name, certs.as_ref(), agent_args)?;
        let store = Self {
            agents,
            controller,
            servers,
            name: name.to_string(),
            ports,
            certs,
            _dir: dir,
        };
        store.wait_healthy()?;
        Ok(store)
    }

    /// Waits until every node is connected, HEALTHY, and every replica linked to the primary.
    pub fn wait_healthy(&self) -> Result<()> {
        self.controller
            .wait_store_healthy(&self.name, self.ports.len(), None)
    }

    /// Index of the current primary, as the controller holds it (named even while it is down).
    pub fn primary(&self) -> Result<usize> {
        let port = self
            .controller
            .controller_primary(&self.name)?
            .ok_or_else(|| anyhow!("no primary published"))?;
        self.ports
            .iter()
            .position(|p| *p == port)
            .ok_or_else(|| anyhow!("published primary {port} is not ours"))
    }

    pub fn server(&self, i: usize) -> Result<&RedisServer> {
        self.servers.server(i)
    }

    /// kill -9 of server `i`, waiting for it to be gone.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        self.servers.kill(i)
    }

    /// Starts server `i` again on its port, as a lone primary (the controller demotes it).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.servers.restart(i)
    }

    /// Failovers the controller has started so far, by its log.
    pub fn failovers_started(&self) -> usize {
        self.controller
            .log
            .lines()
            .iter()
            .filter(|l| l.contains("\"failing over\""))
            .count()
    }
}
