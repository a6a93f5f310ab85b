//! What the failover bench runs, on loopback or in the [`Lab`]: the [`Place`] of each node, and
//! [`LabVigil`], a data store run by vigil across the lab's namespaces (each server with its
//! agent in its node's namespace, the controller in the controller's, everything on mutual TLS as
//! on loopback).
use anyhow::{Context, Result, anyhow};
use nix::sys::signal::Signal;
use vigil_tests::{Agent, Certs, Controller, RedisServer, VigilStore, free_port};

use super::lab::Lab;

/// Where the bench's systems run.
#[derive(Clone, Copy)]
pub(super) enum Place<'a> {
    /// Everything on 127.0.0.1 of the host.
    Loopback,
    /// Each node in its namespace of the lab; the controller, the Sentinels and the bench's
    /// client in the controller's (which the calling thread is in).
    Lab(&'a Lab),
}

impl Place<'_> {
    /// The address node `i`'s server is reached at.
    pub(super) fn host(&self, i: usize) -> String {
        match self {
            Self::Loopback => "127.0.0.1".into(),
            Self::Lab(lab) => lab.nodes[i].ip.clone(),
        }
    }

    /// Runs `f` where node `i`'s processes run: what it starts starts there.
    pub(super) fn on_node<T>(&self, i: usize, f: impl FnOnce() -> Result<T>) -> Result<T> {
        match self {
            Self::Loopback => f(),
            Self::Lab(lab) => lab.on_node(i, f),
        }
    }

    /// Starts node `i`'s redis-server on `port`, with `extra` arguments.
    pub(super) fn server(&self, i: usize, port: u16, extra: &[&str]) -> Result<RedisServer> {
        let host = self.host(i);
        self.on_node(i, || RedisServer::start_in(None, &host, port, extra))
    }
}

/// What the bench does with a data store run by vigil, wherever it runs.
pub(super) trait VigilNodes {
    /// Index of the current primary, as the controller holds it.
    fn primary(&self) -> Result<usize>;
    fn port(&self, i: usize) -> u16;
    fn host(&self, i: usize) -> String;
    /// kill -9 of server `i`, waiting for it to be gone.
    fn kill(&mut self, i: usize) -> Result<()>;
    /// Server `i` again on its port, as a lone primary (the controller demotes it).
    fn restart(&mut self, i: usize) -> Result<()>;
    fn signal(&self, i: usize, sig: Signal) -> Result<()>;
    fn wait_healthy(&self) -> Result<()>;
    fn controller(&self) -> &Controller;
    fn agent_logs(&self) -> Vec<Vec<String>>;
}

impl VigilNodes for VigilStore {
    fn primary(&self) -> Result<usize> {
        VigilStore::primary(self)
    }
    fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }
    fn host(&self, _: usize) -> String {
        "127.0.0.1".into()
    }
    fn kill(&mut self, i: usize) -> Result<()> {
        VigilStore::kill(self, i)
    }
    fn restart(&mut self, i: usize) -> Result<()> {
        VigilStore::restart(self, i)
    }
    fn signal(&self, i: usize, sig: Signal) -> Result<()> {
        self.server(i)?.signal(sig)
    }
    fn wait_healthy(&self) -> Result<()> {
        VigilStore::wait_healthy(self)
    }
    fn controller(&self) -> &Controller {
        &self.controller
    }
    fn agent_logs(&self) -> Vec<Vec<String>> {
        self.agents.iter().map(|a| a.log.lines()).collect()
    }
}

/// A primary and `replicas` replicas across the lab, each with its agent, and the controller.
pub(super) struct LabVigil<'a> {
    // Dropped in this order: agents and controller stop before the servers they watch.
    agents: Vec<Agent>,
    controller: Controller,
    servers: Vec<Option<RedisServer>>,
    ports: Vec<u16>,
    place: Place<'a>,
    name: String,
    _certs: Certs,
    _dir: tempfile::TempDir,
}

impl<'a> LabVigil<'a> {
    pub(super) fn start(
        lab: &'a Lab,
        name: &str,
        replicas: usize,
        controller_args: &[&str],
    ) -> Result<Self> {
        let place = Place::Lab(lab);
        let nodes: Vec<String> = (0..=replicas).map(|i| format!("n{i}")).collect();
        let ids: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let ctl = lab.controller.ip.as_str();
        let certs = Certs::make_for(name, &ids, &[ctl])?;
        let dir = tempfile::Builder::new().prefix("vigil-store-").tempdir()?;
        let controller = Controller::start_tls_at(dir.path(), ctl, &certs, controller_args)?;
        let mut ports = Vec::new();
        let mut servers = Vec::new();
        for i in 0..=replicas {
            let port = free_port()?;
            let primary = format!("{}", ports.first().copied().unwrap_or(0));
            let replicaof = ["--replicaof", &lab.nodes[0].ip, &primary];
            let extra: &[&str] = if i == 0 { &[] } else { &replicaof };
            servers.push(Some(place.server(i, port, extra)?));
            ports.push(port);
        }
        let mut agents = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let advertise = format!("{}:{}", place.host(i), ports[i]);
            let server = format!("127.0.0.1:{}", ports[i]);
            let mut args = certs.client_args(node);
            args.extend(["--advertise".to_string(), advertise]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let url = controller.url();
            agents.push(place.on_node(i, || {
                Agent::join_urls(None, &url, name, node, &server, &args)
            })?);
        }
        let store = Self {
            agents,
            controller,
            servers,
            ports,
            place,
            name: name.to_string(),
            _certs: certs,
            _dir: dir,
        };
        store.wait_healthy()?;
        Ok(store)
    }

    fn server(&self, i: usize) -> Result<&RedisServer> {
        self.servers
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| anyhow!("server {i} is not running"))
    }
}

impl VigilNodes for LabVigil<'_> {
    fn primary(&self) -> Result<usize> {
        let port = self
            .controller
            .controller_primary(&self.name)?
            .context("no primary published")?;
        self.ports
            .iter()
            .position(|p| *p == port)
            .ok_or_else(|| anyhow!("published primary {port} is not ours"))
    }
    fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }
    fn host(&self, i: usize) -> String {
        self.place.host(i)
    }
    fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(s) = self.servers.get_mut(i).and_then(Option::as_mut) {
            s.signal(Signal::SIGKILL)?;
            s.wait_exit()?;
        }
        if let Some(slot) = self.servers.get_mut(i) {
            *slot = None;
        }
        Ok(())
    }
    fn restart(&mut self, i: usize) -> Result<()> {
        let server = self.place.server(i, self.ports[i], &[])?;
        self.servers[i] = Some(server);
        Ok(())
    }
    fn signal(&self, i: usize, sig: Signal) -> Result<()> {
        self.server(i)?.signal(sig)
    }
    fn wait_healthy(&self) -> Result<()> {
        self.controller
            .wait_store_healthy(&self.name, self.ports.len(), None)
    }
    fn controller(&self) -> &Controller {
        &self.controller
    }
    fn agent_logs(&self) -> Vec<Vec<String>> {
        self.agents.iter().map(|a| a.log.lines()).collect()
    }
}
