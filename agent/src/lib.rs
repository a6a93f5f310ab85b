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
pub mod error;
pub mod listen_queue;
pub mod probes;
pub mod target;
pub mod tracefs;
pub mod watch;

pub use error::AgentError;
