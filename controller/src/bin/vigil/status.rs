//! `vigil status`: nodes, roles, health and reasons, offsets and lag, zones, verdict ages and
//! epochs, as a table or as JSON; its exit code is the worst [`Condition`] of the data stores.
use std::process::ExitCode;

use vigil_proto::{Reason, v1};

use super::{Client, status_error};

/// The exit codes, as `vigil status --help` lists them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  every data store is healthy: a primary, and every node's agent connected and HEALTHY
  1  degraded: a node not HEALTHY or its agent not connected, a data store paused, or a
     failover in flight
  2  a data store has no primary (none named, or the named one DOWN or UNHEALTHY and no
     failover in flight), or the controller could not be reached or answered with an error

A controller that does not lead hears no verdicts: answered by one, a node counts as healthy
unless it is DOWN or its agent is not connected.";

/// How a data store is doing, worst last: the exit code is the worst of all stores'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    Healthy,
    Degraded,
    NoPrimary,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::NoPrimary => "no_primary",
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Self::Healthy => 0,
            Self::Degraded => 1,
            Self::NoPrimary => 2,
        }
    }
}

/// The condition of data store `d`, as told by a controller that leads (`leading`) or one that
/// only knows the leader's published view.
pub fn condition(d: &v1::DatastoreStatus, leading: bool) -> Condition {
    // The controller is already replacing the primary: degraded, not abandoned.
    if d.failover_in_flight {
        return Condition::Degraded;
    }
    let primary = d.nodes.iter().find(|n| n.node_id == d.primary);
    let serves =
        primary.is_some_and(|p| !matches!(p.health(), v1::Health::Down | v1::Health::Unhealthy));
    if d.primary.is_empty() || !serves {
        return Condition::NoPrimary;
    }
    let healthy = |n: &v1::NodeStatus| match n.health() {
        v1::Health::Healthy => true,
        // A follower hears no verdicts: it knows only who is down.
        v1::Health::Unspecified => !leading,
        _ => false,
    };
    if d.paused || d.nodes.iter().any(|n| !n.connected || !healthy(n)) {
        return Condition::Degraded;
    }
    Condition::Healthy
}

/// The worst condition of every data store in `reply` (healthy when there are none).
pub fn worst(reply: &v1::StatusReply) -> Condition {
    reply
        .datastores
        .iter()
        .map(|d| condition(d, reply.leading))
        .max()
        .unwrap_or(Condition::Healthy)
}

