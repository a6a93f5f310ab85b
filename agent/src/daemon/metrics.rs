//! The agent's Prometheus metrics: health, reasons, local PING round trips, stall age, run-queue
//! latency, and counters of kernel events, verdicts, commands, and messages from a controller that
//! no longer leads. The registry built here is
//! served on `GET /metrics` by `vigil_proto::telemetry::serve_http`, beside `vigil_build_info`
//! and the health endpoints.
use std::net::SocketAddr;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use tokio::task::{JoinError, JoinHandle};
use vigil_proto::{
    health_state,
    telemetry::{Component, serve_http},
    v1,
};

use crate::{
    error::{AgentError, Result},
    verdict::rules::{Reason, Severity},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: &'static str,
}

/// Every metric the agent exports.
pub struct Metrics {
    /// 1 for the current verdict's health state, 0 for the others; `unknown` until the first.
    pub health: Family<StateLabel, Gauge>,
    pub reasons: Family<ReasonLabel, Gauge>,
    pub ping_rtt_seconds: Histogram,
    pub ping_misses: Counter,
    pub stall_age_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub runq_p99_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub kernel_events: Family<EventLabel, Counter>,
    pub verdicts_sent: Counter,
    pub commands: Family<EventLabel, Counter>,
    pub fenced: Gauge,
    /// Desired state, commands and Welcomes from a lower leadership than the highest seen: a
    /// deposed controller still talking to this agent.
    pub stale_leadership: Counter,
    /// 1 while `/readyz` says ready: the eBPF programs attached and a session with the leader.
    pub ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            health: Family::default(),
            reasons: Family::default(),
            // 50 us .. ~1.6 s in powers of two.
            ping_rtt_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 16),
            ),
            ping_misses: Counter::default(),
            stall_age_seconds: Gauge::default(),
            runq_p99_seconds: Gauge::default(),
            kernel_events: Family::default(),
            verdicts_sent: Counter::default(),
            commands: Family::default(),
            fenced: Gauge::default(),
            stale_leadership: Counter::default(),
            ready: Gauge::default(),
        };
        m.set_health(v1::Health::Unspecified);
        m
    }

    fn set_health(&self, health: v1::Health) {
        for (state, value) in health_state::values(health) {
            self.health.get_or_create(&StateLabel { state }).set(value);
        }
    }

    pub fn set_verdict(&self, reasons: Reason) {
        self.set_health(v1::Health::from(reasons.health()));
        for &(reason, name) in vigil_proto::reason::NAMES {
            self.reasons
                .get_or_create(&ReasonLabel { reason: name })
                .set(i64::from(reasons.contains(reason)));
        }
    }

    /// A registry of every metric, under the `vigil_agent_` prefix. It holds handles to the same
    /// metrics, so what the daemon records is what the registry serves.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("vigil_agent");
        r.register(
            "health",
            "Verdict health: 1 for its state (healthy, degraded, unhealthy, down; unknown before the first verdict), 0 for the others",
            self.health.clone(),
        );
        r.register(
            "reason",
            "Reasons in the current verdict (1 = present)",
            self.reasons.clone(),
        );
        r.register(
            "ping_rtt_seconds",
            "Local PING round trips",
            self.ping_rtt_seconds.clone(),
        );
        r.register(
            "ping_misses",
            "Local PINGs without an answer in time",
            self.ping_misses.clone(),
        );
        r.register(
            "stall_age_seconds",
            "Age of the oldest unread request",
            self.stall_age_seconds.clone(),
        );
        r.register(
            "runq_p99_seconds",
            "Run-queue latency p99 of the server's threads, last second",
            self.runq_p99_seconds.clone(),
        );
        r.register(
            "kernel_events",
            "Kernel events seen, by kind",
            self.kernel_events.clone(),
        );
        r.register(
            "verdicts_sent",
            "Verdicts published to the controller link",
            self.verdicts_sent.clone(),
        );
        r.register(
            "commands",
            "Controller commands, by outcome",
            self.commands.clone(),
        );
        r.register(
            "fenced",
            "1 while the server's fence is up",
            self.fenced.clone(),
        );
        r.register(
            "stale_leadership",
            "Messages from a controller that no longer leads, refused or ignored",
            self.stale_leadership.clone(),
        );
        r.register(
            "ready",
            "1 while the agent is ready: its eBPF programs attached and a session with the leading controller",
            self.ready.clone(),
        );
        r
    }
}

