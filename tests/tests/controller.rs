//! The controller end to end: three real redis-server processes (a primary and two replicas),
//! three real agents with their eBPF probes, and the real controller, all on 127.0.0.1. Faults
//! are injected and the outcome is asserted: who is primary, who replicates from whom, what the
//! Sentinel endpoint and `vigil status` say. Never how fast. Needs root.
use std::{path::Path, process::Command, time::Duration};

use anyhow::{Result, bail};
use nix::sys::signal::Signal;
use vigil_tests::{
    Agent, Controller, PinnedFence, RedisServer, WAIT, free_port, require_root, serial, signal,
    wait_until,
};

const DS: &str = "cache";

struct Store {
    servers: Vec<Option<RedisServer>>,
    agents: Vec<Option<Agent>>,
    ports: Vec<u16>,
}

fn node(i: usize) -> String {
    format!("n{i}")
}

fn start_agent(controller: &Controller, port: u16, i: usize) -> Result<Agent> {
    let server = format!("127.0.0.1:{port}");
    Agent::join(None, controller, DS, &node(i), &server, &[])
}

/// n0 primary, n1 and n2 its replicas, linked up, with an agent each, all healthy at the controller.
fn store(controller: &Controller) -> Result<Store> {
    let primary = RedisServer::start()?;
    let p = primary.port.to_string();
    let r1 = RedisServer::start_with(free_port()?, &["--replicaof", "127.0.0.1", &p])?;
    let r2 = RedisServer::start_with(free_port()?, &["--replicaof", "127.0.0.1", &p])?;
    let ports = vec![primary.port, r1.port, r2.port];
    let mut agents = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        agents.push(Some(start_agent(controller, *port, i)?));
    }
    let s = Store {
        servers: vec![Some(primary), Some(r1), Some(r2)],
        agents,
        ports,
    };
    controller.wait_store_healthy(DS, 3, Some("n0"))?;
    Ok(s)
}

fn role(port: u16) -> Result<(String, Option<u16>)> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut c = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c)?;
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    Ok((
        field("role:").unwrap_or_default(),
        field("master_port:").and_then(|p| p.parse().ok()),
    ))
}

fn data_dir() -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("vigil-ctl-").tempdir()?)
}

fn controller(dir: &Path) -> Result<Controller> {
    Controller::start(
        dir,
        &["--grace-ms", "300", "--min-failover-interval-ms", "1000"],
    )
}

#[test]
fn kill_9_of_the_primary_promotes_a_replica_and_the_old_primary_rejoins_as_its_replica()
-> Result<()> {
    require_root();
    let _serial = serial();
    let dir = data_dir()?;
    let ctl = controller(dir.path())?;
    let mut s = store(&ctl)?;
    assert_eq!(ctl.sentinel_primary(DS)?, Some(s.ports[0]));
    if let Some(p) = s.servers[0].as_mut() {
        p.signal(Signal::SIGKILL)?;
        p.wait_exit()?;
    }
    let new = ctl.wait_primary_moved(DS, s.ports[0])?;
    assert!(
        new == s.ports[1] || new == s.ports[2],
        "{new} is not a former replica"
    );
    assert_eq!(role(new)?.0, "master");
    let other = if new == s.ports[1] {
        s.ports[2]
    } else {
        s.ports[1]
    };
    wait_until(WAIT, "the other replica to follow the new primary", || {
        (role(other).ok()? == ("slave".into(), Some(new))).then_some(())
    })?;
    ctl.log.wait_for("failover_finished")?;
    // The old primary comes back on its port as a lone primary: it is demoted.
    s.servers[0] = Some(RedisServer::start_on(s.ports[0])?);
    wait_until(
        WAIT,
        "the old primary to replicate from the new one",
        || (role(s.ports[0]).ok()? == ("slave".into(), Some(new))).then_some(()),
    )?;
    let st = ctl.status(DS)?;
    assert_eq!(st["epoch"], 2, "{st}");
    let promoted = if new == s.ports[1] { "n1" } else { "n2" };
    assert_eq!(st["primary"], promoted, "{st}");
    Ok(())
}

/// Longer than any test: desired state is sent again this seldom, so what an agent learns within
/// a test it learns from the desired state sent when something changed, or from a lease grant.
const NO_REFRESH_MS: &str = "600000";

fn controller_without_refresh(dir: &Path) -> Result<Controller> {
    Controller::start(
        dir,
        &[
            "--grace-ms",
            "300",
            "--min-failover-interval-ms",
            "1000",
            "--desired-refresh-ms",
            NO_REFRESH_MS,
        ],
    )
}

/// A node as `vigil status` shows it.
#[derive(Clone, Debug)]
struct Shown {
    node: String,
    health: String,
    role: String,
    reasons: Vec<String>,
}

