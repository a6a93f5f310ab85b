//! [`EtcdCluster`]: a real etcd cluster (Debian's `/usr/bin/etcd`) of a few members on 127.0.0.1,
//! on ports the harness picks, with its data in a temporary directory. Members can be killed
//! (SIGKILL by the pid the harness started) and started again on the same ports and data, so a
//! test can take a member away or the whole quorum. Drop kills every member and removes the data.
//!
//! [`EtcdCluster::start_tls`] starts one that serves its clients on TLS only and asks each for a
//! certificate (`--client-cert-auth`), from a CA made for it ([`EtcdTls`]); its peers talk plain
//! HTTP to each other on loopback.
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

use crate::{WAIT, free_port, output_within, stop_child};

/// etcd's raft timings, in ms, as flags. etcd's minimum lease TTL is
/// ceil(1.5 x election timeout) seconds, so etcd's defaults (100 ms heartbeat, 1000 ms election)
/// refuse a lease under 2 s: 10/100 let the controllers hold a 1 s leader lease, and a crashed
/// etcd leader is replaced in about a tenth of a second, so a controller crash is handed over in
/// about the lease (1 s). Loopback round trips are well under a millisecond, so 10 ms heartbeats
/// are not tight here.
pub const ETCD_TIMINGS: &[&str] = &["--heartbeat-interval", "10", "--election-timeout", "100"];

/// How long one `etcdctl` call may take: its own command timeout, then a hard bound on the
/// process in case it hangs while dialing.
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(2);

/// The PEM files of a TLS etcd: its CA, the members' server certificate (for 127.0.0.1) and a
/// client certificate for the controllers and etcdctl, all from that CA. The suites make them
/// (the harness library stays free of crypto crates, as xtask builds it).
pub struct EtcdTls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl EtcdTls {
    /// A controller's flags for TLS to this etcd with its client certificate.
    pub fn controller_args(&self) -> Vec<String> {
        let mut args = self.ca_only_args();
        for (flag, path) in [
            ("--etcd-cert", &self.client_cert),
            ("--etcd-key", &self.client_key),
        ] {
            args.extend([flag.to_string(), path.display().to_string()]);
        }
        args
    }

    /// A controller's flags for TLS to this etcd presenting no certificate of its own.
    pub fn ca_only_args(&self) -> Vec<String> {
        vec!["--etcd-ca".to_string(), self.ca.display().to_string()]
    }
}

/// One member: its name, ports, data directory and, while it runs, its process.
struct Member {
    name: String,
    client: u16,
    peer: u16,
    data: PathBuf,
    child: Option<Child>,
    /// Whether it serves its clients on TLS.
    tls: bool,
}

impl Member {
    fn client_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }
}

/// A real etcd cluster on 127.0.0.1, every member started and stopped by this harness.
pub struct EtcdCluster {
    members: Vec<Member>,
    /// `name=peer-url,...`, the same for every start (a restarted member keeps its identity).
    initial_cluster: String,
    /// A token unique to this cluster, so members of two clusters never take each other in.
    token: String,
    /// Set by [`EtcdCluster::start_tls`].
    tls: Option<EtcdTls>,
    // Dropped last: the members are killed (Drop below) before their data goes.
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `members` members and waits (bounded) until the cluster has a quorum.
    pub fn start(members: usize) -> Result<Self> {
        Self::start_with(members, None::<fn(&Path) -> Result<EtcdTls>>)
    }

    /// As [`EtcdCluster::start`], serving clients on TLS only, each asked for a certificate from
    /// the CA of the files `make` writes into the folder it is given (the cluster's own, removed
    /// with it).
    pub fn start_tls(members: usize, make: impl FnOnce(&Path) -> Result<EtcdTls>) -> Result<Self> {
        Self::start_with(members, Some(make))
    }

