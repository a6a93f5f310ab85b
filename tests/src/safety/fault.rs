//! [`Fault`]: the safety matrix's faults, each injected into the primary (node 0) and healed
//! after the failover it sets off, the same way whichever [`System`] is under test.
use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::Signal;

use super::{CoordinatorKill, Nodes, System, Topology};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of the primary; healed by starting it again, empty and alone, on its port.
    Kill,
    /// SIGSTOP of the primary; healed by SIGCONT.
    Stop,
    /// The deadlock fixture standing in for the primary deadlocks; healed when it recovers and
    /// serves the requests queued meanwhile.
    Deadlock,
    /// The primary's namespace loses every packet both ways; healed when they pass again.
    Partition,
    /// One-way: what the primary's namespace sends is lost, so it cannot reach its replicas (nor
    /// anyone outside); what they send still arrives.
    PrimaryCannotSend,
    /// One-way: what is sent to the primary's namespace is lost, so the replicas (and anyone
    /// outside) cannot reach it; what it sends still leaves.
    PrimaryCannotReceive,
    /// SIGSTOP of the primary, and the system's coordinator killed once the failover has begun
    /// (and started again); healed by SIGCONT.
    CoordinatorKilled,
    /// A planned switchover of the live primary; nothing to heal.
    Switchover,
}

/// What injecting a fault did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Injected {
    /// For [`Fault::CoordinatorKilled`]: where in the failover the coordinator died.
    pub coordinator_kill: Option<CoordinatorKill>,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::Kill,
        Fault::Stop,
        Fault::Deadlock,
        Fault::Partition,
        Fault::PrimaryCannotSend,
        Fault::PrimaryCannotReceive,
        Fault::CoordinatorKilled,
        Fault::Switchover,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill-9",
            Self::Stop => "sigstop",
            Self::Deadlock => "deadlock",
            Self::Partition => "partition",
            Self::PrimaryCannotSend => "cut-primary-out",
            Self::PrimaryCannotReceive => "cut-primary-in",
            Self::CoordinatorKilled => "coordinator-killed",
            Self::Switchover => "switchover",
        }
    }

    pub fn topology(self) -> Topology {
        match self {
            Self::Deadlock => Topology::FixturePrimary,
            Self::Partition | Self::PrimaryCannotSend | Self::PrimaryCannotReceive => {
                Topology::PrimaryInNetns
            }
            _ => Topology::Host,
        }
    }

    /// How long after the failover (the promotion, and the endpoints naming the new primary) the
    /// fault is healed. A cut stays long enough for the old primary to meet every bound it has
    /// (vigil's agent fences itself 2 s after losing the controller); a stalled or dead primary
    /// comes back soon after, while clients still hold connections to it.
    pub fn hold(self) -> Duration {
        match self.topology() {
            Topology::PrimaryInNetns => Duration::from_secs(3),
            _ => Duration::from_millis(500),
        }
    }

    pub fn inject(self, nodes: &mut Nodes, system: &mut dyn System) -> Result<Injected> {
        let mut injected = Injected::default();
        match self {
            Self::Kill => nodes.kill_primary()?,
            Self::Stop => nodes.signal_primary(Signal::SIGSTOP)?,
            Self::Deadlock => nodes.deadlock_primary()?,
            Self::Partition => nodes.partition_primary()?,
            Self::PrimaryCannotSend => nodes.primary_cannot_send()?,
            Self::PrimaryCannotReceive => nodes.primary_cannot_receive()?,
            Self::CoordinatorKilled => {
                nodes.signal_primary(Signal::SIGSTOP)?;
                injected.coordinator_kill = Some(system.kill_coordinator_mid_failover()?);
            }
            Self::Switchover => system.switchover()?,
        }
        Ok(injected)
    }

    pub fn heal(self, nodes: &mut Nodes) -> Result<()> {
        match self {
            Self::Kill => nodes.restart_primary(),
            Self::Stop | Self::CoordinatorKilled => nodes.signal_primary(Signal::SIGCONT),
            Self::Deadlock => nodes.recover_primary(),
            Self::Partition | Self::PrimaryCannotSend | Self::PrimaryCannotReceive => {
                nodes.heal_network()
            }
            Self::Switchover => Ok(()),
        }
    }
}
