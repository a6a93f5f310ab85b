//! How the daemon logs kernel events: the first of each kind in an interval in full, and its
//! repeats counted and said in one summary line when the interval ends. A server that is down
//! answers each of the agent's PINGs with a reset, ten a second; a line for each would bury the
//! line that says why it went down. The metrics still count every event.
use std::collections::HashMap;

use tokio::time::{Duration, Instant};

use crate::kernel::event::{KernelEvent, Line};

/// How long the repeats of one kind of event are counted before they are summarised.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Whether an event should be logged in full or was counted as a repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The first of its kind in this interval: log it in full.
    Log,
    /// A repeat, counted for the interval's summary.
    Counted,
}

/// The repeats of one kind of event in an interval that has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub event: KernelEvent,
    /// Events of this kind after the one logged in full.
    pub repeats: u64,
    /// How long the interval ran.
    pub over: Duration,
}

impl Summary {
    /// Says how often its kind repeated after the one logged in full.
    fn log(&self) {
        let event = self.event.name();
        let over_secs = self.over.as_secs();
        if self.event.severity() == tracing::Level::WARN {
            tracing::warn!(
                event,
                repeats = self.repeats,
                over_secs,
                "kernel event repeated"
            );
        } else {
            tracing::info!(
                event,
                repeats = self.repeats,
                over_secs,
                "kernel event repeated"
            );
        }
    }
}

struct Window {
    started: Instant,
    repeats: u64,
}

/// The current interval of each kind. Bounded by the number of kinds.
pub struct EventLog {
    interval: Duration,
    windows: HashMap<KernelEvent, Window>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new(SUMMARY_INTERVAL)
    }
}

impl EventLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            windows: HashMap::new(),
        }
    }

    /// Notes an `event` at `now`; with it, the summary of its kind's interval if that ended.
    pub fn seen(&mut self, event: KernelEvent, now: Instant) -> (Seen, Option<Summary>) {
        let mut ended = None;
        if let Some(w) = self.windows.get_mut(&event) {
            if now.saturating_duration_since(w.started) < self.interval {
                w.repeats += 1;
                return (Seen::Counted, None);
            }
            ended = (w.repeats > 0).then_some(Summary {
                event,
                repeats: w.repeats,
                over: now.saturating_duration_since(w.started),
            });
        }
        self.windows.insert(
            event,
            Window {
                started: now,
                repeats: 0,
            },
        );
        (Seen::Log, ended)
    }

    /// Logs `line`, seen at `now`: in full if it is the first of its kind in its interval, else
    /// only counted; with the summary of its kind's interval if that ended.
    pub fn log(&mut self, line: &Line, now: Instant) {
        let (seen, ended) = self.seen(line.event, now);
        if let Some(summary) = ended {
            summary.log();
        }
        if seen == Seen::Counted {
            return;
        }
        let event = line.event.name();
        let detail = serde_json::to_string(line).unwrap_or_default();
        if line.event.severity() == tracing::Level::WARN {
            tracing::warn!(event, pid = line.pid, %detail, "kernel");
        } else {
            tracing::info!(event, pid = line.pid, %detail, "kernel");
        }
    }

    /// Logs the summaries of the intervals that ended by `now`.
    pub fn log_due(&mut self, now: Instant) {
        for summary in self.due(now) {
            summary.log();
        }
    }

    /// The summaries of the intervals that ended by `now`; the next event of those kinds is
    /// logged in full again.
    pub fn due(&mut self, now: Instant) -> Vec<Summary> {
        let mut out = Vec::new();
        let interval = self.interval;
        self.windows.retain(|&event, w| {
            let over = now.saturating_duration_since(w.started);
            if over < interval {
                return true;
            }
            if w.repeats > 0 {
                out.push(Summary {
                    event,
                    repeats: w.repeats,
                    over,
                });
            }
            false
        });
        out.sort_by_key(|s| s.event.name());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_of_a_kind_is_logged_and_its_repeats_are_summarised_once() {
        let t0 = Instant::now();
        let mut log = EventLog::new(10 * SEC);
        assert_eq!(log.seen(KernelEvent::ResetSent, t0), (Seen::Log, None));
        for i in 1..=99 {
            let at = t0 + Duration::from_millis(100 * i);
            assert_eq!(log.seen(KernelEvent::ResetSent, at).0, Seen::Counted);
        }
        // Another kind has its own interval.
        assert_eq!(log.seen(KernelEvent::Stopped, t0 + SEC), (Seen::Log, None));
        assert_eq!(log.due(t0 + 9 * SEC), vec![]);
        let due = log.due(t0 + 10 * SEC);
        assert_eq!(
            due,
            vec![Summary {
                event: KernelEvent::ResetSent,
                repeats: 99,
                over: 10 * SEC
            }]
        );
        // Said once; the next one starts a new interval, logged in full.
        assert_eq!(log.due(t0 + 11 * SEC), vec![]);
        assert_eq!(
            log.seen(KernelEvent::ResetSent, t0 + 12 * SEC),
            (Seen::Log, None)
        );
    }

    #[test]
    fn an_event_after_its_interval_ended_brings_the_summary_with_it() {
        let t0 = Instant::now();
        let mut log = EventLog::new(10 * SEC);
        log.seen(KernelEvent::Retransmit, t0);
        log.seen(KernelEvent::Retransmit, t0 + SEC);
        log.seen(KernelEvent::Retransmit, t0 + 2 * SEC);
        let (seen, summary) = log.seen(KernelEvent::Retransmit, t0 + 15 * SEC);
        assert_eq!(seen, Seen::Log);
        assert_eq!(
            summary,
            Some(Summary {
                event: KernelEvent::Retransmit,
                repeats: 2,
                over: 15 * SEC
            })
        );
    }

    #[test]
    fn a_lone_event_has_no_summary() {
        let t0 = Instant::now();
        let mut log = EventLog::new(10 * SEC);
        log.seen(KernelEvent::Exited, t0);
        assert_eq!(log.due(t0 + 20 * SEC), vec![]);
        assert_eq!(log.seen(KernelEvent::Exited, t0 + 21 * SEC).1, None);
    }
}
