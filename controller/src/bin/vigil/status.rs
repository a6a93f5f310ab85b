//! `vigil status`: nodes, roles, health and reasons, offsets and lag, zones, verdict ages and
//! epochs, as a table or as JSON.
use vigil_proto::{Reason, v1};

use super::{Client, status_error};

pub async fn run(mut client: Client, datastore: Option<String>, json: bool) -> anyhow::Result<()> {
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
    Ok(())
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
        out.push_str(&format!(
            "{}  epoch {}  primary {}\n",
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
