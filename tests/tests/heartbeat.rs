//! The agents' heartbeat against real processes (real redis-servers, real agents with their eBPF
//! probes, a real controller): a replica with nothing to report sends its verdict at the slow
//! pace its desired state gives it, while the primary's agent keeps its own fast heartbeat; and
//! the slow replicas are still promoted when the primary is killed. Needs root.
use std::time::Duration;

use anyhow::{Context, Result};
use vigil_tests::{Agent, Controller, MetricsPage, Servers, free_port, require_root, serial};

const DS: &str = "heartbeat";
/// Long enough for the primary's agent to send dozens of heartbeats at its own pace.
const WINDOW: Duration = Duration::from_secs(3);

fn verdicts_sent(port: u16) -> Result<f64> {
    MetricsPage::scrape(port)?
        .value("vigil_agent_verdicts_sent_total", &[])
        .context("no vigil_agent_verdicts_sent_total")
}

#[test]
fn a_quiet_replica_beats_slowly_and_is_still_promoted() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = tempfile::Builder::new()
        .prefix("vigil-heartbeat-")
        .tempdir()?;
    // The controller's default slow pace (1 s), and a short grace and flap guard for the kill.
    let controller = Controller::start(
        dir.path(),
        &["--grace-ms", "300", "--min-failover-interval-ms", "1000"],
    )?;
    let mut servers = Servers::start(2)?;
    let mut metrics = Vec::new();
    let mut agents: Vec<Agent> = Vec::new();
    for (i, port) in servers.ports().into_iter().enumerate() {
        let listen = free_port()?;
        let listen_arg = format!("127.0.0.1:{listen}");
        agents.push(Agent::join_urls(
            None,
            &controller.url(),
            DS,
            &format!("n{i}"),
            &format!("127.0.0.1:{port}"),
            &["--metrics-listen", &listen_arg],
        )?);
        metrics.push(listen);
    }
    controller.wait_store_healthy(DS, 3, None)?;
    // Past the first slow beat, so every replica's agent has its pace.
    std::thread::sleep(Duration::from_millis(1_500));

    let before = metrics
        .iter()
        .map(|p| verdicts_sent(*p))
        .collect::<Result<Vec<_>>>()?;
    std::thread::sleep(WINDOW);
    let after = metrics
        .iter()
        .map(|p| verdicts_sent(*p))
        .collect::<Result<Vec<_>>>()?;
    let sent: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let (primary, replicas) = (sent[0], &sent[1..]);
    for (i, r) in replicas.iter().enumerate() {
        assert!(
            *r >= 1.0,
            "replica n{} sent no verdict in {WINDOW:?}",
            i + 1
        );
        assert!(
            *r * 3.0 < primary,
            "replica n{} sent {r} verdicts in {WINDOW:?}, the primary {primary}: it did not beat \
             slowly",
            i + 1
        );
    }

    // The replicas, last heard up to a second ago, are promoted when the primary dies.
    let ports = servers.ports();
    let old = ports[0];
    servers.kill(0)?;
    let promoted = controller.wait_primary_moved(DS, old)?;
    assert!(
        ports[1..].contains(&promoted),
        "{promoted} is not a replica's port"
    );
    drop(agents);
    Ok(())
}
