//! What the agent tells the things that supervise it and route to its server: the HTTP health
//! endpoints beside `/metrics`, and the line systemd shows in `systemctl status`.
//!
//! - `/healthz`: 200 while the event loop turns (it turns at least every 100 ms), 503 once it
//!   has not for [`LOOP_STALE`](vigil_proto::health::LOOP_STALE).
//! - `/readyz`: 200 while the loop turns, the eBPF programs are attached to the server, and the
//!   agent has a session with the leading controller (one that welcomed it as the leader); else
//!   503. An agent whose server is not listening yet has nothing attached.
//! - `/primary` and `/replica`, for load balancers, as Patroni's: 200 only while the server has
//!   that role (as its last ROLE answer said), its verdict is neither UNHEALTHY nor DOWN, and no
//!   fence holds its clients off; 503 otherwise.
//!
//! Every answer is a small JSON object saying why. The event loop writes the [`View`] on every
//! turn; the endpoints only read it.
use std::sync::{Arc, Mutex, MutexGuard};

use axum::{Router, extract::State, routing::get};
use serde_json::json;
use vigil_proto::health::{Answer, Beat, answer};

use crate::{server::info::Role, verdict::rules::Health};

/// What the endpoints answer from, as the event loop last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The eBPF programs are loaded and attached to the server.
    pub attached: bool,
    /// The leading controller's URL while a session with it is open.
    pub controller: Option<String>,
    /// The server's role, as its last ROLE answer said.
    pub role: Option<Role>,
    /// The verdict's health; None before the first verdict.
    pub health: Option<Health>,
    /// A fence holds the server's clients off.
    pub fenced: bool,
}

impl View {
    /// Attached and linked to the leader.
    pub fn ready(&self) -> bool {
        self.attached && self.controller.is_some()
    }

    /// Whether a load balancer may send `role`'s traffic to this server now.
    pub fn serves_as(&self, role: Role) -> bool {
        self.role == Some(role)
            && self.health.is_some_and(|h| h < Health::Unhealthy)
            && !self.fenced
    }

    /// The one line systemd shows for the agent (`STATUS=`).
    pub fn status_line(&self) -> String {
        let role = self.role.map_or("role unknown", Role::as_str);
        let health = self.health.map_or("no verdict yet", Health::as_str);
        let fenced = if self.fenced { ", fenced" } else { "" };
        let kernel = if self.attached {
            "eBPF attached"
        } else {
            "kernel probes unavailable"
        };
        let link = match &self.controller {
            Some(url) => format!("linked to {url}"),
            None => "no leading controller".to_string(),
        };
        format!("{role} {health}{fenced}; {kernel}; {link}")
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "role": self.role.map(Role::as_str),
            "health": self.health.map(Health::as_str),
            "fenced": self.fenced,
            "attached": self.attached,
            "controller": self.controller,
        })
    }
}

/// The event loop's heartbeat and view, shared with the endpoints.
#[derive(Debug, Default)]
pub struct HealthState {
    pub beat: Beat,
    view: Mutex<View>,
}

impl HealthState {
    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `view` in; true when it differs from the last one.
    pub fn update(&self, view: &View) -> bool {
        let mut current = self.view();
        if *current == *view {
            return false;
        }
        *current = view.clone();
        true
    }

    pub fn snapshot(&self) -> View {
        self.view().clone()
    }
}

fn healthz(state: &HealthState) -> Answer {
    let age = state.beat.age();
    let alive = state.beat.alive();
    answer(
        alive,
        json!({ "alive": alive, "loop_age_ms": age.as_millis() as u64 }).to_string(),
    )
}

fn readyz(state: &HealthState) -> Answer {
    let view = state.snapshot();
    let alive = state.beat.alive();
    let ready = alive && view.ready();
    let mut body = view.json();
    body["ready"] = json!(ready);
    body["alive"] = json!(alive);
    answer(ready, body.to_string())
}

fn as_role(state: &HealthState, role: Role) -> Answer {
    let view = state.snapshot();
    let ok = state.beat.alive() && view.serves_as(role);
    answer(ok, view.json().to_string())
}

/// The health endpoints, to serve beside `/metrics`.
pub fn routes(state: Arc<HealthState>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|State(s): State<Arc<HealthState>>| async move { healthz(&s) }),
        )
        .route(
            "/readyz",
            get(|State(s): State<Arc<HealthState>>| async move { readyz(&s) }),
        )
        .route(
            "/primary",
            get(|State(s): State<Arc<HealthState>>| async move { as_role(&s, Role::Primary) }),
        )
        .route(
            "/replica",
            get(|State(s): State<Arc<HealthState>>| async move { as_role(&s, Role::Replica) }),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn serving(role: Role, health: Health) -> View {
        View {
            attached: true,
            controller: Some("http://127.0.0.1:7420".into()),
            role: Some(role),
            health: Some(health),
            fenced: false,
        }
    }

    #[test]
    fn a_role_endpoint_answers_200_only_for_that_role_while_healthy_enough_and_unfenced() {
        let state = HealthState::default();
        let code = |role| as_role(&state, role).0;
        for (health, ok) in [
            (Health::Healthy, true),
            (Health::Degraded, true),
            (Health::Unhealthy, false),
            (Health::Down, false),
        ] {
            state.update(&serving(Role::Primary, health));
            let want = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            assert_eq!(code(Role::Primary), want, "{health:?}");
            assert_eq!(code(Role::Replica), StatusCode::SERVICE_UNAVAILABLE);
        }
        state.update(&View {
            fenced: true,
            ..serving(Role::Primary, Health::Degraded)
        });
        assert_eq!(
            code(Role::Primary),
            StatusCode::SERVICE_UNAVAILABLE,
            "fenced"
        );
        state.update(&serving(Role::Replica, Health::Healthy));
        assert_eq!(code(Role::Replica), StatusCode::OK);
        state.update(&View {
            role: None,
            ..serving(Role::Replica, Health::Healthy)
        });
        assert_eq!(
            code(Role::Replica),
            StatusCode::SERVICE_UNAVAILABLE,
            "role unknown"
        );
        let (_, _, body) = as_role(&state, Role::Replica);
        assert!(body.contains("\"health\":\"HEALTHY\""), "{body}");
    }

    #[test]
    fn ready_means_attached_and_linked_to_the_leader() {
        let state = HealthState::default();
        assert_eq!(readyz(&state).0, StatusCode::SERVICE_UNAVAILABLE);
        let linked = serving(Role::Primary, Health::Down);
        state.update(&linked);
        let (code, _, body) = readyz(&state);
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(body.contains("\"ready\":true"), "{body}");
        state.update(&View {
            controller: None,
            ..linked.clone()
        });
        assert_eq!(readyz(&state).0, StatusCode::SERVICE_UNAVAILABLE);
        state.update(&View {
            attached: false,
            ..linked
        });
        let (code, _, body) = readyz(&state);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"attached\":false"), "{body}");
    }

    #[test]
    fn the_status_line_says_role_health_kernel_and_link() {
        let v = View {
            fenced: true,
            ..serving(Role::Primary, Health::Degraded)
        };
        assert_eq!(
            v.status_line(),
            "primary DEGRADED, fenced; eBPF attached; linked to http://127.0.0.1:7420"
        );
        assert_eq!(
            View::default().status_line(),
            "role unknown no verdict yet; kernel probes unavailable; no leading controller"
        );
    }
}
