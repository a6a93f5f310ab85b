//! Conversions between the agent's domain types and the vigil.v1 protocol types: what goes up
//! (health, role, flavour) and what comes down (roles, commands), checked on the way in.
use vigil_proto::{HostPort, limits::floor_char_boundary, v1};

use crate::{
    error::{AgentError, Result},
    server::{
        commands::{Action, Command, SwitchoverMethod},
        info::{Flavour, Role},
    },
    verdict::rules::Health,
};

impl From<Health> for v1::Health {
    fn from(h: Health) -> Self {
        match h {
            Health::Healthy => Self::Healthy,
            Health::Degraded => Self::Degraded,
            Health::Unhealthy => Self::Unhealthy,
            Health::Down => Self::Down,
        }
    }
}

impl From<Role> for v1::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Primary => Self::Primary,
            Role::Replica => Self::Replica,
        }
    }
}

impl From<Flavour> for v1::Flavour {
    fn from(f: Flavour) -> Self {
        match f {
            Flavour::Redis => Self::Redis,
            Flavour::Valkey => Self::Valkey,
            Flavour::Dragonfly => Self::Dragonfly,
        }
    }
}

impl TryFrom<v1::Role> for Role {
    type Error = AgentError;
    fn try_from(r: v1::Role) -> Result<Self> {
        match r {
            v1::Role::Primary => Ok(Self::Primary),
            v1::Role::Replica => Ok(Self::Replica),
            v1::Role::Unspecified => Err(AgentError::UnspecifiedRole),
        }
    }
}

/// How much of a bad address its error shows: what comes from the network may be long, and
/// the error is logged and sent back in the ack.
const SHOWN_OF_BAD_ADDRESS: usize = 64;

fn host_port(id: u64, address: &str) -> Result<HostPort> {
    address.parse().map_err(|source| {
        let mut shown = address[..floor_char_boundary(address, SHOWN_OF_BAD_ADDRESS)].to_string();
        if shown.len() < address.len() {
            shown.push('…');
        }
        AgentError::BadAddress {
            id,
            address: shown,
            source,
        }
    })
}

impl TryFrom<v1::Command> for Command {
    type Error = AgentError;
    fn try_from(c: v1::Command) -> Result<Self> {
        use v1::command::Action as A;
        let action = match c.action.ok_or(AgentError::NoAction(c.id))? {
            A::Promote(_) => Action::Promote,
            A::Switchover(s) => Action::Switchover {
                target: host_port(c.id, &s.target)?,
                timeout_secs: s.timeout_secs.max(1),
                method: match v1::SwitchoverMethod::try_from(s.method) {
                    Ok(v1::SwitchoverMethod::Repltakeover) => SwitchoverMethod::ReplTakeover,
                    // Unspecified, or a method newer than this agent: which command runs is the
                    // controller's to say, never the agent's to guess.
                    Ok(v1::SwitchoverMethod::Unspecified) | Err(_) => {
                        return Err(AgentError::NoSwitchoverMethod(c.id));
                    }
                },
            },
            A::ReplicateOf(r) => Action::ReplicateOf(host_port(c.id, &r.address)?),
            A::Fence(f) => Action::Fence {
                keep_replicas: f.keep_replicas,
            },
            A::Unfence(_) => Action::Unfence,
            A::Probe(_) => Action::Probe,
        };
        Ok(Self {
            id: c.id,
            epoch: c.epoch,
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::verdict::rules::Reason;

    #[test]
    fn the_usual_verdict_encodes_under_64_bytes() {
        // Realistic large values: a day of 100 ms heartbeats, a busy replica's offset, all peers.
        let v = v1::Verdict {
            seq: 864_000,
            health: v1::Health::from(Health::Degraded) as i32,
            reasons: (Reason::BUSY | Reason::PINGS_MISSED | Reason::RUNQ_LATENCY).bits(),
            role: v1::Role::from(Role::Replica) as i32,
            epoch: 1_234,
            repl_offset: 987_654_321_012,
            link_up: true,
            link_down_ms: 0,
            stall_ms: 312,
            ping_rtt_us: 4_500,
            peers_version: 17,
            peers_probed: 0b11,
            peers_unreachable: 0b01,
            flavour: v1::Flavour::Dragonfly as i32,
        };
        let size = v.encoded_len();
        assert!(size < 64, "verdict is {size} bytes");
    }

    #[test]
    fn malformed_commands_are_errors() {
        let cmd = |action| v1::Command {
            id: 7,
            epoch: 3,
            leadership: 0,
            action: Some(action),
        };
        use v1::command::Action as A;
        assert!(matches!(
            Command::try_from(v1::Command {
                id: 7,
                epoch: 3,
                leadership: 0,
                action: None
            }),
            Err(AgentError::NoAction(7))
        ));
        for address in ["nohost", "h:", ":6379", "h:0", "h:99999", "h:abc"] {
            let c = cmd(A::ReplicateOf(v1::ReplicateOf {
                address: address.into(),
            }));
            assert!(
                matches!(Command::try_from(c), Err(AgentError::BadAddress { .. })),
                "{address}"
            );
        }
        let ok = Command::try_from(cmd(A::ReplicateOf(v1::ReplicateOf {
            address: "10.0.0.1:6379".into(),
        })))
        .unwrap();
        assert_eq!(
            ok.action,
            Action::ReplicateOf(HostPort::new("10.0.0.1", 6379))
        );
        assert_eq!(ok.epoch, 3);
        for keep_replicas in [false, true] {
            let fence = Command::try_from(cmd(A::Fence(v1::Fence { keep_replicas }))).unwrap();
            assert_eq!(fence.action, Action::Fence { keep_replicas });
        }
        assert!(matches!(
            Role::try_from(v1::Role::Unspecified),
            Err(AgentError::UnspecifiedRole)
        ));
    }

    #[test]
    fn a_switchover_carries_the_method_the_controller_names() {
        let switchover = |method: i32| v1::Command {
            id: 9,
            epoch: 4,
            leadership: 0,
            action: Some(v1::command::Action::Switchover(v1::Switchover {
                target: "10.0.0.2:6379".into(),
                timeout_secs: 0,
                method,
            })),
        };
        let c = Command::try_from(switchover(v1::SwitchoverMethod::Repltakeover as i32)).unwrap();
        assert_eq!(
            c.action,
            Action::Switchover {
                target: HostPort::new("10.0.0.2", 6379),
                // A zero timeout is raised to one second.
                timeout_secs: 1,
                method: SwitchoverMethod::ReplTakeover,
            }
        );
        // FAILOVER TO is gone from the protocol (its number is reserved): refused like any
        // method this agent does not know.
        assert!(matches!(
            Command::try_from(switchover(1)),
            Err(AgentError::NoSwitchoverMethod(9))
        ));
        // No method, or one this agent does not know: refused, not guessed.
        for method in [v1::SwitchoverMethod::Unspecified as i32, 99] {
            let e = Command::try_from(switchover(method)).unwrap_err();
            assert!(
                matches!(e, AgentError::NoSwitchoverMethod(9)),
                "{method}: {e}"
            );
            assert!(e.to_string().contains("method"), "{e}");
        }
    }
}
