//! [`System`]: what keeps the nodes available under test — vigil here ([`super::VigilSystem`]),
//! Redis Sentinel in the bench — seen only through what a fault needs of it.
use anyhow::Result;

use super::Nodes;

/// Where in a failover the coordinator died.
#[derive(Clone, Copy, Debug)]
pub struct CoordinatorKill {
    /// CLOCK_MONOTONIC ns of the kill.
    pub killed_ns: u64,
    /// Whether the coordinator had announced the failover finished before it died.
    pub finished_before: bool,
}

/// The system under test, watching a [`Nodes`] it was started over.
pub trait System {
    /// A short name for reports: `vigil`, `sentinel100`.
    fn label(&self) -> String;

    /// HOST:PORT of each Sentinel-protocol endpoint clients ask for the primary, from the host.
    fn endpoints(&self) -> Vec<String>;

    /// The data store's name at those endpoints.
    fn service(&self) -> String;

    /// Waits (bounded) until the system watches every node and names node 0 the primary.
    fn wait_ready(&self, nodes: &Nodes) -> Result<()>;

    /// Waits (bounded) until the system has begun a failover, kills its coordinator at once
    /// (vigil's controller; the sentinel leading the failover) with SIGKILL, and starts it again
    /// a moment later, as a supervisor would.
    fn kill_coordinator_mid_failover(&mut self) -> Result<CoordinatorKill>;

    /// Starts a planned switchover of the live primary to a replica, the system's own way.
    fn switchover(&mut self) -> Result<()>;
}
