//! `vigil history`: each data store's failovers, oldest first, with their cause, epoch, old and
//! new primary, outcome, when each was decided, and its timeline in milliseconds; as text or JSON.
use std::time::{Duration, UNIX_EPOCH};

use vigil_proto::v1;

use super::{Client, status_error};

/// What the timeline's stages mean, as `vigil history --help` lists them.
pub const STAGES: &str = "\
Each timeline counts, in milliseconds, from the controller's first judgement that the primary
failed (from failure), the operator's request (from request), or a controller taking up a
failover interrupted by its restart or a change of leader (from resumed), to each stage reached:
  decided        the replica chosen, the epoch bumped and persisted
  fenced         the old primary's agent confirmed its fence
  lease_expired  the old primary's agent did not answer: its lease was waited out instead
  caught_up      a switchover's target had every write of the fenced primary
  promoted       the target took the primary role; clients are sent to it
  done           the other replicas re-pointed (or the failure recorded)";

pub async fn run(mut client: Client, datastore: Option<String>, json: bool) -> anyhow::Result<()> {
    let reply = client
        .history(v1::HistoryRequest {
            datastore: datastore.unwrap_or_default(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if json {
        println!("{}", serde_json::to_string_pretty(&history_json(&reply))?);
    } else {
        print!("{}", history_text(&reply));
    }
    Ok(())
}

/// A time in the history (ms since the epoch) as RFC 3339, UTC, to the millisecond.
fn when(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// `decided +3ms, fenced +5ms, ...`, or a word when the failover has no timeline.
fn timeline_text(f: &v1::FailoverRecord) -> String {
    if f.timeline.is_empty() {
        return "no timeline (recorded before timelines were kept)".into();
    }
    let stages: Vec<String> = f
        .timeline
        .iter()
        .map(|s| format!("{} +{}ms", s.stage, s.ms))
        .collect();
    format!("from {}: {}", or_dash(&f.timeline_from), stages.join(", "))
}

fn history_text(reply: &v1::HistoryReply) -> String {
    let mut out = String::new();
    for d in &reply.datastores {
        out.push_str(&format!("{}  {} failovers\n", d.name, d.failovers.len()));
        if d.failovers.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "  {:>5} {:<11} {:<12} {:<12} {:<24} {:>9} {}\n",
            "EPOCH", "CAUSE", "FROM", "TO", "DECIDED AT", "DURATION", "OUTCOME"
        ));
        for f in &d.failovers {
            out.push_str(&format!(
                "  {:>5} {:<11} {:<12} {:<12} {:<24} {:>9} {}\n",
                f.epoch,
                f.cause,
                or_dash(&f.from_node),
                f.to_node,
                when(f.started_unix_ms),
                format!("{}ms", f.duration_ms),
                f.outcome
            ));
            out.push_str(&format!("        timeline {}\n", timeline_text(f)));
        }
    }
    out
}

fn history_json(reply: &v1::HistoryReply) -> serde_json::Value {
    serde_json::Value::Array(
        reply
            .datastores
            .iter()
            .map(|d| {
                serde_json::json!({
                    "name": d.name,
                    "failovers": d.failovers.iter().map(|f| serde_json::json!({
                        "epoch": f.epoch,
                        "cause": f.cause,
                        "from": (!f.from_node.is_empty()).then_some(&f.from_node),
                        "to": f.to_node,
                        "started_unix_ms": f.started_unix_ms,
                        "started": when(f.started_unix_ms),
                        "duration_ms": f.duration_ms,
                        "outcome": f.outcome,
                        "timeline_from": (!f.timeline_from.is_empty()).then_some(&f.timeline_from),
                        "timeline": f.timeline.iter().map(|s| serde_json::json!({
                            "stage": s.stage,
                            "ms": s.ms,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> v1::HistoryReply {
        let stage = |stage: &str, ms| v1::FailoverStage {
            stage: stage.into(),
            ms,
        };
        v1::HistoryReply {
            datastores: vec![v1::DatastoreHistory {
                name: "cache".into(),
                failovers: vec![
                    v1::FailoverRecord {
                        epoch: 2,
                        from_node: "n0".into(),
                        to_node: "n1".into(),
                        cause: "down".into(),
                        started_unix_ms: 1_700_000_000_123,
                        duration_ms: 9,
                        outcome: "ok".into(),
                        timeline_from: "failure".into(),
                        timeline: vec![
                            stage("decided", 2),
                            stage("fenced", 4),
                            stage("promoted", 7),
                            stage("done", 11),
                        ],
                    },
                    v1::FailoverRecord {
                        epoch: 3,
                        to_node: "n2".into(),
                        cause: "manual".into(),
                        outcome: "failed: promoting n2: refused".into(),
                        ..Default::default()
                    },
                ],
            }],
        }
    }

    #[test]
    fn text_shows_each_failover_and_its_timeline_in_order() {
        let text = history_text(&reply());
        assert!(text.starts_with("cache  2 failovers\n"), "{text}");
        assert!(text.contains("2023-11-14T22:13:20.123Z"), "{text}");
        assert!(
            text.contains(
                "timeline from failure: decided +2ms, fenced +4ms, promoted +7ms, done +11ms"
            ),
            "{text}"
        );
        assert!(text.contains("no timeline"), "{text}");
        assert!(text.contains("failed: promoting n2: refused"), "{text}");
    }

    #[test]
    fn json_names_every_field() {
        let v = history_json(&reply());
        let f = &v[0]["failovers"][0];
        assert_eq!(v[0]["name"], "cache");
        assert_eq!(f["epoch"], 2);
        assert_eq!(f["cause"], "down");
        assert_eq!(f["from"], "n0");
        assert_eq!(f["to"], "n1");
        assert_eq!(f["outcome"], "ok");
        assert_eq!(f["timeline_from"], "failure");
        assert_eq!(f["timeline"][3]["stage"], "done");
        assert_eq!(f["timeline"][3]["ms"], 11);
        let old = &v[0]["failovers"][1];
        assert!(old["from"].is_null() && old["timeline_from"].is_null());
    }
}
