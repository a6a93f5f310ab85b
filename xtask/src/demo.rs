//! `cargo xtask demo`: a data store of three real redis-servers (a primary and two replicas), an
//! agent beside each and the controller, on 127.0.0.1, every gRPC link on mutual TLS with
//! certificates from `vigil certs`. It shows the status table, kills the
//! primary with kill -9, and prints the timeline of what followed, each step with its offset
//! from the fault: the kernel event, the verdict, the controller's decision, the promotion, and
//! the first write a Sentinel-mode client got accepted on the new primary. Then the old primary
//! starts again and rejoins as a replica. Everything started is stopped at the end, and on Ctrl-C.
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use nix::sys::signal::{SigHandler, Signal, signal};
use serde_json::Value;
use vigil_tests::VigilStore;

use crate::kill_path;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes Ctrl-C set [`interrupted`], so a demo stops between steps and drops (stops) everything
/// it started.
pub(crate) fn catch_interrupt() -> Result<()> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { signal(Signal::SIGINT, SigHandler::Handler(on_interrupt)) }
        .context("installing the Ctrl-C handler")?;
    Ok(())
}

pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub(crate) fn step(text: &str) {
    println!("{}", heading(text));
}

/// A step's line: after a blank line, in bold.
pub(crate) fn heading(text: &str) -> String {
    format!("\n\x1b[1m==> {text}\x1b[0m")
}

pub(crate) fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

fn status(store: &VigilStore) -> Result<()> {
    let out = store.controller.vigil()?.arg("status").output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// Log lines of the JSON format tracing writes: (wall time, the whole line parsed).
pub(crate) fn entries(lines: &[String]) -> Vec<(SystemTime, Value)> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((humantime::parse_rfc3339(v["timestamp"].as_str()?).ok()?, v)))
        .collect()
}

/// The timeline's first lines, from the primary's agent's log: the fault (kill -9 of the
/// redis-server on `port` at `fault_wall`, `fault_mono`), when the kernel saw the process exit,
/// and when the agent reported DOWN.
pub(crate) fn agent_timeline(
    agent_log: &[String],
    port: u16,
    fault_wall: SystemTime,
    fault_mono: u64,
) {
    println!(
        "  {:>11}  fault: kill -9 sent to redis-server 127.0.0.1:{port}",
        "0.0 ms"
    );
    let agent = entries(agent_log);
    if let Some(kernel_ns) = agent.iter().find_map(|(_, v)| {
        let f = &v["fields"];
        (f["event"] == "exited").then(|| {
            serde_json::from_str::<Value>(f["detail"].as_str()?).ok()?["kernel_ns"].as_u64()
        })?
    }) {
        let d = kernel_ns.saturating_sub(fault_mono) as f64 / 1e6;
        println!("  {d:>8.1} ms  kernel: the agent saw the process exit (eBPF sched_process_exit)");
    }
    if let Some((t, _)) = agent.iter().find(|(t, v)| {
        *t >= fault_wall
            && v["fields"]["message"] == "verdict changed"
            && v["fields"]["health"] == "DOWN"
    }) {
        println!(
            "  {}  verdict: the agent reported DOWN",
            ms_since(fault_wall, *t)
        );
    }
}

/// The timeline's lines from the deciding controller's log (`lines`): when it chose the replica
/// to promote (`who` did), and when the failover finished (`published` says how the new primary
/// was made known); `by` follows the promoted node's name.
pub(crate) fn controller_timeline(
    lines: &[String],
    fault_wall: SystemTime,
    who: &str,
    published: &str,
    by: &str,
) {
    let log = entries(lines);
    for (event, label) in [
        (
            "failover_started",
            format!("decision: {who} chose the replica to promote"),
        ),
        (
            "failover_finished",
            format!("promotion: REPLICAOF NO ONE done, the other replica re-pointed, {published}"),
        ),
    ] {
        if let Some((t, v)) = log
            .iter()
            .find(|(t, v)| *t >= fault_wall && v["fields"]["event"] == event)
        {
            let to = v["fields"]["to"].as_str().unwrap_or("?");
            println!("  {}  {label} ({to}{by})", ms_since(fault_wall, *t));
        }
    }
}

pub(crate) fn ms_since(fault: SystemTime, at: SystemTime) -> String {
    match at.duration_since(fault) {
        Ok(d) => format!("{:>8.1} ms", d.as_secs_f64() * 1000.0),
        Err(_) => "   before".into(),
    }
}

