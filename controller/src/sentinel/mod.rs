//! A Redis-Sentinel-compatible endpoint, so clients in Sentinel mode (redis-py, redis-rs, Jedis,
//! ioredis, Lettuce) find the primary and follow failovers with no code change.
//!
//! - [`topology`]: what the reconcilers publish (each store's primary and replicas) and announce.
//! - [`listener`]: the accept loop, one task per client.
//! - [`connection`]: one client: framing, protocol version, subscriptions and their deliveries.
//! - [`commands`]: the answer to each command, from the published view.
//! - [`resp`]: the bounded RESP request parser and the RESP2/RESP3 reply encoder.
pub mod commands;
pub mod connection;
pub mod listener;
pub mod resp;
pub mod topology;

pub use listener::serve;
