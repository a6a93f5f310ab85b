//! `vigil-agent run`: the node agent daemon. It watches the local server (the monitor), sends
//! verdicts to the controller on every change and as a heartbeat, probes peers, carries out the
//! controller's commands under the epoch rule, and fences a cut-off primary's writes.
//!
//! This file is the event loop. Beside it: [`settings`] (every flag and its default) and
//! [`config`] (the validated configuration), [`epochs`] (the epoch rule), [`fencing`] (when a
//! primary fences itself) and [`metrics`] (what Prometheus scrapes).
use std::time::Duration;

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior},
};
use vigil_proto::{
    PROTOCOL_VERSION,
    v1::{self, controller_message::Msg as Down},
};

pub mod config;
pub mod epochs;
pub mod fencing;
pub mod metrics;
pub mod settings;

use self::{
    config::RunConfig,
    epochs::EpochGuard,
    metrics::{EventLabel, Metrics, MetricsEnd},
};
use crate::{
    error::{AgentError, Result},
    host::target,
    kernel::event::Line,
    link::stream::{self as link, Link},
    server::{
        commands::{self, Action, Command, Outcome},
        conn::PingOutcome,
        info::Role,
        peers::{self, PeerList, PeerProbe, PeerTable},
        poller,
    },
    verdict::{
        monitor::{Monitor, MonitorOptions, Wake},
        rules::{Health, Reason, Severity},
    },
};

/// Why a command ran: sent by the controller, or by the agent itself (self-fencing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Controller { id: u64, epoch: u64 },
    SelfFence,
}

struct Done {
    origin: Origin,
    action: Action,
    result: Result<Outcome>,
}

enum Ev {
    Quit,
    Monitor(Wake),
    Down(Down),
    Done(Done),
    Peer(PeerProbe),
    Heartbeat,
    FenceCheck,
    MetricsEnded(MetricsEnd),
}

