//! When a fence goes up and when it comes down: a small state machine, pure, so every rule is
//! a table test. The fence's [`Record`] (who put it up, at which epoch) is all it needs, and the
//! record is pinned with the fence, so an agent that restarts applies the same rules.
//!
//! - The controller's Fence at epoch E puts an *ordered* fence up (or makes the one up ordered, at
//!   E). Only a demotion or an Unfence lifts it.
//! - A lease run out without a quorum puts a *self* fence up at the agent's newest epoch, unless
//!   a fence is up already. It is lifted by a demotion or an Unfence, and also when the
//!   controller says this node is the primary at the very epoch the fence began at: the
//!   controller is back and failed nothing over. Never just because the controller is
//!   reachable again, and never by "primary" at a newer epoch (the store moved on meanwhile; the
//!   controller lifts that fence with an Unfence if it means to). A self fence also lifts when
//!   the server is a replica the controller wants a replica: it takes no writes, and nothing
//!   else would ever lift it (a replica is never demoted).

/// Who put a fence up, which decides what lifts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The controller's Fence command.
    Ordered,
    /// The agent itself, its lease run out without a quorum.
    SelfFence,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ordered => "ordered",
            Self::SelfFence => "self",
        }
    }
}

/// A fence that is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The epoch it began at (an ordered fence: the latest Fence command's).
    pub epoch: u64,
    pub kind: Kind,
    /// The replicas' links are let through (a planned switchover).
    pub keep_replicas: bool,
}

/// Something that bears on the fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The controller's Fence command, admitted at `epoch`.
    Ordered { epoch: u64, keep_replicas: bool },
    /// The lease ran out and the node cannot reach a quorum; `epoch` is the newest it has seen.
    LeaseLost { epoch: u64 },
    /// Desired state from the controller: this node should be the primary at `epoch`.
    PrimaryAt { epoch: u64 },
    /// The server was demoted (ReplicateOf on a primary or a fenced node).
    Demoted,
    /// The server is a replica, and the controller wants it a replica.
    ReplicaAsDesired,
    /// The controller's Unfence: this node stays primary.
    Unfence,
}

/// What to do about the fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Put a fence up with this record.
    PutUp(Record),
    /// Keep the fence that is up, with this record now (and its policy applied again).
    Amend(Record),
    /// Take the fence down.
    Lift,
    /// Nothing changes.
    Stay,
}

/// The step `event` calls for while `current` is up (None: no fence).
pub fn next(current: Option<Record>, event: Event) -> Step {
    match (current, event) {
        (
            None,
            Event::Ordered {
                epoch,
                keep_replicas,
            },
        ) => Step::PutUp(Record {
            epoch,
            kind: Kind::Ordered,
            keep_replicas,
        }),
        (
            Some(_),
            Event::Ordered {
                epoch,
                keep_replicas,
            },
        ) => Step::Amend(Record {
            epoch,
            kind: Kind::Ordered,
            keep_replicas,
        }),
        (None, Event::LeaseLost { epoch }) => Step::PutUp(Record {
            epoch,
            kind: Kind::SelfFence,
            keep_replicas: false,
        }),
        (
            Some(Record {
                kind: Kind::SelfFence,
                epoch: began,
                ..
            }),
            Event::PrimaryAt { epoch },
        ) if epoch == began => Step::Lift,
        (Some(_), Event::Demoted | Event::Unfence) => Step::Lift,
        (
            Some(Record {
                kind: Kind::SelfFence,
                ..
            }),
            Event::ReplicaAsDesired,
        ) => Step::Lift,
        _ => Step::Stay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERED_5: Record = Record {
        epoch: 5,
        kind: Kind::Ordered,
        keep_replicas: false,
    };
    const SELF_5: Record = Record {
        epoch: 5,
        kind: Kind::SelfFence,
        keep_replicas: false,
    };

    #[test]
    fn a_fence_goes_up_on_an_order_or_a_lost_lease() {
        assert_eq!(
            next(
                None,
                Event::Ordered {
                    epoch: 5,
                    keep_replicas: false
                }
            ),
            Step::PutUp(ORDERED_5)
        );
        assert_eq!(
            next(None, Event::LeaseLost { epoch: 5 }),
            Step::PutUp(SELF_5)
        );
        // A lost lease adds nothing to a fence already up, ordered or not.
        assert_eq!(
            next(Some(ORDERED_5), Event::LeaseLost { epoch: 6 }),
            Step::Stay
        );
        assert_eq!(
            next(Some(SELF_5), Event::LeaseLost { epoch: 6 }),
            Step::Stay
        );
    }

    #[test]
    fn an_order_makes_any_fence_ordered_at_its_epoch() {
        let keep = Event::Ordered {
            epoch: 6,
            keep_replicas: true,
        };
        let want = Step::Amend(Record {
            epoch: 6,
            kind: Kind::Ordered,
            keep_replicas: true,
        });
        assert_eq!(next(Some(SELF_5), keep), want);
        assert_eq!(next(Some(ORDERED_5), keep), want);
    }

    #[test]
    fn a_self_fence_lifts_only_for_primary_at_the_same_epoch() {
        assert_eq!(
            next(Some(SELF_5), Event::PrimaryAt { epoch: 5 }),
            Step::Lift
        );
        // The store moved on meanwhile: the controller lifts it by an Unfence if it means to.
        assert_eq!(
            next(Some(SELF_5), Event::PrimaryAt { epoch: 6 }),
            Step::Stay
        );
        assert_eq!(
            next(Some(SELF_5), Event::PrimaryAt { epoch: 4 }),
            Step::Stay
        );
    }

    #[test]
    fn a_self_fence_on_a_replica_the_controller_wants_a_replica_lifts() {
        assert_eq!(next(Some(SELF_5), Event::ReplicaAsDesired), Step::Lift);
        // An ordered fence waits for its demotion, which says the controller has seen to it.
        assert_eq!(next(Some(ORDERED_5), Event::ReplicaAsDesired), Step::Stay);
        assert_eq!(next(None, Event::ReplicaAsDesired), Step::Stay);
    }

    #[test]
    fn an_ordered_fence_lifts_only_by_demotion_or_unfence() {
        assert_eq!(
            next(Some(ORDERED_5), Event::PrimaryAt { epoch: 5 }),
            Step::Stay
        );
        assert_eq!(next(Some(ORDERED_5), Event::Demoted), Step::Lift);
        assert_eq!(next(Some(ORDERED_5), Event::Unfence), Step::Lift);
        assert_eq!(next(Some(SELF_5), Event::Demoted), Step::Lift);
        assert_eq!(next(Some(SELF_5), Event::Unfence), Step::Lift);
    }

    #[test]
    fn with_no_fence_only_an_order_or_a_lost_lease_does_anything() {
        for event in [
            Event::PrimaryAt { epoch: 5 },
            Event::Demoted,
            Event::Unfence,
        ] {
            assert_eq!(next(None, event), Step::Stay, "{event:?}");
        }
    }
}
