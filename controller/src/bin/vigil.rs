//! `vigil`: the operator's CLI for the controller: status, failover, watch.
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_stream::StreamExt;
use vigil_proto::{
    Reason,
    v1::{self, control_client::ControlClient},
};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Ask vigil's controller about data stores, or fail one over"
)]
struct Cli {
    /// The controller's gRPC URL.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:7420",
        env = "VIGIL_CONTROLLER"
    )]
    controller: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Nodes, roles, health and reasons, offsets and lag, zones, verdict ages and epochs.
    Status {
        /// One data store (default: all).
        datastore: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move the primary role: a planned, zero-loss switchover of a live primary (REPLTAKEOVER on
    /// Dragonfly, FAILOVER on Redis), or a forced promotion when the primary is already dead.
    Failover {
        datastore: String,
        /// The replica to promote (default: the best one).
        #[arg(long)]
        to: Option<String>,
    },
    /// Stream topology events (+switch-master, +sdown, -sdown, +odown) as they happen.
    Watch {
        /// One data store (default: all).
        datastore: Option<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vigil: error: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("vigil: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let endpoint = tonic::transport::Endpoint::from_shared(cli.controller.clone())
        .with_context(|| format!("{:?} is not a URL", cli.controller))?
        .connect_timeout(Duration::from_secs(2));
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the controller at {}", cli.controller))?;
    let mut client = ControlClient::new(channel);
    match cli.command {
        Command::Status { datastore, json } => {
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
        }
        Command::Failover { datastore, to } => {
            let reply = client
                .failover(v1::FailoverRequest {
                    datastore: datastore.clone(),
                    to_node: to.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "{datastore}: primary is now {} (epoch {})",
                reply.new_primary, reply.epoch
            );
        }
        Command::Watch { datastore } => {
            let mut events = client
                .watch(v1::WatchRequest {
                    datastore: datastore.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            while let Some(e) = events.next().await {
                let e = e.map_err(status_error)?;
                println!(
                    "{} {} epoch={} node={} {}",
                    e.datastore, e.kind, e.epoch, e.node_id, e.detail
                );
            }
        }
    }
    Ok(())
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
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
