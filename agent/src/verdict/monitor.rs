//! The agent's local view of its server: the kernel half (`kernel`), the local pinger and the
//! health poller (`server`) and the resource monitor (`host`), folded by the verdict rules.
//! `vigil-agent watch` prints it; `vigil-agent run` also sends it to the controller.
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Interval, MissedTickBehavior},
};
use vigil_proto::HostPort;

use super::rules::{
    self, Health, Inputs, KernelView, PingView, Reason, ResourceView, Severity, Thresholds,
};
use crate::{
    error::Result,
    host::resources::{ResourceSample, ResourceSampler},
    kernel::{
        KernelOptions, KernelWatcher,
        clock::monotonic_ns,
        deadline::Deadline,
        event::{KernelEvent, Line},
    },
    server::{
        conn::ServerConn,
        info::{Flavour, Memory, Replication, Role},
        ping_outcome::PingOutcome,
        pinger,
        poller::{self, HealthSample},
    },
};

#[derive(Clone, Debug)]
pub struct MonitorOptions {
    pub server: ServerConn,
    /// The server process and the port it listens on (resolved by the caller).
    pub pid: u32,
    pub port: u16,
    pub kernel: KernelOptions,
    /// How often the stall classifier looks at the clock.
    pub tick: Duration,
    pub ping_interval: Duration,
    pub health_interval: Duration,
    pub thresholds: Thresholds,
    /// Fail when the kernel probes cannot load (watch); otherwise go on without them (run).
    pub require_kernel: bool,
}

/// What woke the monitor.
pub enum Wake {
    Kernel,
    Tick,
    Housekeeping,
    Second,
    Ping(PingOutcome),
    Health(HealthSample),
}

pub struct Monitor {
    kernel: Option<KernelWatcher>,
    thresholds: Thresholds,
    pid: u32,
    ping: PingView,
    last_rtt: Option<Duration>,
    /// Local PING round trips, in microseconds.
    pub rtt_us: Histogram<u64>,
    ping_rx: mpsc::Receiver<PingOutcome>,
    health_rx: mpsc::Receiver<HealthSample>,
    tasks: Vec<JoinHandle<()>>,
    /// What the server says it is, asked again on every new connection of the health poller,
    /// so a server replaced by another flavour is known by its next poll.
    flavour: Option<Flavour>,
    replication: Option<Replication>,
    memory: Option<Memory>,
    sampler: ResourceSampler,
    resource: Option<ResourceSample>,
    pub expected_role: Option<Role>,
    pub expected_primary: Option<HostPort>,
    pub fenced: bool,
    tick: Interval,
    /// Wakes the monitor exactly when a threshold is crossed, between ticks.
    deadline: Deadline,
    housekeeping: Interval,
    second: Interval,
    /// The last assessment; None before the first, so the first always counts as a change.
    reasons: Option<Reason>,
    auth_error: Option<String>,
}

fn interval(period: Duration) -> Interval {
    let mut i = tokio::time::interval(period);
    i.set_missed_tick_behavior(MissedTickBehavior::Skip);
    i
}

