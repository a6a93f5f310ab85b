//! `vigil-agent run`: the node agent daemon. It watches the local server (the monitor), sends
//! verdicts to the controller on every change and as a heartbeat, probes peers, carries out the
//! controller's commands under the epoch and leadership rules, and fences a primary whose lease
//! ran out without a quorum.
//!
//! This file is the event loop and the agent's own changes to the fence. Beside it:
//! [`settings`] (every flag and its default) and [`config`] (the validated configuration),
//! `inbound` (desired state and commands from the controller, and the acks), [`epochs`] (the
//! epoch rule), [`bounds`] (what is refused even from the leader), [`leadership`] (the rule that no one obeys a deposed controller), [`worker`] (the
//! controller's commands, one at a time), [`lease`] (the lease the controller grants),
//! [`fencing`] (when a primary fences itself), [`heartbeat`] (when an unchanged verdict is sent
//! again), [`link_down`] (how long a replica's link has been
//! down), [`event_log`] (kernel events logged in full or summarised), [`metrics`] (what
//! Prometheus scrapes) and [`health`] (the health endpoints and the status systemd shows). The
//! fence itself is `crate::fence`.
//!
//! Under systemd (`Type=notify`, `NOTIFY_SOCKET` set), the daemon sends READY=1 once its event
//! loop runs: the eBPF programs are attached to the server (or failed to load, which the log and
//! STATUS say) and its first verdict is out. While no server listens on the port yet it reports
//! DOWN, says so in STATUS and extends the start timeout. WATCHDOG=1 comes from the event loop
//! itself, so a loop that is stuck stops the pings; STOPPING=1 on SIGINT or SIGTERM.
use std::{sync::Arc, time::Duration};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use vigil_proto::{
    PROTOCOL_VERSION,
    notify::Notifier,
    v1::{self, controller_message::Msg as Down},
};

pub mod bounds;
pub mod config;
pub mod epochs;
pub mod event_log;
pub mod fencing;
pub mod health;
pub mod heartbeat;
mod inbound;
pub mod leadership;
pub mod lease;
pub mod link_down;
pub mod metrics;
pub mod settings;
pub mod worker;

use self::{
    bounds::Topology,
    config::RunConfig,
    epochs::EpochGuard,
    event_log::EventLog,
    health::{HealthState, View},
    heartbeat::Heartbeat,
    leadership::{LeadershipGuard, Throttle},
    lease::Lease,
    link_down::LinkDown,
    metrics::{EventLabel, Metrics, MetricsEnd},
    worker::{Done, Hints},
};
use crate::{
    error::{AgentError, Result},
    fence::{
        Context, Fence,
        gate::Gate,
        rules::{Event, Record},
    },
    host::target,
    kernel::event::Line,
    link::stream::{self as link, Link},
    server::{
        commands::Command,
        peers::{self, PeerList, PeerProbe, PeerTable},
        ping_outcome::PingOutcome,
        poller,
    },
    verdict::{
        monitor::{Monitor, MonitorOptions, Wake},
        rules::{Health, Reason, Severity},
    },
};

enum Ev {
    Quit,
    Monitor(Wake),
    Down(Down),
    Done(Done),
    Peer(PeerProbe),
    Heartbeat,
    Watchdog,
    FenceCheck,
    FenceChanged,
    MetricsEnded(MetricsEnd),
}

