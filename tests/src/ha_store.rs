//! [`ControllerTrio`]: three `vigil-controller`s sharing a three-member [`EtcdCluster`], one of
//! them leading; and [`HaStore`]: a data store run by them (a primary and two replicas of
//! redis-server, an agent beside each given all three controllers), like [`VigilStore`] with
//! controllers that can be killed, paused and restarted one by one.
//!
//! [`VigilStore`]: crate::VigilStore
use anyhow::{Result, anyhow};
use serde_json::Value;

use crate::{
    Agent, Certs, Controller, EtcdCluster, EtcdTls, RedisServer, Servers, WAIT, wait_until,
};

/// Controllers and etcd members in a trio: three, so one of each can be lost with a quorum left.
pub const TRIO: usize = 3;

/// Three controllers (`c0`, `c1`, `c2`) on one three-member etcd cluster, all on 127.0.0.1.
pub struct ControllerTrio {
    // Dropped in this order: the controllers stop before the etcd they hold a lease on.
    pub controllers: Vec<Controller>,
    pub etcd: EtcdCluster,
}

impl ControllerTrio {
    /// Starts etcd, then the three controllers with `extra` flags, and waits (bounded) until one
    /// of them leads.
    pub fn start(extra: &[&str]) -> Result<Self> {
        Self::start_with(None, extra)
    }

    /// As [`ControllerTrio::start`], each controller serving mutual TLS with `certs` when given.
    pub fn start_with(certs: Option<&Certs>, extra: &[&str]) -> Result<Self> {
        Self::start_on(EtcdCluster::start(TRIO)?, certs, extra)
    }

    /// As [`ControllerTrio::start_with`], on `etcd`; when it serves TLS, each controller is given
    /// its CA and client certificate.
    pub fn start_on(etcd: EtcdCluster, certs: Option<&Certs>, extra: &[&str]) -> Result<Self> {
        let urls = etcd.client_urls();
        let mut args: Vec<String> = etcd.tls().map(|t| t.controller_args()).unwrap_or_default();
        args.extend(extra.iter().map(|a| a.to_string()));
        let extra: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut controllers = Vec::new();
        for i in 0..TRIO {
            let name = format!("c{i}");
            controllers.push(match certs {
                Some(c) => Controller::start_ha_tls(&urls, &name, c, &extra)?,
                None => Controller::start_ha(&urls, &name, &extra)?,
            });
        }
        let trio = Self { controllers, etcd };
        trio.leader()?;
        Ok(trio)
    }

    /// The controllers' gRPC URLs, comma-separated: what an agent is given.
    pub fn urls(&self) -> String {
        self.controllers
            .iter()
            .map(Controller::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn controller(&self, i: usize) -> Result<&Controller> {
        self.controllers
            .get(i)
            .ok_or_else(|| anyhow!("controller {i} does not exist"))
    }

    fn controller_mut(&mut self, i: usize) -> Result<&mut Controller> {
        self.controllers
            .get_mut(i)
            .ok_or_else(|| anyhow!("controller {i} does not exist"))
    }

    /// The controller that leads now, by the logs: the one live (running, not paused) controller
    /// whose last leadership event is `leading`. None while none or more than one claims it (a
    /// deposed leader that has not yet logged `leadership_lost`).
    pub fn current_leader(&self) -> Option<usize> {
        let mut leading = (0..self.controllers.len())
            .filter(|&i| self.controllers[i].is_live() && self.controllers[i].leading());
        let first = leading.next()?;
        leading.next().is_none().then_some(first)
    }

    /// Waits (bounded) for [`ControllerTrio::current_leader`].
    pub fn leader(&self) -> Result<usize> {
        wait_until(WAIT, "one live controller to lead", || {
            self.current_leader()
        })
    }

    /// Indexes of the controllers that run and are not paused.
    pub fn live(&self) -> Vec<usize> {
        (0..self.controllers.len())
            .filter(|&i| self.controllers[i].is_live())
            .collect()
    }

    /// kill -9 of controller `i`.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        self.controller_mut(i)?.kill();
        Ok(())
    }

    /// SIGSTOP of controller `i`.
    pub fn pause(&mut self, i: usize) -> Result<()> {
        self.controller_mut(i)?.pause()
    }

    /// SIGCONT of controller `i`.
    pub fn resume(&mut self, i: usize) -> Result<()> {
        self.controller_mut(i)?.resume()
    }

    /// Starts controller `i` again on its ports and name (killing it first if it runs); returns
    /// once it listens.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.controller_mut(i)?.restart()
    }

