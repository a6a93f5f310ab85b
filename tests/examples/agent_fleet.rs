//! The simulated agents of `cargo xtask bench controller`, a program of their own so that xtask
//! needs no protoc: xtask builds this after setup, starts the real controller, and runs this
//! against it. A simulated agent per node of `--stores` data stores (a primary and two replicas
//! each), every one on its own gRPC connection, sends verdicts as real agents do: on a change, and
//! otherwise every 100 ms, or at the slow pace the controller gives a quiet replica.
//! Faults are DOWN verdicts from `--failovers` primaries, one every 20 ms; the decision latency runs
//! from that verdict leaving the simulated primary to the promote command reaching a replica.
//!
//! Stdout is one JSON object per line, in this order, for the bench to follow:
//! - `{"event":"fleet","stores":S,"agents":A,"heartbeat_ms":H}`, before connecting;
//! - `{"event":"steady_start"}`: every session is welcomed and warmed up, the measured window
//!   opens;
//! - `{"event":"faults_start","failovers":N}`: after 5 s of steady load, primaries start failing;
//! - `{"event":"steady_end"}`: every failover promoted a replica, the window closes;
//! - `{"event":"result","decision_us":{"count","p50","p90","p99","max"},"cpu_pct":C,
//!   "messages":{...}}`: the decision latencies, this program's own CPU over the window (% of one
//!   core), and the messages per second each way, counted here: `up` agent->controller
//!   (verdicts and acks), `down` controller->agent (desired state, lease grants, commands, each
//!   also on its own), over the whole window and over its first 5 s (`steady_*`, before any
//!   fault).
//!
//! Errors go to stderr, with a non-zero exit status.
use std::{
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use vigil_proto::{
    PROTOCOL_VERSION, heartbeat,
    v1::{
        self, Health, Role, agent_link_client::AgentLinkClient, agent_message::Msg,
        command::Action, controller_message,
    },
};

const NODES_PER_STORE: u32 = 3;
const HEARTBEAT: Duration = Duration::from_millis(100);
/// Every bounded wait in the bench: connecting, warming up, a failover finishing.
const WAIT: Duration = Duration::from_secs(90);
/// Sessions being opened at once: thousands of handshakes at the same instant would starve
/// both processes, and a session whose keep-alive pings go unanswered for a second is closed.
const OPENING: usize = 128;
/// Tries to open a session before the window: a real agent retries too.
const OPEN_TRIES: u32 = 5;
/// Steady load before the first fault.
const STEADY: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
    about = "The controller bench's simulated agents (run by `cargo xtask bench controller`)"
)]
struct Args {
    /// The controller's gRPC URL.
    #[arg(long)]
    controller: String,
    /// Data stores, three simulated agents each.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    stores: u32,
    /// Primaries that fail, one every 20 ms (at most one per store).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    failovers: u32,
}

/// What the simulated nodes share with the driver.
struct Shared {
    /// Per store: when its primary sent the DOWN verdict.
    faulted_at: Mutex<Vec<Option<Instant>>>,
    /// Decision latencies in µs, recorded by the replica that got the promote.
    decisions: Mutex<Histogram<u64>>,
    promoted: AtomicUsize,
    welcomed: AtomicUsize,
    /// The measured window has begun.
    measuring: AtomicBool,
    /// Permits to open a session (see [`OPENING`]).
    opening: Semaphore,
    count: Counts,
}

/// Messages each way, counted as they are sent and received.
#[derive(Default)]
struct Counts {
    up: AtomicU64,
    desired: AtomicU64,
    lease: AtomicU64,
    command: AtomicU64,
}

/// The counts at one instant.
#[derive(Clone, Copy, Default)]
struct Snapshot {
    at: Option<Instant>,
    up: u64,
    desired: u64,
    lease: u64,
    command: u64,
}

impl Counts {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Some(Instant::now()),
            up: self.up.load(Ordering::Relaxed),
            desired: self.desired.load(Ordering::Relaxed),
            lease: self.lease.load(Ordering::Relaxed),
            command: self.command.load(Ordering::Relaxed),
        }
    }
}

impl Snapshot {
    /// Messages per second from `self` to `later`, by kind.
    fn rates(&self, later: &Snapshot) -> Value {
        let secs = match (self.at, later.at) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(1e-3),
            _ => return json!({}),
        };
        let rate = |a: u64, b: u64| ((b - a) as f64 / secs).round();
        let down = (later.desired + later.lease + later.command)
            - (self.desired + self.lease + self.command);
        json!({
            "up": rate(self.up, later.up),
            "down": (down as f64 / secs).round(),
            "desired": rate(self.desired, later.desired),
            "lease": rate(self.lease, later.lease),
            "command": rate(self.command, later.command),
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent_fleet: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let Args {
        controller,
        stores,
        failovers,
    } = args;
    let agents = stores * NODES_PER_STORE;
    raise_fd_limit(u64::from(agents) * 2 + 1024)?;
    let shared = Arc::new(Shared {
        faulted_at: Mutex::new(vec![None; stores as usize]),
        decisions: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        promoted: AtomicUsize::new(0),
        welcomed: AtomicUsize::new(0),
        measuring: AtomicBool::new(false),
        opening: Semaphore::new(OPENING),
        count: Counts::default(),
    });
    emit(json!({
        "event": "fleet",
        "stores": stores,
        "agents": agents,
        "heartbeat_ms": HEARTBEAT.as_millis() as u64,
    }));
    let (cpu_pct, messages) =
        drive(controller, stores, failovers.min(stores), shared.clone()).await?;
    let h = shared
        .decisions
        .lock()
        .map_err(|_| anyhow::anyhow!("a simulated node panicked"))?
        .clone();
    emit(json!({
        "event": "result",
        "decision_us": {
            "count": h.len(),
            "p50": h.value_at_quantile(0.5),
            "p90": h.value_at_quantile(0.9),
            "p99": h.value_at_quantile(0.99),
            "max": h.max(),
        },
        "cpu_pct": cpu_pct,
        "messages": messages,
    }));
    Ok(())
}

/// One line of the bench's protocol on stdout (flushed at the newline).
fn emit(line: Value) {
    println!("{line}");
}

fn raise_fd_limit(want: u64) -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard)
            .context("raising the open-files limit for the simulated agents")?;
    }
    Ok(())
}

