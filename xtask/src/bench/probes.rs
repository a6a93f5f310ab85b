//! `cargo xtask bench probes`: `vigil-agent watch` on a real redis-server, timed from the kernel.
//! Stop and exit events from the kernel to the agent, the stall classifier's lag past its
//! threshold (from the agent's stamp and from the request), and SIGSTOP -> UNHEALTHY verdict.
use std::{io::Write, net::TcpStream, path::PathBuf};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use nix::sys::signal::Signal;
use serde_json::Value;
use vigil_tests::{RedisServer, Watch};

use super::histogram;

fn agent_bin() -> PathBuf {
    crate::root().join("target/release/vigil-agent")
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

pub fn run(stops: u32, exits: u32, stalls: u32, verdicts: u32) -> Result<()> {
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
