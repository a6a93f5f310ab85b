//! The primary cut off from everyone. Its redis-server and agent run in a network namespace the
//! test makes, joined to the host by a veth pair; the replicas, their agents and the controller
//! stay on the host. Cutting the veth isolates the primary from the controller and from every
//! peer at once. Asserts the outcome, never how fast: a replica is promoted, the old primary
//! fences its own writes, and every write a replica acknowledged before the cut is kept. Needs
//! root.
use std::time::Duration;

use anyhow::{Result, anyhow};
use vigil_tests::{
    Agent, Controller, NetNs, RedisServer, WAIT, count_keys, free_port, require_root, serial,
    wait_until, write_keys,
};

const DS: &str = "cut";
const ACKED: usize = 20;
const ASYNC: usize = 200;

fn agent(
    netns: Option<&NetNs>,
    server: &RedisServer,
    controller: &Controller,
    id: &str,
) -> Result<Agent> {
    let local = format!("127.0.0.1:{}", server.port);
    let advertise = format!("{}:{}", server.host, server.port);
    Agent::join(
        netns,
        controller,
        DS,
        id,
        &local,
        &["--advertise", &advertise],
    )
}

#[test]
fn a_primary_cut_off_from_everyone_is_failed_over_and_fences_itself() -> Result<()> {
    require_root();
    let _serial = serial();
    // Dropped last: every process below is stopped before the namespace goes.
    let ns = NetNs::create()?;
    let dir = tempfile::Builder::new()
        .prefix("vigil-partition-")
        .tempdir()?;
    let controller = Controller::start_at(dir.path(), &ns.host_ip, &["--grace-ms", "300"])?;
    let primary = RedisServer::start_in(Some(&ns), &ns.ns_ip, free_port()?, &[])?;
    let p = primary.port.to_string();
    let replica = || {
        RedisServer::start_in(
            None,
            &ns.host_ip,
            free_port()?,
            &["--replicaof", &ns.ns_ip, &p],
        )
    };
    let replicas = [replica()?, replica()?];
    let agents = [
        agent(Some(&ns), &primary, &controller, "n0")?,
        agent(None, &replicas[0], &controller, "n1")?,
        agent(None, &replicas[1], &controller, "n2")?,
    ];
    controller.wait_store_healthy(DS, 3, Some("n0"))?;

    let mut c = primary.connect()?;
    write_keys(&mut c, "acked", ACKED, 2)?;
    // Writes nobody waited for, the last ones right before the cut: some may be lost, and the
    // suite reports how many.
    write_keys(&mut c, "async", ASYNC, 0)?;
    drop(c);
    ns.cut()?;

    let new_port = wait_until(WAIT, "a replica published as the primary", || {
        controller
            .sentinel_primary(DS)
            .ok()
            .flatten()
            .filter(|port| *port != primary.port)
    })?;
    let new_primary = replicas
        .iter()
        .find(|r| r.port == new_port)
        .ok_or_else(|| anyhow!("the published primary {new_port} is not one of the replicas"))?;
    assert!(
        controller.log.contains("failing over"),
        "the controller never logged the failover"
    );

    // The old primary, hearing neither the controller nor a quorum of peers, pauses its writes.
    agents[0].log.wait_for("SELF-FENCING")?;
    let write = NetNs::command(Some(&ns), "timeout")
        .args([
            "2",
            "redis-cli",
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "SET",
            "during-cut",
            "x",
        ])
        .output()?;
    assert_eq!(
        write.status.code(),
        Some(124),
        "a write to the fenced old primary completed: {}",
        String::from_utf8_lossy(&write.stdout)
    );

    assert_eq!(
        count_keys(&mut new_primary.connect()?, "acked", ACKED)?,
        ACKED,
        "acknowledged writes were lost"
    );
    let kept = count_keys(&mut new_primary.connect()?, "async", ASYNC)?;
    println!("partition: async writes lost: {} of {ASYNC}", ASYNC - kept);

    // The other replica follows the new primary.
    let other = replicas
        .iter()
        .find(|r| r.port != new_port)
        .ok_or_else(|| anyhow!("no other replica"))?;
    wait_until(WAIT, "the other replica to follow the new primary", || {
        let mut c = other.connect().ok()?;
        let info: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
        (info.contains(&format!("master_port:{new_port}"))
            && info.contains("master_link_status:up"))
        .then_some(())
    })?;
    drop(agents);
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}
