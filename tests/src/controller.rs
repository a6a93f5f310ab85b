//! [`Controller`]: a running `vigil-controller` on free ports, its log kept; it can be killed,
//! paused and restarted on the same ports and state, and asked what it publishes (the Sentinel
//! endpoint's primary, `vigil status`) and whether it leads. It keeps its state in a data
//! directory ([`Controller::start`]) or, one of several, in etcd ([`Controller::start_ha`]). With
//! [`Certs`] it serves mutual TLS ([`Controller::start_tls`]), and the harness's own `vigil` calls
//! present the operator's certificate.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use nix::sys::signal::Signal;

use crate::{
    Certs, Log, WAIT, free_port, output_within, signal, stop_child, wait_until, workspace_bin,
};

/// Longest a `vigil` CLI call may take: a paused controller accepts the connection and never
/// answers.
const CLI_LIMIT: Duration = Duration::from_secs(5);

/// The leader lease the harness gives controllers on etcd, in seconds: the shortest the
/// controller takes, so a crashed leader is replaced in about a second (the harness's etcd
/// allows a TTL this short, see [`ETCD_TIMINGS`](crate::ETCD_TIMINGS)).
pub const LEADER_LEASE_SECS: &str = "1";

/// Where a controller keeps its state.
enum StateIn {
    /// Alone, in a folder (`--data-dir`).
    Dir(PathBuf),
    /// One of several, in etcd, under its name (`--etcd URLS --name NAME`).
    Etcd { urls: String, name: String },
}

/// What a controller last logged about leadership: `"event":"leading"`, `"following"` or
/// `"leadership_lost"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    Leading,
    Following,
    Lost,
}

impl Leadership {
    /// The leadership event a JSON log line carries, if any.
    pub fn of_line(line: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(line).ok()?;
        match v["fields"]["event"].as_str()? {
            "leading" => Some(Self::Leading),
            "following" => Some(Self::Following),
            "leadership_lost" => Some(Self::Lost),
            _ => None,
        }
    }
}

/// A running `vigil-controller` on free ports of 127.0.0.1, with its log kept.
pub struct Controller {
    child: Option<Child>,
    /// The address the gRPC port listens on: 127.0.0.1, or a test network's host side.
    grpc_host: String,
    pub grpc: u16,
    pub sentinel: u16,
    state: StateIn,
    extra: Vec<String>,
    /// Added to its environment.
    env: Vec<(String, String)>,
    /// With TLS: the `--tls-*` flags of the harness's `vigil` calls (the operator's certificate).
    cli_tls: Option<Vec<String>>,
    /// Stopped with SIGSTOP and not yet continued.
    paused: bool,
    /// Its stderr since the last start, line by line.
    pub log: Log,
    /// The logs of its earlier runs, oldest first (a restart starts a new [`Controller::log`]).
    earlier: Vec<Log>,
}

