//! The lease on the primary role the controller grants with each desired state. The agent times
//! it from when it *sent* the verdict the grant names (`lease_seq`), which is before the
//! controller received it, so the agent's lease always runs out before the controller's view of
//! it does: by the time the controller fails an unreachable primary over (lease and a margin
//! after its last grant), that primary has fenced itself. The agent also counts its lease as run
//! out a quarter of the lease early ([`LEAD`]), so that a fence slow to go up on a loaded host
//! (hundreds of milliseconds have been seen) is still up by the controller's reckoning.
//!
//! The controller renews a primary's lease on its heartbeat with a [`v1::LeaseGrant`], which
//! stands for the last desired state sent again with a new lease ([`renewed`]).
use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;
use vigil_proto::v1;

/// Verdicts remembered, newest last. A grant names a verdict at most a few heartbeats old (the
/// controller grants on its own heartbeat, for the newest verdict it has); 256 at 100 ms
/// heartbeats is 25 s, far more than a grant can lag while it still means anything.
const REMEMBERED: usize = 256;

/// The part of a lease the agent gives up at its end: it counts the lease as run out this
/// fraction of it early (250 ms of the default 1 s).
pub const LEAD: u32 = 4;

#[derive(Clone, Debug, Default)]
pub struct Lease {
    /// (seq, when it was sent), oldest first.
    sent: VecDeque<(u64, Instant)>,
    /// When the lease runs out, [`LEAD`] early; None until the first grant.
    until: Option<Instant>,
}

impl Lease {
    /// Notes that verdict `seq` left at `at`.
    pub fn sent(&mut self, seq: u64, at: Instant) {
        if self.sent.len() == REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back((seq, at));
    }

    fn sent_at(&self, seq: u64) -> Option<Instant> {
        self.sent
            .iter()
            .rev()
            .find(|(s, _)| *s == seq)
            .map(|(_, at)| *at)
    }

    /// A grant of `lease` for verdict `seq`: the lease runs until `lease` after that verdict
    /// left, less its [`LEAD`], unless it already runs longer. A verdict no longer remembered,
    /// or a zero lease (no grant), renews nothing. Returns whether it renewed.
    pub fn grant(&mut self, seq: u64, lease: Duration) -> bool {
        if lease.is_zero() {
            return false;
        }
        let Some(at) = self.sent_at(seq) else {
            return false;
        };
        let until = at + lease - lease / LEAD;
        if self.until.is_some_and(|u| u >= until) {
            return false;
        }
        self.until = Some(until);
        true
    }

    /// A lease was granted once and has run out by `now`. With no grant ever, never: a node that
    /// never held a lease is not the one a controller could fail over on its lease's account.
    pub fn expired(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now >= until)
    }

    /// When the lease runs out (None: never granted).
    pub fn until(&self) -> Option<Instant> {
        self.until
    }

    /// What is left of the lease at `now` (None: never granted).
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until.map(|until| until.saturating_duration_since(now))
    }
}

