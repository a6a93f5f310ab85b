//! vigil-agent: watches one Redis-protocol server process from the kernel (eBPF) and reports
//! what it sees.
//!
//! - [`probes`]: loads the kernel programs and reads what they record.
//! - [`classifier`]: turns that into process states (stopped, busy, deadlock suspected, ...).
//! - [`target`]: finds the server process through procfs.
//! - [`listen_queue`]: accept-queue overflow on the server port, sampled from procfs.
//! - [`tracefs`] and [`btf`]: the kernel layouts the programs need, read at start-up.
//! - [`watch`]: the `vigil-agent watch` diagnostic command.
pub mod btf;
pub mod classifier;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod deadline;
pub mod error;
pub mod failure_detector;
pub mod fencing;
pub mod health;
pub mod info;
pub mod kernel;
pub mod link;
pub mod listen_queue;
pub mod metrics;
pub mod monitor;
pub mod probes;
pub mod resources;
pub mod slots;
pub mod target;
pub mod tracefs;
pub mod verdict;
pub mod watch;
pub mod wire;

pub use error::AgentError;