/// Each node as `vigil status` shows it.
fn nodes(ctl: &Controller) -> Option<Vec<Shown>> {
    let st = ctl.status(DS).ok()?;
    let nodes = st["nodes"].as_array()?;
    Some(
        nodes
            .iter()
            .map(|n| {
                let text = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                let reasons = n["reasons"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                Shown {
                    node: text("node"),
                    health: text("health"),
                    role: text("role"),
                    reasons,
                }
            })
            .collect(),
    )
}

/// Desired state travels when it changes, not with the refresh: with the refresh set past the
/// end of the test, both surviving agents still learn the new roles right after the failover.
/// Until they do, the replica left would report that it follows the wrong primary (the agent
/// compares its server's primary with the one the controller named) and the promoted one that
/// its role is not the one the controller expects.
#[test]
fn after_a_failover_every_agent_learns_the_new_primary_without_waiting_for_the_refresh()
-> Result<()> {
    require_root();
    let _serial = serial();
    let dir = data_dir()?;
    let ctl = controller_without_refresh(dir.path())?;
    let mut s = store(&ctl)?;
    if let Some(p) = s.servers[0].as_mut() {
        p.signal(Signal::SIGKILL)?;
        p.wait_exit()?;
    }
    let new = ctl.wait_primary_moved(DS, s.ports[0])?;
    let (promoted, other, other_port) = if new == s.ports[1] {
        ("n1", "n2", s.ports[2])
    } else {
        ("n2", "n1", s.ports[1])
    };
    ctl.log.wait_for("failover_finished")?;
    let (p, o) = wait_until(WAIT, "both survivors healthy in their new roles", || {
        let all = nodes(&ctl)?;
        let find = |id: &str| all.iter().find(|n| n.node == id).cloned();
        let (p, o) = (find(promoted)?, find(other)?);
        let well = |n: &Shown| n.health == "HEALTHY" && n.reasons.is_empty();
        (well(&p) && well(&o)).then_some((p, o))
    })?;
    assert_eq!(p.role, "primary", "{p:?}");
    assert_eq!(o.role, "replica", "{o:?}");
    assert_eq!(role(other_port)?, ("slave".into(), Some(new)));
    Ok(())
}

/// The primary's lease is renewed by the controller's lease grants alone (its desired state is
/// not sent again within the test): with both replicas' servers stopped it reaches no quorum,
/// and still serves while the controller renews its lease; once the controller stops, the lease
/// runs out and the primary fences itself.
#[test]
fn a_primary_without_a_quorum_serves_while_lease_grants_renew_its_lease() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = data_dir()?;
    let mut ctl = controller_without_refresh(dir.path())?;
    let s = store(&ctl)?;
    let primary_port = s.ports[0];
    let pin = PinnedFence::of_port(primary_port)?;
    let primary_agent = s.agents[0].as_ref().expect("the primary's agent");
    for r in [&s.servers[1], &s.servers[2]].into_iter().flatten() {
        r.signal(Signal::SIGSTOP)?;
    }
    // Several leases long: its agent has found both peers unreachable, and only renewals keep
    // its lease.
    std::thread::sleep(Duration::from_secs(3));
    let served = (|| -> Result<()> {
        let mut c = s.servers[0].as_ref().expect("the primary").connect()?;
        let _: () = redis::cmd("SET").arg("leased").arg("1").query(&mut c)?;
        Ok(())
    })();
    let fenced_early = primary_agent.log.contains("SELF-FENCING");
    // The controller stops renewing it: without a quorum, the primary fences itself.
    ctl.pause()?;
    let fenced = primary_agent.log.wait_for("SELF-FENCING");
    ctl.resume()?;
    for r in [&s.servers[1], &s.servers[2]].into_iter().flatten() {
        r.signal(Signal::SIGCONT)?;
    }
    assert!(
        !fenced_early,
        "fenced while the controller renewed its lease"
    );
    served?;
    fenced?;
    assert!(pin.is_up(), "the self-fence is not up");
    assert_eq!(ctl.status(DS)?["epoch"], 1, "no failover happened");
    Ok(())
}

#[test]
fn stopping_only_the_primarys_agent_is_no_failover() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = data_dir()?;
    let ctl = controller(dir.path())?;
    let s = store(&ctl)?;
    let agent = s.agents[0].as_ref().map(Agent::pid).unwrap_or(0);
    // The controller loses the primary's agent; the server keeps serving its replicas.
    signal(agent, Signal::SIGSTOP)?;
    ctl.log.wait_for("controller_partitioned")?;
    let st = ctl.status(DS)?;
    signal(agent, Signal::SIGCONT)?;
    assert_eq!(st["primary"], "n0", "{st}");
    assert_eq!(st["epoch"], 1, "{st}");
    assert_eq!(ctl.sentinel_primary(DS)?, Some(s.ports[0]));
    assert!(
        !ctl.log.contains("failover_started"),
        "the controller failed over a live primary"
    );
    assert_eq!(role(s.ports[0])?.0, "master");
    Ok(())
}

