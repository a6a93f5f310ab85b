//! [`Servers`]: the redis-servers of a data store a test runs on 127.0.0.1 (a primary and its
//! replicas), by index: killed and started again on their ports, and asked for their role.
use std::ops::{Deref, DerefMut};

use anyhow::{Result, anyhow, bail};
use nix::sys::signal::Signal;

use crate::{Agent, Certs, RedisServer, free_port};

/// Server `i` is `self[i]`: `None` while it is killed.
pub struct Servers {
    slots: Vec<Option<RedisServer>>,
    /// Each server's port, kept while it is killed so that it starts again there.
    ports: Vec<u16>,
}

impl Servers {
    /// A primary, and `replicas` replicas of it.
    pub fn start(replicas: usize) -> Result<Self> {
        let primary = RedisServer::start()?;
        let p = primary.port.to_string();
        let mut slots = vec![Some(primary)];
        for _ in 0..replicas {
            slots.push(Some(RedisServer::start_with(
                free_port()?,
                &["--replicaof", "127.0.0.1", &p],
            )?));
        }
        let ports = slots.iter().flatten().map(|s| s.port).collect();
        Ok(Self { slots, ports })
    }

    pub fn ports(&self) -> Vec<u16> {
        self.ports.clone()
    }

    /// An agent beside each server, node `n<i>` of `datastore`, reporting to the controllers at
    /// `urls` (comma-separated), with `extra` flags.
    pub fn join_agents(&self, urls: &str, datastore: &str, extra: &[&str]) -> Result<Vec<Agent>> {
        self.join_agents_with(urls, datastore, None, extra)
    }

    /// As [`Servers::join_agents`], each agent presenting its node's certificate of `certs`
    /// (its data store) over TLS when given.
    pub fn join_agents_with(
        &self,
        urls: &str,
        datastore: &str,
        certs: Option<&Certs>,
        extra: &[&str],
    ) -> Result<Vec<Agent>> {
        self.ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let server = format!("127.0.0.1:{port}");
                let node = format!("n{i}");
                let mut args = certs.map_or_else(Vec::new, |c| c.client_args(&node));
                args.extend(extra.iter().map(|s| s.to_string()));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Agent::join_urls(None, urls, datastore, &node, &server, &args)
            })
            .collect()
    }

    pub fn server(&self, i: usize) -> Result<&RedisServer> {
        self.slots
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| anyhow!("server {i} is not running"))
    }

    /// kill -9 of server `i`, waiting for it to be gone.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(s) = self.slots.get_mut(i).and_then(Option::as_mut) {
            s.signal(Signal::SIGKILL)?;
            s.wait_exit()?;
        }
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = None;
        }
        Ok(())
    }

    /// Starts server `i` again on its port, as a lone primary (the controller demotes it).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        let Some(&port) = self.ports.get(i) else {
            bail!("server {i} does not exist");
        };
        self.slots[i] = Some(RedisServer::start_on(port)?);
        Ok(())
    }

    /// The role server `i` reports (`ROLE`): `"master"`, or `"slave"` with its primary's port.
    pub fn role(&self, i: usize) -> Result<(String, Option<u16>)> {
        self.server(i)?.role_and_primary()
    }
}

impl Deref for Servers {
    type Target = Vec<Option<RedisServer>>;

    fn deref(&self) -> &Self::Target {
        &self.slots
    }
}

impl DerefMut for Servers {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.slots
    }
}
