//! The host around the server, read from procfs: finding the server process and its threads
//! ([`target`]), its CPU and memory and the host's ([`resources`]), and overflow of its listen
//! queue ([`listen_queue`]).
pub mod listen_queue;
pub mod resources;
pub mod target;
