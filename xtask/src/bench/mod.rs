//! `cargo xtask bench ...`: measurements printed from hdrhistogram, each ending in one summary line.
mod controller;
mod failover;

use std::{io::Write, net::TcpStream, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use hdrhistogram::Histogram;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::Instant;
use vigil_tests::{RedisServer, Watch};

#[derive(Subcommand)]
pub enum Which {
    /// redis-benchmark against a redis-server with and without `vigil-agent run` attached.
    Overhead {
        /// Rounds; each runs redis-benchmark without and with the agent.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
        rounds: u32,
        /// Requests per pipeline-1 run (pipeline-16 runs do 8 times as many).
        #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1000..=100_000_000))]
        requests: u32,
    },
    /// One controller, many data stores and simulated agents: decision latency, CPU and RSS.
    Controller {
        /// Data stores (three simulated agents each).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
        stores: u32,
        /// Primaries that fail, one every 20 ms (at most one per store).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=20_000))]
        failovers: u32,
    },
    /// vigil beside Redis Sentinel (down-after 100 ms and 1000 ms), same topology, same run.
    Failover {
        /// Rounds per fault and per system.
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// Kernel event -> agent latency for stop and exit events, and the stall classifier's lag.
    Probes {
        /// SIGSTOP/SIGCONT rounds.
        #[arg(long, default_value_t = 300)]
        stops: u32,
        /// kill -9 and restart rounds.
        #[arg(long, default_value_t = 30)]
        exits: u32,
        /// Stalls (a stopped server with a client waiting) to classify.
        #[arg(long, default_value_t = 50)]
        stalls: u32,
        /// SIGSTOP rounds timed from the stop to the UNHEALTHY verdict.
        #[arg(long, default_value_t = 50)]
        verdicts: u32,
    },
}

pub fn run(which: Which) -> Result<()> {
    crate::setup::run()?;
    println!("==> building vigil (release)");
    crate::run_cmd(crate::cargo().args(["build", "--release", "--bins"]))?;
    match which {
        Which::Overhead { rounds, requests } => overhead(rounds, requests),
        Which::Failover { runs } => failover(runs),
        Which::Controller { stores, failovers } => controller::run(stores, failovers),
        Which::Probes {
            stops,
            exits,
            stalls,
            verdicts,
        } => probes(stops, exits, stalls, verdicts),
    }
}

fn agent_bin() -> PathBuf {
    crate::root().join("target/release/vigil-agent")
}

fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).context("histogram bounds")
}

fn lag_ns(line: &Value) -> Result<u64> {
    let kernel = line["kernel_ns"].as_u64().context("no kernel_ns")?;
    let seen = line["seen_ns"].as_u64().context("no seen_ns")?;
    Ok(seen.saturating_sub(kernel).max(1))
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

fn print_row(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<34} n={:<5} p50={:>9.1}us p99={:>9.1}us max={:>9.1}us",
        h.len(),
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.max())
    );
}

/// CLOCK_MONOTONIC now, the clock of the agent's `kernel_ns`.
fn now_ns() -> Result<u64> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    Ok(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
}

/// The next line matching `pred` that happened at or after `since`: lines left over from an
/// earlier round can never be taken for this one.
fn next(watch: &mut Watch, since: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
    watch.wait_for(what, |v| {
        v["kernel_ns"].as_u64().is_some_and(|k| k >= since) && pred(v)
    })
}

fn is(event: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == event
}

fn kernel_stop(v: &Value) -> bool {
    v["event"] == "stopped" && v["source"] == "sched_switch"
}

fn verdict(health: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == "verdict" && v["health"] == health
}

