//! Why a verdict is what it is: the bits of `Verdict.reasons`. Bit positions are part of the wire
//! protocol; never reuse one. What each reason means for health is the agent's verdict engine's.
use bitflags::bitflags;

bitflags! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Reason: u64 {
        const EXITED = 1 << 0;
        const LISTENER_CLOSED = 1 << 1;
        const NOT_RUNNING = 1 << 2;
        const STOPPED = 1 << 3;
        const DEADLOCK_SUSPECTED = 1 << 4;
        const BUSY = 1 << 5;
        const BLOCKED = 1 << 6;
        const STARVED = 1 << 7;
        const STALL_TOO_LONG = 1 << 8;
        const PING_TIMEOUT = 1 << 9;
        const PINGS_MISSED = 1 << 10;
        const RUNQ_LATENCY = 1 << 11;
        const ROLE_MISMATCH = 1 << 12;
        const REPLICATION_BROKEN = 1 << 13;
        const REPLICATION_LAG = 1 << 14;
        const WRONG_PRIMARY = 1 << 15;
        const MEMORY_HIGH = 1 << 16;
        const HOST_MEMORY_LOW = 1 << 17;
        const CPU_HIGH = 1 << 18;
        const FENCED = 1 << 19;
        const AUTH_FAILED = 1 << 20;
        const KERNEL_BLIND = 1 << 21;
    }
}

/// Every reason with its snake_case name, in bit order.
pub const NAMES: &[(Reason, &str)] = &[
    (Reason::EXITED, "exited"),
    (Reason::LISTENER_CLOSED, "listener_closed"),
    (Reason::NOT_RUNNING, "not_running"),
    (Reason::STOPPED, "stopped"),
    (Reason::DEADLOCK_SUSPECTED, "deadlock_suspected"),
    (Reason::BUSY, "busy"),
    (Reason::BLOCKED, "blocked"),
    (Reason::STARVED, "starved"),
    (Reason::STALL_TOO_LONG, "stall_too_long"),
    (Reason::PING_TIMEOUT, "ping_timeout"),
    (Reason::PINGS_MISSED, "pings_missed"),
    (Reason::RUNQ_LATENCY, "runq_latency"),
    (Reason::ROLE_MISMATCH, "role_mismatch"),
    (Reason::REPLICATION_BROKEN, "replication_broken"),
    (Reason::REPLICATION_LAG, "replication_lag"),
    (Reason::WRONG_PRIMARY, "wrong_primary"),
    (Reason::MEMORY_HIGH, "memory_high"),
    (Reason::HOST_MEMORY_LOW, "host_memory_low"),
    (Reason::CPU_HIGH, "cpu_high"),
    (Reason::FENCED, "fenced"),
    (Reason::AUTH_FAILED, "auth_failed"),
    (Reason::KERNEL_BLIND, "kernel_blind"),
];

impl Reason {
    /// snake_case names of the reasons set, in bit order (unknown bits are left out).
    pub fn names(self) -> Vec<&'static str> {
        NAMES
            .iter()
            .filter(|(r, _)| self.contains(*r))
            .map(|(_, n)| *n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_named_once() {
        assert_eq!(NAMES.len(), Reason::all().iter().count());
        let mut bits: Vec<u64> = NAMES.iter().map(|(r, _)| r.bits()).collect();
        bits.dedup();
        assert_eq!(bits.len(), NAMES.len());
        assert_eq!(
            (Reason::BUSY | Reason::EXITED).names(),
            vec!["exited", "busy"]
        );
    }
}
