//! Fault injection over a real three-node data store run by vigil: real redis-server processes,
//! real agents with their eBPF probes, the real controller. Each scenario asserts its outcome
//! (who is primary, whether a failover happened, what was kept), never how fast. Needs root.
use std::{process::Command, time::Duration};

use anyhow::Result;
use nix::sys::signal::Signal;
use vigil_tests::{
    Agent, Controller, Fixture, RedisServer, VigilStore, WAIT, count_keys, free_port, require_root,
    serial, wait_until, write_keys,
};

const DS: &str = "store";

fn start(controller: &[&str]) -> Result<VigilStore> {
    let mut args = vec!["--grace-ms", "300"];
    args.extend_from_slice(controller);
    VigilStore::start(DS, 2, &args, &[])
}

/// Writes `n` keys to the primary, each acknowledged by a replica (WAIT 1).
fn acknowledged_writes(store: &VigilStore, n: usize) -> Result<()> {
    let mut c = store.server(store.primary()?)?.connect()?;
    write_keys(&mut c, "acked", n, 1)
}

fn keys_on(store: &VigilStore, i: usize, n: usize) -> Result<usize> {
    count_keys(&mut store.server(i)?.connect()?, "acked", n)
}

/// Writes `n` keys nobody waits for, the last right before the fault: asynchronous replication
/// may lose some, and the suite reports how many (never asserts: losing them is allowed).
fn async_writes(store: &VigilStore, n: usize) -> Result<()> {
    let mut c = store.server(store.primary()?)?.connect()?;
    write_keys(&mut c, "async", n, 0)
}

fn report_async_lost(scenario: &str, store: &VigilStore, new: usize, n: usize) -> Result<()> {
    let kept = count_keys(&mut store.server(new)?.connect()?, "async", n)?;
    println!("{scenario}: async writes lost: {} of {n}", n - kept);
    Ok(())
}

fn new_primary(store: &VigilStore, old: usize) -> Result<usize> {
    wait_until(WAIT, "a new primary", || {
        store.primary().ok().filter(|p| *p != old)
    })
}

#[test]
fn sigstop_of_the_primary_fails_over_and_it_rejoins_after_sigcont() -> Result<()> {
    require_root();
    let _serial = serial();
    let store = start(&[])?;
    acknowledged_writes(&store, 50)?;
    async_writes(&store, 200)?;
    let old = store.primary()?;
    store.server(old)?.signal(Signal::SIGSTOP)?;
    let new = new_primary(&store, old)?;
    assert_eq!(
        keys_on(&store, new, 50)?,
        50,
        "acknowledged writes were lost"
    );
    report_async_lost("sigstop", &store, new, 200)?;
    store.server(old)?.signal(Signal::SIGCONT)?;
    store.wait_healthy()?;
    assert_eq!(store.primary()?, new);
    Ok(())
}

#[test]
fn shutdown_of_the_primary_fails_over() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut store = start(&[])?;
    acknowledged_writes(&store, 50)?;
    async_writes(&store, 200)?;
    let old = store.primary()?;
    let mut c = store.server(old)?.connect()?;
    let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut c);
    if let Some(s) = store.servers[old].as_mut() {
        s.wait_exit()?;
    }
    let new = new_primary(&store, old)?;
    assert_eq!(
        keys_on(&store, new, 50)?,
        50,
        "acknowledged writes were lost"
    );
    report_async_lost("shutdown", &store, new, 200)?;
    store.restart(old)?;
    store.wait_healthy()?;
    Ok(())
}

#[test]
fn slow_commands_on_a_live_primary_cause_no_failover() -> Result<()> {
    require_root();
    let _serial = serial();
    let store = start(&[])?;
    let primary = store.primary()?;
    let lua = "local t=redis.call('TIME') local s=t[1]*1000000+t[2] \
               repeat t=redis.call('TIME') until t[1]*1000000+t[2]-s >= 500000 return 1";
    for cmd in [
        redis::cmd("EVAL").arg(lua).arg(0).clone(),
        redis::cmd("DEBUG").arg("SLEEP").arg("0.5").clone(),
    ] {
        let mut c = store.server(primary)?.connect()?;
        let _: redis::Value = cmd.query(&mut c)?;
    }
    // The verdicts after the commands are in before judging.
    store.wait_healthy()?;
    assert_eq!(
        store.primary()?,
        primary,
        "a slow command failed a live primary over"
    );
    assert_eq!(store.failovers_started(), 0);
    Ok(())
}

#[test]
fn a_killed_replica_is_an_alert_not_a_failover() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut store = start(&[])?;
    let primary = store.primary()?;
    let replica = (primary + 1) % 3;
    store.kill(replica)?;
    store.controller.log.wait_for("replica_down")?;
    assert_eq!(store.primary()?, primary);
    assert_eq!(store.failovers_started(), 0);
    store.restart(replica)?;
    store.wait_healthy()?;
    assert_eq!(store.primary()?, primary);
    Ok(())
}

