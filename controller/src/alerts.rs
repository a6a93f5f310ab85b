//! Alerts: conditions an operator should hear of, each a log line with a stable event name and a
//! severity, counted in the metrics, and raised at most once a minute per kind while it lasts.
use std::collections::HashMap;

use tokio::time::{Duration, Instant};

/// How often a lasting condition is logged again.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alert {
    /// The primary failed.
    PrimaryDown,
    /// The primary failed and no replica may be promoted.
    NoPromotableReplica,
    /// A node's role is not the one the controller expects; it is being corrected.
    RoleDiscrepancy,
    /// Replicas were left following the wrong primary, or none.
    ReplicationBroken,
    /// The controller cannot hear the primary's agent, but the replicas reach the primary.
    ControllerPartitioned,
    /// A node says its writes are fenced.
    FencedPrimary,
    /// A failover is held back because the last one was too recent.
    FlapGuard,
    /// A failover persisted as in flight waits for its target's agent.
    FailoverStuck,
    /// A failover did not promote anyone.
    FailoverFailed,
    /// A replica is down; the primary is unaffected.
    ReplicaDown,
    /// etcd does not answer, or has no quorum: no controller leads, so none fails anything over.
    EtcdUnavailable,
    /// A hello named a node more than a data store may have: refused.
    TooManyNodes,
    /// The primary failed, and the data store is paused (`vigil pause`): no failover. A warning:
    /// `primary_down`, raised with it, is the error; this says why nothing follows.
    Paused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl Alert {
    /// The stable event name logs, metrics and alert rules use.
    pub fn name(self) -> &'static str {
        match self {
            Self::PrimaryDown => "primary_down",
            Self::NoPromotableReplica => "no_promotable_replica",
            Self::RoleDiscrepancy => "role_discrepancy",
            Self::ReplicationBroken => "replication_broken",
            Self::ControllerPartitioned => "controller_partitioned",
            Self::FencedPrimary => "fenced_primary",
            Self::FlapGuard => "flap_guard",
            Self::FailoverStuck => "failover_stuck",
            Self::FailoverFailed => "failover_failed",
            Self::ReplicaDown => "replica_down",
            Self::EtcdUnavailable => "etcd_unavailable",
            Self::TooManyNodes => "too_many_nodes",
            Self::Paused => "paused",
        }
    }

    /// Error: clients may be without a primary. Warning: an operator should look.
    pub fn severity(self) -> Severity {
        match self {
            Self::PrimaryDown
            | Self::NoPromotableReplica
            | Self::FailoverStuck
            | Self::FailoverFailed
            | Self::EtcdUnavailable => Severity::Error,
            _ => Severity::Warning,
        }
    }
}

/// When each kind was last raised, so a lasting condition is logged once a minute, not on every
/// verdict. Bounded by the number of kinds.
#[derive(Default)]
pub struct Alerts {
    last: HashMap<Alert, Instant>,
}

impl Alerts {
    /// True when `alert` should be raised now (and notes that it was).
    pub fn due(&mut self, alert: Alert) -> bool {
        let now = Instant::now();
        if self
            .last
            .get(&alert)
            .is_some_and(|&t| now.duration_since(t) < REPEAT_EVERY)
        {
            return false;
        }
        self.last.insert(alert, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_outages_are_errors() {
        let all = [
            Alert::PrimaryDown,
            Alert::NoPromotableReplica,
            Alert::RoleDiscrepancy,
            Alert::ReplicationBroken,
            Alert::ControllerPartitioned,
            Alert::FencedPrimary,
            Alert::FlapGuard,
            Alert::FailoverStuck,
            Alert::FailoverFailed,
            Alert::ReplicaDown,
            Alert::EtcdUnavailable,
            Alert::TooManyNodes,
            Alert::Paused,
        ];
        let mut names: Vec<&str> = all.iter().map(|a| a.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(Alert::PrimaryDown.severity(), Severity::Error);
        assert_eq!(Alert::ReplicaDown.severity(), Severity::Warning);
        // Paused with a failed primary: primary_down is the error; this says why nothing follows.
        assert_eq!(Alert::Paused.severity(), Severity::Warning);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_condition_is_raised_once_a_minute() {
        let mut alerts = Alerts::default();
        assert!(alerts.due(Alert::FlapGuard));
        assert!(!alerts.due(Alert::FlapGuard));
        // Another kind is independent.
        assert!(alerts.due(Alert::PrimaryDown));
        tokio::time::advance(REPEAT_EVERY - Duration::from_millis(1)).await;
        assert!(!alerts.due(Alert::FlapGuard));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(alerts.due(Alert::FlapGuard));
    }
}
