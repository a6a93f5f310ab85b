//! The server as the wire sees it: how to reach it ([`conn`]) and with which password
//! ([`credentials`]) and over TLS when its servers speak it ([`tls`]), whether it answers PINGs
//! ([`pinger`], each answer a [`ping_outcome`]) and whether its peers do ([`peers`]), what it says about its role, replication
//! and memory ([`poller`], parsed by [`info`]), its clients ([`clients`]: the replicas attached,
//! disconnecting the rest), and the controller's commands as they reach the server
//! ([`commands`]).
pub mod clients;
pub mod commands;
pub mod conn;
pub mod credentials;
pub mod info;
pub mod peers;
pub mod ping_outcome;
pub mod pinger;
pub mod poller;
pub mod tls;

/// Only the first this many peers of the controller's list are probed: a verdict reports on 64
/// (one bit each), and the list comes over the network.
pub const MAX_PROBED_PEERS: usize = 64;