struct Daemon {
    monitor: Monitor,
    link: Link,
    metrics: Metrics,
    epochs: EpochGuard,
    /// The highest controller leadership seen; lower ones are not obeyed.
    leadership: LeadershipGuard,
    /// How often ignoring a deposed controller's desired state is said.
    stale_log: Throttle,
    /// What the health polls showed of the replication link, for `link_down_ms`.
    link_down: LinkDown,
    seq: u64,
    peers: PeerTable,
    /// The data store as the latest desired state described it: where replication may come from.
    topology: Topology,
    /// The longest write pause a command may ask for.
    max_pause: Duration,
    peers_tx: watch::Sender<PeerList>,
    commands: mpsc::Sender<(Command, Hints)>,
    fence: Fence,
    fence_state: watch::Receiver<Option<Record>>,
    lease: Lease,
    /// When the verdict is next sent though it did not change.
    heartbeat: Heartbeat,
    /// Fires when the lease runs out, so a cut-off primary fences itself at that instant rather
    /// than at the next periodic check.
    lease_end: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The agent's own change to the fence (a self-fence or its lifting) while one runs.
    self_change: Option<JoinHandle<()>>,
    /// The controller's latest desired state names this node the primary and grants it no
    /// lease: a failover from it is under way.
    lease_withheld: bool,
    /// The latest desired state taken in: a lease grant stands for it, sent again with a lease.
    last_desired: Option<v1::DesiredState>,
    /// When the agent last tried to fence itself: a fence that cannot go up is retried now and
    /// then, not on every check.
    self_fenced_at: Option<Instant>,
    /// Which kernel events are logged in full, and the repeats to summarise.
    event_log: EventLog,
}

/// How often a self-fence that failed is tried again.
const SELF_FENCE_RETRY: Duration = Duration::from_secs(1);

/// While no server listens yet, each extension of systemd's start timeout asks for this much
/// more; one is sent every 10 s, so the agent is never given up on while it waits.
const START_EXTENSION: Duration = Duration::from_secs(30);

