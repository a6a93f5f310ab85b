//! `cargo xtask bench controller`: one real controller over gRPC, many data stores, and a
//! simulated agent per node, each on its own connection, sending a verdict every 100 ms as real
//! agents do. Faults are DOWN verdicts from primaries; the decision latency is from that verdict
//! leaving the simulated primary to the promote command reaching a replica.
//!
//! The simulated agents are their own program, `tests/examples/agent_fleet.rs`: it speaks
//! vigil.v1, which needs protoc to build, and xtask must build before setup installs protoc. This
//! module builds it, starts the controller, runs the fleet against it, samples the controller's
//! CPU over the steady window the fleet announces and its peak RSS, and prints the results.
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use vigil_tests::Controller;

use super::{cpu_ticks, peak_rss_kib};

pub fn run(stores: u32, failovers: u32) -> Result<()> {
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
    // The controller inherits this: a connection per simulated agent (three per store), and room
    // to spare.
    raise_fd_limit(u64::from(stores) * 6 + 1024)?;
    vigil_tests::use_bin_dir(crate::root().join("target/release"));
    vigil_tests::quiet();
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
    let mut agents = 0;
    let mut window = None;
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
                    "==> {stores} data stores, {agents} simulated agents (one connection each), verdicts every {} ms",
                    v["heartbeat_ms"].as_u64().context("no heartbeat_ms")?
                );
            }
            Some("steady_start") => window = Some((cpu_ticks(pid), Instant::now())),
            Some("faults_start") => println!(
                "==> {} primaries fail, one every 20 ms, under the same heartbeat load",
                v["failovers"].as_u64().context("no failovers")?
            ),
            Some("steady_end") => {
                let (ticks0, t0) = window.context("the fleet ended a window it never started")?;
                let wall = t0.elapsed().as_secs_f64();
                let ticks = cpu_ticks(pid).saturating_sub(ticks0);
                let cpu_pct = 100.0 * ticks as f64 / ticks_per_sec / wall;
                let rss_mib = peak_rss_kib(pid) as f64 / 1024.0;
                measured = Some((wall, cpu_pct, rss_mib));
            }
            Some("result") => result = Some(v),
            _ => bail!("the fleet printed an unknown line: {line}"),
        }
    }
    let status = fleet.0.wait().context("waiting for the fleet")?;
    if !status.success() {
        bail!("the simulated agents failed ({status}); their error is above");
    }
    let (Some((wall, cpu_pct, rss_mib)), Some(result)) = (measured, result) else {
        bail!("the simulated agents ended without their results");
    };

    // The simulated agents share this machine's cores with the controller: say how much they took.
    let sim_pct = result["cpu_pct"].as_f64().context("no cpu_pct")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cpu over {wall:.1} s: controller {cpu_pct:.1}% of a core, simulated agents {sim_pct:.1}% ({cores} cores in all)"
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
        "controller: stores={stores} agents={agents} decision p99={:.2}ms cpu={cpu_pct:.1}% rss={rss_mib:.1}MiB",
        ms("p99")
    );
    Ok(())
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
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard)
            .context("raising the open-files limit for the controller")?;
    }
    Ok(())
}
