//! `cargo xtask bench ...`: measurements printed from hdrhistogram, each ending in one summary line.
//! One bench per module (`overhead`, `probes`, `failover`, `controller`, `controller_ha`, `safety`,
//! with Redis Sentinel as the other system in `sentinel` and `sentinel_system`, and the network
//! namespaces of `failover --netns` in `lab`, `lab_store` and `delay_line`); this one holds the
//! subcommands, builds what they need, and keeps the helpers they share: CPU time and peak RSS of
//! a process from procfs, and the nanosecond histogram.
mod controller;
pub(crate) mod controller_ha;
mod delay_line;
pub(crate) mod failover;
mod lab;
mod lab_store;
mod overhead;
mod probes;
mod safety;
mod sentinel;
mod sentinel_system;

use anyhow::{Context, Result};
use clap::Subcommand;
use hdrhistogram::Histogram;

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
    /// One controller, many data stores and simulated agents: decision latency, CPU, RSS and
    /// messages each way, for each fleet size in turn.
    Controller {
        /// Fleet sizes in data stores (three simulated agents each), run in turn, each against a
        /// controller of its own.
        #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 3000], value_parser = clap::value_parser!(u32).range(1..=20_000))]
        stores: Vec<u32>,
        /// Primaries that fail, one every 20 ms (at most one per store).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=20_000))]
        failovers: u32,
    },
    /// Three controllers on etcd: handover after kill -9 of the leader, and the first write after
    /// the leader and the primary are killed together.
    ControllerHa {
        /// Rounds of killing the leading controller alone.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
        rounds: u32,
        /// Rounds of killing the leading controller and the primary together.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
        kills: u32,
    },
    /// vigil beside Redis Sentinel (down-after 100 ms and 1000 ms), same topology, same run.
    Failover {
        /// Rounds per fault and per system.
        #[arg(long, default_value_t = 5)]
        runs: u32,
        /// Each node (server and agent) in a network namespace of its own, the controller and the
        /// Sentinels in another, joined by veth pairs to a bridge, every node's link delayed 0.2 ms
        /// ± 0.05 ms each way (netem, or netfilter's queue where the kernel has no netem).
        #[arg(long)]
        netns: bool,
    },
    /// The safety matrix (every fault, vigil and Redis Sentinel at down-after 100 ms, same run):
    /// acknowledged writes lost, writes a deposed primary acknowledged, time with two primaries.
    Safety {
        /// Times the whole matrix is run.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        runs: u32,
        /// Only these faults (repeatable: kill-9, sigstop, deadlock, partition, cut-primary-out,
        /// cut-primary-in, coordinator-killed, switchover); all of them by default.
        #[arg(long)]
        fault: Vec<String>,
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
    crate::setup::run(false)?;
    crate::stage::run(
        "==> building vigil (release)",
        crate::cargo().args(["build", "--release", "--bins"]),
    )?;
    match which {
        Which::Overhead { rounds, requests } => overhead::run(rounds, requests),
        Which::Failover { runs, netns } => failover::run(runs, netns),
        Which::Controller { stores, failovers } => controller::run(&stores, failovers),
        Which::ControllerHa { rounds, kills } => controller_ha::run(rounds, kills),
        Which::Safety { runs, fault } => safety::run(runs, &fault),
        Which::Probes {
            stops,
            exits,
            stalls,
            verdicts,
        } => probes::run(stops, exits, stalls, verdicts),
    }
}

/// A histogram of nanoseconds, up to a minute.
fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).context("histogram bounds")
}

/// CPU time (user + system) of process `pid` so far, in clock ticks; 0 when it is gone.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(after.get(11)?.parse::<u64>().ok()? + after.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Peak resident set size of process `pid` (VmHWM), in KiB; 0 when it is gone.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
