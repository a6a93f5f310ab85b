//! vigil-controller: one reconciler per data store, failover on local and remote evidence,
//! promotion of the best replica, persisted epochs, and a Sentinel-compatible endpoint.
//!
//! - [`decision`]: has the primary failed, which replica is best (pure).
//! - [`reconciler`]: the per-data-store task that acts on those decisions.
//! - [`state`]: the persisted epoch, primary and history.
//! - [`grpc`]: the agent link and the CLI's control service; [`registry`]: the data stores.
//! - [`sentinel`] and [`resp`]: the Sentinel-compatible endpoint.
//! - [`topology`]: what is published to clients; [`metrics`]: Prometheus; [`config`].
pub mod config;
pub mod decision;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod reconciler;
pub mod registry;
pub mod resp;
pub mod sentinel;
pub mod state;
pub mod topology;