#[test]
fn two_faults_in_a_row_the_flap_guard_holds() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut store = start(&["--min-failover-interval-ms", "600000"])?;
    let first = store.primary()?;
    store.kill(first)?;
    let second = new_primary(&store, first)?;
    store.controller.log.wait_for("failover_finished")?;
    store.kill(second)?;
    store.controller.log.wait_for("flap_guard")?;
    assert_eq!(
        store.failovers_started(),
        1,
        "the flap guard let a second failover through"
    );
    assert_eq!(store.primary()?, second);
    Ok(())
}

#[test]
fn a_primary_starved_of_cpu_is_degraded_not_failed_over() -> Result<()> {
    require_root();
    let _serial = serial();
    let store = start(&[])?;
    let primary = store.primary()?;
    let pid = store.server(primary)?.pid().to_string();
    // Pin the primary to CPU 0 and run a real-time busy loop there for 400 ms: the server is
    // runnable but does not run. (The agent runs at a higher real-time priority and still sees.)
    assert!(
        Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &pid])
            .output()?
            .status
            .success()
    );
    // `timeout` stays outside the real-time class, so it can always end the hog.
    let mut hog = Command::new("timeout")
        .args([
            "0.4",
            "chrt",
            "-f",
            "5",
            "taskset",
            "-c",
            "0",
            "sh",
            "-c",
            "while :; do :; done",
        ])
        .spawn()?;
    let mut c = store.server(primary)?.connect()?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let _: String = redis::cmd("PING").query(&mut c)?;
    let mut saw_degraded = false;
    let done = wait_until(WAIT, "the hog to finish", || {
        if let Ok(st) = store.controller.status(DS)
            && let Some(n) = st["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["role"] == "primary"))
            && n["health"] == "DEGRADED"
            && n["reasons"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "starved"))
        {
            saw_degraded = true;
        }
        hog.try_wait().ok().flatten()
    })?;
    assert!(done.success() || done.code() == Some(124), "{done:?}");
    store.wait_healthy()?;
    assert_eq!(
        store.primary()?,
        primary,
        "a starved primary was failed over"
    );
    assert_eq!(store.failovers_started(), 0);
    assert!(
        saw_degraded,
        "the controller never saw the primary DEGRADED (starved)"
    );
    Ok(())
}

#[test]
fn a_deadlocked_primary_is_failed_over_with_its_acknowledged_writes() -> Result<()> {
    require_root();
    let _serial = serial();
    // redis-server cannot be made to deadlock, so the fixture stands in for the primary: a proxy
    // in front of a real redis-server, whose one worker thread can be made to block on a mutex.
    let dir = tempfile::Builder::new()
        .prefix("vigil-deadlock-")
        .tempdir()?;
    let controller = Controller::start(dir.path(), &["--grace-ms", "300"])?;
    let backend = RedisServer::start()?;
    let front = free_port()?;
    let front_arg = front.to_string();
    let _fixture = Fixture::spawn(
        "vigil-deadlock-fixture",
        &[&front_arg, &backend.port.to_string()],
    )?;
    let front_url = format!("redis://127.0.0.1:{front}/");
    wait_until(WAIT, "the fixture to answer through its backend", || {
        let mut c = redis::Client::open(front_url.as_str())
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()
    })?;
    let replicas = [
        RedisServer::start_with(free_port()?, &["--replicaof", "127.0.0.1", &front_arg])?,
        RedisServer::start_with(free_port()?, &["--replicaof", "127.0.0.1", &front_arg])?,
    ];
    let ports = [front, replicas[0].port, replicas[1].port];
    let agents = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let server = format!("127.0.0.1:{port}");
            Agent::join(None, &controller, DS, &format!("n{i}"), &server, &[])
        })
        .collect::<Result<Vec<_>>>()?;
    controller.wait_store_healthy(DS, 3, Some("n0"))?;
    let mut c = redis::Client::open(front_url.as_str())?.get_connection()?;
    write_keys(&mut c, "acked", 20, 2)?;
    let ok: String = redis::cmd("DEADLOCK").query(&mut c)?;
    assert_eq!(ok, "OK");

    let new_port = controller.wait_primary_moved(DS, front)?;
    let new_primary = replicas
        .iter()
        .find(|r| r.port == new_port)
        .ok_or_else(|| anyhow::anyhow!("the published primary {new_port} is not a replica"))?;
    // The failover was for the deadlock: the old primary's agent named it in the verdict it
    // sent, and the controller failed it over as unhealthy. (Its verdict now, fenced and
    // demoted, says other things, so its log is what shows why.)
    let named = agents[0]
        .log
        .lines()
        .iter()
        .any(|l| l.contains("verdict changed") && l.contains("deadlock_suspected"));
    assert!(named, "n0's agent never reported deadlock_suspected");
    let started = controller.log.wait_for("\"failover_started\"")?;
    assert!(
        started.contains("\"cause\":\"unhealthy\""),
        "n0 was failed over for another cause: {started}"
    );
    assert_eq!(
        count_keys(&mut new_primary.connect()?, "acked", 20)?,
        20,
        "acknowledged writes were lost"
    );
    Ok(())
}
