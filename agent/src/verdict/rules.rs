//! The verdict engine: folds what the agent knows about its server into one health and a set of
//! reasons, under [`Thresholds`] whose defaults are the `DEFAULT_*` constants here. Pure, so
//! every rule is unit-tested.
//!
//! Each reason has one severity (one table, read through [`Severity`]); health is the worst
//! severity present. The kernel view decides what missed pings mean: a server the kernel sees running a
//! long command (busy, blocked in a sleep, or starved of CPU) is DEGRADED, not dead, until the
//! stall outlasts `long_stall`. That is how a 500 ms command on a live primary stays DEGRADED.
use std::time::Duration;

use vigil_proto::HostPort;

use crate::{
    kernel::classifier::StallClass,
    server::info::{Replication, Role},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "HEALTHY",
            Self::Degraded => "DEGRADED",
            Self::Unhealthy => "UNHEALTHY",
            Self::Down => "DOWN",
        }
    }
}

pub use vigil_proto::Reason;

/// (reason, severity). The one place a reason's meaning for health is decided.
const TABLE: &[(Reason, Health)] = &[
    (Reason::EXITED, Health::Down),
    (Reason::LISTENER_CLOSED, Health::Down),
    (Reason::NOT_RUNNING, Health::Down),
    (Reason::STOPPED, Health::Unhealthy),
    (Reason::DEADLOCK_SUSPECTED, Health::Unhealthy),
    (Reason::BUSY, Health::Degraded),
    (Reason::BLOCKED, Health::Degraded),
    (Reason::STARVED, Health::Degraded),
    (Reason::STALL_TOO_LONG, Health::Unhealthy),
    (Reason::PING_TIMEOUT, Health::Unhealthy),
    (Reason::PINGS_MISSED, Health::Degraded),
    (Reason::RUNQ_LATENCY, Health::Degraded),
    (Reason::ROLE_MISMATCH, Health::Degraded),
    (Reason::REPLICATION_BROKEN, Health::Degraded),
    (Reason::REPLICATION_LAG, Health::Degraded),
    (Reason::WRONG_PRIMARY, Health::Degraded),
    (Reason::MEMORY_HIGH, Health::Degraded),
    (Reason::HOST_MEMORY_LOW, Health::Degraded),
    (Reason::CPU_HIGH, Health::Degraded),
    (Reason::FENCED, Health::Degraded),
    (Reason::AUTH_FAILED, Health::Degraded),
    (Reason::KERNEL_BLIND, Health::Healthy),
];

/// What reasons mean for health (the reasons themselves are the protocol's).
pub trait Severity {
    /// The worst severity among the reasons set.
    fn health(self) -> Health;
}

impl Severity for Reason {
    fn health(self) -> Health {
        TABLE
            .iter()
            .filter(|(r, _)| self.contains(*r))
            .map(|(_, h)| *h)
            .max()
            .unwrap_or(Health::Healthy)
    }
}

/// A stop this long is no scheduling blip: the server has served nothing all that time.
pub const DEFAULT_STOPPED_MS: u64 = 100;
/// A long command is a live server (DEGRADED) for this long; past it, clients have waited too
/// long for any command to excuse.
pub const DEFAULT_LONG_STALL_MS: u64 = 5_000;
/// One missed PING is noise on a busy host; three in a row are not.
pub const DEFAULT_PING_MISSES: u32 = 3;
/// A run-queue p99 past this adds its wait to every request: the host is short of CPU.
pub const DEFAULT_RUNQ_P99_MS: u64 = 10;
/// A primary pings its replicas every 10 s (Redis' repl-ping-replica-period), so a longer
/// silence is a stale link.
pub const DEFAULT_REPLICATION_SILENCE_SECS: u64 = 10;
/// This close to maxmemory, evictions or out-of-memory errors are near.
pub const DEFAULT_MEMORY_PCT: f64 = 95.0;
/// Below this, the host is about to swap or call the OOM killer.
pub const DEFAULT_HOST_MEMORY_AVAILABLE_PCT: f64 = 5.0;
/// A single-threaded server at this share of one core is saturated.
pub const DEFAULT_CPU_PCT: f64 = 95.0;