#[test]
fn a_controller_restart_causes_no_failover() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = data_dir()?;
    let mut ctl = controller(dir.path())?;
    let s = store(&ctl)?;
    ctl.restart()?;
    wait_until(WAIT, "every agent back", || {
        let st = ctl.status(DS).ok()?;
        st["nodes"]
            .as_array()?
            .iter()
            .all(|n| n["connected"] == true && n["health"] == "HEALTHY")
            .then_some(())
    })?;
    // Keep looking for a while after the grace period: the primary must not move.
    for _ in 0..20 {
        let st = ctl.status(DS)?;
        assert_eq!(
            (st["primary"].as_str(), st["epoch"].as_u64()),
            (Some("n0"), Some(1)),
            "{st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!ctl.log.contains("failover_started"));
    assert_eq!(ctl.sentinel_primary(DS)?, Some(s.ports[0]));
    Ok(())
}

#[test]
fn a_failover_interrupted_by_a_controller_crash_finishes_after_the_restart() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = data_dir()?;
    let mut ctl = controller(dir.path())?;
    let mut s = store(&ctl)?;
    // The controller dies right after step 1 of a failover: it persisted epoch 2 with the
    // failover in flight (as it does before any command), and nothing else happened.
    ctl.kill();
    if let Some(p) = s.servers[0].as_mut() {
        p.signal(Signal::SIGKILL)?;
        p.wait_exit()?;
    }
    let path = dir.path().join(format!("{DS}.json"));
    let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    state["epoch"] = 2.into();
    state["in_flight"] = serde_json::json!({"epoch": 2, "from": "n0", "to": "n2", "cause": "down", "started_unix_ms": 1});
    std::fs::write(&path, serde_json::to_vec(&state)?)?;
    ctl.restart()?;
    ctl.log.wait_for("failover_resumed")?;
    wait_until(WAIT, "the interrupted failover to finish", || {
        (ctl.sentinel_primary(DS).ok().flatten()? == s.ports[2]).then_some(())
    })?;
    assert_eq!(role(s.ports[2])?.0, "master");
    wait_until(WAIT, "n1 to follow n2", || {
        (role(s.ports[1]).ok()? == ("slave".into(), Some(s.ports[2]))).then_some(())
    })?;
    // The endpoint names n2 once it is promoted; the state is saved when the failover finishes.
    ctl.log.wait_for("failover_finished")?;
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    assert_eq!(saved["primary"], "n2");
    assert!(saved["in_flight"].is_null(), "{saved}");
    assert_eq!(saved["history"][0]["to"], "n2");
    Ok(())
}

