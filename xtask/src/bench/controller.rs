//! `cargo xtask bench controller`: one real controller over gRPC, many data stores, and a
//! simulated agent per node, each on its own connection, sending a verdict every 100 ms as real
//! agents do. Faults are DOWN verdicts from primaries; the decision latency is from that verdict
//! leaving the simulated primary to the promote command reaching a replica. Each fleet size of
//! `--stores` runs in turn against a controller of its own.
//!
//! The simulated agents are their own program, `tests/examples/agent_fleet.rs`: it speaks
//! vigil.v1, which needs protoc to build, and xtask must build before setup installs protoc. This
//! module builds it, starts the controller, runs the fleet against it, samples the controller's
//! CPU over the window the fleet announces (and over its steady part, before the faults) and its
//! peak RSS, and prints the results with the fleet's own CPU and its count of messages each way.
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use vigil_tests::Controller;

use super::{cpu_ticks, peak_rss_kib};

/// One fleet size's results.
struct Row {
    stores: u32,
    agents: u64,
    failovers: u64,
    /// Decision latency, ms.
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    /// The controller's CPU over the window and over its steady part, % of a core.
    cpu: f64,
    steady_cpu: f64,
    rss_mib: f64,
    /// The simulated agents' CPU over the window, % of a core.
    fleet_cpu: f64,
    /// Messages per second, agent->controller and controller->agent, over the window and over
    /// its steady part.
    up: f64,
    down: f64,
    steady_up: f64,
    steady_down: f64,
}

pub fn run(sizes: &[u32], failovers: u32) -> Result<()> {
    crate::stage::run(
        "==> building the simulated agents (release)",
        crate::cargo().args([
            "build",
            "--release",
            "-p",
            "vigil-tests",
            "--example",
            "agent_fleet",
        ]),
    )?;
    let largest = sizes.iter().copied().max().unwrap_or(1);
    // The controller inherits this: a connection per simulated agent (three per store), and room
    // to spare.
    raise_fd_limit(u64::from(largest) * 6 + 1024)?;
    vigil_tests::use_bin_dir(crate::root().join("target/release"));
    vigil_tests::quiet();
    let mut rows = Vec::new();
    for &stores in sizes {
        rows.push(one(stores, failovers.min(stores))?);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "| stores | agents | failovers | decision p50 | p90 | p99 | max | controller CPU (before the faults) | RSS | simulated agents' CPU | msgs/s agent->controller | controller->agent |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.0}% ({:.0}%) | {:.0} MiB | {:.0}% | {:.0} ({:.0}) | {:.0} ({:.0}) |",
            r.stores,
            r.agents,
            r.failovers,
            r.p50,
            r.p90,
            r.p99,
            r.max,
            r.cpu,
            r.steady_cpu,
            r.rss_mib,
            r.fleet_cpu,
            r.up,
            r.steady_up,
            r.down,
            r.steady_down
        );
    }
    println!("({cores} cores in all, shared by the controller and the simulated agents)");
    for r in &rows {
        println!(
            "controller: stores={} agents={} decision p99={:.2}ms cpu={:.1}% rss={:.1}MiB",
            r.stores, r.agents, r.p99, r.cpu, r.rss_mib
        );
    }
    Ok(())
}