/// Bounds the rules use; [`Thresholds::default`] holds the `DEFAULT_*` constants above.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Stopped this long -> UNHEALTHY.
    pub stopped: Duration,
    /// A busy, blocked or starved stall this long -> UNHEALTHY.
    pub long_stall: Duration,
    /// Consecutive missed local pings that count.
    pub ping_misses: u32,
    /// Run-queue p99 above this -> DEGRADED.
    pub runq_p99: Duration,
    /// A replica that has not heard from its primary this long is lagging.
    pub replication_silence: Duration,
    /// Used memory at or above this percentage of maxmemory -> DEGRADED.
    pub memory_pct: f64,
    /// Host memory available below this percentage -> DEGRADED.
    pub host_memory_available_pct: f64,
    /// Server CPU at or above this percentage of one core -> DEGRADED.
    pub cpu_pct: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            stopped: Duration::from_millis(DEFAULT_STOPPED_MS),
            long_stall: Duration::from_millis(DEFAULT_LONG_STALL_MS),
            ping_misses: DEFAULT_PING_MISSES,
            runq_p99: Duration::from_millis(DEFAULT_RUNQ_P99_MS),
            replication_silence: Duration::from_secs(DEFAULT_REPLICATION_SILENCE_SECS),
            memory_pct: DEFAULT_MEMORY_PCT,
            host_memory_available_pct: DEFAULT_HOST_MEMORY_AVAILABLE_PCT,
            cpu_pct: DEFAULT_CPU_PCT,
        }
    }
}

/// The kernel's view of the server process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelView {
    /// The probes are loaded; false leaves the verdict to pings alone.
    pub available: bool,
    /// The process exited and no new one has taken the port.
    pub exited: bool,
    /// The listener on the server port closed and has not reopened.
    pub listener_closed: bool,
    /// How long the process has been stopped, if it is.
    pub stopped_for: Option<Duration>,
    /// The current stall: its class and the age of the oldest unread request.
    pub stall: Option<(StallClass, Duration)>,
    /// Run-queue latency p99 over the last window.
    pub runq_p99: Duration,
}

/// The local failure detector's view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingView {
    pub consecutive_misses: u32,
    /// Of those, the misses the kernel could not explain when they happened (no busy, blocked or
    /// starved stall at the time). Counting at the time matters: a stall clears a moment before
    /// the PONG that ends the misses arrives.
    pub unexplained_misses: u32,
    /// The last connection attempt was refused: nothing listens on the server address.
    pub refused: bool,
    pub auth_failed: bool,
}

/// Resource use, from procfs and INFO memory.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ResourceView {
    pub server_cpu_pct: f64,
    pub host_memory_available_pct: f64,
    /// used_memory / maxmemory in percent; None without a maxmemory limit.
    pub memory_pct: Option<f64>,
}

/// Everything the engine weighs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs {
    pub kernel: KernelView,
    pub ping: PingView,
    pub replication: Option<Replication>,
    pub resources: Option<ResourceView>,
    /// What the controller says this node should be.
    pub expected_role: Option<Role>,
    /// For a replica: the primary the controller says it should follow.
    pub expected_primary: Option<HostPort>,
    pub fenced: bool,
}

/// Whether a missed ping at this moment is explained by what the kernel sees: a live server busy
/// on CPU, asleep inside a command, or waiting for a CPU, for less than `long_stall`.
pub fn miss_explained(kernel: &KernelView, t: &Thresholds) -> bool {
    matches!(kernel.stall, Some((StallClass::Busy | StallClass::Blocked | StallClass::Starved, age)) if age < t.long_stall)
}

