//! systemd's notification protocol (`Type=notify`), from the real binaries: the test binds a
//! Unix datagram socket as systemd would, starts each daemon with NOTIFY_SOCKET naming it and a
//! watchdog in WATCHDOG_USEC, and reads what arrives: READY=1 once the daemon serves, then
//! WATCHDOG=1 again and again, and STOPPING=1 on SIGTERM. The agent watches a real redis-server
//! and reports to a real controller. Needs root (the agent loads eBPF programs).
use std::{
    os::unix::net::UnixDatagram,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use vigil_tests::{
    Agent, Controller, RedisServer, WAIT, free_port, http_get, require_root, serial, signal,
};

/// The watchdog timeout given to the daemons: they ping every half of it.
const WATCHDOG_USEC: &str = "1000000";

/// The service manager's end: a datagram socket in a folder of its own.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("vigil-notify-").tempdir()?;
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).context("binding the notify socket")?;
        Ok(Self {
            socket,
            path,
            _dir: dir,
        })
    }

    /// The environment a service manager gives a `Type=notify` service with a watchdog.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NOTIFY_SOCKET", self.path.display().to_string()),
            ("WATCHDOG_USEC", WATCHDOG_USEC.to_string()),
        ]
    }

    /// The next message's lines, waiting up to `limit`.
    fn next(&self, limit: Duration) -> Result<Vec<String>> {
        self.socket.set_read_timeout(Some(limit))?;
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .context("no notification arrived in time")?;
        Ok(String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Reads messages until one has `line`, for at most [`WAIT`]; returns every line read on the
    /// way, that one's included.
    fn until(&self, line: &str) -> Result<Vec<String>> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no {line} within {WAIT:?}; got {seen:?}");
            }
            let message = self.next(left)?;
            let found = message.iter().any(|l| l == line);
            seen.extend(message);
            if found {
                return Ok(seen);
            }
        }
    }
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// READY=1 and the watchdog pings after it, as systemd reads them: the lines before READY=1,
/// then two WATCHDOG=1 after it.
fn ready_then_two_watchdog_pings(socket: &NotifySocket) -> Result<Vec<String>> {
    let before = socket.until("READY=1")?;
    assert!(
        !before.iter().any(|l| l == "STOPPING=1"),
        "stopping before ready: {before:?}"
    );
    socket.until("WATCHDOG=1")?;
    socket.until("WATCHDOG=1")?;
    Ok(before)
}

#[test]
fn the_agent_says_ready_once_attached_then_pings_the_watchdog_from_its_loop() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let controller = Controller::start(dir.path(), &[])?;
    let server = RedisServer::start()?;
    let socket = NotifySocket::bind()?;
    let metrics = free_port()?;
    let server_addr = format!("127.0.0.1:{}", server.port);
    let listen = format!("127.0.0.1:{metrics}");
    let url = controller.url();
    let args = [
        "--server",
        &server_addr,
        "--controller",
        &url,
        "--datastore",
        "notify",
        "--node-id",
        "n0",
        "--metrics-listen",
        &listen,
    ];
    let env = socket.env();
    let agent = Agent::run_with_env(&args, &env_refs(&env))?;

    let ready = socket.until("READY=1")?;
    // Asked the moment READY=1 arrived: the programs were attached before it was sent.
    let (_, body) = http_get(metrics, "/readyz")?;
    assert!(
        body.contains("\"attached\":true"),
        "READY=1 before attaching: {body}"
    );
    assert!(
        ready
            .iter()
            .any(|l| l.starts_with("STATUS=") && l.contains("eBPF attached")),
        "READY=1 came without a status saying so: {ready:?}"
    );
    socket.until("WATCHDOG=1")?;
    socket.until("WATCHDOG=1")?;

    signal(agent.pid(), Signal::SIGTERM)?;
    socket.until("STOPPING=1")?;
    drop(agent);
    Ok(())
}

#[test]
fn the_controller_says_ready_once_serving_then_pings_the_watchdog() -> Result<()> {
    require_root();
    let dir = tempfile::tempdir()?;
    let socket = NotifySocket::bind()?;
    let env = socket.env();
    let controller = Controller::start_with_env(dir.path(), &[], &env_refs(&env))?;
    let before = ready_then_two_watchdog_pings(&socket)?;
    assert!(
        before.iter().any(|l| l == "STATUS=leading"),
        "a single controller leads once its state is loaded: {before:?}"
    );
    signal(
        controller.pid().context("the controller runs")?,
        Signal::SIGTERM,
    )?;
    socket.until("STOPPING=1")?;
    Ok(())
}