    /// Log lines of every controller, every run, carrying `"event":"<event>"`.
    pub fn events(&self, event: &str) -> Vec<String> {
        self.controllers
            .iter()
            .flat_map(Controller::all_lines)
            .filter(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| v["fields"]["event"] == event)
            })
            .collect()
    }
}

/// A data store run by a [`ControllerTrio`]: one primary (`n0`) and two replicas of real
/// redis-server, an agent beside each reporting to all three controllers, all on 127.0.0.1.
pub struct HaStore {
    // Dropped in this order: agents and controllers stop before the servers they watch, etcd last.
    pub agents: Vec<Agent>,
    pub trio: ControllerTrio,
    pub servers: Servers,
    pub name: String,
    pub ports: Vec<u16>,
    /// The installation's certificates, when it runs over TLS.
    pub certs: Option<Certs>,
}

impl HaStore {
    /// Starts etcd, the controllers (with `controller_args`), the servers and the agents (with
    /// `agent_args`), and waits (bounded) until every node is healthy and linked at the leader.
    pub fn start(name: &str, controller_args: &[&str], agent_args: &[&str]) -> Result<Self> {
        Self::start_with(name, None, controller_args, agent_args)
    }

    /// As [`HaStore::start`], every gRPC link on mutual TLS with certificates `vigil certs`
    /// makes for the controllers, the operator and nodes n0, n1 and n2.
    pub fn start_tls(name: &str, controller_args: &[&str], agent_args: &[&str]) -> Result<Self> {
        let certs = Certs::make(name, &["n0", "n1", "n2"])?;
        Self::start_with(name, Some(certs), controller_args, agent_args)
    }

    /// As [`HaStore::start`], the controllers on an etcd that serves only TLS and asks them for
    /// client certificates ([`EtcdCluster::start_tls`]).
    /// `make` writes its certificates, as for [`EtcdCluster::start_tls`].
    pub fn start_on_tls_etcd(
        name: &str,
        make: impl FnOnce(&std::path::Path) -> Result<EtcdTls>,
        controller_args: &[&str],
        agent_args: &[&str],
    ) -> Result<Self> {
        let etcd = EtcdCluster::start_tls(TRIO, make)?;
        Self::start_on(name, etcd, None, controller_args, agent_args)
    }

    fn start_with(
        name: &str,
        certs: Option<Certs>,
        controller_args: &[&str],
        agent_args: &[&str],
    ) -> Result<Self> {
        Self::start_on(
            name,
            EtcdCluster::start(TRIO)?,
            certs,
            controller_args,
            agent_args,
        )
    }

    fn start_on(
        name: &str,
        etcd: EtcdCluster,
        certs: Option<Certs>,
        controller_args: &[&str],
        agent_args: &[&str],
    ) -> Result<Self> {
        let trio = ControllerTrio::start_on(etcd, certs.as_ref(), controller_args)?;
        let servers = Servers::start(TRIO - 1)?;
        let ports = servers.ports();
        let agents = servers.join_agents_with(&trio.urls(), name, certs.as_ref(), agent_args)?;
        let store = Self {
            agents,
            trio,
            servers,
            name: name.to_string(),
            ports,
            certs,
        };
        store.wait_healthy()?;
        Ok(store)
    }