/// This process's CPU time so far (user and system), in seconds.
fn own_cpu_s() -> Result<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

/// Connects every node, runs the steady window with its faults, and returns this process's CPU
/// over the window, in % of one core, and the messages per second each way.
async fn drive(
    url: String,
    stores: u32,
    failovers: u32,
    shared: Arc<Shared>,
) -> Result<(f64, Value)> {
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
    let cpu0 = own_cpu_s()?;
    let t0 = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    let start = shared.count.snapshot();
    emit(json!({"event": "steady_start"}));
    // Steady load first, then faults spread over the rest of the window.
    tokio::time::sleep(STEADY).await;
    let steady = shared.count.snapshot();
    emit(json!({"event": "faults_start", "failovers": failovers}));
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
    let cpu_pct = 100.0 * (own_cpu_s()? - cpu0) / wall;
    let end = shared.count.snapshot();
    emit(json!({"event": "steady_end"}));
    tasks.abort_all();
    let messages = json!({
        "window": start.rates(&end),
        "steady": start.rates(&steady),
    });
    Ok((cpu_pct, messages))
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

/// A session, open and welcomed.
struct Session {
    tx: mpsc::Sender<v1::AgentMessage>,
    inbound: tonic::Streaming<v1::ControllerMessage>,
}

impl Node {
    /// Opens the node's session and waits for its Welcome, a few times if it fails (as a real
    /// agent retries), while at most [`OPENING`] are being opened at once.
    async fn open(&self) -> Result<Session> {
        let _permit = self.shared.opening.acquire().await?;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_open().await {
                Ok(session) => {
                    self.shared.welcomed.fetch_add(1, Ordering::Relaxed);
                    return Ok(session);
                }
                Err(e) if tries >= OPEN_TRIES => {
                    return Err(e.context(format!(
                        "opening the session of simulated agent s{}-n{} ({tries} tries)",
                        self.store, self.node
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250) * tries).await,
            }
        }
    }

    async fn try_open(&self) -> Result<Session> {
        let channel = Endpoint::from_shared(self.url.clone())?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await?;
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
        match inbound.message().await? {
            Some(v1::ControllerMessage {
                msg: Some(controller_message::Msg::Welcome(_)),
            }) => Ok(Session { tx, inbound }),
            other => bail!("the first message was not a Welcome: {other:?}"),
        }
    }

    async fn run(mut self, mut fault: Option<watch::Receiver<bool>>) -> Result<()> {
        let (mut seq, mut health, mut lost) = (0u64, Health::Healthy, 0);
        loop {
            let session = self.open().await?;
            match self.serve(session, &mut fault, &mut seq, &mut health).await {
                Ok(()) => return Ok(()),
                // Before the window, a session broken by the load of opening thousands is
                // opened again, as a real agent reconnects; within it, that is a failure.
                Err(_) if !self.shared.measuring.load(Ordering::Relaxed) && lost < OPEN_TRIES => {
                    lost += 1;
                    self.shared.welcomed.fetch_sub(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Carries one session until it ends: a verdict every heartbeat and on a fault, commands
    /// obeyed and acknowledged.
    async fn serve(
        &mut self,
        Session { tx, mut inbound }: Session,
        fault: &mut Option<watch::Receiver<bool>>,
        seq: &mut u64,
        health: &mut Health,
    ) -> Result<()> {
        // As a real agent's heartbeat: the next verdict is due a period after the last one, at
        // the slow pace the controller gives a quiet replica.
        let heartbeat = tokio::time::sleep(HEARTBEAT);
        tokio::pin!(heartbeat);
        let mut quiet_ms = 0;
        let offset = 1_000_000u64;
        let shared = Arc::clone(&self.shared);
        let count = &shared.count;
        loop {
            let send_verdict = tokio::select! {
                () = &mut heartbeat => true,
                changed = async {
                    match fault.as_mut() {
                        Some(f) => f.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    changed?;
                    *health = Health::Down;
                    *fault = None;
                    true
                }
                msg = inbound.message() => {
                    let Some(msg) = msg? else { return Ok(()) };
                    match msg.msg {
                        Some(controller_message::Msg::Desired(d)) => {
                            count.desired.fetch_add(1, Ordering::Relaxed);
                            quiet_ms = d.quiet_heartbeat_ms;
                            false
                        }
                        Some(controller_message::Msg::Lease(_)) => {
                            count.lease.fetch_add(1, Ordering::Relaxed);
                            false
                        }
                        Some(controller_message::Msg::Command(c)) => {
                            count.command.fetch_add(1, Ordering::Relaxed);
                            let ack = self.obey(&c);
                            count.up.fetch_add(1, Ordering::Relaxed);
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
                *seq += 1;
                let verdict = v1::Verdict {
                    seq: *seq,
                    health: *health as i32,
                    role: self.role as i32,
                    repl_offset: offset,
                    link_up: self.role == Role::Replica,
                    ..Default::default()
                };
                let next = heartbeat::period(HEARTBEAT, quiet_ms, heartbeat::quiet(&verdict));
                heartbeat.as_mut().reset(tokio::time::Instant::now() + next);
                count.up.fetch_add(1, Ordering::Relaxed);
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
