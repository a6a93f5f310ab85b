//! [`VigilStore`]: a data store run by vigil on 127.0.0.1 (a primary and replicas of
//! redis-server, an agent beside each, a controller), with faults a test or bench can inject.
use anyhow::{Result, anyhow};
use nix::sys::signal::Signal;

use crate::{Agent, Controller, RedisServer, free_port};

/// A data store run by vigil: one primary and `replicas` replicas of real redis-server, an agent
/// beside each, and a controller, all on 127.0.0.1.
pub struct VigilStore {
    // Dropped in this order: agents and controller stop before the servers they watch.
    pub agents: Vec<Agent>,
    pub controller: Controller,
    pub servers: Vec<Option<RedisServer>>,
    pub name: String,
    pub ports: Vec<u16>,
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
        let dir = tempfile::Builder::new().prefix("vigil-store-").tempdir()?;
        let controller = Controller::start(dir.path(), controller_args)?;
        let primary = RedisServer::start()?;
        let p = primary.port.to_string();
        let mut servers = vec![Some(primary)];
        for _ in 0..replicas {
            servers.push(Some(RedisServer::start_with(
                free_port()?,
                &["--replicaof", "127.0.0.1", &p],
            )?));
        }
        let ports: Vec<u16> = servers.iter().flatten().map(|s| s.port).collect();
        let mut agents = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let server = format!("127.0.0.1:{port}");
            agents.push(Agent::join(
                None,
                &controller,
                name,
                &format!("n{i}"),
                &server,
                agent_args,
            )?);
        }
        let store = Self {
            agents,
            controller,
            servers,
            name: name.to_string(),
            ports,
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
        self.servers
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| anyhow!("server {i} is not running"))
    }

    /// kill -9 of server `i`, waiting for it to be gone.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(s) = self.servers.get_mut(i).and_then(Option::as_mut) {
            s.signal(Signal::SIGKILL)?;
            s.wait_exit()?;
        }
        if let Some(slot) = self.servers.get_mut(i) {
            *slot = None;
        }
        Ok(())
    }

    /// Starts server `i` again on its port, as a lone primary (the controller demotes it).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        let server = RedisServer::start_on(self.ports[i])?;
        self.servers[i] = Some(server);
        Ok(())
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
