//! Redis Sentinel, measured beside vigil: a primary and two replicas of redis-server watched by
//! three redis-sentinel processes (quorum 2) on 127.0.0.1 (or the servers each in their node's
//! namespace of the lab, the sentinels in the controller's), with the `+sdown` and
//! `+switch-master` events they announce, timed as they arrive.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use vigil_tests::{RedisServer, WAIT, free_port, wait_until};

use super::lab_store::Place;

/// The data store's name, in vigil and in Sentinel.
pub(super) const NAME: &str = "bench";

/// A primary and two replicas watched by three redis-sentinel processes (quorum 2).
pub(super) struct SentinelStore<'a> {
    pub(super) sentinels: Vec<Child>,
    pub(super) sentinel_ports: Vec<u16>,
    pub(super) servers: Vec<Option<RedisServer>>,
    pub(super) ports: Vec<u16>,
    pub(super) sdown: Arc<Mutex<Vec<Instant>>>,
    pub(super) switches: Arc<Mutex<Vec<Instant>>>,
    place: Place<'a>,
    _dir: tempfile::TempDir,
}

impl Drop for SentinelStore<'_> {
    fn drop(&mut self) {
        self.stop_sentinels();
    }
}

impl<'a> SentinelStore<'a> {
    pub(super) fn start(place: Place<'a>, down_after_ms: u64) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("vigil-bench-sentinel-")
            .tempdir()?;
        let primary = place.server(0, free_port()?, &[])?;
        let p = primary.port.to_string();
        let mut servers = vec![Some(primary)];
        for i in 1..3 {
            let replicaof = ["--replicaof", &primary_host(place), &p];
            servers.push(Some(place.server(i, free_port()?, &replicaof)?));
        }
        let ports: Vec<u16> = servers.iter().flatten().map(|s| s.port).collect();
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        for n in 0..3 {
            let host = primary_host(place);
            let (conf, port) = write_conf(dir.path(), n, &host, ports[0], down_after_ms)?;
            sentinels.push(spawn_sentinel(&conf)?);
            sentinel_ports.push(port);
        }
        let sdown = Arc::new(Mutex::new(Vec::new()));
        let switches = Arc::new(Mutex::new(Vec::new()));
        let store = Self {
            sentinels,
            sentinel_ports,
            servers,
            ports,
            sdown,
            switches,
            place,
            _dir: dir,
        };
        store.watch_sdown()?;
        store.wait_settled(None)?;
        Ok(store)
    }

    /// Records the instant of every +sdown of the master and every +switch-master, as one
    /// sentinel announces them.
    pub(super) fn watch_sdown(&self) -> Result<()> {
        let sink = Arc::clone(&self.sdown);
        let switches = Arc::clone(&self.switches);
        let port = self.sentinel_ports[0];
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let mut conn = wait_until(WAIT, "a sentinel to accept a subscriber", || {
            client.get_connection().ok()
        })?;
        std::thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            if pubsub.subscribe(&["+sdown", "+switch-master"]).is_err() {
                return;
            }
            while let Ok(msg) = pubsub.get_message() {
                if msg.get_channel_name() == "+switch-master" {
                    switches
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Instant::now());
                } else if msg
                    .get_payload::<String>()
                    .is_ok_and(|m| m.starts_with("master"))
                {
                    sink.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Instant::now());
                }
            }
        });
        Ok(())
    }

    /// Stops every sentinel and server of this store and starts a fresh one in its place:
    /// the way back after Sentinel missed a failover or never settled, so one bad round does not
    /// end the bench.
    pub(super) fn rebuild(&mut self, down_after_ms: u64) -> Result<()> {
        // The old processes go first: the new store must not meet them on its way up.
        self.stop_sentinels();
        // Dropping a server stops it.
        self.servers.clear();
        *self = Self::start(self.place, down_after_ms)?;
        Ok(())
    }

    fn stop_sentinels(&mut self) {
        for mut s in self.sentinels.drain(..) {
            let _ = s.kill();
            let _ = s.wait();
        }
    }

    /// [`Self::wait_settled`], and when Sentinel never settles, a fresh store instead.
    pub(super) fn settle_or_rebuild(&mut self, not: Option<u16>, down_after_ms: u64) -> Result<()> {
        if let Err(e) = self.wait_settled(not) {
            eprintln!("\n  sentinel{down_after_ms}: {e:#}; starting a fresh store");
            self.rebuild(down_after_ms)?;
        }
        Ok(())
    }

    pub(super) fn master(&self) -> Result<u16> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.sentinel_ports[0]))?;
        let mut c = client.get_connection_with_timeout(Duration::from_secs(1))?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(NAME)
            .query(&mut c)?;
        Ok(port)
    }

    /// Waits until the sentinels agree on a master other than `not` (if given) and see both
    /// replicas linked and not down.
    pub(super) fn wait_settled(&self, not: Option<u16>) -> Result<()> {
        wait_until(WAIT * 8, "the sentinels to settle", || {
            let master = self.master().ok()?;
            if Some(master) == not {
                return None;
            }
            let client =
                redis::Client::open(format!("redis://127.0.0.1:{}/", self.sentinel_ports[0]))
                    .ok()?;
            let mut c = client.get_connection().ok()?;
            let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
                .arg("replicas")
                .arg(NAME)
                .query(&mut c)
                .ok()?;
            let linked = replicas
                .iter()
                .filter(|r| {
                    r.get("flags").is_some_and(|f| !f.contains("down"))
                        && r.get("master-link-status").is_some_and(|s| s == "ok")
                })
                .count();
            (linked == 2).then_some(())
        })
    }
}

/// Where the first primary is reached.
fn primary_host(place: Place<'_>) -> String {
    place.host(0)
}

/// Writes sentinel `n`'s configuration in `dir`: on a free port of 127.0.0.1, monitoring the
/// primary at `host`:`port` as [`NAME`] with quorum 2, down after `down_after_ms`, a failover
/// timeout of 1 s. Returns the file and the sentinel's port. The sentinels announce 127.0.0.1 to
/// each other: left to themselves they announce the address that reaches the primary, which for
/// a primary in a network namespace is the host's side of its veth, where they do not listen.
pub(super) fn write_conf(
    dir: &Path,
    n: usize,
    host: &str,
    port: u16,
    down_after_ms: u64,
) -> Result<(PathBuf, u16)> {
    let own = free_port()?;
    let conf = dir.join(format!("sentinel-{n}.conf"));
    std::fs::write(
        &conf,
        format!(
            "port {own}\nbind 127.0.0.1\ndaemonize no\ndir {}\nsentinel announce-ip 127.0.0.1\n\
             sentinel monitor {NAME} {host} {port} 2\nsentinel down-after-milliseconds {NAME} {down_after_ms}\nsentinel failover-timeout {NAME} 1000\n\
             sentinel parallel-syncs {NAME} 2\n",
            dir.display()
        ),
    )?;
    Ok((conf, own))
}

pub(super) fn spawn_sentinel(conf: &Path) -> Result<Child> {
    Command::new("redis-sentinel")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-sentinel")
}
