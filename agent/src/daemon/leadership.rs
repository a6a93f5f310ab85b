//! The leadership rule that fences a deposed controller off: every Welcome, desired state and
//! command carries its sender's leadership (0 for a single controller without etcd; with etcd,
//! higher for every new leader). The agent keeps the highest it has seen; a command from a lower
//! one is refused, and desired state from a lower one is ignored (no lease, no role, nothing), so
//! a deposed leader that still runs is obeyed by no one. Equal leadership is accepted: a leader
//! keeps its number for as long as it leads.
//!
//! Also here: how often the agent says it ignored stale desired state, which a deposed leader
//! sends on every heartbeat.
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{AgentError, Result};

/// The highest leadership seen, from a leading controller's Welcome, desired state and commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeadershipGuard {
    highest: u64,
}

impl LeadershipGuard {
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Admits a message from `leadership` unless it is lower than the highest seen; a higher one
    /// becomes the highest. Returns whether it rose.
    pub fn admit(&mut self, leadership: u64) -> Result<bool> {
        if leadership < self.highest {
            return Err(AgentError::StaleLeadership {
                got: leadership,
                highest: self.highest,
            });
        }
        let rose = leadership > self.highest;
        self.highest = leadership;
        Ok(rose)
    }
}

/// How often a stale message is logged: a deposed leader repeats its desired state on every
/// heartbeat, and one line now and then says as much as a line each time.
pub const STALE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Lets one line through every [`STALE_LOG_EVERY`], counting the ones it held back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// Whether to log now; when so, how many were held back since the last line.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < STALE_LOG_EVERY)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_leadership_is_refused_and_equal_or_higher_admitted() {
        let mut g = LeadershipGuard::default();
        // A single controller without etcd: always 0, always admitted.
        assert_eq!(g.admit(0).ok(), Some(false));
        assert_eq!(g.admit(0).ok(), Some(false));
        assert_eq!(g.admit(5).ok(), Some(true));
        assert_eq!(g.admit(5).ok(), Some(false), "equal: the same leader");
        assert!(matches!(
            g.admit(4),
            Err(AgentError::StaleLeadership { got: 4, highest: 5 })
        ));
        assert!(matches!(
            g.admit(0),
            Err(AgentError::StaleLeadership { got: 0, highest: 5 })
        ));
        assert_eq!(g.highest(), 5, "a refusal lowers nothing");
        assert_eq!(g.admit(9).ok(), Some(true));
        assert_eq!(g.highest(), 9);
    }

    #[test]
    fn the_refusal_names_both_numbers() {
        let e = LeadershipGuard { highest: 5 }.admit(4).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stale leadership 4 < 5: a newer controller leads"
        );
    }

    #[test]
    fn stale_messages_are_logged_now_and_then_with_a_count() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0 + Duration::from_millis(200)), None);
        assert_eq!(t.allow(t0 + STALE_LOG_EVERY / 2), None);
        assert_eq!(t.allow(t0 + STALE_LOG_EVERY), Some(2));
        assert_eq!(t.allow(t0 + STALE_LOG_EVERY), None);
    }
}
