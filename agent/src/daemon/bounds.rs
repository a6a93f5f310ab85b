//! What the agent refuses even from a controller that leads, as a second line of defence behind
//! the controller's own checks (mutual TLS, leadership): a command to replicate from a server
//! that is not part of this node's data store, a write pause past the configured maximum, and an
//! epoch far past any the agent has seen. Pure rules; the daemon applies them to each command
//! and desired state before anything else is done with it.
use std::time::Duration;

use vigil_proto::HostPort;

use crate::{
    error::{AgentError, Result},
    server::commands::Action,
};

/// The furthest an epoch may be above the newest one the agent has seen. The controller raises
/// a data store's epoch by one per failover or switchover, so a million is more failovers than a
/// store sees in its life (one a second without pause for eleven days), and no legitimate jump
/// comes near it. An epoch near `u64::MAX`, from a bad or forged message, would otherwise make the
/// epoch rule refuse every later command of the real controller, for good.
pub const MAX_EPOCH_JUMP: u64 = 1_000_000;

/// This node's data store as the controller last described it (desired state from the leading
/// controller): its other nodes and the primary this node should follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    peers: Vec<HostPort>,
    primary: Option<HostPort>,
}

impl Topology {
    /// From a desired state's peer addresses and primary address; entries that are no HOST:PORT
    /// name no server, and are left out.
    pub fn new<'a>(peers: impl IntoIterator<Item = &'a str>, primary: &str) -> Self {
        Self {
            peers: peers.into_iter().filter_map(|p| p.parse().ok()).collect(),
            primary: primary.parse().ok(),
        }
    }

    /// Whether `address` is a server of this data store: one of its peers, or its primary.
    pub fn has(&self, address: &HostPort) -> bool {
        self.primary.as_ref() == Some(address) || self.peers.contains(address)
    }
}

/// Whether `epoch` is too far above `newest` to be believed. The first epoch an agent learns
/// (it has seen none: a fresh start with no fence pinned) is taken as it is: a long-lived store
/// may be past the bound already.
pub fn epoch_too_far(epoch: u64, newest: u64) -> bool {
    newest > 0 && epoch.saturating_sub(newest) > MAX_EPOCH_JUMP
}

/// Checks a command against the rules above: its epoch against `newest`, a replication source
/// against `topology`, a write pause against `max_pause`.
pub fn check(
    action: &Action,
    epoch: u64,
    newest: u64,
    topology: &Topology,
    max_pause: Duration,
) -> Result<()> {
    if epoch_too_far(epoch, newest) {
        return Err(AgentError::EpochJump {
            got: epoch,
            newest,
            max: MAX_EPOCH_JUMP,
        });
    }
    match action {
        Action::ReplicateOf(primary) if !topology.has(primary) => Err(AgentError::NotInTopology {
            address: primary.clone(),
        }),
        // Dragonfly's takeover holds the primary's writes for up to its timeout.
        Action::Switchover { timeout_secs, .. }
            if Duration::from_secs(u64::from(*timeout_secs)) > max_pause =>
        {
            Err(AgentError::PauseTooLong {
                asked: Duration::from_secs(u64::from(*timeout_secs)),
                max: max_pause,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::commands::SwitchoverMethod;

    const PAUSE: Duration = Duration::from_secs(30);

    fn store() -> Topology {
        Topology::new(["10.0.0.2:6379", "10.0.0.3:6379", "junk"], "10.0.0.2:6379")
    }

    #[test]
    fn replication_is_only_from_a_server_of_this_data_store() {
        let t = store();
        for ok in ["10.0.0.2:6379", "10.0.0.3:6379"] {
            let action = Action::ReplicateOf(ok.parse().unwrap());
            assert!(check(&action, 5, 5, &t, PAUSE).is_ok(), "{ok}");
        }
        for refused in ["10.0.0.9:6379", "10.0.0.2:6380", "attacker.example:6379"] {
            let action = Action::ReplicateOf(refused.parse().unwrap());
            let e = check(&action, 5, 5, &t, PAUSE).unwrap_err();
            assert!(
                matches!(&e, AgentError::NotInTopology { address } if address.to_string() == refused),
                "{refused}: {e}"
            );
        }
        // Before any desired state, no server is known: every replication source is refused.
        let none = Action::ReplicateOf("10.0.0.2:6379".parse().unwrap());
        assert!(check(&none, 1, 0, &Topology::default(), PAUSE).is_err());
        // Promotion and the fence name no other server.
        assert!(check(&Action::Promote, 5, 5, &Topology::default(), PAUSE).is_ok());
    }

    #[test]
    fn a_pause_past_the_maximum_is_refused() {
        let takeover = |secs| Action::Switchover {
            target: "10.0.0.2:6379".parse().unwrap(),
            timeout_secs: secs,
            method: SwitchoverMethod::ReplTakeover,
        };
        assert!(check(&takeover(30), 1, 1, &store(), PAUSE).is_ok());
        let e = check(&takeover(31), 1, 1, &store(), PAUSE).unwrap_err();
        assert!(matches!(e, AgentError::PauseTooLong { .. }), "{e}");
    }

    #[test]
    fn an_epoch_far_past_the_newest_is_refused_but_the_first_is_believed() {
        assert!(!epoch_too_far(MAX_EPOCH_JUMP + 7, 7));
        assert!(epoch_too_far(MAX_EPOCH_JUMP + 8, 7));
        assert!(epoch_too_far(u64::MAX, 1));
        assert!(!epoch_too_far(u64::MAX, 0));
        // Older epochs are the epoch rule's to refuse, not this one's.
        assert!(!epoch_too_far(3, 9));
        let e = check(&Action::Promote, u64::MAX, 1, &store(), PAUSE).unwrap_err();
        assert!(matches!(e, AgentError::EpochJump { .. }), "{e}");
    }
}
