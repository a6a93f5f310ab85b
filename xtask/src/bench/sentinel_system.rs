//! Redis Sentinel as the system under test in the safety bench: three redis-sentinel processes
//! (quorum 2) on 127.0.0.1 watching a safety run's [`Nodes`], with every event each of them
//! announces recorded as it arrives. Its coordinator is the sentinel leading a failover; its
//! planned switchover is `SENTINEL FAILOVER`.
use std::{
    path::PathBuf,
    process::Child,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use vigil_tests::{
    WAIT,
    safety::{CoordinatorKill, Nodes, System, monotonic_ns},
    wait_until,
};

use super::sentinel::{NAME, spawn_sentinel, write_conf};

/// One announcement: which sentinel, on which channel, received when (CLOCK_MONOTONIC ns).
type Event = (usize, String, u64);

/// The event a sentinel announces once it leads a failover and has chosen the replica to
/// promote, right before it sends it `REPLICAOF NO ONE`: the moment vigil's controller has
/// persisted its failover and is about to promote.
const LEADING: &str = "+selected-slave";

/// How long a killed sentinel stays down before it is started again.
const SENTINEL_DOWN: Duration = Duration::from_millis(200);

pub(super) struct SentinelSystem {
    down_after_ms: u64,
    sentinels: Vec<Child>,
    confs: Vec<PathBuf>,
    ports: Vec<u16>,
    events: Arc<Mutex<Vec<Event>>>,
    _dir: tempfile::TempDir,
}

impl SentinelSystem {
    pub(super) fn start(nodes: &Nodes, down_after_ms: u64) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("vigil-bench-safety-sentinel-")
            .tempdir()?;
        let mut s = Self {
            down_after_ms,
            sentinels: Vec::new(),
            confs: Vec::new(),
            ports: Vec::new(),
            events: Arc::new(Mutex::new(Vec::new())),
            _dir: dir,
        };
        for n in 0..3 {
            let (conf, port) = write_conf(
                s._dir.path(),
                n,
                &nodes.hosts[0],
                nodes.ports[0],
                down_after_ms,
            )?;
            s.sentinels.push(spawn_sentinel(&conf)?);
            s.confs.push(conf);
            s.ports.push(port);
        }
        for n in 0..3 {
            s.watch(n)?;
        }
        Ok(s)
    }

    /// Records every event sentinel `n` announces, until it goes away.
    fn watch(&self, n: usize) -> Result<()> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.ports[n]))?;
        let mut conn = wait_until(WAIT, "a sentinel to accept a subscriber", || {
            client.get_connection().ok()
        })?;
        let events = Arc::clone(&self.events);
        std::thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            if pubsub.psubscribe("*").is_err() {
                return;
            }
            while let Ok(msg) = pubsub.get_message() {
                let channel = msg.get_channel_name().to_string();
                events
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((n, channel, monotonic_ns()));
            }
        });
        Ok(())
    }

    fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn query(&self, n: usize, cmd: &redis::Cmd) -> Result<redis::Value> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.ports[n]))?;
        let mut c = client.get_connection_with_timeout(Duration::from_millis(500))?;
        c.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(cmd.query(&mut c)?)
    }

    /// Whether sentinel `n` names `port` the primary, knows two linked replicas and two other
    /// sentinels it can reach (without them it can neither agree a failure nor elect a leader).
    fn ready(&self, n: usize, port: u16) -> bool {
        let table = |sub: &str| -> Option<Vec<Vec<String>>> {
            let cmd = redis::cmd("SENTINEL").arg(sub).arg(NAME).clone();
            let value = self.query(n, &cmd).ok()?;
            match sub {
                "master" => redis::from_redis_value::<Vec<String>>(value)
                    .ok()
                    .map(|m| vec![m]),
                _ => redis::from_redis_value::<Vec<Vec<String>>>(value).ok(),
            }
        };
        let field = |entry: &[String], name: &str| {
            entry
                .chunks(2)
                .find(|kv| kv[0] == name)
                .map(|kv| kv[1].clone())
        };
        let (Some(master), Some(replicas), Some(sentinels)) =
            (table("master"), table("replicas"), table("sentinels"))
        else {
            return false;
        };
        let master = &master[0];
        field(master, "port") == Some(port.to_string())
            && field(master, "flags").as_deref() == Some("master")
            && replicas.len() == 2
            && replicas.iter().all(|r| {
                field(r, "flags").as_deref() == Some("slave")
                    && field(r, "master-link-status").as_deref() == Some("ok")
            })
            && sentinels.len() == 2
            && sentinels
                .iter()
                .all(|s| field(s, "flags").as_deref() == Some("sentinel"))
    }
}

impl System for SentinelSystem {
    fn label(&self) -> String {
        format!("sentinel{}", self.down_after_ms)
    }

    fn endpoints(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    fn service(&self) -> String {
        NAME.into()
    }

    fn wait_ready(&self, nodes: &Nodes) -> Result<()> {
        // Sentinels find each other through hello messages every 2 s.
        wait_until(
            WAIT * 2,
            "the sentinels to know the store and each other",
            || (0..3).all(|n| self.ready(n, nodes.ports[0])).then_some(()),
        )
    }

    fn kill_coordinator_mid_failover(&mut self) -> Result<CoordinatorKill> {
        let leader = wait_until(WAIT * 2, "a sentinel to lead a failover", || {
            self.events()
                .into_iter()
                .find(|(_, channel, _)| channel == LEADING)
                .map(|(n, _, _)| n)
        })?;
        let child = &mut self.sentinels[leader];
        child.kill().context("killing the leading sentinel")?;
        let killed_ns = monotonic_ns();
        let _ = child.wait();
        std::thread::sleep(SENTINEL_DOWN);
        // Only the leader announces the switch first; what it announced reached us before its
        // connection closed.
        let finished_before = self
            .events()
            .iter()
            .any(|(n, channel, _)| *n == leader && channel == "+switch-master");
        // From the configuration it rewrote as it went, as a supervisor would restart it.
        self.sentinels[leader] = spawn_sentinel(&self.confs[leader])?;
        self.watch(leader)?;
        Ok(CoordinatorKill {
            killed_ns,
            finished_before,
        })
    }

    fn switchover(&mut self) -> Result<()> {
        let failover = redis::cmd("SENTINEL").arg("failover").arg(NAME).clone();
        match self.query(0, &failover)? {
            redis::Value::Okay => Ok(()),
            redis::Value::SimpleString(s) if s == "OK" => Ok(()),
            other => bail!("SENTINEL FAILOVER answered {other:?}"),
        }
    }
}

impl Drop for SentinelSystem {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}
