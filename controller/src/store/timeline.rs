//! A failover's timeline: the stages it reached, each in milliseconds from where the timeline
//! counts from (the controller's first judgement that the primary failed, or the operator's
//! request), kept with the failover in the persisted history. Stages are only ever marked in the
//! order a failover goes through them, so a timeline reads top to bottom.
use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What a timeline counts from. Persisted by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The controller first judged the primary failed: the verdict that showed it, or the tick
    /// that found its agent silent.
    #[default]
    Failure,
    /// The operator's `vigil failover` reached the data store's reconciler.
    Request,
    /// A controller took the failover up again after a restart or a change of leader: what
    /// happened before is not known, so its timeline counts from there.
    Resumed,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Self::Failure => "failure",
            Self::Request => "request",
            Self::Resumed => "resumed",
        }
    }
}

/// A stage of a failover, in the order they happen. Persisted by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The target was chosen, the epoch bumped and persisted.
    Decided,
    /// The old primary's agent confirmed its fence.
    Fenced,
    /// The old primary's agent did not confirm its fence: its lease and the margin were waited
    /// out instead, after which it has fenced itself.
    LeaseExpired,
    /// A planned switchover's target has every write the fenced primary had.
    CaughtUp,
    /// The target took the primary role; clients are sent to it from here.
    Promoted,
    /// The failover ended: the other nodes re-pointed, or its failure recorded.
    Done,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Self::Decided => "decided",
            Self::Fenced => "fenced",
            Self::LeaseExpired => "lease_expired",
            Self::CaughtUp => "caught_up",
            Self::Promoted => "promoted",
            Self::Done => "done",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One stage reached, `ms` after the timeline's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub stage: Stage,
    pub ms: u64,
}

/// The stages a failover reached, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub from: Origin,
    pub stages: Vec<Mark>,
}

/// A timeline being kept: its origin as an instant, so each stage is timed on the monotonic clock.
#[derive(Clone, Debug)]
pub struct Clock {
    origin: Instant,
    timeline: Timeline,
}

impl Clock {
    pub fn new(from: Origin, origin: Instant) -> Self {
        Self {
            origin,
            timeline: Timeline {
                from,
                stages: Vec::new(),
            },
        }
    }

    /// Marks `stage` as reached `at`. A stage that is not after the last one marked is ignored
    /// (a late or repeated report), and the time never runs backwards: a timeline stays in the
    /// order a failover goes through its stages.
    pub fn mark(&mut self, stage: Stage, at: Instant) {
        let last = self.timeline.stages.last().copied();
        if last.is_some_and(|l| l.stage >= stage) {
            return;
        }
        let ms = at.saturating_duration_since(self.origin).as_millis() as u64;
        let ms = ms.max(last.map_or(0, |l| l.ms));
        self.timeline.stages.push(Mark { stage, ms });
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(origin: Instant, ms: u64) -> Instant {
        origin + Duration::from_millis(ms)
    }

    #[test]
    fn stages_are_kept_in_the_order_a_failover_goes_through_them() {
        let origin = Instant::now();
        let mut c = Clock::new(Origin::Failure, origin);
        c.mark(Stage::Decided, at(origin, 3));
        c.mark(Stage::Fenced, at(origin, 5));
        // A repeated or late report changes nothing.
        c.mark(Stage::Fenced, at(origin, 9));
        c.mark(Stage::Decided, at(origin, 9));
        c.mark(Stage::Promoted, at(origin, 8));
        c.mark(Stage::Done, at(origin, 12));
        let t = c.timeline();
        let stages: Vec<_> = t.stages.iter().map(|m| (m.stage, m.ms)).collect();
        assert_eq!(
            stages,
            [
                (Stage::Decided, 3),
                (Stage::Fenced, 5),
                (Stage::Promoted, 8),
                (Stage::Done, 12)
            ]
        );
    }

    #[test]
    fn time_never_runs_backwards_in_a_timeline() {
        let origin = Instant::now();
        let mut c = Clock::new(Origin::Request, origin);
        // Before the origin: zero, not a wrapped number.
        c.mark(Stage::Decided, origin - Duration::from_millis(5));
        c.mark(Stage::LeaseExpired, at(origin, 1250));
        // Stamped on another task a hair earlier: no earlier than the stage before it.
        c.mark(Stage::Promoted, at(origin, 1249));
        let ms: Vec<u64> = c.timeline().stages.iter().map(|m| m.ms).collect();
        assert_eq!(ms, [0, 1250, 1250]);
    }

    #[test]
    fn names_keep_their_persisted_text() {
        let t = Timeline {
            from: Origin::Resumed,
            stages: vec![Mark {
                stage: Stage::LeaseExpired,
                ms: 7,
            }],
        };
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(
            text,
            r#"{"from":"resumed","stages":[{"stage":"lease_expired","ms":7}]}"#
        );
        assert_eq!(serde_json::from_str::<Timeline>(&text).unwrap(), t);
        for s in [
            Stage::Decided,
            Stage::Fenced,
            Stage::LeaseExpired,
            Stage::CaughtUp,
            Stage::Promoted,
            Stage::Done,
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for o in [Origin::Failure, Origin::Request, Origin::Resumed] {
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.name())
            );
        }
    }
}
