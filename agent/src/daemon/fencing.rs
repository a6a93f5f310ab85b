//! When a primary fences itself: its lease from the controller has run out (see [`lease`]) and it
//! cannot reach a quorum of its data store. The controller fails an unreachable primary over only
//! after the lease and a margin have passed, so by then this primary is fenced, in the kernel
//! (`crate::fence`), at the agent's newest epoch. Dragonfly has no min-replicas-to-write, so this
//! is what stops a partitioned old primary from taking writes the new primary will never see.
//!
//! [`lease`]: super::lease
use crate::server::info::Role;

/// Whether a primary should fence itself now.
///
/// `reachable` of `peers` are the other nodes of the data store answering PINGs. The node fences
/// when it and the peers it reaches are not a majority of all nodes (itself included). With no
/// peers known it never fences: a lone primary has nobody to hand over to.
pub fn should_fence(
    role: Option<Role>,
    lease_expired: bool,
    reachable: usize,
    peers: usize,
) -> bool {
    role == Some(Role::Primary) && lease_expired && peers > 0 && (reachable + 1) * 2 <= peers + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_alone_with_its_lease_run_out_fences() {
        assert!(should_fence(Some(Role::Primary), true, 0, 2));
        assert!(should_fence(Some(Role::Primary), true, 1, 4));
        // One peer of one, unreachable: itself alone is half, not a majority.
        assert!(should_fence(Some(Role::Primary), true, 0, 1));
    }

    #[test]
    fn a_primary_in_the_majority_does_not_fence() {
        // Itself and one of two peers: 2 of 3 nodes.
        assert!(!should_fence(Some(Role::Primary), true, 1, 2));
        assert!(!should_fence(Some(Role::Primary), true, 2, 4));
        assert!(!should_fence(Some(Role::Primary), true, 1, 1));
    }

    #[test]
    fn nothing_fences_while_the_lease_holds_or_for_a_replica() {
        assert!(!should_fence(Some(Role::Primary), false, 0, 2));
        assert!(!should_fence(Some(Role::Replica), true, 0, 2));
        assert!(!should_fence(None, true, 0, 2));
        // No peers known: nobody to hand over to.
        assert!(!should_fence(Some(Role::Primary), true, 0, 0));
    }
}