/// The desired state a lease grant stands for: `last`, the latest desired state taken in, with
/// the grant's lease. None when the grant speaks of another epoch or leadership than `last`:
/// the controller sends a new desired state before any grant whenever what it says changes, so
/// such a grant answers desired state this agent has not taken in, and renews nothing.
pub fn renewed(
    last: Option<&v1::DesiredState>,
    grant: &v1::LeaseGrant,
) -> Option<v1::DesiredState> {
    let last = last.filter(|d| d.epoch == grant.epoch && d.leadership == grant.leadership)?;
    Some(v1::DesiredState {
        lease_ms: grant.lease_ms,
        lease_seq: grant.lease_seq,
        ..last.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_lease_runs_from_when_the_granted_verdict_was_sent() {
        let t0 = Instant::now();
        let mut lease = Lease::default();
        assert!(
            !lease.expired(t0 + 1000 * MS),
            "never granted: never expired"
        );
        lease.sent(1, t0);
        lease.sent(2, t0 + 100 * MS);
        // Granted at t0 + 150 ms for verdict 1: it runs from t0, not from the grant, and ends a
        // quarter early: at t0 + 375 ms.
        assert!(lease.grant(1, 500 * MS));
        assert_eq!(lease.remaining(t0 + 150 * MS), Some(225 * MS));
        assert!(!lease.expired(t0 + 374 * MS));
        assert!(lease.expired(t0 + 375 * MS));
        // A grant for the later verdict renews it.
        assert!(lease.grant(2, 500 * MS));
        assert!(!lease.expired(t0 + 474 * MS));
        assert!(lease.expired(t0 + 475 * MS));
    }

    #[test]
    fn unknown_verdicts_zero_leases_and_older_grants_renew_nothing() {
        let t0 = Instant::now();
        let mut lease = Lease::default();
        lease.sent(5, t0);
        assert!(!lease.grant(4, 500 * MS), "a verdict this agent never sent");
        assert!(!lease.grant(5, Duration::ZERO), "no lease granted");
        assert_eq!(lease.remaining(t0), None);
        assert!(lease.grant(5, 500 * MS));
        lease.sent(6, t0 + 10 * MS);
        // A shorter lease for a later verdict does not cut the one held short.
        assert!(!lease.grant(6, 100 * MS));
        assert!(!lease.expired(t0 + 370 * MS));
    }

    #[test]
    fn only_the_most_recent_verdicts_are_remembered() {
        let t0 = Instant::now();
        let mut lease = Lease::default();
        for seq in 0..(REMEMBERED as u64 + 10) {
            lease.sent(seq, t0 + seq as u32 * MS);
        }
        assert!(!lease.grant(3, 500 * MS), "forgotten: renews nothing");
        assert!(lease.grant(REMEMBERED as u64 + 9, 500 * MS));
    }

    fn desired(epoch: u64, leadership: u64) -> v1::DesiredState {
        v1::DesiredState {
            epoch,
            role: v1::Role::Primary as i32,
            peers: vec![v1::Peer {
                node_id: "n1".into(),
                address: "10.0.0.2:6379".into(),
            }],
            peers_version: 3,
            lease_ms: 1000,
            lease_seq: 7,
            leadership,
            ..Default::default()
        }
    }

    fn grant(epoch: u64, leadership: u64, lease_ms: u32, lease_seq: u64) -> v1::LeaseGrant {
        v1::LeaseGrant {
            epoch,
            lease_ms,
            lease_seq,
            leadership,
        }
    }

    #[test]
    fn a_grant_is_the_last_desired_state_with_a_new_lease() {
        let last = desired(4, 9);
        let d = renewed(Some(&last), &grant(4, 9, 800, 12)).expect("it matches");
        assert_eq!((d.lease_ms, d.lease_seq), (800, 12));
        assert_eq!(
            v1::DesiredState {
                lease_ms: last.lease_ms,
                lease_seq: last.lease_seq,
                ..d
            },
            last,
            "nothing but the lease moves"
        );
        // A grant of no lease is the desired state withholding it.
        let withheld = renewed(Some(&last), &grant(4, 9, 0, 0)).expect("it matches");
        assert_eq!((withheld.lease_ms, withheld.lease_seq), (0, 0));
    }

    #[test]
    fn a_grant_for_desired_state_not_taken_in_renews_nothing() {
        assert_eq!(renewed(None, &grant(4, 9, 800, 12)), None, "none yet");
        let last = desired(4, 9);
        assert_eq!(
            renewed(Some(&last), &grant(5, 9, 800, 12)),
            None,
            "a newer epoch: its desired state is still on its way"
        );
        assert_eq!(renewed(Some(&last), &grant(3, 9, 800, 12)), None);
        assert_eq!(
            renewed(Some(&last), &grant(4, 10, 800, 12)),
            None,
            "another leader's"
        );
    }
}
