//! The harness vigil's suites and benches share: real `redis-server` processes on 127.0.0.1,
//! the real `vigil-agent` binary, and cleanup of exactly the processes each test started (by the
//! pid it got, never by a pattern). Every wait is bounded.
use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

/// Longest any single wait in the harness may take before it gives up with an error.
pub const WAIT: Duration = Duration::from_secs(15);

static SERIAL: Mutex<()> = Mutex::new(());

/// Kernel tests run one at a time: they share two cores, and a parallel test's CPU load would
/// change what a "busy" or "starved" server looks like.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Panics with a clear message unless running as root. CI runs as root, so nothing is skipped.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads eBPF programs and needs root: run `cargo xtask test` as root"
    );
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `probe` every millisecond until it returns Some, for at most `limit`.
pub fn wait_until<T>(
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("gave up after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `signal` to a process this test started.
/// Writes keys `{prefix}:0..n`; with `acked_by` > 0 each write waits (WAIT, 2 s) for that many
/// replicas and fails if fewer acknowledge it.
pub fn write_keys(c: &mut redis::Connection, prefix: &str, n: usize, acked_by: i64) -> Result<()> {
    for i in 0..n {
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:{i}"))
            .arg(i)
            .query(c)?;
        if acked_by > 0 {
            let acks: i64 = redis::cmd("WAIT").arg(acked_by).arg(2000).query(c)?;
            if acks < acked_by {
                bail!("write {prefix}:{i} was acknowledged by {acks} replicas, not {acked_by}");
            }
        }
    }
    Ok(())
}

/// How many of the keys `{prefix}:0..n` exist.
pub fn count_keys(c: &mut redis::Connection, prefix: &str, n: usize) -> Result<usize> {
    let mut found = 0;
    for i in 0..n {
        found += redis::cmd("EXISTS")
            .arg(format!("{prefix}:{i}"))
            .query::<usize>(c)?;
    }
    Ok(found)
}

pub fn signal(pid: u32, signal: Signal) -> Result<()> {
    kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("sending {signal} to {pid}"))
}

fn stop_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A real redis-server on 127.0.0.1, with no persistence, in its own temporary directory.
pub struct RedisServer {
    pub port: u16,
    /// The address clients use: 127.0.0.1, or the server's address in a test network namespace.
    pub host: String,
    /// The `--requirepass` it was started with, if any.
    password: Option<String>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Result<Self> {
        Self::start_on(free_port()?)
    }

    pub fn start_on(port: u16) -> Result<Self> {
        Self::start_with(port, &[])
    }

    /// Starts redis-server with extra arguments (e.g. `["--replicaof", "127.0.0.1", "6379"]`).
    pub fn start_with(port: u16, extra: &[&str]) -> Result<Self> {
        Self::start_in(None, "127.0.0.1", port, extra)
    }

    /// Starts redis-server inside `netns` (when given), listening on 127.0.0.1 and on `host`.
    pub fn start_in(netns: Option<&NetNs>, host: &str, port: u16, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("vigil-redis-").tempdir()?;
        let mut bind = vec!["127.0.0.1"];
        if host != "127.0.0.1" {
            // The other address is a test network's private veth: let its peers in without a
            // password (protected mode only admits loopback clients).
            bind.extend([host, "--protected-mode", "no"]);
        }
        let child = NetNs::command(netns, "redis-server")
            .args(["--port", &port.to_string(), "--bind"])
            .args(&bind)
            .args(["--save", "", "--appendonly", "no"])
            // Disk-based sync: Redis 7.0 with diskless sync and no delay sometimes leaves one of two
            // replicas attaching together "linked" but never fed (seen here, without vigil).
            .args([
                "--enable-debug-command",
                "yes",
                "--repl-diskless-sync",
                "no",
                "--dir",
            ])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed? `cargo xtask setup` installs it)")?;
        let password = extra
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].to_string());
        let mut server = Self {
            port,
            host: host.to_string(),
            password,
            child,
            _dir: dir,
        };
        wait_until(WAIT, "redis-server to answer PING", || server.ping().ok())?;
        if let Ok(Some(status)) = server.child.try_wait() {
            bail!("redis-server on port {port} exited at start: {status}");
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@{}:{}/", self.host, self.port),
            None => format!("redis://{}:{}/", self.host, self.port),
        }
    }

    pub fn connect(&self) -> Result<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        Ok(client.get_connection_with_timeout(Duration::from_secs(2))?)
    }

    pub fn ping(&self) -> Result<()> {
        let mut c = self.connect()?;
        let pong: String = redis::cmd("PING").query(&mut c)?;
        if pong != "PONG" {
            bail!("PING answered {pong:?}");
        }
        Ok(())
    }

    pub fn signal(&self, sig: Signal) -> Result<()> {
        signal(self.pid(), sig)
    }

    /// Waits (bounded) for the server to exit, e.g. after SHUTDOWN or kill -9.
    pub fn wait_exit(&mut self) -> Result<std::process::ExitStatus> {
        let child = &mut self.child;
        wait_until(WAIT, "redis-server to exit", || {
            child.try_wait().ok().flatten()
        })
    }

    /// What the server's main thread is doing, from /proc/PID/syscall: "running" on CPU in user
    /// space, or the number of the syscall it sleeps in.
    pub fn main_thread_syscall(&self) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{}/syscall", self.pid())).ok()?;
        text.split_whitespace().next().map(str::to_string)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// A test-only process started from one of this workspace's binaries, stopped on drop.
