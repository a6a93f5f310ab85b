//! When a primary fences itself: its lease from the controller has run out (see [`lease`]), and
//! either it cannot reach a quorum of its data store, or the controller still talks to it and
//! withholds the lease (it names the node primary and grants nothing: a failover from it is under
//! way). The controller fails a primary over without its agent's
//! confirmation only after the lease and a margin have passed, so by then this primary is
//! fenced, in the kernel (`crate::fence`), at the agent's newest epoch. Dragonfly has no
//! min-replicas-to-write, so this is what stops a partitioned old primary from taking writes the
//! new primary will never see.
//!
//! A lease that runs out while the controller is silent and the node reaches a quorum is kept
//! going: the controller fails over an unreachable primary only when most replicas cannot reach
//! it either, and a controller that is merely down must not take every primary's writes away.
//! A lease the controller withholds while it talks to the node is different: the controller
//! means to fail the node over and will promote another once the lease is over, whether or not
//! its Fence command got through (its agent may be busy with another command, or slow).
//!
//! With several controllers, "the controller" is the one that leads. A lease is granted only by
//! desired state the [`leadership`] rule admits: a deposed leader that still runs renews nothing,
//! so the controllers count as lost when the agent reaches none that leads. A leader's handover
//! changes nothing here: while the agent finds the new leader, a lease that runs out fences a
//! primary only as above (no quorum, or a lease the last leader withheld), never for the
//! handover alone.
//!
//! [`lease`]: super::lease
//! [`leadership`]: super::leadership
use crate::server::info::Role;

/// Whether a primary should fence itself now.
///
/// `withheld`: the controller's latest desired state names this node the primary and grants it
/// no lease (a failover from it is under way). `reachable` of `peers` are the other nodes of the data store answering PINGs. Without
/// `withheld`, the node fences when it and the peers it reaches are not a majority of all nodes
/// (itself included). With no peers known it never fences: a lone primary has nobody to hand
/// over to.
pub fn should_fence(
    role: Option<Role>,
    lease_expired: bool,
    withheld: bool,
    reachable: usize,
    peers: usize,
) -> bool {
    let no_quorum = (reachable + 1) * 2 <= peers + 1;
    role == Some(Role::Primary) && lease_expired && peers > 0 && (withheld || no_quorum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_alone_with_its_lease_run_out_fences() {
        assert!(should_fence(Some(Role::Primary), true, false, 0, 2));
        assert!(should_fence(Some(Role::Primary), true, false, 1, 4));
        // One peer of one, unreachable: itself alone is half, not a majority.
        assert!(should_fence(Some(Role::Primary), true, false, 0, 1));
    }

    #[test]
    fn a_primary_in_the_majority_does_not_fence() {
        // Itself and one of two peers: 2 of 3 nodes.
        assert!(!should_fence(Some(Role::Primary), true, false, 1, 2));
        assert!(!should_fence(Some(Role::Primary), true, false, 2, 4));
        assert!(!should_fence(Some(Role::Primary), true, false, 1, 1));
    }

    #[test]
    fn nothing_fences_while_the_lease_holds_or_for_a_replica() {
        assert!(!should_fence(Some(Role::Primary), false, false, 0, 2));
        assert!(!should_fence(Some(Role::Replica), true, true, 0, 2));
        assert!(!should_fence(None, true, true, 0, 2));
        // No peers known: nobody to hand over to.
        assert!(!should_fence(Some(Role::Primary), true, false, 0, 0));
        assert!(!should_fence(Some(Role::Primary), true, true, 0, 0));
        // A withheld lease that has not run out yet.
        assert!(!should_fence(Some(Role::Primary), false, true, 0, 2));
    }

    #[test]
    fn a_primary_whose_lease_the_controller_withholds_fences_even_in_the_majority() {
        assert!(should_fence(Some(Role::Primary), true, true, 2, 2));
        assert!(should_fence(Some(Role::Primary), true, true, 1, 2));
    }
}
