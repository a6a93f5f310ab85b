//! The bounds a reconciler works within, each default beside its name with the reason for it.
//! The controller's flags show these defaults in their help, and `Settings::default()` uses them.
use std::time::Duration;

/// An agent not heard from this long is silent: five missed 100 ms heartbeats.
pub const DEFAULT_SILENCE_MS: u64 = 500;
/// After start-up, agents have this long to reconnect before silence counts as evidence.
pub const DEFAULT_GRACE_MS: u64 = 5_000;
/// The flap guard: a primary that fails again this soon after a failover is left to an operator.
pub const DEFAULT_MIN_FAILOVER_INTERVAL_MS: u64 = 30_000;
/// A replica whose replication link was last up longer ago may lack acknowledged writes.
pub const DEFAULT_LINK_BOUND_MS: u64 = 10_000;
/// Each failover step (promote, re-point) waits this long for the agent's acknowledgement...
pub const STEP_DEADLINE: Duration = Duration::from_secs(5);
/// ...and is tried this many times.
pub const STEP_ATTEMPTS: u32 = 3;
/// Desired state goes to every agent this often: it doubles as the controller's heartbeat.
pub const DESIRED_EVERY: Duration = Duration::from_millis(200);
/// Each candidate gets this long to report its offset before a promotion.
pub const PROBE_DEADLINE: Duration = Duration::from_millis(100);
/// How often the reconciler judges the primary without a new verdict (silence is no event).
pub const TICK: Duration = Duration::from_millis(50);
/// A node in the wrong role is corrected at most this often.
pub const CORRECT_EVERY: Duration = Duration::from_secs(2);
/// A planned switchover's server-side timeout (FAILOVER's TIMEOUT, REPLTAKEOVER's seconds).
pub const SWITCHOVER_TIMEOUT_SECS: u32 = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// An agent not heard from this long is silent.
    pub silence: Duration,
    /// A replica whose link was last up longer ago than this is not promoted.
    pub link_bound: Duration,
    /// After start-up, silence is not evidence for this long.
    pub grace: Duration,
    /// The flap guard: at least this long between automatic failovers of one store.
    pub min_failover_interval: Duration,
    /// Each failover step's deadline, and how often a step is tried.
    pub step_deadline: Duration,
    pub step_attempts: u32,
    /// How often desired state is re-sent to every agent (also the controller's heartbeat).
    pub desired_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            silence: Duration::from_millis(DEFAULT_SILENCE_MS),
            link_bound: Duration::from_millis(DEFAULT_LINK_BOUND_MS),
            grace: Duration::from_millis(DEFAULT_GRACE_MS),
            min_failover_interval: Duration::from_millis(DEFAULT_MIN_FAILOVER_INTERVAL_MS),
            step_deadline: STEP_DEADLINE,
            step_attempts: STEP_ATTEMPTS,
            desired_every: DESIRED_EVERY,
        }
    }
}
