//! The controller's Prometheus metrics (served as `GET /metrics`): failovers by cause, decision
//! latency (verdict received -> promote sent), per-node health, connected agents, alerts by kind.
use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use vigil_proto::v1::Health;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub datastore: String,
    pub node: String,
}

/// A data store's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatastoreLabel {
    pub datastore: String,
}

pub struct Metrics {
    pub failovers: Family<CauseLabel, Counter>,
    pub decision_latency: Histogram,
    /// 0 healthy, 1 degraded, 2 unhealthy, 3 down, -1 unknown.
    pub health: Family<NodeLabel, Gauge>,
    pub connected_agents: Gauge,
    pub alerts: Family<CauseLabel, Counter>,
    /// Seconds since each node's last verdict.
    pub verdict_age: Family<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// 1 while a data store is paused (`vigil pause`), 0 otherwise.
    pub paused: Family<DatastoreLabel, Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            failovers: Family::default(),
            // 10 us .. ~1.3 s in powers of two.
            decision_latency: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.00001, 2.0, 18),
            ),
            health: Family::default(),
            connected_agents: Gauge::default(),
            alerts: Family::default(),
            verdict_age: Family::default(),
            paused: Family::default(),
        })
    }

    pub fn failover(&self, cause: &str) {
        self.failovers
            .get_or_create(&CauseLabel {
                cause: cause.to_string(),
            })
            .inc();
    }

    pub fn alert(&self, kind: &str) {
        self.alerts
            .get_or_create(&CauseLabel {
                cause: kind.to_string(),
            })
            .inc();
    }

    pub fn node_health(&self, datastore: &str, node: &str, health: Health) {
        let value = match health {
            Health::Healthy => 0,
            Health::Degraded => 1,
            Health::Unhealthy => 2,
            Health::Down => 3,
            Health::Unspecified => -1,
        };
        self.health
            .get_or_create(&NodeLabel {
                datastore: datastore.to_string(),
                node: node.to_string(),
            })
            .set(value);
    }

    pub fn verdict_age(&self, datastore: &str, node: &str, seconds: f64) {
        self.verdict_age
            .get_or_create(&NodeLabel {
                datastore: datastore.to_string(),
                node: node.to_string(),
            })
            .set(seconds);
    }

    pub fn paused(&self, datastore: &str, paused: bool) {
        self.paused
            .get_or_create(&DatastoreLabel {
                datastore: datastore.to_string(),
            })
            .set(i64::from(paused));
    }

    /// Everything registered for `/metrics`.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("vigil_controller");
        r.register(
            "failovers",
            "Failovers started, by cause",
            self.failovers.clone(),
        );
        r.register(
            "decision_latency_seconds",
            "From the verdict that showed the primary failed to the promote",
            self.decision_latency.clone(),
        );
        r.register(
            "node_health",
            "Last verdict health per node: 0 healthy .. 3 down, -1 unknown",
            self.health.clone(),
        );
        r.register(
            "connected_agents",
            "Agents with a session now",
            self.connected_agents.clone(),
        );
        r.register(
            "alerts",
            "Alerts raised, by event name",
            self.alerts.clone(),
        );
        r.register(
            "datastore_paused",
            "1 while the data store is paused: no automatic failover",
            self.paused.clone(),
        );
        r
    }
}