/// The STATUS= line of an agent on its way out.
const STOPPING: &str = "stopping on a signal";

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(mut cfg: RunConfig) -> Result<()> {
    let notifier = Notifier::from_env();
    let metrics = Metrics::new();
    let health = Arc::new(HealthState::default());
    let mut metrics_server = match cfg.metrics_listen {
        Some(addr) => {
            Some(metrics::serve(addr, &metrics, health::routes(Arc::clone(&health))).await?)
        }
        None => None,
    };
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| AgentError::io("installing the SIGINT handler", e))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| AgentError::io("installing the SIGTERM handler", e))?;

    // Before the first connection to the server: a fence left up by an agent before this one
    // would otherwise keep this agent's own connections out.
    let gate = Gate::default();
    cfg.server.gate = Some(gate.clone());
    let port = cfg.server.address.port;
    let fence = Fence::start(
        port,
        cfg.fence_method,
        gate,
        target::listener_owner(port).ok().flatten(),
    )?;

    let flavour = match cfg.server.connect(Duration::from_secs(1)).await {
        Ok(mut c) => poller::flavour(&mut c).await,
        Err(PingOutcome::AuthFailed(e)) => {
            tracing::error!(server = %cfg.server.address, error = %e, "the server refused the agent's credentials: check --username and --password-file (or VIGIL_SERVER_PASSWORD)");
            None
        }
        Err(_) => None,
    };
    let hello = v1::Hello {
        protocol_version: PROTOCOL_VERSION,
        datastore: cfg.datastore.clone(),
        node_id: cfg.node_id.clone(),
        advertise: cfg.advertise.to_string(),
        zone: cfg.zone.clone(),
        priority: cfg.priority,
        flavour: flavour.map_or(v1::Flavour::Unspecified, v1::Flavour::from) as i32,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let link = link::spawn(cfg.controllers.clone(), hello, cfg.tls.clone());

    // The server may start after the agent (or be down): report DOWN until it listens.
    let mut seq = 0;
    let mut watchdog = notifier.watchdog_timer();
    let pid = loop {
        health.beat.beat();
        if let Ok(Some(pid)) = target::listener_owner(cfg.server.address.port) {
            break pid;
        }
        seq += 1;
        let down = v1::Verdict {
            seq,
            health: v1::Health::Down as i32,
            reasons: Reason::NOT_RUNNING.bits(),
            ..Default::default()
        };
        link.verdicts.send_replace(Some(down));
        if seq % 50 == 1 {
            tracing::warn!(
                port = cfg.server.address.port,
                "no server is listening on the port yet; reporting DOWN and waiting"
            );
            notifier.extend_start(
                START_EXTENSION,
                &format!(
                    "no server listening on port {} yet; reporting DOWN",
                    cfg.server.address.port
                ),
            );
        }
        tokio::select! {
            _ = interrupt.recv() => {
                notifier.stopping(STOPPING);
                return Ok(());
            }
            _ = terminate.recv() => {
                notifier.stopping(STOPPING);
                return Ok(());
            }
            _ = watchdog.tick() => notifier.watchdog(),
            ended = metrics::ended(&mut metrics_server) => {
                metrics_server = None;
                metrics::log_end(ended);
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    };
    let monitor = Monitor::start(MonitorOptions {
        server: cfg.server.clone(),
        pid,
        port: cfg.server.address.port,
        kernel: cfg.kernel,
        tick: cfg.tick,
        ping_interval: cfg.ping_interval,
        health_interval: cfg.health_interval,
        thresholds: cfg.thresholds.clone(),
        require_kernel: false,
    })?;
    let (peers_tx, peers_rx) = watch::channel(PeerList::default());
    let (peer_tx, mut peer_rx) = mpsc::channel(64);
    let prober = tokio::spawn(peers::peer_prober(
        cfg.server.clone(),
        peers_rx,
        cfg.peer_probes,
        cfg.peer_interval,
        peer_tx,
    ));
    // After the kernel probes, whose loading made the loader this reuses.
    fence.prepare().await;
    let (done_tx, mut done_rx) = mpsc::channel(16);
    let (commands, runner) = worker::spawn(cfg.server.clone(), fence.clone(), done_tx);
    tracing::info!(
        datastore = %cfg.datastore, node = %cfg.node_id, server = %cfg.server.address, pid,
        controllers = %cfg.controllers.join(","), fence_method = cfg.fence_method.as_str(),
        metrics = %cfg.metrics_listen.map_or("off".to_string(), |a| a.to_string()),
        "vigil-agent running"
    );
    let mut fence_check = tokio::time::interval(Duration::from_millis(100));
    fence_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut d = Daemon {
        monitor,
        link,
        metrics,
        epochs: EpochGuard::default(),
        leadership: LeadershipGuard::default(),
        stale_log: Throttle::default(),
        link_down: LinkDown::default(),
        seq,
        peers: PeerTable::default(),
        topology: Topology::default(),
        max_pause: cfg.max_pause,
        peers_tx,
        commands,
        fence_state: fence.subscribe(),
        fence,
        lease: Lease::default(),
        heartbeat: Heartbeat::new(cfg.heartbeat),
        // Far off until the first grant.
        lease_end: Box::pin(tokio::time::sleep(Duration::from_secs(86_400))),
        self_change: None,
        lease_withheld: false,
        last_desired: None,
        self_fenced_at: None,
        event_log: EventLog::default(),
    };
    d.on_fence_changed();
    let mut ready = false;
    loop {
        let ev = tokio::select! {
            biased;
            _ = interrupt.recv() => Ev::Quit,
            _ = terminate.recv() => Ev::Quit,
            // Early, so a loop kept busy by the server's events still pings.
            _ = watchdog.tick() => Ev::Watchdog,
            w = d.monitor.next() => Ev::Monitor(w?),
            Some(m) = d.link.inbound.recv() => Ev::Down(m),
            Some(done) = done_rx.recv() => Ev::Done(done),
            Some(p) = peer_rx.recv() => Ev::Peer(p),
            () = &mut d.heartbeat.due => Ev::Heartbeat,
            _ = fence_check.tick() => Ev::FenceCheck,
            () = &mut d.lease_end => {
                d.lease_end.as_mut().reset(Instant::now() + Duration::from_secs(86_400));
                Ev::FenceCheck
            }
            Ok(()) = d.fence_state.changed() => Ev::FenceChanged,
            ended = metrics::ended(&mut metrics_server) => Ev::MetricsEnded(ended),
        };
        let heartbeat_due = matches!(ev, Ev::Heartbeat);
        match ev {
            Ev::Quit => break,
            Ev::Monitor(w) => {
                if let Wake::Ping(PingOutcome::Timeout | PingOutcome::Refused) = &w {
                    d.metrics.ping_misses.inc();
                }
                if let Wake::Ping(PingOutcome::Pong(rtt)) = &w {
                    d.metrics.ping_rtt_seconds.observe(rtt.as_secs_f64());
                }
                // Timed as the answer arrives: the monitor keeps the last answer when a poll
                // fails, and a link seen up then is not up now.
                if let Wake::Health(sample) = &w
                    && let Ok(r) = &sample.replication
                {
                    d.link_down.polled(r, Instant::now());
                }
                let second = matches!(w, Wake::Second);
                d.monitor.handle(w);
                if second {
                    d.metrics
                        .stall_age_seconds
                        .set(d.monitor.stall_age().as_secs_f64());
                    let runq = d.monitor.inputs().kernel.runq_p99;
                    d.metrics.runq_p99_seconds.set(runq.as_secs_f64());
                }
            }
            Ev::Down(m) => d.on_controller(m),
            Ev::Done(done) => d.on_done(done),
            Ev::Peer(p) => d.peers.record(&p),
            Ev::Heartbeat => {
                d.event_log.log_due(Instant::now());
            }
            Ev::Watchdog => notifier.watchdog(),
            Ev::FenceCheck => d.check_fence(),
            Ev::FenceChanged => d.on_fence_changed(),
            Ev::MetricsEnded(ended) => {
                metrics_server = None;
                metrics::log_end(ended);
            }
        }
        for line in d.monitor.drain_lines() {
            d.log_line(&line);
        }
        if let Some(reasons) = d.monitor.assess() {
            d.metrics.set_verdict(reasons);
            let health = reasons.health();
            let names = reasons.names().join(",");
            if health >= Health::Unhealthy {
                tracing::warn!(health = health.as_str(), reasons = %names, "verdict changed");
            } else {
                tracing::info!(health = health.as_str(), reasons = %names, "verdict changed");
            }
            d.publish();
        } else if heartbeat_due {
            d.publish();
        }
        // The endpoints and systemd hear of it after the verdict is out: READY=1 comes once the
        // first one is.
        health.beat.beat();
        let view = d.view();
        d.metrics.ready.set(i64::from(view.ready()));
        if health.update(&view) && ready {
            notifier.status(&view.status_line());
        }
        if !ready {
            ready = true;
            notifier.ready(&view.status_line());
        }
    }
    notifier.stopping(STOPPING);
    prober.abort();
    runner.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!("vigil-agent stopping");
    Ok(())
}

impl Daemon {
    /// What the health endpoints answer from, now.
    fn view(&self) -> View {
        View {
            attached: self.monitor.kernel().is_some(),
            controller: self.link.linked.borrow().clone(),
            role: self.monitor.replication().map(|r| r.role),
            health: Some(self.monitor.health()),
            fenced: self.fence.record().is_some(),
        }
    }

    fn publish(&mut self) {
        self.seq += 1;
        let now = Instant::now();
        // The lease a grant for this verdict gives runs from now, before the controller has it.
        self.lease.sent(self.seq, now);
        let repl = self.monitor.replication();
        let (probed, unreachable) = self.peers.bits();
        let verdict = v1::Verdict {
            seq: self.seq,
            health: v1::Health::from(self.monitor.health()) as i32,
            reasons: self.monitor.reasons().bits(),
            role: repl.map_or(v1::Role::Unspecified, |r| r.role.into()) as i32,
            epoch: self.epochs.newest(),
            repl_offset: repl.map_or(0, |r| r.offset),
            link_up: repl.is_some_and(|r| r.link_up),
            link_down_ms: self.link_down.ms(repl, now),
            stall_ms: self
                .monitor
                .stall_age()
                .as_millis()
                .min(u128::from(u32::MAX)) as u32,
            ping_rtt_us: self
                .monitor
                .last_rtt()
                .map_or(0, |d| d.as_micros().min(u128::from(u32::MAX)) as u32),
            peers_version: self.peers.version,
            peers_probed: probed,
            peers_unreachable: unreachable,
            // As the health poller last found it, not as it was at hello: the controller picks a
            // switchover's method from it.
            flavour: self
                .monitor
                .flavour()
                .map_or(v1::Flavour::Unspecified, v1::Flavour::from) as i32,
        };
        self.heartbeat.sent(vigil_proto::heartbeat::quiet(&verdict));
        self.link.verdicts.send_replace(Some(verdict));
        self.metrics.verdicts_sent.inc();
    }

    fn log_line(&mut self, line: &Line) {
        self.metrics
            .kernel_events
            .get_or_create(&EventLabel {
                event: line.event.name(),
            })
            .inc();
        self.event_log.log(line, Instant::now());
    }

    /// What the command runner and the fence should know of the server now.
    pub(super) fn hints(&self) -> Hints {
        let kernel = self.monitor.inputs().kernel;
        Hints {
            // Not a server that exited: its pid may be another process's by now.
            pid: self
                .monitor
                .kernel()
                .filter(|_| !kernel.exited)
                .map(|k| k.pid()),
            // Stopped, gone, or judged unhealthy (deadlocked, unanswered PINGs, a stall past
            // its bound): a question would only wait out its limit.
            unresponsive: kernel.stopped_for.is_some()
                || kernel.exited
                || self.monitor.health() >= Health::Unhealthy,
            role: self.monitor.replication().map(|r| r.role),
        }
    }

    /// Whether one of the agent's own changes to the fence is still running.
    fn changing_fence(&self) -> bool {
        self.self_change.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Applies the agent's own `event` to the fence (a self-fence, or lifting one), unless one
    /// of its own changes is still running. The fence decides again under its lock, so a
    /// controller command that changed it meanwhile wins.
    pub(super) fn change_fence(&mut self, event: Event) {
        if self.changing_fence() {
            return;
        }
        let fence = self.fence.clone();
        let context = Context {
            pid: self.hints().pid,
            replicas: Vec::new(),
        };
        self.self_change = Some(tokio::spawn(async move {
            if let Err(e) = fence.apply(event, context).await {
                tracing::error!(?event, error = %e.chain(), "the fence could not be changed");
            }
        }));
    }

    /// The fence went up or down (or changed kind): the verdict and the metric follow it.
    fn on_fence_changed(&mut self) {
        let record = *self.fence_state.borrow_and_update();
        self.monitor.fenced = record.is_some();
        self.metrics.fenced.set(i64::from(record.is_some()));
        if let Some(r) = record {
            // The fence began at an epoch this agent may not have seen (a restart).
            self.epochs.observe(r.epoch);
        }
    }

    /// Fences a primary whose lease has run out and that cannot reach a quorum of its store, or
    /// whose lease the controller withholds (see [`fencing`]).
    pub(super) fn check_fence(&mut self) {
        let now = Instant::now();
        if self.fence.record().is_some()
            || self.changing_fence()
            || self
                .self_fenced_at
                .is_some_and(|at| now.duration_since(at) < SELF_FENCE_RETRY)
        {
            return;
        }
        let role = self.monitor.replication().map(|r| r.role);
        let (reachable, peers) = self.peers.reachable();
        let withheld = self.lease_withheld;
        if fencing::should_fence(role, self.lease.expired(now), withheld, reachable, peers) {
            let epoch = self.epochs.newest();
            let why = if withheld {
                "the controller withholds it"
            } else {
                "it cannot reach a quorum of its data store"
            };
            tracing::error!(
                epoch,
                reachable,
                peers,
                "SELF-FENCING: this primary's lease ran out and {why}; \
                 fencing its clients off in the kernel until the controller says otherwise"
            );
            self.self_fenced_at = Some(now);
            self.change_fence(Event::LeaseLost { epoch });
        }
    }
}