/// Serves `metrics` on `GET /metrics` at `addr`, and `routes` (the health endpoints) beside it.
/// Binds before it returns, so a port in use is a start-up error and not a log line later.
pub async fn serve(
    addr: SocketAddr,
    metrics: &Metrics,
    routes: axum::Router,
) -> Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        AgentError::io(
            format!(
                "listening for /metrics on {addr} (another agent's? give each agent its own \
                 --metrics-listen)"
            ),
            e,
        )
    })?;
    Ok(tokio::spawn(serve_http(
        listener,
        Component::Agent,
        metrics.registry(),
        routes,
    )))
}

/// The /metrics server's task: it returns only when serving fails.
pub type MetricsServer = JoinHandle<std::io::Result<()>>;
/// How that task ended.
pub type MetricsEnd = std::result::Result<std::io::Result<()>, JoinError>;

/// Waits for the /metrics server to end; pending forever when none runs. Cancel-safe.
pub async fn ended(server: &mut Option<MetricsServer>) -> MetricsEnd {
    match server {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Says once why the /metrics server ended: detection goes on, but nothing scrapes it anymore.
pub fn log_end(ended: MetricsEnd) {
    match ended {
        Ok(Ok(())) => tracing::error!("the /metrics server stopped; metrics are no longer served"),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the /metrics server failed; metrics are no longer served")
        }
        Err(e) => {
            tracing::error!(error = %e, "the /metrics server task ended; metrics are no longer served")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::encoding::text::encode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn health_is_a_state_label_with_exactly_the_current_state_at_one() {
        let metrics = Metrics::new();
        let state =
            |m: &Metrics, s: &'static str| m.health.get_or_create(&StateLabel { state: s }).get();
        metrics.set_verdict(Reason::STOPPED);
        assert_eq!(state(&metrics, "unhealthy"), 1);
        for other in ["healthy", "degraded", "down", "unknown"] {
            assert_eq!(state(&metrics, other), 0, "{other}");
        }
        metrics.set_verdict(Reason::empty());
        let mut text = String::new();
        encode(&mut text, &metrics.registry()).unwrap();
        assert!(
            text.contains("vigil_agent_health{state=\"healthy\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vigil_agent_health{state=\"unhealthy\"} 0"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_metrics_are_served_and_a_server_that_ends_is_noticed() {
        let metrics = Metrics::new();
        metrics.verdicts_sent.inc();
        let port = vigil_tests::free_port().expect("a free port");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut server = Some(
            serve(addr, &metrics, axum::Router::new())
                .await
                .expect("serving /metrics"),
        );
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .expect("request");
        let mut body = String::new();
        conn.read_to_string(&mut body).await.expect("response");
        assert!(body.starts_with("HTTP/1.0 200"), "{body}");
        assert!(body.contains("vigil_agent_verdicts_sent_total 1"), "{body}");
        assert!(
            body.contains("vigil_build_info{component=\"agent\""),
            "{body}"
        );
        // No verdict yet: the health is unknown, and only that state is 1.
        assert!(
            body.contains("vigil_agent_health{state=\"unknown\"} 1"),
            "{body}"
        );
        assert_eq!(body.matches("vigil_agent_health{").count(), 5, "{body}");
        assert_eq!(
            body.lines()
                .filter(|l| l.starts_with("vigil_agent_health{") && l.ends_with(" 1"))
                .count(),
            1,
            "{body}"
        );
        // Nothing to wait for without a server; a server that ends is noticed.
        let none = tokio::time::timeout(Duration::from_millis(20), ended(&mut None)).await;
        assert!(none.is_err(), "no server, yet it ended");
        if let Some(task) = &server {
            task.abort();
        }
        let end = ended(&mut server).await;
        assert!(end.is_err_and(|e| e.is_cancelled()));
    }
}