/// The reasons `inputs` give under `t`; `.health()` of the result is the verdict's health.
pub fn assess(inputs: &Inputs, t: &Thresholds) -> Reason {
    let mut r = Reason::empty();
    let k = &inputs.kernel;
    if k.exited {
        r |= Reason::EXITED;
    }
    if k.listener_closed {
        r |= Reason::LISTENER_CLOSED;
    }
    if inputs.ping.refused && (!k.available || k.exited || k.listener_closed) {
        r |= Reason::NOT_RUNNING;
    }
    if k.stopped_for.is_some_and(|d| d >= t.stopped) {
        r |= Reason::STOPPED;
    }
    if let Some((class, age)) = k.stall {
        match class {
            StallClass::Stopped => r |= Reason::STOPPED,
            StallClass::DeadlockSuspected => r |= Reason::DEADLOCK_SUSPECTED,
            StallClass::Busy | StallClass::Blocked | StallClass::Starved => {
                r |= match class {
                    StallClass::Busy => Reason::BUSY,
                    StallClass::Blocked => Reason::BLOCKED,
                    _ => Reason::STARVED,
                };
                if age >= t.long_stall {
                    r |= Reason::STALL_TOO_LONG;
                }
            }
        }
    }
    if inputs.ping.unexplained_misses >= t.ping_misses {
        r |= Reason::PING_TIMEOUT;
    } else if inputs.ping.consecutive_misses >= t.ping_misses {
        r |= Reason::PINGS_MISSED;
    }
    if inputs.ping.auth_failed {
        r |= Reason::AUTH_FAILED;
    }
    if k.available && k.runq_p99 > t.runq_p99 {
        r |= Reason::RUNQ_LATENCY;
    }
    if !k.available {
        r |= Reason::KERNEL_BLIND;
    }
    if let Some(repl) = &inputs.replication {
        if inputs.expected_role.is_some_and(|e| e != repl.role) {
            r |= Reason::ROLE_MISMATCH;
        }
        if repl.role == Role::Replica {
            if !repl.link_up {
                r |= Reason::REPLICATION_BROKEN;
            }
            if repl
                .last_io_secs
                .is_some_and(|s| Duration::from_secs(s) >= t.replication_silence)
            {
                r |= Reason::REPLICATION_LAG;
            }
            if let (Some(want), Some(have)) = (&inputs.expected_primary, &repl.primary)
                && want != have
            {
                r |= Reason::WRONG_PRIMARY;
            }
        }
    }
    if let Some(res) = &inputs.resources {
        if res.memory_pct.is_some_and(|p| p >= t.memory_pct) {
            r |= Reason::MEMORY_HIGH;
        }
        if res.host_memory_available_pct < t.host_memory_available_pct {
            r |= Reason::HOST_MEMORY_LOW;
        }
        if res.server_cpu_pct >= t.cpu_pct {
            r |= Reason::CPU_HIGH;
        }
    }
    if inputs.fenced {
        r |= Reason::FENCED;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::info::SyncState;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn live() -> Inputs {
        Inputs {
            kernel: KernelView {
                available: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn with_stall(class: StallClass, age: Duration, misses: u32) -> Inputs {
        let mut i = live();
        i.kernel.stall = Some((class, age));
        i.ping.consecutive_misses = misses;
        i
    }

    #[test]
    fn a_quiet_live_server_is_healthy() {
        assert_eq!(assess(&live(), &Thresholds::default()), Reason::empty());
        assert_eq!(Reason::empty().health(), Health::Healthy);
    }

    #[test]
    fn a_500ms_command_is_degraded_never_unhealthy() {
        let t = Thresholds::default();
        // Lua on CPU, and DEBUG SLEEP asleep: every age up to 500 ms, every number of missed pings.
        for class in [StallClass::Busy, StallClass::Blocked] {
            for age in [100, 250, 499, 500] {
                for misses in 0..=5 {
                    let r = assess(&with_stall(class, ms(age), misses), &t);
                    assert_eq!(
                        r.health(),
                        Health::Degraded,
                        "{class:?} {age} ms, {misses} misses: {:?}",
                        r.names()
                    );
                }
            }
        }
    }

    #[test]
    fn a_stall_past_the_long_bound_is_unhealthy() {
        let mut i = with_stall(StallClass::Busy, Duration::from_secs(5), 50);
        i.ping.unexplained_misses = 3;
        let r = assess(&i, &Thresholds::default());
        assert!(
            r.contains(Reason::STALL_TOO_LONG | Reason::PING_TIMEOUT),
            "{:?}",
            r.names()
        );
        assert_eq!(r.health(), Health::Unhealthy);
    }

    #[test]
    fn only_live_stalls_younger_than_the_bound_explain_a_miss() {
        let t = Thresholds::default();
        let k = |class, age| KernelView {
            available: true,
            stall: Some((class, ms(age))),
            ..Default::default()
        };
        assert!(miss_explained(&k(StallClass::Busy, 200), &t));
        assert!(miss_explained(&k(StallClass::Blocked, 200), &t));
        assert!(miss_explained(&k(StallClass::Starved, 200), &t));
        assert!(!miss_explained(&k(StallClass::Busy, 5_000), &t));
        assert!(!miss_explained(&k(StallClass::Stopped, 200), &t));
        assert!(!miss_explained(&k(StallClass::DeadlockSuspected, 200), &t));
        assert!(!miss_explained(&KernelView::default(), &t));
    }

    #[test]
    fn stopped_past_100ms_is_unhealthy_and_not_before() {
        let t = Thresholds::default();
        let mut i = live();
        i.kernel.stopped_for = Some(ms(99));
        assert_eq!(assess(&i, &t).health(), Health::Healthy);
        i.kernel.stopped_for = Some(ms(100));
        assert_eq!(assess(&i, &t), Reason::STOPPED);
        assert_eq!(assess(&i, &t).health(), Health::Unhealthy);
        // A stopped stall alone says the same.
        assert_eq!(
            assess(&with_stall(StallClass::Stopped, ms(100), 0), &t).health(),
            Health::Unhealthy
        );
    }

    #[test]
    fn a_crash_or_closed_listener_is_down_at_once() {
        let t = Thresholds::default();
        let mut i = live();
        i.kernel.exited = true;
        assert_eq!(assess(&i, &t).health(), Health::Down);
        let mut i = live();
        i.kernel.listener_closed = true;
        assert_eq!(assess(&i, &t).health(), Health::Down);
    }

    #[test]
    fn a_deadlock_is_unhealthy() {
        let r = assess(
            &with_stall(StallClass::DeadlockSuspected, ms(100), 0),
            &Thresholds::default(),
        );
        assert_eq!(r, Reason::DEADLOCK_SUSPECTED);
        assert_eq!(r.health(), Health::Unhealthy);
    }

    #[test]
    fn missed_pings_the_kernel_cannot_explain_are_unhealthy() {
        let t = Thresholds::default();
        let mut i = live();
        i.ping.consecutive_misses = 2;
        assert_eq!(assess(&i, &t).health(), Health::Healthy);
        i.ping.consecutive_misses = 3;
        assert_eq!(assess(&i, &t), Reason::PINGS_MISSED);
        i.ping.unexplained_misses = 3;
        assert_eq!(assess(&i, &t), Reason::PING_TIMEOUT);
        // Without the kernel's view, pings are all there is.
        let blind = Inputs {
            ping: PingView {
                consecutive_misses: 3,
                unexplained_misses: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            assess(&blind, &t),
            Reason::PING_TIMEOUT | Reason::KERNEL_BLIND
        );
    }

    #[test]
    fn refused_connections_are_down_only_when_nothing_runs() {
        let t = Thresholds::default();
        let mut i = live();
        i.ping.refused = true;
        // The kernel still sees a live process: refused alone does not make it DOWN.
        assert_eq!(assess(&i, &t).health(), Health::Healthy);
        i.kernel.exited = true;
        assert!(assess(&i, &t).contains(Reason::NOT_RUNNING | Reason::EXITED));
    }

    #[test]
    fn replication_problems_degrade() {
        let t = Thresholds::default();
        let mut i = live();
        i.expected_role = Some(Role::Replica);
        i.expected_primary = Some(HostPort::new("10.0.0.1", 6379));
        i.replication = Some(Replication {
            role: Role::Replica,
            offset: 10,
            link_up: false,
            last_io_secs: Some(30),
            link_down_secs: Some(30),
            sync: SyncState::Connecting,
            primary: Some(HostPort::new("10.0.0.2", 6379)),
            replicas: 0,
        });
        let r = assess(&i, &t);
        assert_eq!(
            r,
            Reason::REPLICATION_BROKEN | Reason::REPLICATION_LAG | Reason::WRONG_PRIMARY
        );
        assert_eq!(r.health(), Health::Degraded);
        i.expected_role = Some(Role::Primary);
        assert!(assess(&i, &t).contains(Reason::ROLE_MISMATCH));
    }

    #[test]
    fn resources_past_their_bounds_degrade() {
        let t = Thresholds::default();
        let mut i = live();
        i.resources = Some(ResourceView {
            server_cpu_pct: 99.0,
            host_memory_available_pct: 2.0,
            memory_pct: Some(97.0),
        });
        assert_eq!(
            assess(&i, &t),
            Reason::CPU_HIGH | Reason::HOST_MEMORY_LOW | Reason::MEMORY_HIGH
        );
        i.resources = Some(ResourceView {
            server_cpu_pct: 50.0,
            host_memory_available_pct: 50.0,
            memory_pct: None,
        });
        assert_eq!(assess(&i, &t), Reason::empty());
    }

    #[test]
    fn every_reason_has_a_name_and_a_severity() {
        assert_eq!(TABLE.len(), Reason::all().iter().count());
        assert_eq!(Reason::all().names().len(), TABLE.len());
        assert_eq!(
            (Reason::BUSY | Reason::EXITED).names(),
            vec!["exited", "busy"]
        );
    }
}
