//! A Redis-Sentinel-compatible endpoint, so clients in Sentinel mode (redis-py, redis-rs, Jedis,
//! ioredis, Lettuce) find the primary and follow failovers with no code change, and exporters
//! read it as they read a Sentinel.
//!
//! - [`topology`]: what the reconcilers publish (each store's primary and replicas) and announce.
//! - [`listener`]: the accept loop, one task per client, capped, over [`tls`] when configured.
//! - [`endpoint`]: what the clients share: the view, the endpoint's ids, the registry, counters,
//!   and its options (password, idle timeout, client bound).
//! - [`connection`]: one client: framing, its session, the announcements delivered to it, its
//!   idle timeout.
//! - [`auth`]: the password and user a client must AUTH with, compared in constant time.
//! - [`commands`]: the answer to each command; [`subcommands`]: SENTINEL's; [`instances`]: what
//!   SENTINEL MASTER(S) and REPLICAS say about a node; [`info`]: INFO; [`clients`]: each
//!   client's state and CLIENT; [`subscriptions`]: pub/sub, matched by [`glob`] (linear time).
//! - [`resp`]: the bounded RESP request parser and the RESP2/RESP3 reply encoder.
pub mod auth;
pub mod clients;
pub mod commands;
pub mod connection;
pub mod endpoint;
pub mod glob;
pub mod info;
pub mod instances;
pub mod listener;
pub mod resp;
pub mod subcommands;
pub mod subscriptions;
pub mod tls;
pub mod topology;

pub use listener::serve;
