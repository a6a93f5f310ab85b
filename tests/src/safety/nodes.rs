//! [`Nodes`]: the three data servers of a safety run (a primary and two replicas of real
//! redis-server), laid out as the fault needs ([`Topology`]), with what is done to the primary.
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;

use crate::{Fixture, NetNs, RedisServer, WAIT, free_port, signal, wait_until};

/// Where the nodes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// All three on 127.0.0.1.
    Host,
    /// The primary in a network namespace of its own, the replicas on the host, joined by a veth
    /// pair that can be cut. Clients of the primary's node run in its namespace.
    PrimaryInNetns,
    /// All on 127.0.0.1, the primary being the deadlock fixture in front of a redis-server.
    FixturePrimary,
}

/// A primary (node 0) and two replicas, none of them watched by anything yet.
pub struct Nodes {
    pub topology: Topology,
    /// The port clients use on each node, in node order.
    pub ports: Vec<u16>,
    /// The address each node is reached at from the host (and advertised by).
    pub hosts: Vec<String>,
    /// The redis-server of each node; node 0's is the fixture's backend in [`Topology::FixturePrimary`].
    servers: Vec<Option<RedisServer>>,
    fixture: Option<Fixture>,
    backend: Option<u16>,
    // Last: the servers in it stop before it is deleted.
    netns: Option<NetNs>,
}

