//! What the controller tells the things that supervise it and route to it: `/healthz` and
//! `/readyz` beside `/metrics`, the standard gRPC health service (`grpc.health.v1.Health`) on its
//! gRPC port, and systemd's notifications (READY=1, WATCHDOG=1, STATUS=).
//!
//! One task, the prober ([`Supervision::run`]), proves every [`PROBE_EVERY`] that the controller
//! still works: a task spawned on the runtime runs, and every data store's reconciler of this
//! term answers a ping, all within [`PROBE_LIMIT`]. Only a round trip that completes beats the
//! heartbeat `/healthz` reads and sends WATCHDOG=1, so a stuck runtime or reconciler stops both.
//!
//! Ready ([`Readiness`]) means the controller knows the leader and has loaded its state: it leads
//! and every data store of its term is loaded, or it follows a known leader and has read the
//! leader's views from etcd. `/readyz` answers 200 then, the gRPC health service answers SERVING
//! for `""`, `vigil.v1.AgentLink` and `vigil.v1.Control` (NOT_SERVING otherwise), and the first
//! time it holds, READY=1 goes to systemd.
use std::{sync::Arc, time::Duration};

use axum::{Router, extract::State, routing::get};
use serde_json::json;
use tokio::{sync::oneshot, time::timeout};
use tonic_health::{ServingStatus, server::HealthReporter};
use vigil_proto::{
    health::{Answer, Beat, answer},
    notify::Notifier,
    v1::{agent_link_server, control_server},
};

use crate::store::{Registry, actor::Input};

/// How often the prober runs (or the watchdog's period, when that is shorter).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A round trip that takes longer than this is a stuck runtime or reconciler: a reconciler
/// answers a ping as soon as it has taken in what came before it.
pub const PROBE_LIMIT: Duration = Duration::from_secs(2);

/// The services whose gRPC health follows the controller's readiness: the server as a whole
/// (`""`) and each vigil service.
const SERVICES: [&str; 3] = [
    "",
    agent_link_server::SERVICE_NAME,
    control_server::SERVICE_NAME,
];

/// Whether the controller can do its job now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// It leads, and every data store of its term is loaded.
    Leading,
    /// It follows `leader`, and serves the leader's views.
    Following { leader: String },
    /// It leads but is still loading the data stores, or follows but has not yet read the
    /// leader's views.
    Loading,
    /// It knows of no leader: an election is under way, or etcd is out of reach.
    NoLeader,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        matches!(self, Self::Leading | Self::Following { .. })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Leading => "leading",
            Self::Following { .. } => "following",
            Self::Loading => "loading",
            Self::NoLeader => "no_leader",
        }
    }

    /// The line systemd shows (`STATUS=`).
    fn status_line(&self) -> String {
        match self {
            Self::Leading => "leading".to_string(),
            Self::Following { leader } => format!("following the leader {leader}"),
            Self::Loading => "loading the data stores' state".to_string(),
            Self::NoLeader => {
                "no leader known: an election is under way or etcd is out of reach".to_string()
            }
        }
    }
}

/// The controller's health, as the prober and the endpoints see it.
pub struct Supervision {
    registry: Arc<Registry>,
    /// Beaten by each complete round trip.
    beat: Beat,
    reporter: HealthReporter,
}