pub struct Fixture {
    child: Child,
}

impl Fixture {
    pub fn spawn(bin: &str, args: &[&str]) -> Result<Self> {
        let path = workspace_bin(bin)?;
        let child = Command::new(&path)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

static BIN_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops echoing the agents' and controller's logs to stderr (demos and benches print their own).
pub fn quiet() {
    QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn echo(prefix: &str, line: &str) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("[{prefix}] {line}");
    }
}

/// Makes [`workspace_bin`] take binaries from `dir` (e.g. target/release for demos and benches).
pub fn use_bin_dir(dir: PathBuf) {
    let _ = BIN_DIR.set(dir);
}

/// Path of a binary built from this workspace: the folder given to [`use_bin_dir`], else
/// `$VIGIL_BIN_DIR/<name>`, else next to the running executable (target/<profile>/deps/.. holds
/// the workspace's binaries).
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let chosen = BIN_DIR
        .get()
        .cloned()
        .or_else(|| std::env::var_os("VIGIL_BIN_DIR").map(PathBuf::from));
    let dir = match chosen {
        Some(dir) => dir,
        None => {
            let exe = std::env::current_exe()?;
            let mut dir = exe
                .parent()
                .ok_or_else(|| anyhow!("test executable has no folder"))?
                .to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the workspace first (`cargo build --workspace --bins`)",
            path.display()
        );
    }
    Ok(path)
}

/// A running `vigil-agent watch --json`, its stdout parsed line by line.
pub struct Watch {
    child: Child,
    lines: mpsc::Receiver<Value>,
    /// Every line received so far, in order.
    pub seen: Vec<Value>,
}

impl Watch {
    /// Starts `vigil-agent watch --json` with `args` and waits until it is attached.
    pub fn start(args: &[&str]) -> Result<Self> {
        Self::start_from(&workspace_bin("vigil-agent")?, args)
    }