    pub fn controller(&self, i: usize) -> Result<&Controller> {
        self.trio.controller(i)
    }

    /// Waits (bounded) until one live controller leads by its log and says so in `vigil status`
    /// for this data store; returns its index.
    pub fn leader(&self) -> Result<usize> {
        wait_until(WAIT, "one live controller to lead this data store", || {
            let i = self.trio.current_leader()?;
            let c = self.trio.controller(i).ok()?;
            c.leading_in_status(&self.name).ok()?.then_some(i)
        })
    }

    /// `vigil status` of this data store, from the controller that leads now.
    pub fn status(&self) -> Result<Value> {
        let i = self.leader()?;
        self.controller(i)?.status(&self.name)
    }

    /// (primary node, epoch) as the leading controller holds them.
    pub fn primary_and_epoch(&self) -> Result<(String, u64)> {
        let st = self.status()?;
        let primary = st["primary"].as_str().unwrap_or_default().to_string();
        let epoch = st["epoch"]
            .as_u64()
            .ok_or_else(|| anyhow!("vigil status has no epoch: {st}"))?;
        Ok((primary, epoch))
    }

    /// Waits (bounded) until every node is connected, HEALTHY and has a role at the controller
    /// that leads (asked anew each round, since the leader may change meanwhile), and a primary
    /// is published.
    pub fn wait_healthy(&self) -> Result<()> {
        wait_until(WAIT, "every node healthy and linked at the leader", || {
            let i = self.trio.current_leader()?;
            let st = self.trio.controller(i).ok()?.status(&self.name).ok()?;
            let nodes = st["nodes"].as_array()?;
            let ok = st["leading"] == true
                && nodes.len() == self.ports.len()
                && nodes.iter().all(|n| {
                    n["health"] == "HEALTHY" && n["connected"] == true && n["role"] != "?"
                })
                && !st["primary"].as_str().unwrap_or_default().is_empty();
            ok.then_some(())
        })
    }

    /// Index of the current primary, as the leading controller holds it (named even while it is
    /// down).
    pub fn primary(&self) -> Result<usize> {
        let i = self.leader()?;
        let port = self
            .controller(i)?
            .controller_primary(&self.name)?
            .ok_or_else(|| anyhow!("no primary published"))?;
        self.index_of(port)
    }

    /// Index of the server on `port`.
    pub fn index_of(&self, port: u16) -> Result<usize> {
        self.ports
            .iter()
            .position(|p| *p == port)
            .ok_or_else(|| anyhow!("port {port} is not one of this data store's"))
    }

    /// The primary's port as controller `i`'s Sentinel endpoint gives it to clients
    /// (`SENTINEL get-master-addr-by-name`).
    pub fn sentinel_primary(&self, i: usize) -> Result<Option<u16>> {
        self.controller(i)?.sentinel_primary(&self.name)
    }

    /// The primary's port as the first live controller that answers gives it to clients: what a
    /// client with every controller in its list of sentinels finds.
    pub fn sentinel_primary_any(&self) -> Result<Option<u16>> {
        let mut last = None;
        for i in self.trio.live() {
            match self.sentinel_primary(i) {
                Ok(port) => return Ok(port),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no controller is live")))
    }

    pub fn server(&self, i: usize) -> Result<&RedisServer> {
        self.servers.server(i)
    }

    /// kill -9 of server `i`, waiting for it to be gone.
    pub fn kill_server(&mut self, i: usize) -> Result<()> {
        self.servers.kill(i)
    }

    /// Starts server `i` again on its port, as a lone primary (the controller demotes it).
    pub fn restart_server(&mut self, i: usize) -> Result<()> {
        self.servers.restart(i)
    }

    /// The role server `i` reports (`ROLE`): `"master"`, or `"slave"` with its primary's port.
    pub fn role(&self, i: usize) -> Result<(String, Option<u16>)> {
        self.servers.role(i)
    }
}