pub fn run() -> Result<()> {
    crate::setup::run(false)?;
    crate::stage::run(
        &heading("building vigil (release)"),
        crate::cargo().args(["build", "--release", "--bins"]),
    )?;
    vigil_tests::use_bin_dir(crate::root().join("target/release"));
    vigil_tests::quiet();
    catch_interrupt()?;

    step(
        "making certificates (vigil certs), then starting a primary and two replicas (redis-server), an agent beside each, and the controller, on mutual TLS",
    );
    let mut store = VigilStore::start_tls("demo", 2, &["--grace-ms", "300"], &[])?;
    if let Some(certs) = &store.certs {
        println!(
            "certificates: {} (the CLI: vigil --controller {} --tls-ca ca.pem --tls-cert cli.pem --tls-key cli-key.pem status)",
            certs.dir().display(),
            store.controller.url()
        );
    }
    println!(
        "Sentinel-compatible endpoint: redis-cli -p {} SENTINEL get-master-addr-by-name demo",
        store.controller.sentinel
    );
    status(&store)?;
    if interrupted() {
        return Ok(());
    }

    let primary = store.primary()?;
    let old_port = store.ports[primary];
    step(&format!(
        "writing 100 keys to the primary (127.0.0.1:{old_port}), each acknowledged by a replica (WAIT 1)"
    ));
    let mut c = store.server(primary)?.connect()?;
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(i)
            .query(&mut c)?;
        let _: i64 = redis::cmd("WAIT").arg(1).arg(1000).query(&mut c)?;
    }

    let sizes: Vec<String> = (0..store.ports.len())
        .map(|i| {
            let n = store
                .server(i)
                .ok()
                .and_then(|s| s.connect().ok())
                .and_then(|mut c| redis::cmd("DBSIZE").query::<i64>(&mut c).ok());
            format!("n{i}: {}", n.map_or("?".into(), |n| n.to_string()))
        })
        .collect();
    println!("keys per node before the fault: {}", sizes.join(", "));

    step(&format!(
        "kill -9 of the primary n{primary} (127.0.0.1:{old_port})"
    ));
    let fault_wall = SystemTime::now();
    let fault_mono = monotonic_ns();
    let fault = Instant::now();
    store.kill(primary)?;
    // A Sentinel-mode client: ask the endpoint for the primary and write, every millisecond.
    let sentinel =
        redis::Client::open(format!("redis://127.0.0.1:{}/", store.controller.sentinel))?;
    let mut first_write = None;
    let mut new_port = 0;
    while fault.elapsed() < Duration::from_secs(15) && !interrupted() {
        let addr: Option<(String, u16)> = sentinel
            .get_connection_with_timeout(Duration::from_millis(200))
            .ok()
            .and_then(|mut s| {
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg("demo")
                    .query(&mut s)
                    .ok()
            });
        if let Some((_, port)) = addr.filter(|(_, p)| *p != old_port)
            && let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            && let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200))
            && redis::cmd("SET")
                .arg("after-failover")
                .arg("1")
                .query::<()>(&mut conn)
                .is_ok()
        {
            first_write = Some(fault.elapsed());
            new_port = port;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if interrupted() {
        return Ok(());
    }
    store.controller.log.wait_for("failover finished")?;

    step("timeline, from the fault");
    agent_timeline(
        &store.agents[primary].log.lines(),
        old_port,
        fault_wall,
        fault_mono,
    );
    let agents: Vec<Vec<String>> = store.agents.iter().map(|a| a.log.lines()).collect();
    let logs = kill_path::Logs {
        controller: &store.controller.log.lines(),
        old_agent: &agents[primary],
        agents: &agents,
    };
    let mut stages = kill_path::stages(&logs, fault_wall, first_write);
    // The verdict's line is the agent timeline's last.
    stages.retain(|(stage, _)| *stage != kill_path::Stage::Verdict);
    kill_path::print(&stages);
    match first_write {
        Some(_) => println!(
            "  (the new primary: 127.0.0.1:{new_port}, found through the Sentinel endpoint)"
        ),
        None => println!("  no write was accepted within 15 s"),
    }
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{new_port}/"))?.get_connection()?;
    let mut kept = 0;
    for i in 0..100 {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(format!("key:{i}"))
            .query(&mut c)
            .context("reading the new primary")?;
        kept += exists;
    }
    println!("  {kept} of the 100 acknowledged keys are on the new primary");
    status(&store)?;

    step(&format!(
        "starting the old primary again on 127.0.0.1:{old_port}: the controller demotes it to a replica"
    ));
    store.restart(primary)?;
    store.wait_healthy()?;
    status(&store)?;
    step("done: stopping everything this demo started");
    Ok(())
}
