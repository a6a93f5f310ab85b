//! The data stores: one reconciler task per store, which holds that store's nodes, verdicts and
//! persisted state, judges its primary, and fails it over to the best replica.
//!
//! In the order a verdict flows through:
//! - [`registry`]: the data stores this controller runs, each behind its reconciler's channel.
//! - [`actor`]: the reconciler task: its inputs, its loop, what it holds, its alerts.
//! - [`intake`]: sessions and verdicts coming in; a node in the wrong role corrected.
//! - [`nodes`]: each node as the reconciler knows it, and the view of it the decisions take.
//! - [`decision`]: has the primary failed, which replica is best (pure).
//! - [`failover`]: judge, probe the candidates, start the failover, finish, resume.
//! - [`epoch`]: the epoch that starts a failover, persisted before anything is promoted at it
//!   (the old primary's fence already on its way).
//! - [`choice`]: a failover's target, settled on the candidates' offsets while the old primary
//!   is fenced.
//! - [`steps`]: a failover's steps: fence the old primary, hand over, re-point.
//! - [`switchover`]: an operator's planned switchover or forced promotion.
//! - [`maintenance`]: pause and resume: no automatic failover while paused.
//! - [`commands`]: sending a command to an agent and awaiting its acknowledgement.
//! - [`desired`]: the desired state each agent is sent when it changes, and the heartbeat that
//!   renews the primary's lease.
//! - [`publish`]: what clients and operators are told: the Sentinel view, its events, status.
//! - [`exported`]: what Prometheus is told: each node's health, connection and verdict age, the
//!   epoch and the primary.
//! - [`state`]: the persisted state (epoch, primary, failover in flight, history, paused) and its
//!   file.
//! - [`timeline`]: a failover's stages, in ms from the failure or the request, for the history.
//! - [`data_dir`]: the data folder the state files live in: private, and locked by one
//!   controller at a time.
//! - [`etcd_state`]: the same state in etcd, for several controllers.
//! - [`settings`]: the bounds a reconciler works within, with their defaults.
pub mod actor;
mod choice;
mod commands;
pub mod data_dir;
pub mod decision;
mod desired;
mod epoch;
pub mod etcd_state;
mod exported;
pub mod failover;
mod intake;
mod maintenance;
pub mod nodes;
mod publish;
pub mod registry;
pub mod settings;
pub mod state;
mod steps;
mod switchover;
#[cfg(test)]
mod tests;
pub mod timeline;

pub use actor::Input;
pub use nodes::NodeInfo;
pub use registry::Registry;
pub use settings::Settings;
