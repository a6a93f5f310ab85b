//! `cargo xtask demo --ha`: controller high availability. A three-member etcd, three controllers
//! on it (one leads), a primary and two replicas of redis-server with an agent beside each given
//! every controller, all on 127.0.0.1. It kills the leading controller with kill -9 and shows the
//! new leader, starts the killed one again as a follower, then kills the primary and prints the
//! timeline of what followed (the kernel event, the verdict, the new leader's decision and
//! promotion, the first write a Sentinel-mode client got accepted through a controller that never
//! led). Everything started is stopped at the end, and on Ctrl-C.
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use vigil_tests::{HaStore, Leadership, WAIT, wait_until};

use crate::{
    bench::controller_ha::{check_controller_has_etcd, next_leader},
    demo::{
        agent_timeline, catch_interrupt, controller_timeline, heading, interrupted, monotonic_ns,
        step,
    },
};

const NAME: &str = "demo";

/// `vigil status` as the controller that leads prints it.
fn status(store: &HaStore) -> Result<()> {
    let leader = store.leader()?;
    let out = vigil_tests::output_within(
        store.controller(leader)?.vigil()?.arg("status"),
        Duration::from_secs(10),
    )?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

fn name(store: &HaStore, i: usize) -> String {
    store
        .controller(i)
        .ok()
        .and_then(|c| c.name().map(str::to_string))
        .unwrap_or_else(|| format!("c{i}"))
}

pub fn run() -> Result<()> {
    crate::setup::run(false)?;
    crate::stage::run(
        &heading("building vigil (release)"),
        crate::cargo().args(["build", "--release", "--bins"]),
    )?;
    vigil_tests::use_bin_dir(crate::root().join("target/release"));
    vigil_tests::quiet();
    check_controller_has_etcd()?;
    catch_interrupt()?;

    step(
        "starting etcd (3 members), 3 controllers on it, a primary and two replicas (redis-server) with an agent beside each",
    );
    let mut store = HaStore::start_tls(NAME, &["--grace-ms", "300"], &[])?;
    if let Some(certs) = &store.certs {
        println!(
            "certificates (vigil certs, every gRPC link on mutual TLS): {}",
            certs.dir().display()
        );
    }
    println!("etcd: {}", store.trio.etcd.client_urls());
    for (i, c) in store.trio.controllers.iter().enumerate() {
        println!(
            "controller {}: gRPC {}, Sentinel-compatible endpoint 127.0.0.1:{}",
            name(&store, i),
            c.url(),
            c.sentinel
        );
    }
    let leader = store.leader()?;
    println!("{} leads", name(&store, leader));
    status(&store)?;
    if interrupted() {
        return Ok(());
    }

    step(&format!(
        "kill -9 of the leading controller {}",
        name(&store, leader)
    ));
    let kill_wall = SystemTime::now();
    store.trio.kill(leader)?;
    let handover = next_leader(&store, kill_wall)?;
    let next = store.leader()?;
    println!(
        "  {:>8.1} ms  {} leads (its \"leading\" log line); the agents follow it",
        handover.as_secs_f64() * 1000.0,
        name(&store, next)
    );
    store.wait_healthy()?;
    status(&store)?;
    step(&format!(
        "starting {} again: it follows {}",
        name(&store, leader),
        name(&store, next)
    ));
    store.trio.restart(leader)?;
    let back = store.controller(leader)?;
    wait_until(WAIT, "the restarted controller to follow", || {
        (back.leadership() == Some(Leadership::Following)).then_some(())
    })?;
    if interrupted() {
        return Ok(());
    }

    let primary = store.primary()?;
    let old_port = store.ports[primary];
    // Clients ask a controller other than the leader: every controller serves the endpoint.
    let Some(&asked) = store.trio.live().iter().find(|&&i| i != next) else {
        anyhow::bail!("no follower to ask");
    };
    step(&format!(
        "kill -9 of the primary n{primary} (127.0.0.1:{old_port}); clients ask {}'s Sentinel endpoint",
        name(&store, asked)
    ));
    let sentinel = store.controller(asked)?.sentinel;
    let fault_wall = SystemTime::now();
    let fault_mono = monotonic_ns();
    let fault = Instant::now();
    store.kill_server(primary)?;
    let first_write = crate::bench::failover::first_write_of(NAME, sentinel, old_port, fault);
    if interrupted() {
        return Ok(());
    }
    store.controller(next)?.log.wait_for("failover_finished")?;

    step("timeline, from the primary's kill");
    agent_timeline(
        &store.agents[primary].log.lines(),
        old_port,
        fault_wall,
        fault_mono,
    );
    controller_timeline(
        &store.controller(next)?.log.lines(),
        fault_wall,
        "the leader",
        "new primary in etcd",
        &format!(", by {}", name(&store, next)),
    );
    match first_write {
        Ok(d) => println!(
            "  {:>8.1} ms  first write accepted on the new primary, found through {}'s Sentinel endpoint",
            d.as_secs_f64() * 1000.0,
            name(&store, asked)
        ),
        Err(e) => println!("  no write was accepted on a new primary: {e:#}"),
    }
    status(&store)?;

    step(&format!(
        "starting the old primary again on 127.0.0.1:{old_port}: the leader demotes it to a replica"
    ));
    store.restart_server(primary)?;
    store.wait_healthy()?;
    status(&store)?;
    step("done: stopping everything this demo started");
    Ok(())
}