struct Daemon {
    cfg: RunConfig,
    monitor: Monitor,
    link: Link,
    metrics: Metrics,
    epochs: EpochGuard,
    seq: u64,
    peers: PeerTable,
    peers_tx: watch::Sender<PeerList>,
    done_tx: mpsc::Sender<Done>,
    self_fenced: bool,
    last_fence: Option<Instant>,
    started: Instant,
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(cfg: RunConfig) -> Result<()> {
    let metrics = Metrics::new();
    let mut metrics_server = match cfg.metrics_listen {
        Some(addr) => Some(metrics::serve(addr, &metrics).await?),
        None => None,
    };
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| AgentError::io("installing the SIGINT handler", e))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| AgentError::io("installing the SIGTERM handler", e))?;

    let flavour = match cfg.server.connect(Duration::from_secs(1)).await {
        Ok(mut c) => poller::flavour(&mut c).await,
        Err(PingOutcome::AuthFailed(e)) => {
            tracing::error!(server = %cfg.server.address, error = %e, "the server refused the agent's credentials: check --username / --password");
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
    let link = link::spawn(cfg.controller.clone(), hello);

    // The server may start after the agent (or be down): report DOWN until it listens.
    let mut seq = 0;
    let pid = loop {
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
        }
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
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
    let (done_tx, mut done_rx) = mpsc::channel(16);
    tracing::info!(
        datastore = %cfg.datastore, node = %cfg.node_id, server = %cfg.server.address, pid,
        controller = %cfg.controller, "vigil-agent running"
    );
    let mut heartbeat = tokio::time::interval(cfg.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut fence_check = tokio::time::interval(Duration::from_millis(100));
    fence_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut d = Daemon {
        cfg,
        monitor,
        link,
        metrics,
        epochs: EpochGuard::default(),
        seq,
        peers: PeerTable::default(),
        peers_tx,
        done_tx,
        self_fenced: false,
        last_fence: None,
        started: Instant::now(),
    };
    loop {
        let ev = tokio::select! {
            biased;
            _ = interrupt.recv() => Ev::Quit,
            _ = terminate.recv() => Ev::Quit,
            w = d.monitor.next() => Ev::Monitor(w?),
            Some(m) = d.link.inbound.recv() => Ev::Down(m),
            Some(done) = done_rx.recv() => Ev::Done(done),
            Some(p) = peer_rx.recv() => Ev::Peer(p),
            _ = heartbeat.tick() => Ev::Heartbeat,
            _ = fence_check.tick() => Ev::FenceCheck,
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
            Ev::Heartbeat => {}
            Ev::FenceCheck => d.check_fence(),
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
    }
    prober.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!("vigil-agent stopping");
    Ok(())
}

impl Daemon {
    fn publish(&mut self) {
        self.seq += 1;
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
        self.link.verdicts.send_replace(Some(verdict));
        self.metrics.verdicts_sent.inc();
    }

    fn log_line(&self, line: &Line) {
        let event = line.event.name();
        self.metrics
            .kernel_events
            .get_or_create(&EventLabel { event })
            .inc();
        let detail = serde_json::to_string(line).unwrap_or_default();
        if line.event.severity() == tracing::Level::WARN {
            tracing::warn!(event, pid = line.pid, %detail, "kernel");
        } else {
            tracing::info!(event, pid = line.pid, %detail, "kernel");
        }
    }

    fn on_controller(&mut self, m: Down) {
        match m {
            Down::Welcome(_) => {}
            Down::Desired(d) => self.on_desired(d),
            Down::Command(c) => self.on_command(c),
        }
    }

    fn on_desired(&mut self, d: v1::DesiredState) {
        self.epochs.observe(d.epoch);
        let expected = Role::try_from(d.role()).ok();
        self.monitor.expected_role = expected;
        self.monitor.expected_primary = match d.primary_address.as_str() {
            "" => None,
            address => match address.parse() {
                Ok(primary) => Some(primary),
                Err(e) => {
                    tracing::warn!(error = %e, "the controller's primary address is not HOST:PORT; not checking which primary this node follows");
                    None
                }
            },
        };
        if d.peers_version != self.peers.version || self.peers.peers.len() != d.peers.len() {
            let list = PeerList {
                version: d.peers_version,
                addresses: d.peers.iter().map(|p| p.address.clone()).collect(),
            };
            self.peers.reset(&list);
            self.peers_tx.send_replace(list);
        }
        if let Some(t) = d.thresholds {
            let mut thresholds = self.monitor.thresholds().clone();
            if t.busy_unhealthy_ms > 0 {
                thresholds.long_stall = Duration::from_millis(u64::from(t.busy_unhealthy_ms));
            }
            if t.ping_misses > 0 {
                thresholds.ping_misses = t.ping_misses;
            }
            self.monitor.set_thresholds(thresholds);
        }
        // The controller is back: it decides now. A node it still wants as primary takes writes
        // again; one it wants as a replica is about to be re-pointed, and replicas refuse writes.
        if self.self_fenced {
            tracing::warn!(epoch = d.epoch, role = ?expected, "the controller is back: lifting the self-fence");
            self.self_fenced = false;
            self.spawn(Origin::SelfFence, Action::Unfence);
        }
    }

    fn on_command(&mut self, c: v1::Command) {
        let id = c.id;
        let epoch = c.epoch;
        let command = match Command::try_from(c) {
            Ok(cmd) => cmd,
            Err(e) => {
                tracing::warn!(command = id, error = %e, "refusing a malformed command from the controller");
                self.ack(id, epoch, Err(e));
                return;
            }
        };
        if let Err(e) = self.epochs.admit(command.epoch) {
            tracing::warn!(command = id, error = %e, "refusing a stale command");
            self.ack(id, epoch, Err(e));
            return;
        }
        tracing::info!(command = id, epoch, action = ?command.action, "carrying out a controller command");
        self.spawn(Origin::Controller { id, epoch }, command.action);
    }

    fn spawn(&self, origin: Origin, action: Action) {
        let server = self.cfg.server.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = commands::execute(&server, &action).await;
            let _ = done
                .send(Done {
                    origin,
                    action,
                    result,
                })
                .await;
        });
    }

    fn ack(&self, id: u64, epoch: u64, result: Result<Outcome>) {
        let label = if result.is_ok() { "ok" } else { "failed" };
        self.metrics
            .commands
            .get_or_create(&EventLabel { event: label })
            .inc();
        let ack = match result {
            Ok(o) => v1::CommandAck {
                command_id: id,
                ok: true,
                error: String::new(),
                role: v1::Role::from(o.role) as i32,
                repl_offset: o.offset,
                epoch,
                fenced: false,
            },
            Err(error) => v1::CommandAck {
                command_id: id,
                ok: false,
                error: error.to_string(),
                role: 0,
                repl_offset: 0,
                epoch,
                fenced: false,
            },
        };
        // A full queue means the controller is gone for long; the command's effect stays.
        if self.link.acks.try_send(ack).is_err() {
            tracing::warn!(
                command = id,
                "could not queue the command's ack for the controller"
            );
        }
    }

    fn on_done(&mut self, done: Done) {
        match (&done.action, &done.result) {
            (Action::Fence { .. }, Ok(_)) => self.monitor.fenced = true,
            (Action::Unfence, Ok(_)) => {
                self.monitor.fenced = false;
                self.self_fenced = false;
                self.metrics.fenced.set(0);
            }
            _ => {}
        }
        match done.origin {
            Origin::Controller { id, epoch } => {
                match &done.result {
                    Ok(o) => tracing::info!(
                        command = id,
                        role = o.role.as_str(),
                        offset = o.offset,
                        "command done"
                    ),
                    Err(e) => tracing::warn!(command = id, error = %e, "command failed"),
                }
                self.ack(id, epoch, done.result);
            }
            Origin::SelfFence => {
                if let Err(e) = done.result {
                    tracing::error!(action = ?done.action, error = %e, "self-fence action failed");
                }
            }
        }
    }

    /// Fences a cut-off primary, and renews the pause while fenced.
    fn check_fence(&mut self) {
        let now = Instant::now();
        if self.self_fenced {
            let renew_every = self.cfg.fence_pause / 2;
            if self
                .last_fence
                .is_none_or(|t| now.duration_since(t) >= renew_every)
            {
                self.last_fence = Some(now);
                self.spawn(
                    Origin::SelfFence,
                    Action::Fence {
                        pause_ms: self.cfg.fence_pause.as_millis() as u32,
                    },
                );
            }
            return;
        }
        let heard = (*self.link.last_heard.borrow()).unwrap_or(self.started);
        let silent = now.duration_since(heard);
        let role = self.monitor.replication().map(|r| r.role);
        let (reachable, peers) = self.peers.reachable();
        if fencing::should_fence(
            role,
            Some(silent),
            self.cfg.self_fence_after,
            reachable,
            peers,
        ) {
            tracing::error!(
                silent_ms = silent.as_millis() as u64,
                reachable,
                peers,
                "SELF-FENCING: this primary lost the controller and cannot reach a quorum of its data store; \
                 pausing its writes until the controller says otherwise"
            );
            self.self_fenced = true;
            self.metrics.fenced.set(1);
            self.last_fence = Some(now);
            self.spawn(
                Origin::SelfFence,
                Action::Fence {
                    pause_ms: self.cfg.fence_pause.as_millis() as u32,
                },
            );
        }
    }
}