fn redis_py(sentinel: u16, script: &str) -> Result<String> {
    let out = Command::new("python3")
        .args(["-c", script, &sentinel.to_string(), DS])
        .output()?;
    if !out.status.success() {
        bail!("redis-py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

const PY_WRITE: &str = r#"
import sys
from redis.sentinel import Sentinel
s = Sentinel([("127.0.0.1", int(sys.argv[1]))], socket_timeout=2)
m = s.master_for(sys.argv[2], socket_timeout=2)
m.set("vigil-key", "from-python")
print(m.get("vigil-key").decode(), s.discover_master(sys.argv[2])[1])
"#;

#[test]
fn sentinel_clients_redis_py_and_redis_rs_follow_a_failover() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = data_dir()?;
    let ctl = controller(dir.path())?;
    let mut s = store(&ctl)?;
    let before = redis_py(ctl.sentinel, PY_WRITE)?;
    assert_eq!(before, format!("from-python {}", s.ports[0]));
    if let Some(p) = s.servers[0].as_mut() {
        p.signal(Signal::SIGKILL)?;
        p.wait_exit()?;
    }
    let new = ctl.wait_primary_moved(DS, s.ports[0])?;
    // redis-py, pointed only at vigil, writes to the new primary.
    let after = redis_py(ctl.sentinel, PY_WRITE)?;
    assert_eq!(after, format!("from-python {new}"));
    // redis-rs' sentinel client does too, and the node it reaches says it is the master.
    let mut sentinel = redis::sentinel::SentinelClient::build(
        vec![format!("redis://127.0.0.1:{}/", ctl.sentinel)],
        DS.to_string(),
        None,
        redis::sentinel::SentinelServerType::Master,
    )?;
    let mut conn = sentinel.get_connection()?;
    let _: () = redis::cmd("SET")
        .arg("vigil-key")
        .arg("from-rust")
        .query(&mut conn)?;
    let info: String = redis::cmd("INFO").arg("replication").query(&mut conn)?;
    assert!(info.contains("role:master"), "{info}");
    let mut direct = redis::Client::open(format!("redis://127.0.0.1:{new}/"))?.get_connection()?;
    let got: String = redis::cmd("GET").arg("vigil-key").query(&mut direct)?;
    assert_eq!(got, "from-rust");
    Ok(())
}

#[test]
fn vigil_status_and_a_planned_switchover() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = data_dir()?;
    let ctl = controller(dir.path())?;
    let s = store(&ctl)?;
    let table = Command::new(vigil_tests::workspace_bin("vigil")?)
        .args(["--controller", &ctl.url(), "status"])
        .output()?;
    let text = String::from_utf8_lossy(&table.stdout);
    for word in [
        "cache",
        "epoch 1",
        "primary n0",
        "n1",
        "n2",
        "HEALTHY",
        "replica",
    ] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
    let out = Command::new(vigil_tests::workspace_bin("vigil")?)
        .args(["--controller", &ctl.url(), "failover", DS, "--to", "n1"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("primary is now n1"));
    assert_eq!(role(s.ports[1])?.0, "master");
    wait_until(WAIT, "the old primary to follow n1", || {
        (role(s.ports[0]).ok()? == ("slave".into(), Some(s.ports[1]))).then_some(())
    })?;
    assert_eq!(ctl.sentinel_primary(DS)?, Some(s.ports[1]));
    Ok(())
}

#[test]
fn garbage_on_the_sentinel_port_closes_that_client_only_and_metrics_are_served() -> Result<()> {
    use std::io::{Read, Write};
    require_root();
    let _serial = serial();
    let dir = data_dir()?;
    let metrics = free_port()?;
    let listen = format!("127.0.0.1:{metrics}");
    let ctl = Controller::start(
        dir.path(),
        &["--grace-ms", "300", "--metrics-listen", &listen],
    )?;
    let s = store(&ctl)?;
    for garbage in [
        &b"*99999999\r\n"[..],
        b"*1\r\n$2000000\r\n",
        b"*1\r\n:5\r\n",
        b"\x00\xff\xfe*-3\r\n",
    ] {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", ctl.sentinel))?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(garbage)?;
        let mut reply = Vec::new();
        // The endpoint answers with an error and closes: read to the end.
        c.read_to_end(&mut reply)?;
        assert!(
            reply.starts_with(b"-ERR"),
            "{garbage:?} got {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    // A half-sent frame followed by a hang-up is no trouble either; the endpoint still serves.
    std::net::TcpStream::connect(("127.0.0.1", ctl.sentinel))?
        .write_all(b"*2\r\n$8\r\nSENTINEL\r\n$3")?;
    assert_eq!(ctl.sentinel_primary(DS)?, Some(s.ports[0]));
    let mut unknown =
        redis::Client::open(format!("redis://127.0.0.1:{}/", ctl.sentinel))?.get_connection()?;
    let err = redis::cmd("FLUSHALL")
        .query::<()>(&mut unknown)
        .unwrap_err();
    assert!(err.to_string().contains("unknown command"), "{err}");
    let body = wait_until(WAIT, "the metrics page", || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", metrics)).ok()?;
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        c.read_to_string(&mut body).ok()?;
        Some(body)
    })?;
    for m in [
        "vigil_controller_connected_agents 3",
        "vigil_controller_node_health{",
        "vigil_controller_decision_latency_seconds",
    ] {
        assert!(body.contains(m), "{m} missing from {body}");
    }
    Ok(())
}

#[test]
fn a_second_controller_on_the_same_data_dir_stops_at_start_naming_it() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    require_root();
    let _serial = serial();
    let dir = data_dir()?;
    let first = controller(dir.path())?;
    let mode = |p: &Path| -> Result<u32> { Ok(std::fs::metadata(p)?.permissions().mode() & 0o777) };
    assert_eq!(mode(dir.path())?, 0o700);
    assert_eq!(mode(&dir.path().join("lock"))?, 0o600);
    let second = controller(dir.path()).err().map(|e| format!("{e:#}"));
    let shown = dir.path().display().to_string();
    assert!(
        second.as_deref().is_some_and(
            |e| e.contains("is in use by another vigil-controller") && e.contains(&shown)
        ),
        "{second:?}"
    );
    // The first is untouched and, once it has stopped, the folder is free again.
    assert!(first.is_live());
    drop(first);
    controller(dir.path())?;
    Ok(())
}
