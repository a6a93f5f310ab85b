//! The agent's Prometheus metrics: health, reasons, local PING round trips, stall age, run-queue
//! latency, and counters of kernel events, verdicts and commands. The registry built here is
//! served on `GET /metrics` by `vigil_proto::telemetry::serve_metrics`.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::verdict::rules::{Health, Reason, Severity};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: &'static str,
}

/// Every metric the agent exports.
pub struct Metrics {
    /// 0 healthy, 1 degraded, 2 unhealthy, 3 down.
    pub health: Gauge,
    pub reasons: Family<ReasonLabel, Gauge>,
    pub ping_rtt_seconds: Histogram,
    pub ping_misses: Counter,
    pub stall_age_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub runq_p99_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub kernel_events: Family<EventLabel, Counter>,
    pub verdicts_sent: Counter,
    pub commands: Family<EventLabel, Counter>,
    pub fenced: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            health: Gauge::default(),
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
        }
    }

    pub fn set_verdict(&self, reasons: Reason) {
        self.health.set(match reasons.health() {
            Health::Healthy => 0,
            Health::Degraded => 1,
            Health::Unhealthy => 2,
            Health::Down => 3,
        });
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
            "Verdict health: 0 healthy, 1 degraded, 2 unhealthy, 3 down",
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
            "1 while the agent keeps its server's writes paused",
            self.fenced.clone(),
        );
        r
    }
}
