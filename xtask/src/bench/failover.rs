//! `cargo xtask bench failover`: vigil and Redis Sentinel side by side, in one run, on the same
//! topology (a primary and two replicas of redis-server on 127.0.0.1, or with `--netns` each node
//! in a network namespace of its own, see [`Lab`]). For each fault (kill -9, SIGSTOP, a 500 ms
//! Lua script) it measures, from the fault: detection (vigil's failover decision, Sentinel's
//! +sdown), and the first write accepted on a new primary found through each system's Sentinel
//! endpoint by a client polling every millisecond; slow-script rounds count false failovers
//! instead. Prints p50/p99/max from hdrhistogram, vigil's kill path stage by stage, and ends with
//! one summary line.
use std::time::{Duration, Instant, SystemTime};

use super::{
    lab::{DELAY, JITTER, Lab},
    lab_store::{LabVigil, Place, VigilNodes},
    sentinel::{NAME, SentinelStore},
};
use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use nix::sys::signal::Signal;
use vigil_tests::{VigilStore, WAIT};

use crate::kill_path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    Stop,
    Slow,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::Slow => "slow",
        }
    }
}

pub fn run(runs: u32, netns: bool) -> Result<()> {
    vigil_tests::use_bin_dir(crate::root().join("target/release"));
    vigil_tests::quiet();
    if !netns {
        return measure(runs, Place::Loopback, "failover");
    }
    let lab = Lab::create(3)?;
    println!(
        "==> network namespaces: {} nodes and the controller's, on a bridge; every node's link delayed {} us ± {} us each way ({})",
        lab.nodes.len(),
        DELAY.as_micros(),
        JITTER.as_micros(),
        lab.delay.name()
    );
    // The controller, the Sentinels and the client run where this thread is.
    let _in = lab.enter(&lab.controller.netns)?;
    measure(runs, Place::Lab(&lab), "failover --netns")
}

/// Every fault against every system, at `place`; `label` starts the summary line.
fn measure(runs: u32, place: Place<'_>, label: &str) -> Result<()> {
    let faults = [Fault::Kill, Fault::Stop, Fault::Slow];
    let mut results: Vec<(String, &str, Rounds)> = Vec::new();
    for fault in faults {
        let name = fault.name();
        println!("==> vigil, {name}, {runs} rounds");
        results.push(("vigil".into(), name, vigil(place, fault, runs)?));
        for down_after in [100, 1000] {
            println!("==> sentinel (down-after {down_after} ms), {name}, {runs} rounds");
            results.push((
                format!("sentinel{down_after}"),
                name,
                sentinel(place, down_after, fault, runs)?,
            ));
        }
    }
    println!();
    println!(
        "{:<14} {:<5} {:>30} {:>30} {:>16} {:>8}",
        "system",
        "fault",
        "detection p50/p99/max ms",
        "write on new primary p50/p99/max ms",
        "false failovers",
        "missed"
    );
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (system, fault, r) in &results {
        let cell = |h: &Histogram<u64>| {
            if h.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{:.1}/{:.1}/{:.1}",
                    ms(h, 0.5),
                    ms(h, 0.99),
                    h.max() as f64 / 1000.0
                )
            }
        };
        let false_ff = if *fault == "slow" {
            format!("{}/{}", r.false_failovers, r.runs)
        } else {
            "-".into()
        };
        // A kill or stop round with no write on a new primary within the wait.
        let missed = if *fault == "slow" {
            "-".into()
        } else {
            format!("{}/{}", r.missed, r.runs)
        };
        println!(
            "{system:<14} {fault:<5} {:>30} {:>30} {:>16} {missed:>8}",
            cell(&r.detection),
            cell(&r.write),
            false_ff
        );
    }
    let find = |system: &str, fault: &str| {
        results
            .iter()
            .find(|(s, f, _)| s == system && *f == fault)
            .map(|(_, _, r)| r)
    };
    let p50 = |system: &str, fault: &str| find(system, fault).map_or(0.0, |r| ms(&r.write, 0.5));
    let p99 = |system: &str, fault: &str| find(system, fault).map_or(0.0, |r| ms(&r.write, 0.99));
    let ff = |system: &str| {
        find(system, "slow").map_or("?".into(), |r| format!("{}/{}", r.false_failovers, r.runs))
    };
    if let Some(path) = find("vigil", "kill").and_then(|r| r.path.as_ref()) {
        path.print("vigil's kill path, stage by stage, ms from the kill (from the logs; first write from the client):");
    }
    let speedup = p50("sentinel100", "kill") / p50("vigil", "kill").max(0.001);
    println!(
        "{label}: vigil kill p50={:.1}ms p99={:.1}ms stop p50={:.1}ms; sentinel100 kill p50={:.1}ms; speedup={:.0}x; false failovers vigil={} sentinel100={}",
        p50("vigil", "kill"),
        p99("vigil", "kill"),
        p50("vigil", "stop"),
        p50("sentinel100", "kill"),
        speedup,
        ff("vigil"),
        ff("sentinel100"),
    );
    Ok(())
}

