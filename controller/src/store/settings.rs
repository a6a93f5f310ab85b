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
/// The controller's heartbeat: each one renews the primary's lease (a small grant, not its whole
/// desired state).
pub const DEFAULT_HEARTBEAT_MS: u64 = 200;
/// Desired state goes to an agent when it changes, and again this often: a refresh, not the way
/// changes travel, so it can be slow. Every agent of a fleet hears from the controller this often
/// at least, and no more when nothing changes.
pub const DEFAULT_DESIRED_REFRESH_MS: u64 = 5_000;
/// How often a replica with nothing to report sends its unchanged verdict (0: on its agent's own
/// heartbeat). Its silence waits for nothing, and replicas are most of a fleet's agents, so most
/// of the verdicts a controller takes in; it is judged silent after five missed slow beats.
pub const DEFAULT_QUIET_HEARTBEAT_MS: u64 = 1_000;
/// The lease each heartbeat grants the primary: five heartbeats, so a lost one or two do not let
/// a healthy primary fence itself; short, because an unreachable primary is failed over only
/// once it has run out.
pub const DEFAULT_LEASE_MS: u64 = 1_000;
/// Waited beyond the lease before promoting past an unreachable primary: the time its agent
/// takes to notice the lease ran out and to put the fence up, with room to spare.
pub const DEFAULT_LEASE_MARGIN_MS: u64 = 250;
/// How long the old primary's agent has to acknowledge its fence before a promotion. Putting a
/// kernel fence up takes a few milliseconds; an agent that cannot answer in this long is treated
/// as unreachable, and its lease is waited out instead.
pub const DEFAULT_FENCE_DEADLINE_MS: u64 = 1_000;
/// Each failover step (promote, re-point) waits this long for the agent's acknowledgement...
pub const STEP_DEADLINE: Duration = Duration::from_secs(5);
/// ...and is tried this many times.
pub const STEP_ATTEMPTS: u32 = 3;
/// Each candidate gets this long to report its offset before a promotion.
pub const PROBE_DEADLINE: Duration = Duration::from_millis(100);
/// A planned switchover waits at most this long for its target to catch up with the fenced
/// primary before it gives up and lifts the fence; also REPLTAKEOVER's own timeout.
pub const CATCH_UP_WITHIN: Duration = Duration::from_secs(5);
/// How often the target of a planned switchover is asked how far it has caught up.
pub const CATCH_UP_POLL: Duration = Duration::from_millis(5);
/// How often the reconciler judges the primary without a new verdict while something is wrong
/// with it (silent, failing, a failover to resume). A primary that serves is judged on its own
/// verdicts, and once more when it would turn silent.
pub const TICK: Duration = Duration::from_millis(50);
/// A replica of a live primary without a replication link for this long raises
/// `replication_broken`: longer than a resync after a failover takes on a small data set.
pub const REPLICATION_BROKEN_AFTER: Duration = Duration::from_secs(3);
/// A node in the wrong role is corrected at most this often.
pub const CORRECT_EVERY: Duration = Duration::from_secs(2);

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
    /// How often the primary's lease is renewed.
    pub heartbeat: Duration,
    /// How often an agent is sent its desired state again when it has not changed.
    pub desired_refresh: Duration,
    /// How often a quiet replica's agent sends its unchanged verdict; zero: its own heartbeat.
    pub quiet_heartbeat: Duration,
    /// The lease each heartbeat grants the primary.
    pub lease: Duration,
    /// Waited beyond the lease before promoting past a primary that did not confirm its fence.
    pub lease_margin: Duration,
    /// How long the old primary's agent has to confirm its fence.
    pub fence_deadline: Duration,
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
            heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
            desired_refresh: Duration::from_millis(DEFAULT_DESIRED_REFRESH_MS),
            quiet_heartbeat: Duration::from_millis(DEFAULT_QUIET_HEARTBEAT_MS),
            lease: Duration::from_millis(DEFAULT_LEASE_MS),
            lease_margin: Duration::from_millis(DEFAULT_LEASE_MARGIN_MS),
            fence_deadline: Duration::from_millis(DEFAULT_FENCE_DEADLINE_MS),
        }
    }
}

impl Settings {
    /// The slow pace for quiet replicas, as desired state carries it.
    pub fn quiet_heartbeat_ms(&self) -> u32 {
        u32::try_from(self.quiet_heartbeat.as_millis()).unwrap_or(u32::MAX)
    }

    /// After the last grant at `granted`, when the old primary is surely fenced or unable to
    /// acknowledge a write: its lease and the margin have run out.
    pub fn lease_over(&self, granted: tokio::time::Instant) -> tokio::time::Instant {
        granted + self.lease + self.lease_margin
    }
}
