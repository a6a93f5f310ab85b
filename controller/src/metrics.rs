//! The controller's Prometheus metrics (served as `GET /metrics`): failovers by data store and
//! cause, decision latency (verdict received -> promote sent), per-node health, connection and
//! verdict age, connected agents, per-store epoch and primary, whether this controller leads,
//! alerts by event, and hook runs by outcome.
//!
//! The per-node and per-store series belong to the reconciler of their data store
//! (`store::exported`), which sets them as things change and removes them when it stops; this
//! module only says what each series is and keeps the counts that depend on several of them
//! (the connected agents) consistent with them.
use std::sync::{Arc, atomic::AtomicU64};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use vigil_proto::{health_state, v1::Health};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    pub datastore: String,
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub datastore: String,
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthLabels {
    pub datastore: String,
    pub node: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatastoreLabel {
    pub datastore: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub hook: &'static str,
    pub outcome: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    pub failovers: Family<FailoverLabels, Counter>,
    pub decision_latency: Histogram,
    /// 1 for each node's current health state, 0 for the others.
    pub node_health: Family<HealthLabels, Gauge>,
    /// 1 while the node's agent has a session with this controller, 0 once it closed.
    pub node_connected: Family<NodeLabels, Gauge>,
    /// Seconds since each node's last verdict.
    pub verdict_age: Family<NodeLabels, FloatGauge>,
    /// The nodes whose `node_connected` is 1, in every data store.
    pub connected_agents: Gauge,
    pub alerts: Family<EventLabel, Counter>,
    pub datastore_epoch: Family<DatastoreLabel, Gauge>,
    /// 1 while a data store is paused (`vigil pause`), 0 otherwise.
    pub paused: Family<DatastoreLabel, Gauge>,
    /// 1 for each data store's primary; a former primary has no series.
    pub datastore_primary: Family<NodeLabels, Gauge>,
    /// 1 while this controller leads.
    pub leading: Gauge,
    pub hook_runs: Family<HookLabels, Counter>,
}

pub fn node(datastore: &str, node: &str) -> NodeLabels {
    NodeLabels {
        datastore: datastore.to_string(),
        node: node.to_string(),
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            failovers: Family::default(),
            // 10 us .. ~1.3 s in powers of two.
            decision_latency: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.00001, 2.0, 18),
            ),
            node_health: Family::default(),
            node_connected: Family::default(),
            verdict_age: Family::default(),
            connected_agents: Gauge::default(),
            alerts: Family::default(),
            datastore_epoch: Family::default(),
            datastore_primary: Family::default(),
            leading: Gauge::default(),
            hook_runs: Family::default(),
            paused: Family::default(),
        })
    }

    /// A failover (or switchover) of `datastore` began: counted once, when its epoch is bumped.
    pub fn failover(&self, datastore: &str, cause: &'static str) {
        self.failovers
            .get_or_create(&FailoverLabels {
                datastore: datastore.to_string(),
                cause,
            })
            .inc();
    }

    pub fn alert(&self, event: &'static str) {
        self.alerts.get_or_create(&EventLabel { event }).inc();
    }

    pub fn hook_run(&self, hook: &'static str, outcome: &'static str) {
        self.hook_runs
            .get_or_create(&HookLabels { hook, outcome })
            .inc();
    }

    /// Sets every state series of the node: 1 for `health`, 0 for the others.
    pub fn node_health(&self, datastore: &str, node: &str, health: Health) {
        for (state, value) in health_state::values(health) {
            self.node_health
                .get_or_create(&HealthLabels {
                    datastore: datastore.to_string(),
                    node: node.to_string(),
                    state,
                })
                .set(value);
        }
    }

    /// Whether the node's agent has a session now. `connected_agents` moves only when the
    /// node's series changes, so it is always the number of nodes whose series is 1: a session
    /// replaced by a newer one (a reconnect seen before the old one's close) counts once.
    pub fn node_connected(&self, labels: &NodeLabels, connected: bool) {
        let was = self
            .node_connected
            .get_or_create(labels)
            .set(i64::from(connected));
        match (was == 1, connected) {
            (false, true) => {
                self.connected_agents.inc();
            }
            (true, false) => {
                self.connected_agents.dec();
            }
            _ => {}
        }
    }

    /// Removes every series of the node: its reconciler stopped, and another controller (or a
    /// later term of this one) speaks for it now.
    pub fn forget_node(&self, labels: &NodeLabels) {
        self.node_connected(labels, false);
        self.node_connected.remove(labels);
        self.verdict_age.remove(labels);
        self.datastore_primary.remove(labels);
        for state in health_state::STATES {
            self.node_health.remove(&HealthLabels {
                datastore: labels.datastore.clone(),
                node: labels.node.clone(),
                state: health_state::name(state),
            });
        }
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
            "Failovers and switchovers begun (their epoch bumped), by data store and cause",
            self.failovers.clone(),
        );
        r.register(
            "decision_latency_seconds",
            "From the verdict that showed the primary failed to the promote",
            self.decision_latency.clone(),
        );
        r.register(
            "node_health",
            "Health of each node's last verdict: 1 for its state (healthy, degraded, unhealthy, down, unknown), 0 for the others",
            self.node_health.clone(),
        );
        r.register(
            "node_connected",
            "1 while the node's agent has a session with this controller",
            self.node_connected.clone(),
        );
        r.register(
            "verdict_age_seconds",
            "Seconds since the node's last verdict reached this controller",
            self.verdict_age.clone(),
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
        r.register(
            "datastore_epoch",
            "Each data store's epoch, as persisted",
            self.datastore_epoch.clone(),
        );
        r.register(
            "datastore_primary",
            "1 for each data store's primary, as persisted",
            self.datastore_primary.clone(),
        );
        r.register(
            "leading",
            "1 while this controller leads (runs the data stores' reconcilers)",
            self.leading.clone(),
        );
        r.register(
            "hook_runs",
            "Notification and client-reconfig hook runs, by outcome (ok, failed, timeout, dropped)",
            self.hook_runs.clone(),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn page(m: &Metrics) -> String {
        let mut text = String::new();
        encode(&mut text, &m.registry()).unwrap();
        text
    }

    #[test]
    fn connected_agents_counts_each_node_once_however_often_its_session_is_replaced() {
        let m = Metrics::new();
        let (a, b) = (node("cache", "a"), node("cache", "b"));
        m.node_connected(&a, true);
        // A reconnect seen before the old session's close: the same node, one agent.
        m.node_connected(&a, true);
        m.node_connected(&b, true);
        assert_eq!(m.connected_agents.get(), 2);
        m.node_connected(&a, false);
        // The old session's close, late: nothing more to take away.
        m.node_connected(&a, false);
        assert_eq!(m.connected_agents.get(), 1);
        m.forget_node(&b);
        assert_eq!(m.connected_agents.get(), 0);
        assert!(!page(&m).contains("node=\"b\""), "{}", page(&m));
    }

    #[test]
    fn health_is_a_state_label_and_a_forgotten_node_has_no_series() {
        let m = Metrics::new();
        m.node_health("cache", "a", Health::Degraded);
        m.node_health("cache", "a", Health::Down);
        let text = page(&m);
        assert!(
            text.contains(
                "vigil_controller_node_health{datastore=\"cache\",node=\"a\",state=\"down\"} 1"
            ),
            "{text}"
        );
        for state in ["healthy", "degraded", "unhealthy", "unknown"] {
            let line = format!(
                "vigil_controller_node_health{{datastore=\"cache\",node=\"a\",state=\"{state}\"}} 0"
            );
            assert!(text.contains(&line), "{line} missing from {text}");
        }
        m.verdict_age.get_or_create(&node("cache", "a")).set(0.5);
        assert!(page(&m).contains("vigil_controller_verdict_age_seconds{"));
        m.forget_node(&node("cache", "a"));
        let text = page(&m);
        assert!(!text.contains("node=\"a\""), "{text}");
    }

    #[test]
    fn the_contract_names_are_served() {
        let m = Metrics::new();
        m.failover("cache", "down");
        m.alert("primary_down");
        m.hook_run("notify", "timeout");
        m.datastore_epoch
            .get_or_create(&DatastoreLabel {
                datastore: "cache".into(),
            })
            .set(2);
        m.datastore_primary
            .get_or_create(&node("cache", "a"))
            .set(1);
        m.leading.set(1);
        let text = page(&m);
        for line in [
            "vigil_controller_failovers_total{datastore=\"cache\",cause=\"down\"} 1",
            "vigil_controller_alerts_total{event=\"primary_down\"} 1",
            "vigil_controller_hook_runs_total{hook=\"notify\",outcome=\"timeout\"} 1",
            "vigil_controller_datastore_epoch{datastore=\"cache\"} 2",
            "vigil_controller_datastore_primary{datastore=\"cache\",node=\"a\"} 1",
            "vigil_controller_leading 1",
            "vigil_controller_connected_agents 0",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }
}
