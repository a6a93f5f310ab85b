//! The kill path, stage by stage: from kill -9 of the primary to the first write on the new
//! primary, each stage read from the log lines the agents and the controller write as they pass
//! it (all on one host, so their wall clocks agree), timed from the fault. The demo prints one
//! failover this way; the failover bench keeps each stage's percentiles over its kill rounds.
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::demo::entries;

/// A stage of the kill path, in the order a failover passes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The old primary's agent reported DOWN.
    Verdict,
    /// The controller judged the primary failed and began choosing the replica to promote.
    Judged,
    /// A candidate's agent got the controller's offset probe.
    ProbeReceived,
    /// Every candidate's agent answered it (its ack on its way).
    ProbeDone,
    /// The controller chose the replica, bumped the epoch and persisted it.
    Decided,
    /// The old primary's agent got its Fence command.
    FenceReceived,
    /// The fence's filter is attached.
    FenceUp,
    /// The old primary's agent finished its Fence command (its ack on its way).
    FenceDone,
    /// The controller settled the target on the candidates' answers.
    Chosen,
    /// The chosen replica's agent got its Promote command.
    PromoteReceived,
    /// REPLICAOF NO ONE done on the chosen replica (its ack on its way).
    PromoteDone,
    /// The controller's Sentinel endpoint names the new primary.
    Published,
    /// A Sentinel-mode client's first write accepted on the new primary.
    FirstWrite,
    /// The other replica re-pointed and the failover recorded.
    Finished,
}

impl Stage {
    pub const ALL: [Stage; 14] = [
        Stage::Verdict,
        Stage::Judged,
        Stage::ProbeReceived,
        Stage::ProbeDone,
        Stage::Decided,
        Stage::FenceReceived,
        Stage::FenceUp,
        Stage::FenceDone,
        Stage::Chosen,
        Stage::PromoteReceived,
        Stage::PromoteDone,
        Stage::Published,
        Stage::FirstWrite,
        Stage::Finished,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Verdict => "verdict: the old primary's agent reported DOWN",
            Self::Judged => "judged: the controller found the primary failed",
            Self::ProbeReceived => "probe: a candidate's agent was asked for its offset",
            Self::ProbeDone => "probe: every candidate's agent answered",
            Self::Decided => "decided: replica chosen, epoch bumped and persisted",
            Self::FenceReceived => "fence: the old primary's agent got the Fence command",
            Self::FenceUp => "fence: the kernel filter attached",
            Self::FenceDone => "fence: done, ack sent",
            Self::Chosen => "chosen: the target settled on the candidates' offsets",
            Self::PromoteReceived => "promote: the replica's agent got the Promote command",
            Self::PromoteDone => "promote: REPLICAOF NO ONE done, ack sent",
            Self::Published => "published: the Sentinel endpoint names the new primary",
            Self::FirstWrite => "first write accepted on the new primary",
            Self::Finished => "finished: the other replica re-pointed",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Self::Verdict => "verdict",
            Self::Judged => "judged",
            Self::ProbeReceived => "probe received",
            Self::ProbeDone => "probes answered",
            Self::Decided => "decided",
            Self::FenceReceived => "fence received",
            Self::FenceUp => "fence up",
            Self::FenceDone => "fence done",
            Self::Chosen => "target chosen",
            Self::PromoteReceived => "promote received",
            Self::PromoteDone => "promote done",
            Self::Published => "published",
            Self::FirstWrite => "first write",
            Self::Finished => "finished",
        }
    }
}

/// The logs one failover is read from.
pub struct Logs<'a> {
    pub controller: &'a [String],
    pub old_agent: &'a [String],
    /// Every agent's log, by node index (`n<i>`).
    pub agents: &'a [Vec<String>],
}