impl Supervision {
    /// The controller's health, with the gRPC health service's reporter (its services start
    /// NOT_SERVING, until the prober finds the controller ready).
    pub async fn new(registry: Arc<Registry>, reporter: HealthReporter) -> Arc<Self> {
        for service in SERVICES {
            reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        Arc::new(Self {
            registry,
            beat: Beat::new(),
            reporter,
        })
    }

    /// Whether the controller knows the leader and has loaded its state, now.
    pub fn readiness(&self) -> Readiness {
        let leadership = &self.registry.leadership;
        if let Some(term) = leadership.held_term() {
            return if self.registry.loaded(term.token) {
                Readiness::Leading
            } else {
                Readiness::Loading
            };
        }
        match leadership.leader() {
            Some(leader) if leader.name != leadership.me.name => {
                if self.registry.published.synced() {
                    Readiness::Following {
                        leader: leader.name,
                    }
                } else {
                    Readiness::Loading
                }
            }
            // Itself, with its lease run out: no longer leading, and nobody else known yet.
            _ => Readiness::NoLeader,
        }
    }

    /// One round trip through the runtime and every reconciler of this term, bounded by
    /// [`PROBE_LIMIT`]. A reconciler that ended meanwhile (its term is over) counts as
    /// answering: it is gone, not stuck.
    pub async fn round_trip(&self) -> bool {
        let trip = async {
            if tokio::spawn(async {}).await.is_err() {
                return false;
            }
            // Not leading: no reconciler runs.
            let Ok(stores) = self.registry.all().await else {
                return true;
            };
            // All asked first, then all awaited: the trip takes as long as the slowest.
            let mut replies = Vec::with_capacity(stores.len());
            for (_, tx) in stores {
                let (reply, answered) = oneshot::channel();
                if tx.send(Input::Ping { reply }).await.is_ok() {
                    replies.push(answered);
                }
            }
            for answered in replies {
                let _ = answered.await;
            }
            true
        };
        timeout(PROBE_LIMIT, trip).await.unwrap_or(false)
    }

    /// The prober: runs until the process ends. Sends READY=1 the first time the controller is
    /// ready, STATUS= on every change of readiness, and WATCHDOG=1 after every complete round
    /// trip.
    pub async fn run(self: Arc<Self>, notifier: Arc<Notifier>) {
        let every = notifier
            .watchdog_period()
            .map_or(PROBE_EVERY, |p| p.min(PROBE_EVERY));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ready_sent = false;
        let mut last: Option<Readiness> = None;
        loop {
            tick.tick().await;
            if self.round_trip().await {
                self.beat.beat();
                notifier.watchdog();
            } else {
                tracing::error!(
                    limit_ms = PROBE_LIMIT.as_millis() as u64,
                    "the runtime or a data store's reconciler did not answer in time: /healthz \
                     fails and no watchdog ping is sent"
                );
            }
            let now = self.readiness();
            if last.as_ref() == Some(&now) {
                continue;
            }
            let status = if now.ready() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in SERVICES {
                self.reporter.set_service_status(service, status).await;
            }
            let line = now.status_line();
            if now.ready() && !ready_sent {
                ready_sent = true;
                notifier.ready(&line);
            } else {
                notifier.status(&line);
            }
            last = Some(now);
        }
    }

    fn healthz(&self) -> Answer {
        let alive = self.beat.alive();
        answer(
            alive,
            json!({ "alive": alive, "probe_age_ms": self.beat.age().as_millis() as u64 })
                .to_string(),
        )
    }

    fn readyz(&self) -> Answer {
        let readiness = self.readiness();
        let alive = self.beat.alive();
        let ready = alive && readiness.ready();
        let leader = self.registry.leadership.leader().map(|l| l.name);
        let body = json!({
            "ready": ready,
            "alive": alive,
            "state": readiness.as_str(),
            "leader": leader,
            "me": self.registry.leadership.me.name,
        });
        answer(ready, body.to_string())
    }
}

/// `/healthz` and `/readyz`, to serve beside `/metrics`.
pub fn routes(supervision: Arc<Supervision>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|State(s): State<Arc<Supervision>>| async move { s.healthz() }),
        )
        .route(
            "/readyz",
            get(|State(s): State<Arc<Supervision>>| async move { s.readyz() }),
        )
        .with_state(supervision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cluster::Leadership,
        member::ControllerInfo,
        metrics::Metrics,
        store::{Settings, registry::Admission, registry::Backend},
    };

    fn me(name: &str) -> ControllerInfo {
        ControllerInfo {
            name: name.into(),
            grpc: "http://127.0.0.1:1".into(),
            sentinel: "127.0.0.1:2".into(),
        }
    }

    fn registry(dir: &std::path::Path, leadership: Arc<Leadership>) -> Arc<Registry> {
        Registry::new(
            Backend::Files(dir.to_path_buf()),
            Settings::default(),
            Admission {
                refuse_unknown: false,
                max_datastores: 10,
            },
            Vec::new(),
            leadership,
            Metrics::new(),
            crate::hooks::Hooks::none(Metrics::new()),
        )
    }

    #[tokio::test]
    async fn ready_once_the_leader_has_loaded_its_term_or_a_follower_has_the_views() {
        let dir = tempfile::tempdir().unwrap();
        let leading = Leadership::embedded(me("c0"));
        let r = registry(dir.path(), Arc::clone(&leading));
        let (reporter, _) = tonic_health::server::health_reporter();
        let s = Supervision::new(Arc::clone(&r), reporter).await;
        assert_eq!(
            s.readiness(),
            Readiness::Loading,
            "the term's stores not loaded yet"
        );
        r.lead(leading.term().unwrap()).await;
        assert_eq!(s.readiness(), Readiness::Leading);
        r.get_or_start("cache").await.unwrap();
        assert!(s.round_trip().await, "a reconciler that answers");

        let following = Leadership::following(me("c1"));
        let r = registry(dir.path(), Arc::clone(&following));
        let (reporter, _) = tonic_health::server::health_reporter();
        let s = Supervision::new(Arc::clone(&r), reporter).await;
        assert_eq!(s.readiness(), Readiness::NoLeader);
        following.set_leader(Some(me("c0")));
        assert_eq!(s.readiness(), Readiness::Loading, "the views not read yet");
        r.published.mark_synced();
        assert_eq!(
            s.readiness(),
            Readiness::Following {
                leader: "c0".into()
            }
        );
        assert!(s.round_trip().await, "no reconciler runs on a follower");
    }
}
