//! `vigil-agent run` as an ordinary user (uid 65534) holding only the capabilities it needs,
//! set with util-linux `setpriv`: it still sees a stopped server and still fences it, and
//! without one of them it stops at start with one line naming what is missing. Needs root (to
//! hand the capabilities over).
#[allow(dead_code)] // the suites share the stub controller; this one needs only part of it
mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result};
use common::{StubController, assert_unserved};
use nix::sys::signal::Signal;
use vigil_proto::v1::{self, command::Action};
use vigil_tests::{
    AGENT_CAPABILITIES, Agent, PinnedFence, RedisServer, output_within, require_root, serial,
    workspace_bin,
};

const DS: &str = "store";
/// The unprivileged user the agent runs as (nobody).
const UID: u32 = 65534;
/// What the agent's README tells operators to grant.
const NEEDED: &[&str] = AGENT_CAPABILITIES;

/// `setpriv` arguments that exec a program as [`UID`] with exactly `caps` (and no others, not
/// even in the bounding set).
fn setpriv(caps: &[&str]) -> Vec<String> {
    let list: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
    let set = format!("-all,{}", list.join(","));
    vec![
        "setpriv".into(),
        format!("--reuid={UID}"),
        format!("--regid={UID}"),
        "--clear-groups".into(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set={set}"),
        "--".into(),
    ]
}

/// A copy of the agent binary that the unprivileged user may execute wherever the workspace is
/// (a checkout under /root is out of its reach).
struct AgentCopy {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl AgentCopy {
    fn new() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("vigil-agent-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let path = dir.path().join("vigil-agent");
        std::fs::copy(workspace_bin("vigil-agent")?, &path).context("copying vigil-agent")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self { _dir: dir, path })
    }
}

/// `<bpffs>/vigil/fence` given to [`UID`] for the test, as an operator does for the agent's user
/// (the README's `install -d -o`), and given back to root after.
struct FenceDirOwned {
    dir: PathBuf,
}

impl FenceDirOwned {
    fn new() -> Result<Self> {
        let dir = PinnedFence::of_port(1)?
            .dir
            .parent()
            .map(Path::to_path_buf)
            .context("the fence directory has no parent")?;
        std::fs::create_dir_all(&dir)?;
        nix::unistd::chown(&dir, Some(UID.into()), Some(UID.into()))?;
        Ok(Self { dir })
    }
}

impl Drop for FenceDirOwned {
    fn drop(&mut self) {
        let _ = nix::unistd::chown(&self.dir, Some(0.into()), Some(0.into()));
    }
}

fn health(v: &v1::Verdict) -> v1::Health {
    v1::Health::try_from(v.health).unwrap_or(v1::Health::Unspecified)
}

/// A field of /proc/`pid`/status (`Uid`, `CapEff`).
fn status_field(pid: u32, field: &str) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .context(format!("no {field} in /proc/{pid}/status"))
}

#[test]
fn an_agent_with_only_its_capabilities_reports_a_stopped_server_and_fences_it() -> Result<()> {
    require_root();
    let _serial = serial();
    let copy = AgentCopy::new()?;
    let _owned = FenceDirOwned::new()?;
    let primary = RedisServer::start()?;
    let mut ctl = StubController::start()?;
    let server = format!("127.0.0.1:{}", primary.port);
    let url = ctl.url();
    let wrapper = setpriv(NEEDED);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let agent = Agent::run_wrapped(
        &wrapper,
        &copy.path,
        &[
            "--server",
            &server,
            "--controller",
            &url,
            "--datastore",
            DS,
            "--node-id",
            "p",
        ],
    )?;
    ctl.wait_verdict("p", "a healthy primary", |v| {
        health(v) == v1::Health::Healthy && v.role() == v1::Role::Primary
    })?;
    // The agent (setpriv execs it: same pid) runs as the user, with the five capabilities alone:
    // CAP_DAC_READ_SEARCH 2, CAP_NET_ADMIN 12, CAP_SYS_PTRACE 19, CAP_PERFMON 38, CAP_BPF 39.
    let uids = status_field(agent.pid(), "Uid")?;
    assert!(
        uids.split_whitespace().all(|u| u == UID.to_string()),
        "{uids}"
    );
    let effective = u64::from_str_radix(&status_field(agent.pid(), "CapEff")?, 16)?;
    let want = [2, 12, 19, 38, 39].iter().fold(0u64, |m, b| m | 1 << b);
    assert_eq!(effective, want, "CapEff {effective:#x}");

    // The kernel view works: SIGSTOP is UNHEALTHY (stopped), SIGCONT HEALTHY again.
    primary.signal(Signal::SIGSTOP)?;
    let v = ctl.wait_verdict("p", "UNHEALTHY", |v| health(v) == v1::Health::Unhealthy)?;
    assert_ne!(v.reasons & (1 << 3), 0, "not stopped: {v:?}");
    primary.signal(Signal::SIGCONT)?;
    ctl.wait_verdict("p", "HEALTHY after SIGCONT", |v| {
        health(v) == v1::Health::Healthy
    })?;

    // The fence works: up (pinned, clients get no answer), then lifted.
    ctl.command(
        "p",
        1,
        1,
        Some(Action::Fence(v1::Fence {
            keep_replicas: false,
        })),
    )?;
    let ack = ctl.wait_ack("p", 1)?;
    assert!(ack.ok && ack.fenced, "{ack:?}");
    // Held to the end: dropping it would take the fence down.
    let pin = PinnedFence::of_port(primary.port)?;
    assert!(pin.is_up());
    assert_unserved(server.parse()?, &["PING"], "a fenced server");
    ctl.command("p", 2, 1, Some(Action::Unfence(v1::Unfence {})))?;
    let ack = ctl.wait_ack("p", 2)?;
    assert!(ack.ok && !ack.fenced, "{ack:?}");
    assert!(!pin.is_up());
    assert_eq!(
        redis::cmd("PING").query::<String>(&mut primary.connect()?)?,
        "PONG"
    );
    drop(agent);
    Ok(())
}

#[test]
fn an_agent_missing_a_capability_exits_with_one_line_naming_it() -> Result<()> {
    require_root();
    let _serial = serial();
    let copy = AgentCopy::new()?;
    let _owned = FenceDirOwned::new()?;
    let primary = RedisServer::start()?;
    let server = format!("127.0.0.1:{}", primary.port);
    for missing in ["perfmon", "net_admin"] {
        let caps: Vec<&str> = NEEDED.iter().copied().filter(|c| *c != missing).collect();
        let wrapper = setpriv(&caps);
        let mut cmd = Command::new(&wrapper[0]);
        cmd.args(&wrapper[1..]).arg(&copy.path).args([
            "run",
            "--server",
            &server,
            "--controller",
            "http://127.0.0.1:1",
            "--datastore",
            DS,
            "--node-id",
            "p",
            "--metrics-listen",
            "off",
        ]);
        let out = output_within(&mut cmd, Duration::from_secs(20))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "without {missing}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        let name = format!("CAP_{}", missing.to_uppercase());
        assert_eq!(lines.len(), 1, "without {missing}: {stderr}");
        assert!(
            lines[0].contains(&format!("missing capabilities {name} (")),
            "{stderr}"
        );
    }
    Ok(())
}
