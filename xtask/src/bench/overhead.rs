//! `cargo xtask bench overhead`: redis-benchmark against one redis-server, without and with
//! `vigil-agent run` attached, in rounds whose order alternates; the ratios are medians over
//! rounds, and the agent's own CPU and peak RSS are reported beside them.
use std::time::Instant;

use anyhow::{Context, Result, bail};
use vigil_tests::RedisServer;

use super::{cpu_ticks, peak_rss_kib};

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

pub fn run(rounds: u32, requests: u32) -> Result<()> {
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
                a.log.wait_for("vigil-agent running")?;
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