/// How long after a slow command a failover it set off still counts (Sentinel's leader election
/// and failover take a second or more after +odown).
const SLOW_WINDOW: Duration = Duration::from_secs(3);
const LUA_500MS: &str = "local t=redis.call('TIME') local s=t[1]*1000000+t[2] \
                         repeat t=redis.call('TIME') until t[1]*1000000+t[2]-s >= 500000 return 1";

/// Results of one system under one fault.
struct Rounds {
    detection: Histogram<u64>,
    write: Histogram<u64>,
    false_failovers: u32,
    /// Kill and stop rounds where no write reached a new primary within the wait: counted and
    /// shown, not recorded in `write`, and the bench goes on.
    missed: u32,
    runs: u32,
    /// vigil's kill rounds, stage by stage.
    path: Option<kill_path::Percentiles>,
}

impl Rounds {
    fn new(runs: u32) -> Result<Self> {
        let h = || Histogram::new_with_bounds(1, 600_000_000, 3).context("histogram bounds");
        Ok(Self {
            detection: h()?,
            write: h()?,
            false_failovers: 0,
            missed: 0,
            runs,
            path: None,
        })
    }

    /// Records the time to the first write on a new primary, or counts the round as missed
    /// (and says so) when none came within the wait. Returns whether it was missed.
    fn record_write(&mut self, outcome: Result<Duration>, label: &str, round: u32) -> Result<bool> {
        match outcome {
            Ok(t) => {
                self.write.record(us(t))?;
                Ok(false)
            }
            Err(e) => {
                eprintln!("\n  {label} round {}: missed: {e:#}", round + 1);
                self.missed += 1;
                Ok(true)
            }
        }
    }
}