impl Controller {
    /// Starts a controller keeping its state in `data_dir`, with `extra` flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_at(data_dir, "127.0.0.1", extra)
    }

    /// As [`Controller::start`], with the gRPC port on `grpc_host` (the Sentinel port stays on
    /// 127.0.0.1).
    pub fn start_at(data_dir: &Path, grpc_host: &str, extra: &[&str]) -> Result<Self> {
        Self::start_in(StateIn::Dir(data_dir.to_path_buf()), grpc_host, extra, None)
    }

    /// As [`Controller::start`], with `env` added to the controller's environment
    /// (NOTIFY_SOCKET, say).
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let mut c = Self::unstarted(
            StateIn::Dir(data_dir.to_path_buf()),
            "127.0.0.1",
            extra,
            None,
        )?;
        c.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c.spawn()?;
        Ok(c)
    }

    /// As [`Controller::start`], serving mutual TLS with `certs`' controller certificate; the
    /// harness's `vigil` calls present the operator's (`cli.pem`).
    pub fn start_tls(data_dir: &Path, certs: &Certs, extra: &[&str]) -> Result<Self> {
        let mut args = certs.controller_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_in(
            StateIn::Dir(data_dir.to_path_buf()),
            "127.0.0.1",
            &args,
            Some(certs.client_args("cli")),
        )
    }

    /// As [`Controller::start_tls`], with the gRPC port on `grpc_host` (which `certs` must name,
    /// see [`Certs::make_for`]); the Sentinel port stays on 127.0.0.1.
    pub fn start_tls_at(
        data_dir: &Path,
        grpc_host: &str,
        certs: &Certs,
        extra: &[&str],
    ) -> Result<Self> {
        let mut args = certs.controller_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_in(
            StateIn::Dir(data_dir.to_path_buf()),
            grpc_host,
            &args,
            Some(certs.client_args("cli")),
        )
    }

    /// Starts controller `name`, one of several sharing their state and an election in etcd at
    /// `etcd_urls` (comma-separated), with a [`LEADER_LEASE_SECS`] leader lease and `extra`
    /// flags. Returns once it listens, leading or not (see [`Controller::leadership`]).
    pub fn start_ha(etcd_urls: &str, name: &str, extra: &[&str]) -> Result<Self> {
        let state = StateIn::Etcd {
            urls: etcd_urls.to_string(),
            name: name.to_string(),
        };
        Self::start_in(state, "127.0.0.1", extra, None)
    }

    /// As [`Controller::start_ha`], serving mutual TLS with `certs`' controller certificate; the
    /// harness's `vigil` calls present the operator's.
    pub fn start_ha_tls(
        etcd_urls: &str,
        name: &str,
        certs: &Certs,
        extra: &[&str],
    ) -> Result<Self> {
        let state = StateIn::Etcd {
            urls: etcd_urls.to_string(),
            name: name.to_string(),
        };
        let mut args = certs.controller_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_in(state, "127.0.0.1", &args, Some(certs.client_args("cli")))
    }

    fn start_in(
        state: StateIn,
        grpc_host: &str,
        extra: &[&str],
        cli_tls: Option<Vec<String>>,
    ) -> Result<Self> {
        let mut c = Self::unstarted(state, grpc_host, extra, cli_tls)?;
        c.spawn()?;
        Ok(c)
    }

    fn unstarted(
        state: StateIn,
        grpc_host: &str,
        extra: &[&str],
        cli_tls: Option<Vec<String>>,
    ) -> Result<Self> {
        Ok(Self {
            child: None,
            grpc_host: grpc_host.to_string(),
            grpc: free_port()?,
            sentinel: free_port()?,
            state,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            cli_tls,
            paused: false,
            log: Log::default(),
            earlier: Vec::new(),
        })
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(workspace_bin("vigil-controller")?);
        cmd.args(["--log-format", "json"]);
        if !self.extra.iter().any(|a| a == "--metrics-listen") {
            cmd.args(["--metrics-listen", "off"]);
        }
        cmd.args([
            "--grpc-listen",
            &format!("{}:{}", self.grpc_host, self.grpc),
        ])
        .args(["--sentinel-listen", &format!("127.0.0.1:{}", self.sentinel)]);
        match &self.state {
            StateIn::Dir(dir) => {
                cmd.arg("--data-dir").arg(dir);
            }
            StateIn::Etcd { urls, name } => {
                cmd.args(["--etcd", urls, "--name", name]);
                if !self.extra.iter().any(|a| a == "--leader-lease-secs") {
                    cmd.args(["--leader-lease-secs", LEADER_LEASE_SECS]);
                }
            }
        }
        let mut child = cmd
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting vigil-controller")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let prefix = match self.name() {
            Some(name) => format!("vigil-controller {name}"),
            None => "vigil-controller".to_string(),
        };
        let earlier = std::mem::replace(&mut self.log, Log::capture(stderr, prefix));
        if !earlier.lines().is_empty() {
            self.earlier.push(earlier);
        }
        self.paused = false;
        // Until it listens, or fails at once when it exits first (a flag it does not take, a
        // port in use), with what it said.
        let log = self.log.clone();
        let exited = wait_until(WAIT, "vigil-controller running", || {
            if log.contains("vigil-controller running") {
                return Some(None);
            }
            child.try_wait().ok().flatten().map(Some)
        });
        self.child = Some(child);
        match exited {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                // Give the log thread a moment to read what it wrote before it exited.
                std::thread::sleep(Duration::from_millis(50));
                bail!(
                    "vigil-controller exited at start ({status}): {}",
                    log.lines().join("\n")
                )
            }
            Err(e) => Err(e),
        }
    }

    /// Every line it logged in every run so far, oldest first: what a test looks through for
    /// anything it ever did (a failover started before a crash, say).
    pub fn all_lines(&self) -> Vec<String> {
        self.earlier
            .iter()
            .chain(std::iter::once(&self.log))
            .flat_map(Log::lines)
            .collect()
    }

    /// Its name on etcd (`--name`); None for a controller on a data directory.
    pub fn name(&self) -> Option<&str> {
        match &self.state {
            StateIn::Dir(_) => None,
            StateIn::Etcd { name, .. } => Some(name),
        }
    }

    /// Whether it runs and is not paused: a process that can act.
    pub fn is_live(&self) -> bool {
        self.child.is_some() && !self.paused
    }

    /// The last leadership event it logged since it was last started (None before its first):
    /// this works before any data store exists. A paused controller's word is stale: see
    /// [`Controller::is_live`].
    pub fn leadership(&self) -> Option<Leadership> {
        self.log
            .lines()
            .iter()
            .rev()
            .find_map(|l| Leadership::of_line(l))
    }

    /// Whether it leads by its log: its last leadership event since start is `leading`.
    pub fn leading(&self) -> bool {
        self.leadership() == Some(Leadership::Leading)
    }

    /// Whether it says it leads when asked about `datastore` (`vigil status`'s `"leading"`).
    pub fn leading_in_status(&self, datastore: &str) -> Result<bool> {
        let st = self.status(datastore)?;
        st["leading"]
            .as_bool()
            .ok_or_else(|| anyhow!("vigil status has no \"leading\": {st}"))
    }

    /// SIGSTOP: it keeps its sockets and its etcd lease runs out, as in a long GC pause or a
    /// stopped VM.
    pub fn pause(&mut self) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("the controller is not running"))?;
        signal(pid, Signal::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT after [`Controller::pause`].
    pub fn resume(&mut self) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("the controller is not running"))?;
        signal(pid, Signal::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// `vigil failover <datastore>` sent to this controller: Ok with what it printed, or the
    /// refusal it got.
    pub fn failover(&self, datastore: &str) -> Result<String> {
        let out = output_within(self.vigil()?.args(["failover", datastore]), CLI_LIMIT)?;
        if !out.status.success() {
            bail!(
                "vigil failover refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn url(&self) -> String {
        let scheme = if self.cli_tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}:{}", self.grpc_host, self.grpc)
    }

    /// `vigil --controller URL`, with the operator's certificate when it serves TLS: a
    /// subcommand and its arguments follow.
    pub fn vigil(&self) -> Result<Command> {
        let mut cmd = Command::new(workspace_bin("vigil")?);
        cmd.args(["--controller", &self.url()]);
        if let Some(tls) = &self.cli_tls {
            cmd.args(tls);
        }
        Ok(cmd)
    }

    /// The running controller's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the controller (SIGKILL: no chance to tidy up) and starts it again on the same ports
    /// and state.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// kill -9 (a paused controller too: SIGKILL needs no SIGCONT), reaped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
        self.paused = false;
    }

    /// The primary's port as the Sentinel endpoint reports it for `datastore`.
    pub fn sentinel_primary(&self, datastore: &str) -> Result<Option<u16>> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.sentinel))?;
        let mut c = client.get_connection_with_timeout(Duration::from_secs(2))?;
        // A paused controller accepts the connection and never answers.
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(datastore)
            .query(&mut c)?;
        Ok(addr.and_then(|(_, port)| port.parse().ok()))
    }

    /// Waits (bounded) until the Sentinel endpoint names a primary of `datastore` other than the
    /// server on port `old`, and returns its port: a failover's outcome, as clients see it.
    pub fn wait_primary_moved(&self, datastore: &str, old: u16) -> Result<u16> {
        let what =
            format!("the Sentinel endpoint to name a primary of {datastore} other than :{old}");
        wait_until(WAIT, &what, || {
            self.sentinel_primary(datastore)
                .ok()
                .flatten()
                .filter(|p| *p != old)
        })
    }

    /// The primary's port as the controller holds it for `datastore`, whether or not it is down
    /// (`SENTINEL MASTER`, which, unlike `get-master-addr-by-name`, names a failed primary too).
    pub fn controller_primary(&self, datastore: &str) -> Result<Option<u16>> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.sentinel))?;
        let mut c = client.get_connection_with_timeout(Duration::from_secs(2))?;
        // A paused controller accepts the connection and never answers.
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        let fields: Vec<String> = match redis::cmd("SENTINEL")
            .arg("master")
            .arg(datastore)
            .query(&mut c)
        {
            Ok(fields) => fields,
            // No primary yet: "No such master".
            Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(fields
            .chunks(2)
            .find(|kv| kv[0] == "port")
            .and_then(|kv| kv.get(1)?.parse().ok()))
    }

    /// Waits until `datastore` has `nodes` nodes, each connected, HEALTHY and with a known role,
    /// and a primary: `primary` when given, any otherwise.
    pub fn wait_store_healthy(
        &self,
        datastore: &str,
        nodes: usize,
        primary: Option<&str>,
    ) -> Result<()> {
        wait_until(WAIT, "every node healthy and linked", || {
            let st = self.status(datastore).ok()?;
            let all = st["nodes"].as_array()?;
            let published = st["primary"].as_str().unwrap_or_default();
            let ok = all.len() == nodes
                && all.iter().all(|n| {
                    n["health"] == "HEALTHY" && n["connected"] == true && n["role"] != "?"
                })
                && primary.map_or(!published.is_empty(), |p| published == p);
            ok.then_some(())
        })
    }

    /// `vigil status <datastore> --json`, run as a user would.
    pub fn status(&self, datastore: &str) -> Result<Value> {
        let out = output_within(
            self.vigil()?.args(["status", datastore, "--json"]),
            CLI_LIMIT,
        )?;
        // It exits 1 (degraded) or 2 (no primary) with its answer printed: only no answer fails.
        let all: Value = serde_json::from_slice(&out.stdout).map_err(|_| {
            anyhow!(
                "vigil status failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok(all[0].clone())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}