/// One fleet of `stores` data stores against a controller of its own.
fn one(stores: u32, failovers: u32) -> Result<Row> {
    let dir = tempfile::Builder::new()
        .prefix("vigil-bench-controller-")
        .tempdir()?;
    let controller = Controller::start(dir.path(), &[])?;
    let pid = controller.pid().context("the controller is not running")?;
    let fleet_bin = crate::root().join("target/release/examples/agent_fleet");
    let mut fleet = Fleet(
        Command::new(&fleet_bin)
            .args(["--controller", &controller.url()])
            .args(["--stores", &stores.to_string()])
            .args(["--failovers", &failovers.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", fleet_bin.display()))?,
    );
    let stdout = fleet.0.stdout.take().context("the fleet has no stdout")?;

    let ticks_per_sec =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let cpu_since = |(ticks0, t0): (u64, Instant)| {
        let ticks = cpu_ticks(pid).saturating_sub(ticks0);
        100.0 * ticks as f64 / ticks_per_sec / t0.elapsed().as_secs_f64()
    };
    let mut agents = 0;
    let mut window = None;
    let mut steady_cpu = None;
    let mut measured = None;
    let mut result = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the fleet's output")?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("the fleet printed a line that is not JSON: {line}"))?;
        match v["event"].as_str() {
            Some("fleet") => {
                agents = v["agents"].as_u64().context("no agents")?;
                println!(
                    "==> {stores} data stores, {agents} simulated agents (one connection each), verdicts on change and every {} ms, quiet replicas' at the controller's slow pace",
                    v["heartbeat_ms"].as_u64().context("no heartbeat_ms")?
                );
            }
            Some("steady_start") => window = Some((cpu_ticks(pid), Instant::now())),
            Some("faults_start") => {
                let w = window.context("the fleet started faults before its window")?;
                steady_cpu = Some(cpu_since(w));
                println!(
                    "==> {} primaries fail, one every 20 ms, under the same heartbeat load",
                    v["failovers"].as_u64().context("no failovers")?
                );
            }
            Some("steady_end") => {
                let w = window.context("the fleet ended a window it never started")?;
                let cpu = cpu_since(w);
                let rss_mib = peak_rss_kib(pid) as f64 / 1024.0;
                measured = Some((w.1.elapsed().as_secs_f64(), cpu, rss_mib));
            }
            Some("result") => result = Some(v),
            _ => bail!("the fleet printed an unknown line: {line}"),
        }
    }
    let status = fleet.0.wait().context("waiting for the fleet")?;
    if !status.success() {
        bail!("the simulated agents failed ({status}); their error is above");
    }
    let (Some((wall, cpu, rss_mib)), Some(steady_cpu), Some(result)) =
        (measured, steady_cpu, result)
    else {
        bail!("the simulated agents ended without their results");
    };

    // The simulated agents share this machine's cores with the controller: say how much they took.
    let fleet_cpu = result["cpu_pct"].as_f64().context("no cpu_pct")?;
    println!(
        "cpu over {wall:.1} s: controller {cpu:.1}% of a core ({steady_cpu:.1}% before the faults), simulated agents {fleet_cpu:.1}%"
    );
    let messages = &result["messages"];
    let rate = |part: &str, way: &str| messages[part][way].as_f64().unwrap_or(0.0);
    println!(
        "messages/s: agent->controller {:.0}, controller->agent {:.0} (desired state {:.0}, lease grants {:.0}, commands {:.0}); before the faults {:.0} and {:.0}",
        rate("window", "up"),
        rate("window", "down"),
        rate("window", "desired"),
        rate("window", "lease"),
        rate("window", "command"),
        rate("steady", "up"),
        rate("steady", "down"),
    );
    let decisions = &result["decision_us"];
    let ms = |key: &str| decisions[key].as_u64().unwrap_or(0) as f64 / 1000.0;
    let count = decisions["count"].as_u64().context("no decision count")?;
    println!(
        "decision latency over {count} failovers: p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        ms("p50"),
        ms("p90"),
        ms("p99"),
        ms("max")
    );
    if count == 0 {
        bail!("no failover was decided; see the controller's log");
    }
    println!(
        "controller: stores={stores} agents={agents} decision p99={:.2}ms cpu={cpu:.1}% rss={rss_mib:.1}MiB",
        ms("p99")
    );
    Ok(Row {
        stores,
        agents,
        failovers: count,
        p50: ms("p50"),
        p90: ms("p90"),
        p99: ms("p99"),
        max: ms("max"),
        cpu,
        steady_cpu,
        rss_mib,
        fleet_cpu,
        up: rate("window", "up"),
        down: rate("window", "down"),
        steady_up: rate("steady", "up"),
        steady_down: rate("steady", "down"),
    })
}

/// The fleet's process, stopped if the bench ends before it does.
struct Fleet(Child);

impl Drop for Fleet {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(Some(_))) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn raise_fd_limit(want: u64) -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < want {
        if hard < want {
            bail!(
                "the open-files limit is {hard}, and {want} are needed for the largest fleet: \
                 raise it (ulimit -Hn) or bench fewer stores"
            );
        }
        setrlimit(Resource::RLIMIT_NOFILE, want, hard)
            .context("raising the open-files limit for the controller")?;
    }
    Ok(())
}