fn probes(stops: u32, exits: u32, stalls: u32, verdicts: u32) -> Result<()> {
    const STALL_MS: u64 = 100;
    let mut events = histogram()?;
    let mut stop_events = histogram()?;
    let mut exit_events = histogram()?;
    let mut decision_lag = histogram()?;
    let mut request_lag = histogram()?;
    let mut verdict_lag = histogram()?;

    let mut server = RedisServer::start()?;
    let port = server.port;
    // Sockets watched as the daemon watches them, on its tick: stall decisions then include the
    // scan, and a request's stamp is as late as the daemon's would be.
    let mut watch = Watch::start_from(
        &agent_bin(),
        &[
            "--port",
            &port.to_string(),
            "--stall-ms",
            &STALL_MS.to_string(),
            "--sampled-reads",
            // The daemon's tick at this threshold (a quarter of it).
            "--tick-us",
            &(STALL_MS * 1_000 / 4).to_string(),
        ],
    )?;
    next(&mut watch, 0, "a healthy verdict", verdict("HEALTHY"))?;

    println!("==> {stops} SIGSTOP/SIGCONT rounds");
    for _ in 0..stops {
        let t = now_ns()?;
        server.signal(Signal::SIGSTOP)?;
        let stopped = next(&mut watch, t, "stopped", kernel_stop)?;
        let lag = lag_ns(&stopped)?;
        stop_events.record(lag)?;
        events.record(lag)?;
        let t = now_ns()?;
        server.signal(Signal::SIGCONT)?;
        next(&mut watch, t, "continued", is("continued"))?;
        watch.seen.clear();
    }

    println!("==> {stalls} stalls: SIGSTOP with a client waiting, classified after {STALL_MS} ms");
    for _ in 0..stalls {
        let t = now_ns()?;
        server.signal(Signal::SIGSTOP)?;
        next(&mut watch, t, "stopped", kernel_stop)?;
        let mut client = TcpStream::connect(("127.0.0.1", port))?;
        client.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        // On loopback the bytes are queued on the server's socket before write returns.
        let sent = now_ns()?;
        let stall = next(&mut watch, t, "stall", |v| {
            v["source"] == "unread_stall" && v["event"] != "unread_stall_cleared"
        })?;
        if stall["event"] != "stopped" {
            bail!(
                "a stopped server's stall was classified as {}",
                stall["event"]
            );
        }
        let age_us = stall["age_us"].as_u64().context("no age_us")?;
        decision_lag.record((age_us.saturating_sub(STALL_MS * 1_000) * 1_000).max(1))?;
        // From the request, not from the agent's stamp: this counts how late the stamp is.
        let seen = stall["seen_ns"].as_u64().context("no seen_ns")?;
        request_lag.record(
            seen.saturating_sub(sent)
                .saturating_sub(STALL_MS * 1_000_000)
                .max(1),
        )?;
        let t = now_ns()?;
        server.signal(Signal::SIGCONT)?;
        next(
            &mut watch,
            t,
            "unread_stall_cleared",
            is("unread_stall_cleared"),
        )?;
        next(&mut watch, t, "continued", is("continued"))?;
        watch.seen.clear();
    }

    println!("==> {verdicts} SIGSTOP rounds: stop -> UNHEALTHY verdict (threshold {STALL_MS} ms)");
    for _ in 0..verdicts {
        let t = now_ns()?;
        server.signal(Signal::SIGSTOP)?;
        let stopped = next(&mut watch, t, "stopped", kernel_stop)?;
        let unhealthy = next(&mut watch, t, "UNHEALTHY", verdict("UNHEALTHY"))?;
        let took = unhealthy["kernel_ns"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(stopped["kernel_ns"].as_u64().unwrap_or(0));
        verdict_lag.record(took.saturating_sub(STALL_MS * 1_000_000).max(1))?;
        let t = now_ns()?;
        server.signal(Signal::SIGCONT)?;
        // Every thread runs again, and the verdict recovers, before the next stop.
        next(&mut watch, t, "continued", is("continued"))?;
        next(&mut watch, t, "HEALTHY", verdict("HEALTHY"))?;
        watch.seen.clear();
    }

    println!("==> {exits} kill -9 and restart rounds");
    for _ in 0..exits {
        let t = now_ns()?;
        server.signal(Signal::SIGKILL)?;
        server.wait_exit()?;
        let exited = next(&mut watch, t, "exited", is("exited"))?;
        let lag = lag_ns(&exited)?;
        exit_events.record(lag)?;
        events.record(lag)?;
        server = RedisServer::start_on(port)?;
        let new_pid = u64::from(server.pid());
        next(&mut watch, t, "target_changed", |v| {
            v["event"] == "target_changed" && v["pid"] == new_pid
        })?;
        watch.seen.clear();
    }
    drop(watch);

    println!();
    print_row("stop event, kernel -> agent", &stop_events);
    print_row("exit event, kernel -> agent", &exit_events);
    print_row("all events, kernel -> agent", &events);
    print_row("stall decision lag past threshold", &decision_lag);
    print_row("request sent -> stall, past threshold", &request_lag);
    print_row("stop -> UNHEALTHY past threshold", &verdict_lag);
    println!(
        "probes: event p50={:.0}us p99={:.0}us, stall decision lag p99={:.0}us, request->stall {}ms+{:.0}us p99, stop->UNHEALTHY {}ms+{:.0}us p99",
        us(events.value_at_quantile(0.5)),
        us(events.value_at_quantile(0.99)),
        us(decision_lag.value_at_quantile(0.99)),
        STALL_MS,
        us(request_lag.value_at_quantile(0.99)),
        STALL_MS,
        us(verdict_lag.value_at_quantile(0.99))
    );
    std::io::stdout().flush()?;
    Ok(())
}

fn failover(runs: u32) -> Result<()> {
    use failover::{Fault, Rounds};
    vigil_tests::use_bin_dir(crate::root().join("target/release"));
    vigil_tests::quiet();
    let faults = [Fault::Kill, Fault::Stop, Fault::Slow];
    let mut results: Vec<(String, &str, Rounds)> = Vec::new();
    for fault in faults {
        let name = match fault {
            Fault::Kill => "kill",
            Fault::Stop => "stop",
            Fault::Slow => "slow",
        };
        println!("==> vigil, {name}, {runs} rounds");
        results.push(("vigil".into(), name, failover::vigil(fault, runs)?));
        for down_after in [100, 1000] {
            println!("==> sentinel (down-after {down_after} ms), {name}, {runs} rounds");
            results.push((
                format!("sentinel{down_after}"),
                name,
                failover::sentinel(down_after, fault, runs)?,
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
    let speedup = p50("sentinel100", "kill") / p50("vigil", "kill").max(0.001);
    println!(
        "failover: vigil kill p50={:.1}ms p99={:.1}ms stop p50={:.1}ms; sentinel100 kill p50={:.1}ms; speedup={:.0}x; false failovers vigil={} sentinel100={}",
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

/// (requests per second, p99 ms) summed and maxed over the tests of one redis-benchmark run.
fn redis_benchmark(port: u16, requests: u32, pipeline: u32) -> Result<(f64, f64)> {
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            "50",
            "-t",
            "set,get",
            "--csv",
        ])
        .args(["-n", &requests.to_string(), "-P", &pipeline.to_string()])
        .output()
        .context("running redis-benchmark (redis-tools)")?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (mut rps, mut p99) = (0.0, 0.0f64);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let cols: Vec<f64> = line
            .split(',')
            .skip(1)
            .filter_map(|c| c.trim_matches('"').parse().ok())
            .collect();
        if cols.len() >= 6 {
            rps += cols[0];
            p99 = p99.max(cols[5]);
        }
    }
    Ok((rps, p99))
}

pub fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(after.get(11)?.parse::<u64>().ok()? + after.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Median of a non-empty list (the mean of the middle two for an even count); 0 when empty.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One redis-benchmark mode of the overhead bench: pipeline depth and requests per run. Deeper
/// pipelines run more requests so each run lasts about as long.
const OVERHEAD_MODES: [(u32, u32); 2] = [(1, 1), (16, 8)];

fn overhead(rounds: u32, requests: u32) -> Result<()> {
    vigil_tests::use_bin_dir(crate::root().join("target/release"));
    vigil_tests::quiet();
    let server = RedisServer::start()?;
    let ticks_per_sec =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    // Per mode, per round: (requests/s, p99 ms) without and with the agent.
    let mut runs = vec![vec![((0.0, 0.0), (0.0, 0.0)); rounds as usize]; OVERHEAD_MODES.len()];
    let (mut agent_cpu_s, mut agent_wall_s, mut rss_kib) = (0.0, 0.0, 0u64);
    println!(
        "==> {rounds} rounds; each runs redis-benchmark without and then with the agent (the order \
         alternates), 50 clients, set+get, pipeline 1 and 16"
    );
    for round in 0..rounds {
        // Alternating which half goes first cancels a slow drift of the shared machine.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for attached in order {
            let agent = if attached {
                let addr = format!("127.0.0.1:{}", server.port);
                // No controller: the agent does all its watching and keeps trying to connect.
                let a = vigil_tests::Agent::run(&[
                    "--server",
                    &addr,
                    "--controller",
                    "http://127.0.0.1:1",
                    "--datastore",
                    "bench",
                    "--node-id",
                    "a",
                ])?;
                a.wait_log("vigil-agent running")?;
                Some(a)
            } else {
                None
            };
            let ticks0 = agent.as_ref().map_or(0, |a| cpu_ticks(a.pid()));
            let t0 = Instant::now();
            for (mode, &(pipeline, scale)) in OVERHEAD_MODES.iter().enumerate() {
                let result = redis_benchmark(server.port, requests * scale, pipeline)?;
                let slot = &mut runs[mode][round as usize];
                if attached {
                    slot.1 = result;
                } else {
                    slot.0 = result;
                }
                println!(
                    "round {}: {} agent, pipeline {pipeline:>2}: {:>9.0} req/s, p99 {:.3} ms",
                    round + 1,
                    if attached { "with   " } else { "without" },
                    result.0,
                    result.1
                );
            }
            if let Some(a) = &agent {
                agent_cpu_s += cpu_ticks(a.pid()).saturating_sub(ticks0) as f64 / ticks_per_sec;
                agent_wall_s += t0.elapsed().as_secs_f64();
                rss_kib = rss_kib.max(peak_rss_kib(a.pid()));
            }
        }
    }
    // Each round's ratio compares two runs minutes apart at most; the median over rounds keeps
    // one noisy neighbour on this shared machine from deciding the result.
    let mut throughput = Vec::new();
    let mut p99s = Vec::new();
    println!(
        "\n{:<12} {:>16} {:>12}",
        "pipeline", "throughput ratio", "p99 ratio"
    );
    for (mode, &(pipeline, _)) in OVERHEAD_MODES.iter().enumerate() {
        let rps = median(runs[mode].iter().map(|(a, b)| b.0 / a.0.max(1.0)).collect());
        let p99 = median(
            runs[mode]
                .iter()
                .map(|(a, b)| b.1 / a.1.max(0.001))
                .collect(),
        );
        println!("{pipeline:<12} {rps:>16.3} {p99:>12.2}");
        throughput.push(rps);
        p99s.push(p99);
    }
    // One number for both modes: the geometric mean, so each mode counts the same.
    let geo = |v: &[f64]| v.iter().product::<f64>().powf(1.0 / v.len().max(1) as f64);
    let cpu_pct = 100.0 * agent_cpu_s / agent_wall_s.max(0.001);
    println!(
        "overhead: throughput ratio={:.3} p99 ratio={:.2} agent cpu={cpu_pct:.1}% rss={:.1}MiB",
        geo(&throughput),
        geo(&p99s),
        rss_kib as f64 / 1024.0
    );
    Ok(())
}