pub async fn run(
    mut client: Client,
    datastore: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let reply = client
        .status(v1::StatusRequest {
            datastore: datastore.unwrap_or_default(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if json {
        println!("{}", serde_json::to_string_pretty(&status_json(&reply))?);
    } else {
        print!("{}", status_table(&reply));
    }
    Ok(ExitCode::from(worst(&reply).exit_code()))
}

fn role(n: &v1::NodeStatus) -> &'static str {
    match n.role() {
        v1::Role::Primary => "primary",
        v1::Role::Replica => "replica",
        v1::Role::Unspecified => "?",
    }
}

fn health(n: &v1::NodeStatus) -> &'static str {
    match n.health() {
        v1::Health::Healthy => "HEALTHY",
        v1::Health::Degraded => "DEGRADED",
        v1::Health::Unhealthy => "UNHEALTHY",
        v1::Health::Down => "DOWN",
        v1::Health::Unspecified => "?",
    }
}

fn age(ms: u64) -> String {
    if ms == u64::MAX {
        "never".into()
    } else {
        format!("{ms}ms")
    }
}

fn status_table(reply: &v1::StatusReply) -> String {
    let mut out = String::new();
    if !reply.leader.is_empty() {
        let answered = if reply.leading {
            "this controller leads"
        } else {
            "answered by a follower, from the leader's view"
        };
        out.push_str(&format!("leader {}  ({answered})\n", reply.leader));
    }
    for d in &reply.datastores {
        let primary_offset = d
            .nodes
            .iter()
            .find(|n| n.node_id == d.primary)
            .map_or(0, |n| n.repl_offset);
        let mut flags = String::new();
        if d.paused {
            flags.push_str("  PAUSED");
        }
        if d.failover_in_flight {
            flags.push_str("  FAILING OVER");
        }
        out.push_str(&format!(
            "{}  epoch {}  primary {}{flags}\n",
            d.name,
            d.epoch,
            if d.primary.is_empty() {
                "-"
            } else {
                &d.primary
            }
        ));
        out.push_str(&format!(
            "  {:<12} {:<22} {:<8} {:<10} {:<12} {:>10} {:>8} {:<6} {:<9} {}\n",
            "NODE",
            "ADDRESS",
            "ROLE",
            "HEALTH",
            "ZONE",
            "OFFSET",
            "LAG",
            "AGENT",
            "VERDICT",
            "REASONS"
        ));
        for n in &d.nodes {
            let lag = if n.role() == v1::Role::Replica && primary_offset > 0 {
                primary_offset.saturating_sub(n.repl_offset).to_string()
            } else {
                "-".into()
            };
            let mark = if n.node_id == d.primary { "*" } else { " " };
            out.push_str(&format!(
                " {mark}{:<12} {:<22} {:<8} {:<10} {:<12} {:>10} {:>8} {:<6} {:<9} {}\n",
                n.node_id,
                n.address,
                role(n),
                health(n),
                if n.zone.is_empty() { "-" } else { &n.zone },
                n.repl_offset,
                lag,
                if n.connected { "up" } else { "down" },
                age(n.verdict_age_ms),
                Reason::from_bits_truncate(n.reasons).names().join(",")
            ));
        }
    }
    out
}

fn status_json(reply: &v1::StatusReply) -> serde_json::Value {
    serde_json::Value::Array(
        reply
            .datastores
            .iter()
            .map(|d| {
                serde_json::json!({
                    "leader": reply.leader,
                    "leading": reply.leading,
                    "name": d.name,
                    "epoch": d.epoch,
                    "primary": d.primary,
                    "paused": d.paused,
                    "failover_in_flight": d.failover_in_flight,
                    "condition": condition(d, reply.leading).name(),
                    "nodes": d.nodes.iter().map(|n| serde_json::json!({
                        "node": n.node_id,
                        "address": n.address,
                        "zone": n.zone,
                        "role": role(n),
                        "health": health(n),
                        "reasons": Reason::from_bits_truncate(n.reasons).names(),
                        "offset": n.repl_offset,
                        "connected": n.connected,
                        "verdict_age_ms": (n.verdict_age_ms != u64::MAX).then_some(n.verdict_age_ms),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, health: v1::Health, connected: bool) -> v1::NodeStatus {
        v1::NodeStatus {
            node_id: id.into(),
            health: health as i32,
            connected,
            ..Default::default()
        }
    }

    fn store(nodes: Vec<v1::NodeStatus>) -> v1::DatastoreStatus {
        v1::DatastoreStatus {
            name: "cache".into(),
            epoch: 1,
            primary: "n0".into(),
            nodes,
            ..Default::default()
        }
    }

    fn healthy() -> v1::DatastoreStatus {
        store(vec![
            node("n0", v1::Health::Healthy, true),
            node("n1", v1::Health::Healthy, true),
        ])
    }

    #[test]
    fn every_node_connected_and_healthy_is_exit_0() {
        assert_eq!(condition(&healthy(), true), Condition::Healthy);
        assert_eq!(Condition::Healthy.exit_code(), 0);
    }

    #[test]
    fn a_node_not_healthy_or_not_connected_a_pause_or_a_failover_is_exit_1() {
        let mut d = healthy();
        d.nodes[1].health = v1::Health::Down as i32;
        assert_eq!(condition(&d, true), Condition::Degraded);
        let mut d = healthy();
        d.nodes[0].health = v1::Health::Degraded as i32;
        assert_eq!(condition(&d, true), Condition::Degraded);
        let mut d = healthy();
        d.nodes[1].connected = false;
        assert_eq!(condition(&d, true), Condition::Degraded);
        let mut d = healthy();
        d.paused = true;
        assert_eq!(condition(&d, true), Condition::Degraded);
        // A failover in flight while the old primary is down: the controller is on it.
        let mut d = healthy();
        d.nodes[0].health = v1::Health::Down as i32;
        d.failover_in_flight = true;
        assert_eq!(condition(&d, true), Condition::Degraded);
        assert_eq!(Condition::Degraded.exit_code(), 1);
    }

    #[test]
    fn no_primary_or_a_failed_one_left_alone_is_exit_2() {
        let mut d = healthy();
        d.primary.clear();
        assert_eq!(condition(&d, true), Condition::NoPrimary);
        for h in [v1::Health::Down, v1::Health::Unhealthy] {
            let mut d = healthy();
            d.nodes[0].health = h as i32;
            assert_eq!(condition(&d, true), Condition::NoPrimary, "{h:?}");
            // Paused: still no primary, which is worse than paused.
            d.paused = true;
            assert_eq!(condition(&d, true), Condition::NoPrimary, "{h:?}");
        }
        // A primary named that the controller does not know.
        let mut d = healthy();
        d.primary = "n9".into();
        assert_eq!(condition(&d, true), Condition::NoPrimary);
        assert_eq!(Condition::NoPrimary.exit_code(), 2);
    }

    #[test]
    fn a_follower_without_verdicts_judges_by_what_it_knows() {
        let d = store(vec![
            node("n0", v1::Health::Unspecified, true),
            node("n1", v1::Health::Unspecified, true),
        ]);
        assert_eq!(condition(&d, false), Condition::Healthy);
        // The leader itself not knowing a node's health is not healthy.
        assert_eq!(condition(&d, true), Condition::Degraded);
        let mut down = d.clone();
        down.nodes[1].health = v1::Health::Down as i32;
        assert_eq!(condition(&down, false), Condition::Degraded);
    }

    #[test]
    fn the_exit_code_is_the_worst_stores() {
        let mut bad = healthy();
        bad.primary.clear();
        let mut paused = healthy();
        paused.paused = true;
        let reply = |ds: Vec<v1::DatastoreStatus>| v1::StatusReply {
            datastores: ds,
            leading: true,
            ..Default::default()
        };
        assert_eq!(worst(&reply(vec![])), Condition::Healthy);
        assert_eq!(
            worst(&reply(vec![healthy(), paused.clone()])),
            Condition::Degraded
        );
        assert_eq!(
            worst(&reply(vec![bad, paused, healthy()])),
            Condition::NoPrimary
        );
    }

    #[test]
    fn json_keeps_its_shape_and_adds_the_new_fields() {
        let mut d = healthy();
        d.paused = true;
        let v = status_json(&v1::StatusReply {
            datastores: vec![d],
            leading: true,
            ..Default::default()
        });
        let s = &v[0];
        for key in ["leader", "leading", "name", "epoch", "primary", "nodes"] {
            assert!(s.get(key).is_some(), "{key} is missing: {s}");
        }
        assert_eq!(s["paused"], true);
        assert_eq!(s["failover_in_flight"], false);
        assert_eq!(s["condition"], "degraded");
        assert!(
            status_table(&v1::StatusReply {
                datastores: vec![healthy(), {
                    let mut p = healthy();
                    p.paused = true;
                    p
                }],
                ..Default::default()
            })
            .contains("primary n0  PAUSED")
        );
    }
}
