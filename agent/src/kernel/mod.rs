//! The kernel half of the agent: the probes pointed at the server process, the stall classifier
//! on its tick, restarts followed on the same port, and accept-queue overflow sampled from procfs.
//!
//! [`KernelWatcher`] turns all of it into [`Line`]s (what `vigil-agent watch` prints and the
//! daemon logs) and keeps a [`KernelView`] for the verdict engine.
//!
//! - [`probes`]: loads the programs, points them at the target, and reads their maps and ring
//!   buffer; [`slots`] maps the unread-request slots into memory.
//! - [`btf`] and [`tracefs`]: the kernel layouts the programs need, read at start-up.
//! - [`loader`]: the one eBPF loader, shared by the probes and the fence.
//! - [`classifier`]: names a stall by what the reading thread is doing; [`stops`] folds the
//!   threads' stops into the process's.
//! - [`deadline`]: wakes the agent at the exact instant a threshold is crossed.
//! - [`event`]: the lines the kernel half reports.
//! - [`histogram`]: the kernel's log2 histograms, read as percentiles.
//! - [`clock`]: CLOCK_MONOTONIC, the clock kernel stamps are in.
pub mod btf;
pub mod classifier;
pub mod clock;
pub mod deadline;
pub mod event;
pub mod histogram;
pub mod loader;
pub mod probes;
pub mod slots;
pub mod stops;
pub mod tracefs;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use vigil_agent_ebpf::{Event, kind, thread_state};

use self::{
    classifier::{Classifier, Decision, StallClass},
    clock::monotonic_ns,
    event::{KernelEvent, Line, decode_exit},
    histogram::{log2_histogram, new_histogram},
    probes::Probes,
    stops::StopTracker,
};
use crate::{
    error::Result,
    host::{listen_queue::ListenQueue, target},
    verdict::rules::KernelView,
};

/// How often the agent may scan every process for the port's new owner while the target is gone.
const OWNER_SCAN_EVERY: Duration = Duration::from_secs(1);

/// Without `every_read`, the read probe is attached for this long...
const READ_WINDOW: Duration = Duration::from_secs(1);
/// ...once in this long: enough to learn which thread reads which socket (that seldom changes)
/// and to find server sockets accepted before the agent looked, at a tenth of the probe's cost
/// on every read on the host.
const READ_WINDOW_EVERY: Duration = Duration::from_secs(10);

/// What the kernel half is told at start.
#[derive(Clone, Copy, Debug)]
pub struct KernelOptions {
    /// Requests unread this long make a stall.
    pub stall: Duration,
    /// Run-queue waits this long are reported one by one.
    pub runq_threshold: Duration,
    /// Keep the read probe attached, and a program on every data arrival too: together they
    /// time every request from arrival to read for [`KernelWatcher::summary`]. That costs a
    /// program run on every socket read and every segment with data on the host, so only
    /// `vigil-agent watch` asks for it; otherwise the read probe is attached in short windows, to
    /// learn which thread reads which socket, and nothing runs on arrivals.
    pub every_read: bool,
}

pub struct KernelWatcher {
    probes: Probes,
    classifier: Classifier,
    stops: StopTracker,
    listen_queue: ListenQueue,
    pid: u32,
    port: u16,
    alive: bool,
    last_owner_scan: Instant,
    stall_ages_us: Histogram<u64>,
    every_read: bool,
    /// When the read probe's current (or last) window opened.
    read_window_at: Instant,
    lines: Vec<Line>,
    batch: Vec<Event>,
    // The verdict engine's view.
    exited: bool,
    listener_closed: bool,
    stopped_since_ns: Option<u64>,
    stall: Option<StallClass>,
    runq_before: Vec<u64>,
    runq_p99: Duration,
}

impl KernelWatcher {
    /// Loads the probes and points them at `pid` listening on `port`.
    pub fn start(pid: u32, port: u16, opts: KernelOptions) -> Result<Self> {
        let mut probes = Probes::load(opts.runq_threshold, opts.every_read)?;
        probes.set_target(pid, port)?;
        let runq_before = probes.runq_histogram();
        let mut w = Self {
            classifier: Classifier::new(opts.stall.as_nanos() as u64),
            stops: StopTracker::default(),
            listen_queue: ListenQueue::new(port),
            probes,
            pid,
            port,
            alive: true,
            last_owner_scan: Instant::now(),
            stall_ages_us: new_histogram(),
            every_read: opts.every_read,
            read_window_at: Instant::now(),
            lines: Vec::new(),
            batch: Vec::with_capacity(64),
            exited: false,
            listener_closed: false,
            stopped_since_ns: None,
            stall: None,
            runq_before,
            runq_p99: Duration::ZERO,
        };
        w.note_initial_state();
        w.cycle_read_probe();
        Ok(w)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lines produced since the last call.
    pub fn drain_lines(&mut self) -> std::vec::Drain<'_, Line> {
        self.lines.drain(..)
    }

