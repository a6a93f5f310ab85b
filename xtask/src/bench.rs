//! `cargo xtask bench ...`: measurements printed from hdrhistogram, each ending in one summary line.
use std::{io::Write, net::TcpStream, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use hdrhistogram::Histogram;
use nix::sys::signal::Signal;
use serde_json::Value;
use vigil_tests::{RedisServer, Watch};

#[derive(Subcommand)]
pub enum Which {
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
    },
}

pub fn run(which: Which) -> Result<()> {
    crate::setup::run()?;
    println!("==> building vigil (release)");
    crate::run_cmd(crate::cargo().args(["build", "--release", "--bins"]))?;
    match which {
        Which::Probes {
            stops,
            exits,
            stalls,
        } => probes(stops, exits, stalls),
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

fn probes(stops: u32, exits: u32, stalls: u32) -> Result<()> {
    const STALL_MS: u64 = 100;
    let mut events = histogram()?;
    let mut stop_events = histogram()?;
    let mut exit_events = histogram()?;
    let mut decision_lag = histogram()?;

    let mut server = RedisServer::start()?;
    let port = server.port;
    let mut watch = Watch::start_from(
        &agent_bin(),
        &[
            "--port",
            &port.to_string(),
            "--stall-ms",
            &STALL_MS.to_string(),
        ],
    )?;

    println!("==> {stops} SIGSTOP/SIGCONT rounds");
    for _ in 0..stops {
        server.signal(Signal::SIGSTOP)?;
        let stopped = watch.wait_for("stopped", |v| {
            v["event"] == "stopped" && v["source"] == "sched_switch"
        })?;
        let lag = lag_ns(&stopped)?;
        stop_events.record(lag)?;
        events.record(lag)?;
        server.signal(Signal::SIGCONT)?;
        watch.wait_event("continued")?;
        watch.seen.clear();
    }

    println!("==> {stalls} stalls: SIGSTOP with a client waiting, classified after {STALL_MS} ms");
    for _ in 0..stalls {
        server.signal(Signal::SIGSTOP)?;
        watch.wait_for("stopped", |v| {
            v["event"] == "stopped" && v["source"] == "sched_switch"
        })?;
        let mut client = TcpStream::connect(("127.0.0.1", port))?;
        client.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let stall = watch.wait_for("stall", |v| {
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
        server.signal(Signal::SIGCONT)?;
        watch.wait_event("unread_stall_cleared")?;
        watch.wait_event("continued")?;
        watch.seen.clear();
    }

    println!("==> {exits} kill -9 and restart rounds");
    for _ in 0..exits {
        server.signal(Signal::SIGKILL)?;
        server.wait_exit()?;
        let exited = watch.wait_event("exited")?;
        let lag = lag_ns(&exited)?;
        exit_events.record(lag)?;
        events.record(lag)?;
        server = RedisServer::start_on(port)?;
        let new_pid = u64::from(server.pid());
        watch.wait_for("target_changed", |v| {
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
    println!(
        "probes: event p50={:.0}us p99={:.0}us, stall decision lag p99={:.0}us",
        us(events.value_at_quantile(0.5)),
        us(events.value_at_quantile(0.99)),
        us(decision_lag.value_at_quantile(0.99))
    );
    std::io::stdout().flush()?;
    Ok(())
}