impl Nodes {
    /// Starts the primary and two replicas following it, and waits until both are linked.
    pub fn start(topology: Topology) -> Result<Self> {
        let netns = match topology {
            Topology::PrimaryInNetns => Some(NetNs::create()?),
            _ => None,
        };
        // Every server has a port of its own, so a port names a node wherever it is seen.
        let mut ports = Vec::new();
        while ports.len() < 4 {
            let p = free_port()?;
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let (primary_host, replica_host) = match &netns {
            Some(ns) => (ns.ns_ip.clone(), ns.host_ip.clone()),
            None => ("127.0.0.1".to_string(), "127.0.0.1".to_string()),
        };
        let primary = RedisServer::start_in(netns.as_ref(), &primary_host, ports[0], &[])?;
        let (fixture, backend, front) = match topology {
            Topology::FixturePrimary => {
                let front = ports[3];
                let fixture = Fixture::spawn(
                    "vigil-deadlock-fixture",
                    &[&front.to_string(), &ports[0].to_string()],
                )?;
                (Some(fixture), Some(ports[0]), front)
            }
            _ => (None, None, ports[0]),
        };
        let mut nodes = Self {
            topology,
            ports: vec![front, ports[1], ports[2]],
            hosts: vec![
                primary_host.clone(),
                replica_host.clone(),
                replica_host.clone(),
            ],
            servers: vec![Some(primary)],
            fixture,
            backend,
            netns,
        };
        wait_until(WAIT, "the primary to answer", || nodes.ping(0).ok())?;
        let front = front.to_string();
        for port in &ports[1..3] {
            nodes.servers.push(Some(RedisServer::start_in(
                None,
                &replica_host,
                *port,
                &["--replicaof", &primary_host, &front],
            )?));
        }
        wait_until(WAIT, "both replicas linked", || {
            (1..3)
                .all(|i| nodes.role(i).is_ok_and(|r| r.follows(nodes.ports[0])))
                .then_some(())
        })?;
        Ok(nodes)
    }

    pub fn netns(&self) -> Option<&NetNs> {
        self.netns.as_ref()
    }

    /// The node a server port belongs to (the fixture's backend is node 0).
    pub fn node_of_port(&self, port: u16) -> Option<usize> {
        if Some(port) == self.backend {
            return Some(0);
        }
        self.ports.iter().position(|p| *p == port)
    }

    /// HOST:PORT of node `i` as seen from the host.
    pub fn address(&self, i: usize) -> String {
        format!("{}:{}", self.hosts[i], self.ports[i])
    }

    /// The namespace node `i` runs in, if not the host's.
    pub fn netns_of(&self, i: usize) -> Option<&NetNs> {
        (i == 0).then_some(self.netns.as_ref()).flatten()
    }

    /// HOST:PORT a client on node `i`'s own side reaches it at.
    pub fn local_address(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// A connection to node `i` from the host, with short timeouts.
    pub fn connect(&self, i: usize, timeout: Duration) -> Result<redis::Connection> {
        let url = format!("redis://{}/", self.address(i));
        let c = redis::Client::open(url)?.get_connection_with_timeout(timeout)?;
        c.set_read_timeout(Some(timeout))?;
        c.set_write_timeout(Some(timeout))?;
        Ok(c)
    }

    fn ping(&self, i: usize) -> Result<()> {
        let mut c = self.connect(i, Duration::from_secs(1))?;
        redis::cmd("PING").query::<String>(&mut c)?;
        Ok(())
    }

    /// Node `i`'s ROLE, asked from the host.
    pub fn role(&self, i: usize) -> Result<Role> {
        let mut c = self.connect(i, Duration::from_millis(500))?;
        Role::query(&mut c)
    }

    fn server(&self, i: usize) -> Result<&RedisServer> {
        self.servers
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| anyhow!("node {i}'s server is not running"))
    }

    /// kill -9 of the primary's server, waiting until it is gone.
    pub fn kill_primary(&mut self) -> Result<()> {
        if let Some(s) = self.servers[0].as_mut() {
            s.signal(Signal::SIGKILL)?;
            s.wait_exit()?;
        }
        self.servers[0] = None;
        Ok(())
    }

    /// Starts the old primary's server again on its port, empty and alone, as a supervisor
    /// restarting a crashed process would.
    pub fn restart_primary(&mut self) -> Result<()> {
        if self.fixture.is_some() {
            bail!("the fixture's backend is not restarted");
        }
        let host = self.hosts[0].clone();
        let server = RedisServer::start_in(self.netns.as_ref(), &host, self.ports[0], &[])?;
        self.servers[0] = Some(server);
        Ok(())
    }

    pub fn signal_primary(&self, sig: Signal) -> Result<()> {
        self.server(0)?.signal(sig)
    }

    /// Deadlocks the fixture standing in for the primary.
    pub fn deadlock_primary(&self) -> Result<()> {
        if self.fixture.is_none() {
            bail!("only the fixture can deadlock");
        }
        let mut c = self.connect(0, Duration::from_secs(2))?;
        let ok: String = redis::cmd("DEADLOCK").query(&mut c)?;
        if ok != "OK" {
            bail!("DEADLOCK answered {ok:?}");
        }
        Ok(())
    }

    /// Ends the fixture's deadlock: the requests queued meanwhile are served.
    pub fn recover_primary(&self) -> Result<()> {
        let fixture = self.fixture.as_ref().context("no fixture")?;
        signal(fixture.pid(), Signal::SIGUSR1)
    }

    fn ns(&self) -> Result<&NetNs> {
        self.netns
            .as_ref()
            .context("this topology has no network namespace")
    }

    /// Drops everything between the primary's namespace and the host, both ways.
    pub fn partition_primary(&self) -> Result<()> {
        let ns = self.ns()?;
        ns.drop_sent()?;
        ns.drop_received()
    }

    /// Drops what the primary's namespace sends: it cannot reach its replicas (nor anyone).
    pub fn primary_cannot_send(&self) -> Result<()> {
        self.ns()?.drop_sent()
    }

    /// Drops what the host sends into the primary's namespace: the replicas cannot reach it.
    pub fn primary_cannot_receive(&self) -> Result<()> {
        self.ns()?.drop_received()
    }

    /// Packets pass both ways again.
    pub fn heal_network(&self) -> Result<()> {
        self.ns()?.pass_all()
    }
}

/// A node's ROLE reply, as much of it as the suite needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    /// A replica of the primary on `primary_port`, its link up or not.
    Replica {
        primary_port: u16,
        linked: bool,
    },
}

impl Role {
    pub fn query(c: &mut redis::Connection) -> Result<Self> {
        let reply: Vec<redis::Value> = redis::cmd("ROLE").query(c)?;
        let word = |i: usize| -> Option<String> {
            match reply.get(i)? {
                redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                redis::Value::SimpleString(s) => Some(s.clone()),
                redis::Value::Int(n) => Some(n.to_string()),
                _ => None,
            }
        };
        match word(0).as_deref() {
            Some("master") => Ok(Self::Primary),
            Some("slave") => Ok(Self::Replica {
                primary_port: word(2).and_then(|p| p.parse().ok()).unwrap_or(0),
                linked: word(3).as_deref() == Some("connected"),
            }),
            other => bail!("ROLE answered {other:?}"),
        }
    }

    /// A linked replica of the primary on `port`.
    pub fn follows(&self, port: u16) -> bool {
        matches!(self, Self::Replica { primary_port, linked: true } if *primary_port == port)
    }
}