async fn kernel_events(kernel: &mut Option<KernelWatcher>) -> Result<()> {
    match kernel {
        Some(k) => k.next_events().await,
        None => std::future::pending().await,
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Monitor {
    /// Loads the probes (unless that fails and `require_kernel` is off) and starts the pinger and
    /// the health poller. Must run inside a tokio runtime.
    pub fn start(opts: MonitorOptions) -> Result<Self> {
        let kernel = match KernelWatcher::start(opts.pid, opts.port, opts.kernel) {
            Ok(k) => Some(k),
            Err(e) if !opts.require_kernel => {
                tracing::error!(error = %e, "kernel probes unavailable: judging the server by pings alone (reason kernel_blind)");
                None
            }
            Err(e) => return Err(e),
        };
        let (ping_tx, ping_rx) = mpsc::channel(64);
        let (health_tx, health_rx) = mpsc::channel(8);
        let tasks = vec![
            tokio::spawn(pinger::local_pinger(
                opts.server.clone(),
                opts.ping_interval,
                ping_tx,
            )),
            tokio::spawn(poller::health_poller(
                opts.server.clone(),
                opts.health_interval,
                health_tx,
            )),
        ];
        Ok(Self {
            kernel,
            thresholds: opts.thresholds,
            pid: opts.pid,
            ping: PingView::default(),
            last_rtt: None,
            // 1 us .. 1 min at 3 significant digits: the bounds are valid constants.
            rtt_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            ping_rx,
            health_rx,
            tasks,
            flavour: None,
            replication: None,
            memory: None,
            sampler: ResourceSampler::default(),
            resource: None,
            expected_role: None,
            expected_primary: None,
            fenced: false,
            tick: interval(opts.tick),
            deadline: Deadline::new()?,
            housekeeping: interval(Duration::from_millis(100)),
            second: interval(Duration::from_secs(1)),
            reasons: None,
            auth_error: None,
        })
    }

    /// Waits for the next thing to look at. Cancel-safe.
    pub async fn next(&mut self) -> Result<Wake> {
        Ok(tokio::select! {
            biased;
            r = kernel_events(&mut self.kernel) => { r?; Wake::Kernel }
            _ = self.deadline.wait() => Wake::Tick,
            _ = self.tick.tick() => Wake::Tick,
            Some(p) = self.ping_rx.recv() => Wake::Ping(p),
            Some(h) = self.health_rx.recv() => Wake::Health(h),
            _ = self.housekeeping.tick() => Wake::Housekeeping,
            _ = self.second.tick() => Wake::Second,
        })
    }

    /// Folds what woke us into the view.
    pub fn handle(&mut self, wake: Wake) {
        match wake {
            Wake::Kernel => {}
            Wake::Tick => {
                if let Some(k) = self.kernel.as_mut() {
                    k.on_tick();
                }
            }
            Wake::Housekeeping => {
                if let Some(k) = self.kernel.as_mut() {
                    k.housekeeping();
                    self.pid = k.pid();
                }
            }
            Wake::Second => {
                if let Some(k) = self.kernel.as_mut() {
                    k.roll_runq_window();
                    k.sample_listen_queue();
                }
                self.resource = self.sampler.sample(self.pid);
            }
            Wake::Ping(outcome) => self.on_ping(outcome),
            Wake::Health(sample) => {
                self.flavour = sample.flavour.or(self.flavour);
                match sample.replication {
                    Ok(r) => {
                        self.replication = Some(r);
                        self.memory = sample.memory;
                    }
                    Err(e) => tracing::debug!(error = %e, "health poll failed"),
                }
            }
        }
        if let Some(k) = self.kernel.as_ref() {
            self.deadline
                .arm(k.next_deadline_ns(self.thresholds.stopped, monotonic_ns()));
        }
    }

    fn on_ping(&mut self, outcome: PingOutcome) {
        let explained = rules::miss_explained(&self.kernel_view(), &self.thresholds);
        let miss = |p: &mut PingView| {
            p.consecutive_misses = p.consecutive_misses.saturating_add(1);
            if !explained {
                p.unexplained_misses = p.unexplained_misses.saturating_add(1);
            }
        };
        match outcome {
            PingOutcome::Pong(rtt) => {
                self.ping = PingView::default();
                self.last_rtt = Some(rtt);
                let _ = self.rtt_us.record((rtt.as_micros() as u64).max(1));
                self.auth_error = None;
            }
            PingOutcome::Timeout | PingOutcome::Error(_) => {
                self.ping.refused = false;
                miss(&mut self.ping);
            }
            PingOutcome::Refused => {
                self.ping.refused = true;
                miss(&mut self.ping);
            }
            PingOutcome::AuthFailed(e) => {
                if self.auth_error.as_deref() != Some(e.as_str()) {
                    tracing::error!(error = %e, "the server refused the agent's credentials: check --password-file (or VIGIL_SERVER_PASSWORD) and --username");
                }
                self.auth_error = Some(e);
                self.ping.auth_failed = true;
            }
        }
    }

    fn kernel_view(&self) -> KernelView {
        self.kernel
            .as_ref()
            .map_or_else(KernelView::default, |k| k.view(monotonic_ns()))
    }

    pub fn inputs(&self) -> Inputs {
        Inputs {
            kernel: self.kernel_view(),
            ping: self.ping,
            replication: self.replication.clone(),
            resources: self.resource.map(|r| ResourceView {
                server_cpu_pct: r.cpu_pct,
                host_memory_available_pct: r.host_memory_available_pct,
                memory_pct: self
                    .memory
                    .filter(|m| m.max > 0)
                    .map(|m| m.used as f64 * 100.0 / m.max as f64),
            }),
            expected_role: self.expected_role,
            expected_primary: self.expected_primary.clone(),
            fenced: self.fenced,
        }
    }

    /// Re-assesses; returns the reasons when they changed since the last call.
    pub fn assess(&mut self) -> Option<Reason> {
        let reasons = rules::assess(&self.inputs(), &self.thresholds);
        (Some(reasons) != self.reasons.replace(reasons)).then_some(reasons)
    }

    pub fn reasons(&self) -> Reason {
        self.reasons.unwrap_or_default()
    }

    pub fn health(&self) -> Health {
        self.reasons().health()
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    pub fn set_thresholds(&mut self, t: Thresholds) {
        self.thresholds = t;
    }

    /// The server's flavour as last detected (None before the first answer).
    pub fn flavour(&self) -> Option<Flavour> {
        self.flavour
    }

    pub fn replication(&self) -> Option<&Replication> {
        self.replication.as_ref()
    }

    /// The server's role as a command the agent ran just found it (a demotion, a promotion),
    /// ahead of the next health poll, which would otherwise leave the old role standing for up
    /// to a poll interval.
    pub fn note_role(&mut self, role: Role) {
        if let Some(r) = self.replication.as_mut() {
            r.role = role;
        }
    }

    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// Age of the oldest unread request (zero without the kernel view).
    pub fn stall_age(&self) -> Duration {
        self.kernel
            .as_ref()
            .map_or(Duration::ZERO, KernelWatcher::oldest_unread_age)
    }

    pub fn kernel(&self) -> Option<&KernelWatcher> {
        self.kernel.as_ref()
    }

    /// Kernel lines produced since the last call.
    pub fn drain_lines(&mut self) -> Vec<Line> {
        self.kernel
            .as_mut()
            .map(|k| k.drain_lines().collect())
            .unwrap_or_default()
    }

    /// A `verdict` line for the current assessment.
    pub fn verdict_line(&self) -> Line {
        let now = monotonic_ns();
        let mut line = Line::new(KernelEvent::Verdict, self.pid, now);
        line.health = Some(self.health().as_str());
        line.reasons = Some(self.reasons().names());
        line.age_ms = Some(self.stall_age().as_millis() as u64);
        line.ping_rtt_us = self.last_rtt.map(|d| d.as_micros() as u64);
        line
    }
}
