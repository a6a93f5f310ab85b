//! vigil-controller: one reconciler per data store, failover on local and remote evidence,
//! promotion of the best replica, persisted epochs, and a Sentinel-compatible endpoint.
//!
//! Data flows from agents, through the data stores, out to clients:
//! - [`api`]: the gRPC services: the agents' sessions, and what the `vigil` CLI asks.
//! - [`store`]: one reconciler per data store: verdicts in, decisions, failover, desired state
//!   and commands out, its state persisted.
//! - [`sentinel`]: the Sentinel-compatible endpoint clients find the primary through.
//! - [`cluster`]: several controllers on etcd: the election, and the state and views the leader
//!   keeps there.
//! - [`config`]: flags, environment and the TOML file; [`metrics`]: Prometheus;
//!   [`health`]: `/healthz`, `/readyz`, the gRPC health service and systemd's notifications;
//!   [`alerts`]: what an operator is told, and how often; [`hooks`]: the commands run on
//!   alerts and failovers, as Sentinel's scripts; [`member`]: who a controller is;
//!   [`error`]: the one error type.
pub mod alerts;
pub mod api;
pub mod cluster;
pub mod config;
pub mod error;
pub mod health;
pub mod hooks;
pub mod member;
pub mod metrics;
pub mod sentinel;
pub mod store;
