//! How often an agent sends a verdict that did not change.
//!
//! A verdict goes to the controller at once when it changes, and otherwise on the agent's
//! heartbeat (100 ms), since the primary's silence is what a failover past a dead host waits
//! for, and its verdicts are what its lease is granted on. A replica with nothing to report
//! (healthy, linked to its primary, reaching every peer) is not waited for by anything: the
//! controller tells it, in its desired state, that it may beat slowly. Most of a fleet's agents
//! are such replicas, so this is most of the verdicts a controller would otherwise take in. The
//! moment the replica has something to report, its verdict changes, goes out at once, and it
//! beats fast again; the controller reads a quiet verdict as silent only after as many missed
//! slow beats as fast ones.
use std::time::Duration;

use crate::v1::{Health, Role, Verdict};

/// Missed heartbeats after which an agent is silent, at either pace.
pub const SILENT_AFTER_BEATS: u32 = 5;

/// A verdict with nothing to report: a healthy replica, linked, that reaches every peer.
pub fn quiet(v: &Verdict) -> bool {
    v.role() == Role::Replica
        && v.health() == Health::Healthy
        && v.link_up
        && v.peers_unreachable == 0
}

/// How long after sending a verdict the agent sends it again if nothing changes: its own
/// heartbeat, or the controller's slower `quiet_ms` (0: none) while the verdict is `quiet`.
pub fn period(own: Duration, quiet_ms: u32, quiet: bool) -> Duration {
    if quiet_ms > 0 && quiet {
        own.max(Duration::from_millis(u64::from(quiet_ms)))
    } else {
        own
    }
}

/// After how long without a verdict the controller takes an agent for silent: `fast` (five of
/// its own beats), or five of the slow beats `quiet_ms` it gave a replica whose last verdict was
/// quiet.
pub fn silence(fast: Duration, quiet_ms: u32, quiet: bool) -> Duration {
    let slow = Duration::from_millis(u64::from(quiet_ms)) * SILENT_AFTER_BEATS;
    if quiet { fast.max(slow) } else { fast }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linked_replica() -> Verdict {
        Verdict {
            role: Role::Replica as i32,
            health: Health::Healthy as i32,
            link_up: true,
            ..Default::default()
        }
    }

    const OWN: Duration = Duration::from_millis(100);

    #[test]
    fn a_healthy_linked_replica_beats_at_the_controllers_pace() {
        assert_eq!(
            period(OWN, 1_000, quiet(&linked_replica())),
            Duration::from_millis(1_000)
        );
    }

    #[test]
    fn without_a_quiet_pace_every_agent_beats_at_its_own() {
        assert_eq!(period(OWN, 0, quiet(&linked_replica())), OWN);
    }

    #[test]
    fn a_quiet_pace_faster_than_the_agents_own_is_not_taken() {
        assert_eq!(period(OWN, 50, quiet(&linked_replica())), OWN);
    }

    #[test]
    fn anything_to_report_beats_fast() {
        let primary = Verdict {
            role: Role::Primary as i32,
            ..linked_replica()
        };
        let unlinked = Verdict {
            link_up: false,
            ..linked_replica()
        };
        let degraded = Verdict {
            health: Health::Degraded as i32,
            ..linked_replica()
        };
        let sees_a_peer_down = Verdict {
            peers_unreachable: 0b10,
            ..linked_replica()
        };
        for v in [primary, unlinked, degraded, sees_a_peer_down] {
            assert!(!quiet(&v), "{v:?}");
            assert_eq!(period(OWN, 1_000, quiet(&v)), OWN, "{v:?}");
        }
    }

    #[test]
    fn a_quiet_agent_is_silent_after_five_slow_beats_and_any_other_after_the_fast_bound() {
        let fast = Duration::from_millis(500);
        assert_eq!(silence(fast, 1_000, true), Duration::from_secs(5));
        assert_eq!(silence(fast, 1_000, false), fast);
        // No slow pace given: a quiet verdict came on the agent's own heartbeat.
        assert_eq!(silence(fast, 0, true), fast);
    }
}
