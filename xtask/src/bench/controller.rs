//! `cargo xtask bench controller`: one real controller over gRPC, many data stores, and a
//! simulated agent per node in this process, each on its own connection, sending a verdict every
//! 100 ms as real agents do. Faults are DOWN verdicts from primaries; the decision latency is
//! from that verdict leaving the simulated primary to the promote command reaching a replica.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use vigil_proto::{
    PROTOCOL_VERSION,
    v1::{
        self, Health, Role, agent_link_client::AgentLinkClient, agent_message::Msg,
        command::Action, controller_message,
    },
};
use vigil_tests::Controller;

const NODES_PER_STORE: u32 = 3;
const HEARTBEAT: Duration = Duration::from_millis(100);
/// Every bounded wait in the bench: connecting, warming up, a failover finishing.
const WAIT: Duration = Duration::from_secs(60);

/// What the simulated nodes share with the driver.
struct Shared {
    /// Per store: when its primary sent the DOWN verdict.
    faulted_at: Mutex<Vec<Option<Instant>>>,
    /// Decision latencies in µs, recorded by the replica that got the promote.
    decisions: Mutex<Histogram<u64>>,
    promoted: AtomicUsize,
    welcomed: AtomicUsize,
}

pub fn run(stores: u32, failovers: u32) -> Result<()> {
    let agents = stores * NODES_PER_STORE;
    raise_fd_limit(u64::from(agents) * 2 + 1024)?;
    vigil_tests::use_bin_dir(crate::root().join("target/release"));
    vigil_tests::quiet();
    let dir = tempfile::Builder::new()
        .prefix("vigil-bench-controller-")
        .tempdir()?;
    let controller = Controller::start(dir.path(), &[])?;
    let pid = controller.pid().context("the controller is not running")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let shared = Arc::new(Shared {
        faulted_at: Mutex::new(vec![None; stores as usize]),
        decisions: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        promoted: AtomicUsize::new(0),
        welcomed: AtomicUsize::new(0),
    });
    println!(
        "==> {stores} data stores, {agents} simulated agents (one connection each), verdicts every {} ms",
        HEARTBEAT.as_millis()
    );
    let (cpu_pct, rss_mib) = rt.block_on(drive(
        controller.url(),
        stores,
        failovers.min(stores),
        pid,
        shared.clone(),
    ))?;
    let h = shared
        .decisions
        .lock()
        .map_err(|_| anyhow::anyhow!("a simulated node panicked"))?
        .clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "decision latency over {} failovers: p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        h.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
    if h.is_empty() {
        bail!("no failover was decided; see the controller's log");
    }
    println!(
        "controller: stores={stores} agents={agents} decision p99={:.2}ms cpu={cpu_pct:.1}% rss={rss_mib:.1}MiB",
        ms(0.99)
    );
    Ok(())
}

fn raise_fd_limit(want: u64) -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < want {
        // The controller, started after this, inherits the limit.
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard)
            .context("raising the open-files limit for the simulated agents")?;
    }
    Ok(())
}

async fn drive(
    url: String,
    stores: u32,
    failovers: u32,
    pid: u32,
    shared: Arc<Shared>,
) -> Result<(f64, f64)> {
    let mut faults = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for store in 0..stores {
        let (fault_tx, fault_rx) = watch::channel(false);
        faults.push(fault_tx);
        for node in 0..NODES_PER_STORE {
            let sim = Node {
                url: url.clone(),
                store,
                node,
                role: if node == 0 {
                    Role::Primary
                } else {
                    Role::Replica
                },
                shared: shared.clone(),
            };
            let fault = (node == 0).then(|| fault_rx.clone());
            tasks.spawn(async move { sim.run(fault).await });
        }
    }
    let agents = (stores * NODES_PER_STORE) as usize;
    wait_for(
        || shared.welcomed.load(Ordering::Relaxed) >= agents,
        "every session to be welcomed",
        &mut tasks,
    )
    .await?;
    // A few heartbeats so every store has adopted its primary and seen its replicas linked.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks0 = super::cpu_ticks(pid);
    let sim_ticks0 = super::cpu_ticks(std::process::id());
    let t0 = Instant::now();
    // Steady load first, then faults spread over the rest of the window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("==> {failovers} primaries fail, one every 20 ms, under the same heartbeat load");
    for (store, fault) in faults.iter().enumerate().take(failovers as usize) {
        if let Ok(mut at) = shared.faulted_at.lock() {
            at[store] = Some(Instant::now());
        }
        let _ = fault.send(true);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let want = failovers as usize;
    wait_for(
        || shared.promoted.load(Ordering::Relaxed) >= want,
        "every failover to promote a replica",
        &mut tasks,
    )
    .await?;
    let wall = t0.elapsed().as_secs_f64();
    let ticks_per_sec =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let pct = |ticks: u64| 100.0 * ticks as f64 / ticks_per_sec / wall;
    let cpu_pct = pct(super::cpu_ticks(pid).saturating_sub(ticks0));
    // The simulated agents share this machine's cores with the controller: say how much they took.
    let sim_pct = pct(super::cpu_ticks(std::process::id()).saturating_sub(sim_ticks0));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cpu over {wall:.1} s: controller {cpu_pct:.1}% of a core, simulated agents {sim_pct:.1}% ({cores} cores in all)"
    );
    let rss_mib = super::peak_rss_kib(pid) as f64 / 1024.0;
    tasks.abort_all();
    Ok((cpu_pct, rss_mib))
}