    /// Waits for kernel events and handles them. Cancel-safe.
    pub async fn next_events(&mut self) -> Result<()> {
        let mut batch = std::mem::take(&mut self.batch);
        let r = self.probes.next_events(&mut batch).await;
        for event in batch.drain(..) {
            self.on_kernel_event(event);
        }
        self.batch = batch;
        r
    }

    /// The kernel's view for the verdict engine, at `now` (CLOCK_MONOTONIC ns).
    pub fn view(&self, now: u64) -> KernelView {
        KernelView {
            available: true,
            exited: self.exited,
            listener_closed: self.listener_closed,
            stopped_for: self
                .stopped_since_ns
                .map(|since| Duration::from_nanos(now.saturating_sub(since))),
            stall: self
                .stall
                .map(|class| (class, Duration::from_nanos(self.classifier.oldest_age_ns()))),
            runq_p99: self.runq_p99,
        }
    }

    /// The next instant a threshold will be crossed: the oldest unread request turning `stall`
    /// old, or the stop turning `stopped_threshold` old. None when nothing is pending.
    pub fn next_deadline_ns(&self, stopped_threshold: Duration, now: u64) -> Option<u64> {
        let stop = self
            .stopped_since_ns
            .map(|since| since + stopped_threshold.as_nanos() as u64);
        [self.classifier.pending_deadline_ns(), stop]
            .into_iter()
            .flatten()
            .filter(|&at| at > now)
            .min()
    }

    /// Age of the oldest unread request at the last tick.
    pub fn oldest_unread_age(&self) -> Duration {
        Duration::from_nanos(self.classifier.oldest_age_ns())
    }

    /// Slow chores: follow a restart, and end a stop that procfs no longer shows.
    pub fn housekeeping(&mut self) {
        self.follow(None);
        self.reconcile_stop();
        self.cycle_read_probe();
    }

    /// Opens and closes the read probe's windows (unless it stays attached, `every_read`).
    fn cycle_read_probe(&mut self) {
        if self.every_read {
            return;
        }
        if self.read_window_at.elapsed() >= READ_WINDOW_EVERY {
            self.read_window_at = Instant::now();
        }
        let open = self.read_window_at.elapsed() < READ_WINDOW;
        if open != self.probes.read_probe_attached()
            && let Err(e) = self.probes.set_read_probe(open)
        {
            tracing::warn!(error = %e, open, "could not switch the read probe");
        }
    }

    /// A stop is ended by per-thread continue events; the kernel skips a tracepoint program now
    /// and then (while another BPF program or a map syscall runs on that CPU), so a stop that
    /// procfs no longer shows is ended here.
    fn reconcile_stop(&mut self) {
        if !self.stops.is_stopped() || !self.alive {
            return;
        }
        let Ok(threads) = target::threads(self.pid) else {
            return;
        };
        if threads.iter().any(|t| matches!(t.state, 'T' | 't')) {
            return;
        }
        self.stops.reset();
        self.stopped_since_ns = None;
        let mut line = Line::new(KernelEvent::Continued, self.pid, monotonic_ns());
        line.source = Some("procfs");
        self.emit(line);
    }