fn us(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// What a Sentinel-mode client sees: polls `sentinel` every millisecond for the primary of
/// `NAME`, and returns how long after `start` a SET was first accepted by a primary other than
/// `old_port`.
pub(super) fn first_write(sentinel: u16, old_port: u16, start: Instant) -> Result<Duration> {
    first_write_of(NAME, sentinel, old_port, start)
}

/// [`first_write`] for the data store `datastore`.
pub(crate) fn first_write_of(
    datastore: &str,
    sentinel: u16,
    old_port: u16,
    start: Instant,
) -> Result<Duration> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{sentinel}/"))?;
    let mut conn = None;
    while start.elapsed() < WAIT * 2 {
        if conn.is_none() {
            conn = client
                .get_connection_with_timeout(Duration::from_millis(100))
                .ok();
        }
        let asked = conn.as_mut().map(|c| {
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(datastore)
                .query::<Option<(String, u16)>>(c)
        });
        // No primary named (nil) is an answer: the connection is kept, as a client keeps it,
        // and only a failed one is made again.
        let addr = match asked {
            Some(Ok(addr)) => addr,
            Some(Err(_)) => {
                conn = None;
                None
            }
            None => None,
        };
        if let Some((host, port)) = addr.filter(|(_, p)| *p != old_port)
            && let Ok(c) = redis::Client::open(format!("redis://{host}:{port}/"))
            && let Ok(mut primary) = c.get_connection_with_timeout(Duration::from_millis(100))
            && primary
                .set_read_timeout(Some(Duration::from_millis(100)))
                .is_ok()
            && redis::cmd("SET")
                .arg("bench-key")
                .arg("1")
                .query::<()>(&mut primary)
                .is_ok()
        {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!(
        "no write was accepted on a new primary within {:?}",
        WAIT * 2
    )
}

/// Runs a 500 ms script on the primary at `host`:`port` and waits until it is over.
fn slow_command(host: &str, port: u16) -> Result<()> {
    let mut c = redis::Client::open(format!("redis://{host}:{port}/"))?.get_connection()?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    // The script's reply may be lost if the server was failed over meanwhile; that is the point.
    let _ = redis::cmd("EVAL")
        .arg(LUA_500MS)
        .arg(0)
        .query::<redis::Value>(&mut c);
    Ok(())
}

fn vigil(place: Place<'_>, fault: Fault, runs: u32) -> Result<Rounds> {
    // As deployed: every gRPC link on mutual TLS.
    let args = ["--grace-ms", "300", "--min-failover-interval-ms", "1"];
    match place {
        Place::Loopback => vigil_rounds(
            &mut VigilStore::start_tls(NAME, 2, &args, &[])?,
            fault,
            runs,
        ),
        Place::Lab(lab) => {
            let mut store = LabVigil::start(lab, NAME, 2, &args)?;
            if fault == Fault::Kill {
                // What the links' delay makes of a round trip, as the bench's client sees it.
                let rtt = ping_rtt(&store.host(0), store.port(0))?;
                println!(
                    "  PING from the controller's namespace to n0's server: p50 {:.2} ms",
                    rtt.as_secs_f64() * 1000.0
                );
            }
            vigil_rounds(&mut store, fault, runs)
        }
    }
}

/// The median round trip of a PING to the server at `host`:`port` on one connection.
fn ping_rtt(host: &str, port: u16) -> Result<Duration> {
    let mut c = redis::Client::open(format!("redis://{host}:{port}/"))?
        .get_connection_with_timeout(Duration::from_secs(1))?;
    let mut rtts = Vec::new();
    for _ in 0..51 {
        let at = Instant::now();
        let _: String = redis::cmd("PING").query(&mut c)?;
        rtts.push(at.elapsed());
    }
    rtts.sort();
    Ok(rtts[rtts.len() / 2])
}

/// Waits until every node is healthy and linked again; when they are not, says what the
/// controller and the agents last said before giving up.
fn healthy_again(store: &impl VigilNodes) -> Result<()> {
    let Err(e) = store.wait_healthy() else {
        return Ok(());
    };
    let tail = |lines: &[String]| lines[lines.len().saturating_sub(15)..].join("\n    ");
    eprintln!("\n  the data store did not settle: {e:#}");
    if let Ok(status) = store.controller().status(NAME) {
        eprintln!("  vigil status: {status}");
    }
    eprintln!(
        "  controller:\n    {}",
        tail(&store.controller().log.lines())
    );
    for (i, log) in store.agent_logs().iter().enumerate() {
        eprintln!("  agent n{i}:\n    {}", tail(log));
    }
    Err(e)
}

/// Failovers the controller has started so far, by its log.
fn failovers_started(store: &impl VigilNodes) -> usize {
    store
        .controller()
        .log
        .lines()
        .iter()
        .filter(|l| l.contains("\"failing over\""))
        .count()
}

fn vigil_rounds(store: &mut impl VigilNodes, fault: Fault, runs: u32) -> Result<Rounds> {
    let mut r = Rounds::new(runs)?;
    let mut seen_failovers = 0;
    for round in 0..runs {
        let i = store.primary()?;
        let port = store.port(i);
        let wall = SystemTime::now();
        let start = Instant::now();
        match fault {
            Fault::Kill => store.kill(i)?,
            Fault::Stop => store.signal(i, Signal::SIGSTOP)?,
            Fault::Slow => {
                slow_command(&store.host(i), port)?;
                // Watch for a while after the slow command: any failover it set off counts.
                std::thread::sleep(SLOW_WINDOW);
                let failovers = failovers_started(store);
                if failovers > seen_failovers || store.primary()? != i {
                    r.false_failovers += 1;
                    // What set it off, as the controller and the primary's agent said.
                    let said = |lines: Vec<String>, what: &str| {
                        lines.into_iter().rev().find(|l| l.contains(what))
                    };
                    let log = store.controller().log.lines();
                    eprintln!(
                        "\n  false failover: {}\n  n{i}'s last verdict: {}",
                        said(log, "\"failing over\"").unwrap_or_default(),
                        said(store.agent_logs().swap_remove(i), "verdict changed")
                            .unwrap_or_default()
                    );
                    healthy_again(store)?;
                }
                seen_failovers = failovers_started(store);
                continue;
            }
        }
        let write = first_write(store.controller().sentinel, port, start);
        let written = write.as_ref().ok().copied();
        r.record_write(write, &format!("vigil {}", fault.name()), round)?;
        let decided = store
            .controller()
            .log
            .lines()
            .iter()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["fields"]["message"] == "failing over")
                    .then(|| humantime::parse_rfc3339(v["timestamp"].as_str()?).ok())?
            })
            .filter(|t| *t >= wall)
            .min();
        if let Some(t) = decided {
            r.detection
                .record(us(t.duration_since(wall).unwrap_or_default()))?;
        }
        match fault {
            Fault::Kill => store.restart(i)?,
            _ => store.signal(i, Signal::SIGCONT)?,
        }
        healthy_again(store)?;
        if fault == Fault::Kill {
            // The failover is over by now: every stage's line is in the logs.
            let agents = store.agent_logs();
            let logs = kill_path::Logs {
                controller: &store.controller().log.lines(),
                old_agent: &agents[i],
                agents: &agents,
            };
            let stages = kill_path::stages(&logs, wall, written);
            match r.path.as_mut() {
                Some(p) => p.record(&stages)?,
                None => {
                    let mut p = kill_path::Percentiles::new()?;
                    p.record(&stages)?;
                    r.path = Some(p);
                }
            }
        }
        eprint!("\r  vigil {} round {}/{runs}   ", fault.name(), round + 1);
    }
    eprintln!();
    Ok(r)
}