    fn start_with(
        members: usize,
        make: Option<impl FnOnce(&Path) -> Result<EtcdTls>>,
    ) -> Result<Self> {
        let tls = make.is_some();
        if members == 0 {
            bail!("an etcd cluster needs at least one member");
        }
        let dir = tempfile::Builder::new().prefix("vigil-etcd-").tempdir()?;
        let mut all = Vec::new();
        for i in 0..members {
            all.push(Member {
                name: format!("e{i}"),
                client: free_port()?,
                peer: free_port()?,
                data: dir.path().join(format!("e{i}")),
                child: None,
                tls,
            });
        }
        let initial_cluster = all
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = dir
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("vigil-etcd")
            .to_string();
        let tls = match make {
            Some(make) => Some(make(dir.path())?),
            None => None,
        };
        let mut cluster = Self {
            members: all,
            initial_cluster,
            token,
            tls,
            dir,
        };
        for i in 0..members {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    fn member(&self, i: usize) -> Result<&Member> {
        self.members
            .get(i)
            .ok_or_else(|| anyhow!("etcd member {i} does not exist"))
    }

    /// The certificates, for a cluster started with [`EtcdCluster::start_tls`].
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let (initial_cluster, token) = (self.initial_cluster.clone(), self.token.clone());
        let tls_args: Vec<std::ffi::OsString> = match &self.tls {
            Some(t) => vec![
                "--cert-file".into(),
                t.server_cert.clone().into(),
                "--key-file".into(),
                t.server_key.clone().into(),
                "--trusted-ca-file".into(),
                t.ca.clone().into(),
                "--client-cert-auth".into(),
            ],
            None => Vec::new(),
        };
        let log_path = self.dir.path().join(format!("e{i}.log"));
        let m = self
            .members
            .get_mut(i)
            .ok_or_else(|| anyhow!("etcd member {i} does not exist"))?;
        // The log stays beside the data: etcd is chatty, and a failing test can keep the tempdir.
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &token])
            // Ignored by a member that restarts on its data: its WAL says who its peers are.
            .args(["--initial-cluster-state", "new"])
            .args(ETCD_TIMINGS)
            .args(&tls_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd: is etcd-server installed? (`cargo xtask setup`)")?;
        m.child = Some(child);
        Ok(())
    }

    /// The client URLs of every member, comma-separated (running or not: what a controller is
    /// configured with).
    pub fn client_urls(&self) -> String {
        self.members
            .iter()
            .map(Member::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URLs of the members that run now, comma-separated.
    pub fn running_urls(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(Member::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many members there are, running or not.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The pid of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members
            .get(i)
            .and_then(|m| m.child.as_ref())
            .map(Child::id)
    }

    /// kill -9 of member `i`, by the pid this harness started, and reaped.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let m = self
            .members
            .get_mut(i)
            .ok_or_else(|| anyhow!("etcd member {i} does not exist"))?;
        if let Some(mut child) = m.child.take() {
            stop_child(&mut child);
        }
        Ok(())
    }

    /// Starts member `i` again on its ports and its data directory (kills it first if it runs).
    /// Does not wait: a lone member has no quorum to be healthy with.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i)?;
        self.spawn(i)
    }

    /// Waits (bounded) until every running member answers `endpoint health`, which reads a key
    /// through raft, so it also proves a quorum.
    pub fn wait_healthy(&self) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        let endpoints = self.running_urls();
        if endpoints.is_empty() {
            bail!("no etcd member is running");
        }
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.etcdctl(&endpoints, &["endpoint", "health"]) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("etcd ({endpoints}) not healthy after {WAIT:?}: {last}")
    }

    /// `etcdctl put key value` through the running members, bounded by [`ETCDCTL_TIMEOUT`].
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.etcdctl(&self.running_urls(), &["put", key, value])
            .map(drop)
    }

    /// `etcdctl get key --print-value-only` through the running members: the value, if the key
    /// exists.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let out = self.etcdctl(&self.running_urls(), &["get", key, "--print-value-only"])?;
        // No output at all: no such key (a key set to "" prints an empty line).
        Ok((!out.is_empty()).then(|| out.trim_end_matches('\n').to_string()))
    }

    /// Index of the member raft has made etcd's leader, as that member says (`endpoint status`).
    pub fn raft_leader(&self) -> Result<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let out = self.etcdctl(
                &m.client_url(),
                &["endpoint", "status", "--write-out", "json"],
            )?;
            let v: serde_json::Value = serde_json::from_str(&out)?;
            let status = &v[0]["Status"];
            let (me, leader) = (&status["header"]["member_id"], &status["leader"]);
            if me.is_u64() && me == leader {
                return Ok(i);
            }
        }
        bail!("no running etcd member says it leads")
    }

    /// Runs `etcdctl` (API v3) against `endpoints` and returns its stdout; an error when it fails
    /// or outlives twice [`ETCDCTL_TIMEOUT`] (dialing and the command each get one; then it is
    /// killed by its pid).
    fn etcdctl(&self, endpoints: &str, args: &[&str]) -> Result<String> {
        let timeout = format!("{}ms", ETCDCTL_TIMEOUT.as_millis());
        let mut cmd = Command::new("etcdctl");
        if let Some(t) = &self.tls {
            cmd.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        let out = output_within(
            cmd.env("ETCDCTL_API", "3")
                .args(["--endpoints", endpoints])
                .args(["--dial-timeout", &timeout, "--command-timeout", &timeout])
                .args(args),
            ETCDCTL_TIMEOUT * 2 + Duration::from_millis(500),
        )
        .context("running etcdctl: is etcd-client installed? (`cargo xtask setup`)")?;
        if !out.status.success() {
            bail!(
                "etcdctl {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The folder holding every member's data directory and log.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether member `i` exists and runs now.
    pub fn is_running(&self, i: usize) -> bool {
        self.member(i).is_ok_and(|m| m.child.is_some())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                stop_child(&mut child);
            }
        }
        // The TempDir field removes the data directories after this.
    }
}