    /// Run-queue p99 since the last call: call it once per window (the daemon: every second).
    pub fn roll_runq_window(&mut self) -> Duration {
        let now = self.probes.runq_histogram();
        let window: Vec<u64> = now
            .iter()
            .zip(&self.runq_before)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        self.runq_before = now;
        let h = log2_histogram(&window);
        self.runq_p99 = if h.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_micros(h.value_at_quantile(0.99))
        };
        self.runq_p99
    }

    fn emit(&mut self, line: Line) {
        self.lines.push(line);
    }

    /// A server already stopped when we attach never switches out again: say so from procfs.
    fn note_initial_state(&mut self) {
        let Ok(threads) = target::threads(self.pid) else {
            return;
        };
        let mut first = None;
        for t in threads.iter().filter(|t| matches!(t.state, 'T' | 't')) {
            if self.stops.thread_stopped(t.tid) {
                first = Some(t.tid);
            }
        }
        if let Some(tid) = first {
            let now = monotonic_ns();
            self.stopped_since_ns = Some(now);
            let mut line = Line::new(KernelEvent::Stopped, self.pid, now);
            line.tid = Some(tid);
            line.source = Some("procfs");
            self.emit(line);
        }
    }

    fn on_kernel_event(&mut self, e: Event) {
        let mut line = match e.kind {
            kind::STOPPED => {
                if !self.stops.thread_stopped(e.tid) {
                    return;
                }
                self.stopped_since_ns = Some(e.kernel_ns);
                let mut line = Line::new(KernelEvent::Stopped, e.pid, e.kernel_ns);
                line.source = Some("sched_switch");
                line
            }
            kind::CONTINUED => {
                if !self.stops.thread_continued(e.tid) {
                    return;
                }
                self.stopped_since_ns = None;
                Line::new(KernelEvent::Continued, e.pid, e.kernel_ns)
            }
            kind::EXITED => {
                let mut line = Line::new(KernelEvent::Exited, e.pid, e.kernel_ns);
                let (status, signal, core) = decode_exit(e.value);
                line.exit_code = status;
                line.signal = signal;
                line.core_dumped = signal.map(|_| core);
                line.threads = Some(self.probes.exited_threads());
                if e.pid == self.pid {
                    self.alive = false;
                    self.exited = true;
                    self.stopped_since_ns = None;
                    self.stall = None;
                    self.stops.reset();
                    self.classifier.reset();
                }
                line
            }
            kind::RUNQ_LATENCY => {
                let mut line = Line::new(KernelEvent::Starved, e.pid, e.kernel_ns);
                line.source = Some("runq");
                line.runq_us = Some(e.value / 1_000);
                line
            }
            kind::LISTENER_OPENED => {
                if e.pid != self.pid {
                    self.follow(Some(e.pid));
                } else {
                    self.listener_closed = false;
                }
                return;
            }
            kind::LISTENER_CLOSED => {
                self.listener_closed = true;
                Line::new(KernelEvent::ListenerClosed, e.pid, e.kernel_ns)
            }
            kind::RESET_RECEIVED => Line::new(KernelEvent::ResetReceived, e.pid, e.kernel_ns),
            kind::RESET_SENT => Line::new(KernelEvent::ResetSent, e.pid, e.kernel_ns),
            kind::RETRANSMIT => Line::new(KernelEvent::Retransmit, e.pid, e.kernel_ns),
            other => {
                tracing::warn!(
                    kind = other,
                    "unknown kernel event kind; agent and kernel programs disagree"
                );
                return;
            }
        };
        line.from_kernel = true;
        if e.tid != 0 {
            line.tid = Some(e.tid);
        }
        if matches!(
            e.kind,
            kind::LISTENER_CLOSED | kind::RESET_RECEIVED | kind::RESET_SENT | kind::RETRANSMIT
        ) {
            line.port = Some(e.aux as u16);
            if e.value != 0 {
                line.peer_port = Some(e.value as u16);
            }
        }
        self.emit(line);
    }

    /// One look at the clock for the stall classifier (each tick, and at a threshold deadline).
    pub fn on_tick(&mut self) {
        if !self.alive {
            return;
        }
        let oldest = match self.probes.oldest_unread() {
            Ok(oldest) => oldest,
            Err(e) => {
                // Without the scan an old stamp may be a request long read: no verdict beats a
                // made-up stall.
                tracing::warn!(error = %e, "could not check the unread requests; skipping this tick");
                return;
            }
        };
        // After the scan: its stamps are never later than this.
        let now = monotonic_ns();
        let owner = oldest.and_then(|u| self.probes.thread(u.owner_tid));
        // Which syscall an asleep owner is in matters only once its request is overdue, and
        // procfs answers it then; a futex probe would tax every syscall on the host instead.
        let in_futex = match (oldest, owner) {
            (Some(u), Some(o))
                if o.state == thread_state::SLEEPING
                    && now.saturating_sub(u.first_ns) >= self.classifier.threshold_ns() =>
            {
                target::in_futex_wait(self.pid, u.owner_tid)
            }
            _ => false,
        };
        let Some(decision) = self.classifier.tick(now, oldest, owner, in_futex) else {
            return;
        };
        let (event, age_ns, tid) = match decision {
            Decision::Began(s) | Decision::Changed(s) => {
                self.stall = Some(s.class);
                (s.class.event(), s.age_ns, s.owner_tid)
            }
            Decision::Cleared { age_ns, owner_tid } => {
                self.stall = None;
                let _ = self.stall_ages_us.record((age_ns / 1_000).max(1));
                (KernelEvent::UnreadStallCleared, age_ns, owner_tid)
            }
        };
        let mut line = Line::new(event, self.pid, now);
        line.tid = Some(tid);
        line.source = Some("unread_stall");
        line.age_ms = Some(age_ns / 1_000_000);
        line.age_us = Some(age_ns / 1_000);
        line.port = Some(self.port);
        if !matches!(decision, Decision::Cleared { .. }) {
            line.peer_port = oldest.map(|u| u.peer_port).filter(|&p| p != 0);
        }
        self.emit(line);
    }

    /// Compares the host's listen drops with the last sample (the daemon: every second; reading
    /// /proc/net/netstat is the agent's most expensive chore, and drops are a slow signal).
    pub fn sample_listen_queue(&mut self) {
        if let Some(overflow) = self.listen_queue.sample() {
            let mut line = Line::new(KernelEvent::ListenOverflow, self.pid, monotonic_ns());
            line.source = Some("procfs");
            line.port = Some(self.port);
            line.drops = Some(overflow.drops);
            line.queued = Some(overflow.queued);
            self.emit(line);
        }
    }

    /// Re-points the probes when the target is gone and another process listens on the port;
    /// `candidate` is a process the kernel just saw start listening there.
    fn follow(&mut self, candidate: Option<u32>) {
        if candidate.is_none() && self.alive && target::process_exists(self.pid) {
            return;
        }
        let new_pid = match candidate {
            Some(pid) => target::listening_ports(pid)
                .ok()
                .filter(|p| p.contains(&self.port))
                .map(|_| pid),
            // The kernel's listener_opened event is the fast path; this scan of every process's
            // fds is the slow fallback, so it runs at most once a second.
            None if self.last_owner_scan.elapsed() >= OWNER_SCAN_EVERY => {
                self.last_owner_scan = Instant::now();
                target::listener_owner(self.port).ok().flatten()
            }
            None => None,
        };
        let Some(new_pid) = new_pid.filter(|&p| p != self.pid) else {
            if self.alive && !target::process_exists(self.pid) {
                self.alive = false;
                tracing::warn!(
                    pid = self.pid,
                    port = self.port,
                    "target process is gone; waiting for a server on the port"
                );
            }
            return;
        };
        let old_pid = self.pid;
        if let Err(e) = self.probes.set_target(new_pid, self.port) {
            tracing::warn!(pid = new_pid, error = %e, "could not follow the new server process");
            return;
        }
        self.pid = new_pid;
        self.alive = true;
        self.exited = false;
        self.listener_closed = false;
        self.stopped_since_ns = None;
        self.stall = None;
        self.stops.reset();
        self.classifier.reset();
        // A new process: learn its readers now rather than at the next window.
        self.read_window_at = Instant::now();
        tracing::info!(
            old_pid,
            pid = new_pid,
            port = self.port,
            "server restarted; following it"
        );
        let mut line = Line::new(KernelEvent::TargetChanged, new_pid, monotonic_ns());
        line.old_pid = Some(old_pid);
        line.port = Some(self.port);
        self.emit(line);
        self.note_initial_state();
    }

    /// Run-queue latency and unread-age summary since the target was set, as a JSON object.
    pub fn summary(&self) -> serde_json::Value {
        let runq = log2_histogram(&self.probes.runq_histogram());
        let unread = log2_histogram(&self.probes.unread_histogram());
        serde_json::json!({
            "event": "summary",
            "pid": self.pid,
            "runq_waits": runq.len(),
            "runq_p50_us": runq.value_at_quantile(0.5),
            "runq_p99_us": runq.value_at_quantile(0.99),
            "runq_max_us": runq.max(),
            "unread_reads": unread.len(),
            "unread_p50_us": unread.value_at_quantile(0.5),
            "unread_p99_us": unread.value_at_quantile(0.99),
            "unread_max_us": unread.max(),
            "stalls": self.stall_ages_us.len(),
            "stall_max_us": self.stall_ages_us.max(),
            "events_dropped": self.probes.dropped_events(),
            "sockets_untracked": self.probes.untracked_sockets(),
        })
    }
}