/// Polls `done` every 10 ms for at most [`WAIT`]; a simulated node failing ends the wait early.
async fn wait_for(
    done: impl Fn() -> bool,
    what: &str,
    tasks: &mut tokio::task::JoinSet<Result<()>>,
) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        if let Some(Ok(Err(e))) = tasks.try_join_next() {
            return Err(e.context(format!("a simulated agent failed while waiting for {what}")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

struct Node {
    url: String,
    store: u32,
    node: u32,
    role: Role,
    shared: Arc<Shared>,
}

impl Node {
    async fn run(mut self, mut fault: Option<watch::Receiver<bool>>) -> Result<()> {
        let channel = Endpoint::from_shared(self.url.clone())?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| {
                format!("connecting simulated agent s{}-n{}", self.store, self.node)
            })?;
        let (tx, rx) = mpsc::channel(64);
        // Addresses nobody dials: the controller only publishes them.
        let port = 20_000 + self.store * NODES_PER_STORE + self.node;
        let hello = v1::Hello {
            protocol_version: PROTOCOL_VERSION,
            datastore: format!("s{}", self.store),
            node_id: format!("n{}", self.node),
            advertise: format!("127.0.0.1:{port}"),
            priority: 100,
            flavour: v1::Flavour::Redis as i32,
            agent_version: "bench".into(),
            ..Default::default()
        };
        tx.send(message(Msg::Hello(hello))).await?;
        let mut inbound = AgentLinkClient::new(channel)
            .session(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let (mut seq, mut health, offset) = (0u64, Health::Healthy, 1_000_000u64);
        loop {
            let send_verdict = tokio::select! {
                _ = heartbeat.tick() => true,
                changed = async {
                    match fault.as_mut() {
                        Some(f) => f.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    changed?;
                    health = Health::Down;
                    fault = None;
                    true
                }
                msg = inbound.message() => {
                    let Some(msg) = msg? else { return Ok(()) };
                    match msg.msg {
                        Some(controller_message::Msg::Welcome(_)) => {
                            self.shared.welcomed.fetch_add(1, Ordering::Relaxed);
                            false
                        }
                        Some(controller_message::Msg::Command(c)) => {
                            let ack = self.obey(&c);
                            tx.send(message(Msg::Ack(v1::CommandAck {
                                command_id: c.id,
                                ok: true,
                                role: self.role as i32,
                                repl_offset: offset,
                                epoch: c.epoch,
                                ..Default::default()
                            })))
                            .await?;
                            ack
                        }
                        _ => false,
                    }
                }
            };
            if send_verdict {
                seq += 1;
                let verdict = v1::Verdict {
                    seq,
                    health: health as i32,
                    role: self.role as i32,
                    repl_offset: offset,
                    link_up: self.role == Role::Replica,
                    ..Default::default()
                };
                tx.send(message(Msg::Verdict(verdict))).await?;
            }
        }
    }

    /// Applies a command to the simulated node; true when its verdict should go out at once.
    fn obey(&mut self, c: &v1::Command) -> bool {
        match c.action {
            Some(Action::Promote(_)) => {
                if let Some(at) = self
                    .shared
                    .faulted_at
                    .lock()
                    .ok()
                    .and_then(|f| f[self.store as usize])
                {
                    let us = at.elapsed().as_micros() as u64;
                    if let Ok(mut h) = self.shared.decisions.lock() {
                        let _ = h.record(us.max(1));
                    }
                    self.shared.promoted.fetch_add(1, Ordering::Relaxed);
                }
                self.role = Role::Primary;
                true
            }
            Some(Action::ReplicateOf(_)) => {
                self.role = Role::Replica;
                true
            }
            _ => false,
        }
    }
}

fn message(msg: Msg) -> v1::AgentMessage {
    v1::AgentMessage { msg: Some(msg) }
}