/// Each stage's time from `fault` (None when its line was not found), `first_write` as the client
/// measured it.
pub fn stages(
    logs: &Logs<'_>,
    fault: SystemTime,
    first_write: Option<Duration>,
) -> Vec<(Stage, Option<Duration>)> {
    let controller = after(entries(logs.controller), fault);
    let old = after(entries(logs.old_agent), fault);
    let message = |v: &Value| v["fields"]["message"].as_str().map(str::to_owned);
    let find = |lines: &[(SystemTime, Value)], want: &dyn Fn(&Value) -> bool| {
        lines.iter().find(|(_, v)| want(v)).map(|(t, _)| *t)
    };
    let is = |text: &'static str| move |v: &Value| message(v).as_deref() == Some(text);
    let event = |name: &'static str| {
        controller
            .iter()
            .find(move |(_, v)| v["fields"]["event"] == name)
    };
    let decided = event("failover_started");
    // The target the failover settled on (the one it began with may have given way).
    let to = event("failover_promoted")
        .or(decided)
        .and_then(|(_, v)| v["fields"]["to"].as_str())
        .and_then(|n| n.strip_prefix('n')?.parse::<usize>().ok());
    let new = to
        .and_then(|i| logs.agents.get(i))
        .map(|l| after(entries(l), fault))
        .unwrap_or_default();
    let probes: Vec<_> = logs
        .agents
        .iter()
        .map(|l| command(&after(entries(l), fault), "Probe"))
        .filter(|(received, _)| received.is_some())
        .collect();
    let probed = probes.iter().filter_map(|p| p.0).min();
    // Every probe answered: the last answer, once each has one.
    let answered = if probes.iter().all(|p| p.1.is_some()) {
        probes.iter().filter_map(|p| p.1).max()
    } else {
        None
    };
    let (fence_received, fence_done) = command(&old, "Fence");
    let (promote_received, promote_done) = command(&new, "Promote");
    let since = |t: Option<SystemTime>| t.and_then(|t| t.duration_since(fault).ok());
    Stage::ALL
        .iter()
        .map(|&stage| {
            let at = match stage {
                Stage::Verdict => find(&old, &|v| {
                    message(v).as_deref() == Some("verdict changed")
                        && v["fields"]["health"] == "DOWN"
                }),
                Stage::Judged => find(
                    &controller,
                    &is("the primary failed: choosing the replica to promote"),
                ),
                Stage::ProbeReceived => probed,
                Stage::ProbeDone => answered,
                Stage::Decided => decided.map(|(t, _)| *t),
                Stage::FenceReceived => fence_received,
                Stage::FenceUp => find(
                    &old,
                    &is("fence up: the server's clients are cut off in the kernel"),
                ),
                Stage::FenceDone => fence_done,
                Stage::Chosen => find(&controller, &|v| v["fields"]["event"] == "failover_target"),
                Stage::PromoteReceived => promote_received,
                Stage::PromoteDone => promote_done,
                Stage::Published => find(&controller, &|v| {
                    v["fields"]["event"] == "failover_promoted"
                }),
                Stage::FirstWrite => return (stage, first_write),
                Stage::Finished => find(&controller, &|v| {
                    v["fields"]["event"] == "failover_finished"
                }),
            };
            (stage, since(at))
        })
        .collect()
}

fn after(lines: Vec<(SystemTime, Value)>, fault: SystemTime) -> Vec<(SystemTime, Value)> {
    lines.into_iter().filter(|(t, _)| *t >= fault).collect()
}

/// When an agent got its first command whose action starts with `action`, and when it was done.
fn command(
    lines: &[(SystemTime, Value)],
    action: &str,
) -> (Option<SystemTime>, Option<SystemTime>) {
    let Some((received, id)) = lines.iter().find_map(|(t, v)| {
        let f = &v["fields"];
        (f["message"] == "carrying out a controller command"
            && f["action"].as_str().is_some_and(|a| a.starts_with(action)))
        .then(|| Some((*t, f["command"].as_u64()?)))?
    }) else {
        return (None, None);
    };
    let done = lines
        .iter()
        .find(|(t, v)| {
            *t >= received
                && v["fields"]["message"] == "command done"
                && v["fields"]["command"].as_u64() == Some(id)
        })
        .map(|(t, _)| *t);
    (Some(received), done)
}

/// Prints the stages found, one a line, in the demo's format.
pub fn print(stages: &[(Stage, Option<Duration>)]) {
    for (stage, at) in stages {
        if let Some(d) = at {
            println!("  {:>8.1} ms  {}", d.as_secs_f64() * 1000.0, stage.label());
        }
    }
}

/// Each stage's times over many failovers.
pub struct Percentiles {
    by_stage: Vec<hdrhistogram::Histogram<u64>>,
}

impl Percentiles {
    pub fn new() -> anyhow::Result<Self> {
        let by_stage = Stage::ALL
            .iter()
            .map(|_| hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3))
            .collect::<Result<_, _>>()?;
        Ok(Self { by_stage })
    }

    /// Records one failover's stages (in microseconds).
    pub fn record(&mut self, stages: &[(Stage, Option<Duration>)]) -> anyhow::Result<()> {
        for (stage, at) in stages {
            let i = Stage::ALL.iter().position(|s| s == stage).unwrap_or(0);
            if let (Some(at), Some(h)) = (at, self.by_stage.get_mut(i)) {
                h.record((at.as_micros() as u64).max(1))?;
            }
        }
        Ok(())
    }

    /// Prints each stage's p50, p99 and max, and in how many failovers it was seen.
    pub fn print(&self, title: &str) {
        println!();
        println!("{title}");
        println!(
            "  {:<18} {:>9} {:>9} {:>9} {:>6}",
            "stage", "p50 ms", "p99 ms", "max ms", "seen"
        );
        let ms = |v: u64| v as f64 / 1000.0;
        for (stage, h) in Stage::ALL.iter().zip(&self.by_stage) {
            if h.is_empty() {
                println!(
                    "  {:<18} {:>9} {:>9} {:>9} {:>6}",
                    stage.short(),
                    "-",
                    "-",
                    "-",
                    0
                );
                continue;
            }
            println!(
                "  {:<18} {:>9.1} {:>9.1} {:>9.1} {:>6}",
                stage.short(),
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
                h.len()
            );
        }
    }
}