    /// As [`Watch::start`], with the agent binary at `agent`.
    pub fn start_from(agent: &std::path::Path, args: &[&str]) -> Result<Self> {
        let mut child = Command::new(agent)
            .args(["--log-format", "json", "watch", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting vigil-agent watch")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("vigil-agent printed a line that is not JSON ({e}): {line}")
                    }
                }
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[vigil-agent] {line}");
                if line.contains("\"watching\"") {
                    let _ = ready_tx.send(Ok(()));
                } else if line.starts_with("vigil-agent: error:") {
                    let _ = ready_tx.send(Err(line));
                }
            }
        });
        let mut watch = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        match ready_rx.recv_timeout(WAIT) {
            Ok(Ok(())) => Ok(watch),
            Ok(Err(line)) => {
                stop_child(&mut watch.child);
                bail!("vigil-agent watch failed to start: {line}")
            }
            Err(_) => {
                stop_child(&mut watch.child);
                bail!("vigil-agent watch did not attach within {WAIT:?}")
            }
        }
    }

    /// Waits (bounded) for the next line matching `pred`; every line passed over stays in `seen`.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return Ok(v.clone());
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Ok(v);
                    }
                }
                Err(_) => bail!(
                    "no `{what}` line within {WAIT:?}; lines so far: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for a line whose `event` is `event`.
    pub fn wait_event(&mut self, event: &str) -> Result<Value> {
        self.wait_for(event, |v| v["event"] == event)
    }

    /// Collects whatever arrives within `period` (used only to gather lines, never to time).
    pub fn drain_for(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        while let Ok(v) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(v);
        }
    }

    /// Stops the agent with SIGINT and returns its summary line.
    pub fn finish(mut self) -> Result<Value> {
        signal(self.child.id(), Signal::SIGINT)?;
        let summary = self.wait_event("summary");
        let child = &mut self.child;
        wait_until(WAIT, "vigil-agent to exit", || {
            child.try_wait().ok().flatten()
        })?;
        summary
    }

    pub fn events(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter_map(|v| v["event"].as_str())
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// The captured stderr of a child process, line by line (echoed unless [`quiet`]).
#[derive(Clone, Default)]
pub struct Log(std::sync::Arc<Mutex<Vec<String>>>);

impl Log {
    /// Reads `stderr` on a thread until it closes.
    fn capture(stderr: std::process::ChildStderr, prefix: &'static str) -> Self {
        let log = Self::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                echo(prefix, &line);
                sink.lines_mut().push(line);
            }
        });
        log
    }

    fn lines_mut(&self) -> MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (bounded) for a line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> Result<String> {
        wait_until(WAIT, &format!("a log line with {needle:?}"), || {
            self.lines_mut()
                .iter()
                .find(|l| l.contains(needle))
                .cloned()
        })
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.lines_mut().iter().any(|l| l.contains(needle))
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines_mut().clone()
    }
}

/// A network namespace this test made, joined to the host by a veth pair: the host side is
/// `host_ip`, the namespace side `ns_ip`. Deleted on drop (which also deletes the veth pair).
pub struct NetNs {
    pub name: String,
    pub host_ip: String,
    pub ns_ip: String,
    inner_veth: String,
}

impl NetNs {
    /// Creates `vigil-<pid>` with the veth pair up and addressed (10.201.0.0/30, a private range
    /// that only this test's namespace uses).
    pub fn create() -> Result<Self> {
        let id = std::process::id();
        let ns = Self {
            name: format!("vigil-{id}"),
            host_ip: "10.201.0.1".into(),
            ns_ip: "10.201.0.2".into(),
            inner_veth: format!("vgn{}", id % 100_000),
        };
        let outer = format!("vgh{}", id % 100_000);
        ip(&["netns", "add", &ns.name])?;
        // From here on, a failure still deletes the namespace (and the veth with it) on drop.
        let steps: [&[&str]; 6] = [
            &[
                "link",
                "add",
                &outer,
                "type",
                "veth",
                "peer",
                "name",
                &ns.inner_veth,
                "netns",
                &ns.name,
            ],
            &["addr", "add", "10.201.0.1/30", "dev", &outer],
            &["link", "set", &outer, "up"],
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                "10.201.0.2/30",
                "dev",
                &ns.inner_veth,
            ],
            &["-n", &ns.name, "link", "set", &ns.inner_veth, "up"],
            &["-n", &ns.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(step)?;
        }
        Ok(ns)
    }

