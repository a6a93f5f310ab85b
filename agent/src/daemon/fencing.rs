//! Self-fencing: a primary whose agent has lost the controller for longer than a bound, and that
//! cannot reach a quorum of its data store, pauses its server's writes (`CLIENT PAUSE <ms> WRITE`,
//! renewed while the condition lasts) until the controller says otherwise. Dragonfly has no
//! min-replicas-to-write, so this is what stops a partitioned old primary from taking writes the
//! new primary will never see.
use std::time::Duration;

use crate::server::info::Role;

/// Whether a primary should fence itself now.
///
/// `reachable` of `peers` are the other nodes of the data store answering PINGs. The node fences
/// when it and the peers it reaches are not a majority of all nodes (itself included). With no
/// peers known it never fences: a lone primary has nobody to hand over to.
pub fn should_fence(
    role: Option<Role>,
    controller_silent_for: Option<Duration>,
    bound: Duration,
    reachable: usize,
    peers: usize,
) -> bool {
    role == Some(Role::Primary)
        && controller_silent_for.is_some_and(|d| d >= bound)
        && peers > 0
        && (reachable + 1) * 2 <= peers + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(2);
    const LOST: Option<Duration> = Some(Duration::from_secs(3));

    #[test]
    fn a_primary_alone_and_cut_off_fences() {
        assert!(should_fence(Some(Role::Primary), LOST, BOUND, 0, 2));
        assert!(should_fence(Some(Role::Primary), LOST, BOUND, 1, 4));
    }

    #[test]
    fn a_primary_in_the_majority_does_not_fence() {
        // Itself and one of two peers: 2 of 3 nodes.
        assert!(!should_fence(Some(Role::Primary), LOST, BOUND, 1, 2));
        assert!(!should_fence(Some(Role::Primary), LOST, BOUND, 2, 4));
    }

    #[test]
    fn nothing_fences_while_the_controller_is_there_or_for_a_replica() {
        assert!(!should_fence(Some(Role::Primary), None, BOUND, 0, 2));
        assert!(!should_fence(
            Some(Role::Primary),
            Some(Duration::from_secs(1)),
            BOUND,
            0,
            2
        ));
        assert!(!should_fence(Some(Role::Replica), LOST, BOUND, 0, 2));
        assert!(!should_fence(None, LOST, BOUND, 0, 2));
        // No peers known: nobody to hand over to.
        assert!(!should_fence(Some(Role::Primary), LOST, BOUND, 0, 0));
    }
}
