//! How long a replica's replication link has been down, for `Verdict.link_down_ms`: a controller
//! that started after the primary died has only this to judge whether a replica was linked
//! until recently (so it holds what the primary acknowledged), or may lack writes.
//!
//! The agent's own view comes first: the monotonic time since a health poll last found the link
//! up. Before it has seen the link up at all (it started after the primary died), the server's
//! own account (`master_link_down_since_seconds`) stands in; when the server has none either,
//! the link was never up as far as anyone knows ([`LINK_NEVER_UP`]).
use std::time::Duration;

use tokio::time::Instant;
use vigil_proto::LINK_NEVER_UP;

use crate::server::info::{Replication, Role};

/// What the health polls have shown of the replication link.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkDown {
    /// When a poll last found this node a replica with its link up.
    last_up: Option<Instant>,
    /// The server's own account from the newest poll: down this long at that instant.
    reported: Option<(Duration, Instant)>,
}

impl LinkDown {
    /// Notes a health poll's answer, received at `at`.
    pub fn polled(&mut self, r: &Replication, at: Instant) {
        if r.role == Role::Replica && r.link_up {
            self.last_up = Some(at);
        }
        self.reported = r.link_down_secs.map(|secs| (Duration::from_secs(secs), at));
    }

    /// `Verdict.link_down_ms` at `now` for a server last found as `r` (None: not yet known).
    /// 0 for a primary, for a replica whose link is up, and before the role is known (the field
    /// speaks of replicas only). A real age stays below [`LINK_NEVER_UP`].
    pub fn ms(&self, r: Option<&Replication>, now: Instant) -> u32 {
        let Some(r) = r else { return 0 };
        if r.role == Role::Primary || r.link_up {
            return 0;
        }
        let down_for = match (self.last_up, self.reported) {
            (Some(up), _) => now.saturating_duration_since(up),
            (None, Some((age, at))) => age + now.saturating_duration_since(at),
            (None, None) => return LINK_NEVER_UP,
        };
        down_for
            .as_millis()
            .min(u128::from(LINK_NEVER_UP - 1))
            .try_into()
            .unwrap_or(LINK_NEVER_UP - 1)
    }
}

#[cfg(test)]
mod tests {
    use vigil_proto::HostPort;

    use super::*;
    use crate::server::info::SyncState;

    const MS: Duration = Duration::from_millis(1);

    fn replica(link_up: bool, link_down_secs: Option<u64>) -> Replication {
        Replication {
            role: Role::Replica,
            offset: 100,
            link_up,
            last_io_secs: None,
            link_down_secs,
            sync: if link_up {
                SyncState::Online
            } else {
                SyncState::Connecting
            },
            primary: Some(HostPort::new("10.0.0.1", 6379)),
            replicas: 0,
        }
    }

    #[test]
    fn a_linked_replica_and_a_primary_report_zero() {
        let t0 = Instant::now();
        let mut l = LinkDown::default();
        let up = replica(true, None);
        l.polled(&up, t0);
        assert_eq!(l.ms(Some(&up), t0 + 400 * MS), 0);
        let primary = Replication {
            role: Role::Primary,
            link_up: true,
            primary: None,
            ..up
        };
        l.polled(&primary, t0 + 500 * MS);
        assert_eq!(l.ms(Some(&primary), t0 + 900 * MS), 0);
        assert_eq!(l.ms(None, t0), 0, "role not known yet");
    }

    #[test]
    fn a_link_seen_up_is_down_since_the_last_poll_that_found_it_up() {
        let t0 = Instant::now();
        let mut l = LinkDown::default();
        l.polled(&replica(true, None), t0);
        l.polled(&replica(true, None), t0 + 500 * MS);
        // The server's own account is coarser (whole seconds) and second to the agent's.
        let down = replica(false, Some(0));
        l.polled(&down, t0 + 1000 * MS);
        assert_eq!(l.ms(Some(&down), t0 + 1000 * MS), 500);
        assert_eq!(l.ms(Some(&down), t0 + 3000 * MS), 2500);
        // Up again: zero; down again: from the newest up.
        l.polled(&replica(true, None), t0 + 4000 * MS);
        l.polled(&down, t0 + 4500 * MS);
        assert_eq!(l.ms(Some(&down), t0 + 4600 * MS), 600);
    }

    #[test]
    fn never_seen_up_the_servers_own_account_stands_in() {
        let t0 = Instant::now();
        let mut l = LinkDown::default();
        let down = replica(false, Some(12));
        l.polled(&down, t0);
        assert_eq!(l.ms(Some(&down), t0 + 300 * MS), 12_300);
        // The server says it never was up (-1), or does not say (Dragonfly): never.
        let never = replica(false, None);
        l.polled(&never, t0 + 500 * MS);
        assert_eq!(l.ms(Some(&never), t0 + 600 * MS), LINK_NEVER_UP);
        assert_eq!(
            LinkDown::default().ms(Some(&never), t0),
            LINK_NEVER_UP,
            "nothing polled yet"
        );
    }

    #[test]
    fn a_real_age_stays_below_never() {
        let t0 = Instant::now();
        let mut l = LinkDown::default();
        // 60 days, past what u32 milliseconds hold.
        let down = replica(false, Some(60 * 86_400));
        l.polled(&down, t0);
        assert_eq!(l.ms(Some(&down), t0), LINK_NEVER_UP - 1);
    }
}