fn sentinel(place: Place<'_>, down_after_ms: u64, fault: Fault, runs: u32) -> Result<Rounds> {
    let mut r = Rounds::new(runs)?;
    let mut s = SentinelStore::start(place, down_after_ms)?;
    for round in 0..runs {
        let port = s.master()?;
        let i = s
            .ports
            .iter()
            .position(|p| *p == port)
            .context("unknown master")?;
        let start = Instant::now();
        match fault {
            Fault::Kill => {
                if let Some(srv) = s.servers[i].as_mut() {
                    srv.signal(Signal::SIGKILL)?;
                    srv.wait_exit()?;
                }
                s.servers[i] = None;
            }
            Fault::Stop => s.servers[i]
                .as_ref()
                .context("no server")?
                .signal(Signal::SIGSTOP)?,
            Fault::Slow => {
                let switches = s.switches.lock().unwrap_or_else(|p| p.into_inner()).len();
                slow_command(&place.host(i), port)?;
                std::thread::sleep(SLOW_WINDOW);
                if s.switches.lock().unwrap_or_else(|p| p.into_inner()).len() > switches
                    || s.master()? != port
                {
                    r.false_failovers += 1;
                    s.settle_or_rebuild(Some(port), down_after_ms)?;
                }
                eprint!(
                    "\r  sentinel{down_after_ms} {} round {}/{runs}   ",
                    fault.name(),
                    round + 1
                );
                continue;
            }
        }
        let missed = r.record_write(
            first_write(s.sentinel_ports[0], port, start),
            &format!("sentinel{down_after_ms} {}", fault.name()),
            round,
        )?;
        if let Some(t) = s
            .sdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|t| **t >= start)
        {
            r.detection.record(us(t.duration_since(start)))?;
        }
        if missed {
            s.rebuild(down_after_ms)?;
            continue;
        }
        // Restoring the topology is not measured: the old master is pointed at the new one here
        // (as a supervisor would) instead of waiting on Sentinel's own, slower conversion.
        let new = s.master()?;
        let j = s
            .ports
            .iter()
            .position(|p| *p == new)
            .context("unknown master")?;
        let new_host = place.host(j);
        let replicaof = ["--replicaof", &new_host, &new.to_string()];
        match fault {
            Fault::Kill => s.servers[i] = Some(place.server(i, port, &replicaof)?),
            _ => {
                let srv = s.servers[i].as_ref().context("no server")?;
                srv.signal(Signal::SIGCONT)?;
                let mut c = srv.connect()?;
                let _: () = redis::cmd("REPLICAOF")
                    .arg(&new_host)
                    .arg(new)
                    .query(&mut c)?;
            }
        }
        s.settle_or_rebuild(Some(port), down_after_ms)?;
        eprint!(
            "\r  sentinel{down_after_ms} {} round {}/{runs}   ",
            fault.name(),
            round + 1
        );
    }
    eprintln!();
    Ok(r)
}
