//! `cargo xtask bench controller-ha`: three controllers on a three-member etcd run a primary and
//! two replicas of redis-server (an agent beside each), all on 127.0.0.1. Two measurements:
//! - handover: kill -9 of the leading controller in steady state, to the moment another
//!   controller logs that it leads (its log line's own timestamp, found by polling every 5 ms);
//!   the killed controller then starts again and follows;
//! - leader and primary killed together: kill -9 of both, to the first write accepted on the new
//!   primary by a client that finds it through a surviving controller's Sentinel endpoint, as
//!   the failover bench's client does.
//!
//! Prints p50/p90/p99/max from hdrhistogram and ends with one summary line.
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde_json::Value;
use vigil_tests::{Controller, HaStore, Leadership, WAIT, wait_until};

use super::{failover::first_write, histogram, sentinel::NAME};

/// The controllers' flags: the failover bench's (a short grace, and no flap guard between
/// rounds, which follow each other within a second or two).
const CONTROLLER_ARGS: &[&str] = &["--grace-ms", "300", "--min-failover-interval-ms", "1"];

/// How often the handover is looked for: fine enough against a handover of about a second, and
/// the timestamp of the leader's own log line is what is recorded anyway.
const POLL: Duration = Duration::from_millis(5);

pub fn run(rounds: u32, kills: u32) -> Result<()> {
    vigil_tests::use_bin_dir(crate::root().join("target/release"));
    vigil_tests::quiet();
    check_controller_has_etcd()?;
    println!("==> starting etcd (3 members), 3 controllers, a primary and 2 replicas with agents");
    let mut store = HaStore::start(NAME, CONTROLLER_ARGS, &[])?;

    println!("==> handover: kill -9 of the leading controller, {rounds} rounds");
    let mut handover = histogram()?;
    for round in 0..rounds {
        store.wait_healthy()?;
        let old = store.leader()?;
        let wall = SystemTime::now();
        store.trio.kill(old)?;
        let took = next_leader(&store, wall)?;
        handover.record(ns(took))?;
        // Back as a follower, and every agent back with the leader, before the next round.
        store.trio.restart(old)?;
        let back = store.controller(old)?;
        wait_until(WAIT, "the restarted controller to follow", || {
            (back.leadership() == Some(Leadership::Following)).then_some(())
        })?;
        eprint!("\r  handover round {}/{rounds}   ", round + 1);
    }
    eprintln!();

    println!(
        "==> kill -9 of the leading controller and the primary together, {kills} rounds: to the first write on the new primary"
    );
    let mut write = histogram()?;
    let mut missed = 0;
    for round in 0..kills {
        store.wait_healthy()?;
        let leader = store.leader()?;
        let primary = store.primary()?;
        let old_port = store.ports[primary];
        let Some(&survivor) = store.trio.live().iter().find(|&&i| i != leader) else {
            bail!("no controller survives the leader");
        };
        let sentinel = store.controller(survivor)?.sentinel;
        let start = Instant::now();
        store.trio.kill(leader)?;
        store.kill_server(primary)?;
        match first_write(sentinel, old_port, start) {
            Ok(t) => write.record(ns(t))?,
            Err(e) => {
                eprintln!("\n  round {}: missed: {e:#}", round + 1);
                missed += 1;
            }
        }
        store.trio.restart(leader)?;
        store.restart_server(primary)?;
        eprint!("\r  leader+primary round {}/{kills}   ", round + 1);
    }
    eprintln!();

    println!();
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "ms", "p50", "p90", "p99", "max", "n"
    );
    row("handover (leader killed)", &handover);
    row("leader+primary killed -> write", &write);
    if missed > 0 {
        println!("leader+primary rounds with no write within the wait: {missed}/{kills}");
    }
    println!(
        "controller-ha: handover p50={:.1}ms p99={:.1}ms; leader+primary kill -> write p50={:.1}ms p99={:.1}ms",
        ms(&handover, 0.5),
        ms(&handover, 0.99),
        ms(&write, 0.5),
        ms(&write, 0.99),
    );
    Ok(())
}

/// Waits (bounded, polling every [`POLL`]) until a live controller logs that it leads after
/// `since`, and returns how long after `since` it logged it.
pub(crate) fn next_leader(store: &HaStore, since: SystemTime) -> Result<Duration> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        for i in store.trio.live() {
            if let Some(at) = leading_since(store.controller(i)?, since) {
                return Ok(at.duration_since(since).unwrap_or_default());
            }
        }
        std::thread::sleep(POLL);
    }
    bail!("no controller led within {WAIT:?} of the leader's kill")
}

/// When `controller` last logged `"event":"leading"`, if that was after `since` and it still
/// leads; the time it saw it when the line has no timestamp.
fn leading_since(controller: &Controller, since: SystemTime) -> Option<SystemTime> {
    if !controller.leading() {
        return None;
    }
    let line = controller
        .log
        .lines()
        .into_iter()
        .rev()
        .find(|l| Leadership::of_line(l) == Some(Leadership::Leading))?;
    let at = serde_json::from_str::<Value>(&line)
        .ok()
        .and_then(|v| humantime::parse_rfc3339(v["timestamp"].as_str()?).ok())
        .unwrap_or_else(SystemTime::now);
    (at >= since).then_some(at)
}

fn ns(d: Duration) -> u64 {
    (d.as_nanos() as u64).max(1)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e6
}

fn row(what: &str, h: &Histogram<u64>) {
    if h.is_empty() {
        println!("{what:<34} {:>8}", "-");
        return;
    }
    println!(
        "{what:<34} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8}",
        ms(h, 0.5),
        ms(h, 0.9),
        ms(h, 0.99),
        h.max() as f64 / 1e6,
        h.len()
    );
}

/// Fails with a clear message unless `vigil-controller` takes `--etcd` (a build from before
/// controller high availability would otherwise fail later, on a flag it does not know).
pub(crate) fn check_controller_has_etcd() -> Result<()> {
    let bin = vigil_tests::workspace_bin("vigil-controller")?;
    let out = vigil_tests::output_within(
        std::process::Command::new(&bin).arg("--help"),
        Duration::from_secs(10),
    )
    .with_context(|| format!("running {} --help", bin.display()))?;
    if !String::from_utf8_lossy(&out.stdout).contains("--etcd") {
        bail!(
            "{} has no --etcd flag: this build of the controller cannot run with etcd",
            bin.display()
        );
    }
    Ok(())
}