    /// `program` to run inside `netns`, or on the host when `None`.
    pub fn command(netns: Option<&NetNs>, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match netns {
            Some(ns) => {
                // `ip netns exec` execs the program, so the child's pid is the program's own.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Cuts the namespace off: its side of the veth goes down, so nothing crosses either way.
    pub fn cut(&self) -> Result<()> {
        ip(&["-n", &self.name, "link", "set", &self.inner_veth, "down"])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A running `vigil-agent run`, its stderr log kept for assertions.
pub struct Agent {
    child: Child,
    log: Log,
}

impl Agent {
    /// Starts `vigil-agent --log-format json run <args>` (metrics off unless `args` say otherwise).
    pub fn run(args: &[&str]) -> Result<Self> {
        Self::run_in(None, args)
    }

    /// As [`Agent::run`], inside `netns` when given.
    pub fn run_in(netns: Option<&NetNs>, args: &[&str]) -> Result<Self> {
        let mut cmd = NetNs::command(netns, workspace_bin("vigil-agent")?);
        cmd.args(["--log-format", "json", "run"]);
        if !args.contains(&"--metrics-listen") {
            cmd.args(["--metrics-listen", "off"]);
        }
        let mut child = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting vigil-agent run")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let log = Log::capture(stderr, "vigil-agent");
        Ok(Self { child, log })
    }

    /// Starts the agent of node `node_id` of `datastore`, watching `server` (HOST:PORT) and
    /// reporting to `controller`, inside `netns` when given; `extra` flags follow.
    pub fn join(
        netns: Option<&NetNs>,
        controller: &Controller,
        datastore: &str,
        node_id: &str,
        server: &str,
        extra: &[&str],
    ) -> Result<Self> {
        let url = controller.url();
        let mut args = vec![
            "--server",
            server,
            "--controller",
            &url,
            "--datastore",
            datastore,
            "--node-id",
            node_id,
        ];
        args.extend_from_slice(extra);
        Self::run_in(netns, &args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str) -> Result<String> {
        self.log.wait_for(needle)
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.contains(needle)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = signal(self.child.id(), Signal::SIGTERM);
        let child = &mut self.child;
        if wait_until(Duration::from_secs(5), "vigil-agent to stop", || {
            child.try_wait().ok().flatten()
        })
        .is_err()
        {
            stop_child(child);
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
    data_dir: PathBuf,
    extra: Vec<String>,
    log: Log,
}

impl Controller {
    /// Starts a controller keeping its state in `data_dir`, with `extra` flags.
    pub fn start(data_dir: &std::path::Path, extra: &[&str]) -> Result<Self> {
        Self::start_at(data_dir, "127.0.0.1", extra)
    }

    /// As [`Controller::start`], with the gRPC port on `grpc_host` (the Sentinel port stays on
    /// 127.0.0.1).
    pub fn start_at(data_dir: &std::path::Path, grpc_host: &str, extra: &[&str]) -> Result<Self> {
        let mut c = Self {
            child: None,
            grpc_host: grpc_host.to_string(),
            grpc: free_port()?,
            sentinel: free_port()?,
            data_dir: data_dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: Log::default(),
        };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(workspace_bin("vigil-controller")?);
        cmd.args(["--log-format", "json"]);
        if !self.extra.iter().any(|a| a == "--metrics-listen") {
            cmd.args(["--metrics-listen", "off"]);
        }
        let mut child = cmd
            .args([
                "--grpc-listen",
                &format!("{}:{}", self.grpc_host, self.grpc),
            ])
            .args(["--sentinel-listen", &format!("127.0.0.1:{}", self.sentinel)])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting vigil-controller")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        self.log = Log::capture(stderr, "vigil-controller");
        self.child = Some(child);
        self.wait_log("vigil-controller running")?;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.grpc_host, self.grpc)
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

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str) -> Result<String> {
        self.log.wait_for(needle)
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.contains(needle)
    }

    /// The primary's port as the Sentinel endpoint reports it for `datastore`.
    pub fn sentinel_primary(&self, datastore: &str) -> Result<Option<u16>> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.sentinel))?;
        let mut c = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(datastore)
            .query(&mut c)?;
        Ok(addr.and_then(|(_, port)| port.parse().ok()))
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
        let out = Command::new(workspace_bin("vigil")?)
            .args(["--controller", &self.url(), "status", datastore, "--json"])
            .output()?;
        if !out.status.success() {
            bail!(
                "vigil status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let all: Value = serde_json::from_slice(&out.stdout)?;
        Ok(all[0].clone())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

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

    /// Index of the current primary, as the controller publishes it.
    pub fn primary(&self) -> Result<usize> {
        let port = self
            .controller
            .sentinel_primary(&self.name)?
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
}

impl Agent {
    /// Every log line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines()
    }
}

impl Controller {
    /// Every log line since the last start.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines()
    }
}
