//! `vigil-agent watch`: what the kernel sees of one server process, one line per event, and every
//! change of the verdict the agent would report (`"event":"verdict"`).
//!
//! Lines are readable text, or one JSON object each with `--json`. On Ctrl-C (or SIGTERM) it
//! prints a run-queue latency and unread-age summary ([`text`] has the readable forms).
pub mod text;

use std::{io::Write, time::Duration};

use tokio::signal::unix::{SignalKind, signal};
use vigil_proto::HostPort;

use crate::{
    daemon::settings::DEFAULT_HEALTH_INTERVAL_MS,
    error::{AgentError, Result},
    host::target,
    kernel::{KernelOptions, event::Line, probes},
    server::conn::ServerConn,
    verdict::{
        monitor::{Monitor, MonitorOptions},
        rules::Thresholds,
    },
};

/// Watching is for diagnosis: the classifier looks at the clock every millisecond, for stall
/// ages to the millisecond (`vigil-agent run` ticks far less often and relies on its timerfd).
pub const DEFAULT_TICK_US: u64 = 1_000;
/// The server is usually watched on the machine it runs on.
pub const DEFAULT_HOST: &str = "127.0.0.1";

#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// Host the server answers PINGs on (the port is the watched one).
    pub host: String,
    pub username: Option<String>,
    pub password: Option<crate::server::credentials::SecretString>,
    pub tls: Option<crate::server::tls::ServerTls>,
    pub json: bool,
    pub kernel: KernelOptions,
    pub tick: Duration,
    pub ping_interval: Duration,
    pub thresholds: Thresholds,
}

struct Printer {
    json: bool,
    lines: u64,
}

impl Printer {
    fn print(&mut self, line: &Line) {
        self.lines += 1;
        let text = if self.json {
            serde_json::to_string(line).unwrap_or_default()
        } else {
            text::line(line)
        };
        write_stdout(&text);
    }
}

fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the reader went away) is not worth dying over mid-incident.
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

pub async fn run(opts: WatchOptions) -> Result<()> {
    probes::preflight()?;
    let (pid, port) = target::resolve(opts.pid, opts.port)?;
    let server = ServerConn {
        address: HostPort::new(opts.host.clone(), port),
        username: opts.username.clone(),
        password: opts.password.clone(),
        // Watching puts no fence up.
        gate: None,
        tls: opts.tls.clone(),
    };
    let mut monitor = Monitor::start(MonitorOptions {
        server,
        pid,
        port,
        kernel: opts.kernel,
        tick: opts.tick,
        ping_interval: opts.ping_interval,
        health_interval: Duration::from_millis(DEFAULT_HEALTH_INTERVAL_MS),
        thresholds: opts.thresholds.clone(),
        require_kernel: true,
    })?;
    let mut printer = Printer {
        json: opts.json,
        lines: 0,
    };
    // Lines from attaching (a server already stopped) come before readiness is announced.
    for line in monitor.drain_lines() {
        printer.print(&line);
    }
    tracing::info!(
        pid,
        port,
        stall_ms = opts.kernel.stall.as_millis() as u64,
        "watching"
    );
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| AgentError::io("installing the SIGINT handler", e))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| AgentError::io("installing the SIGTERM handler", e))?;
    loop {
        let wake = tokio::select! {
            biased;
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            w = monitor.next() => w?,
        };
        monitor.handle(wake);
        for line in monitor.drain_lines() {
            printer.print(&line);
        }
        if monitor.assess().is_some() {
            printer.print(&monitor.verdict_line());
        }
    }
    if let Some(kernel) = monitor.kernel() {
        let mut summary = kernel.summary();
        summary["lines"] = printer.lines.into();
        summary["ping_rtt_p50_us"] = monitor.rtt_us.value_at_quantile(0.5).into();
        summary["ping_rtt_p99_us"] = monitor.rtt_us.value_at_quantile(0.99).into();
        write_stdout(&if opts.json {
            summary.to_string()
        } else {
            text::summary(&summary)
        });
    }
    Ok(())
}
