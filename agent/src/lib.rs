//! vigil-agent: watches one Redis-protocol server process from the kernel (eBPF) and over the
//! wire (RESP), and reports verdicts on it to the controller.
//!
//! The modules, in the order data flows through them:
//!
//! - [`kernel`]: loads the eBPF programs, reads what they record, and runs the stall
//!   [`kernel::classifier`], which names a stall by what the server's thread is doing; out come
//!   kernel events ([`kernel::event`]) and the kernel's view of the server.
//! - [`server`]: the other view, over the wire: one connection type, local and peer PINGs, the
//!   ROLE/INFO health poller and its parsers, and the commands the controller asks for.
//! - [`host`]: finding the server process, its CPU and memory, and its listen queue, in procfs.
//! - [`verdict`]: folds those views into one health and a set of reasons ([`verdict::rules`]),
//!   kept current by the [`verdict::monitor`].
//! - [`link`]: streams verdicts to the controller over gRPC and brings its commands back.
//! - [`fence`]: what keeps a deposed primary from acknowledging writes: a packet filter on the
//!   server's cgroup and its client connections destroyed, pinned so it outlives the agent, the
//!   gate that lets the agent's own connections through, and the rules that lift it.
//! - [`daemon`]: `vigil-agent run`, which wires all of the above: its settings and their
//!   defaults, the event loop, the command runner, the epoch rule, the lease and self-fencing,
//!   the Prometheus metrics, and the health endpoints and systemd notifications.
//! - [`watch`]: `vigil-agent watch`, which prints the kernel events and verdicts of one server.
//! - [`capabilities`]: the Linux capabilities the agent needs, checked once at start.
//! - [`error`]: the crate's one error type.
pub mod capabilities;
pub mod daemon;
pub mod error;
pub mod fence;
pub mod host;
pub mod kernel;
pub mod link;
pub mod server;
pub mod verdict;
pub mod watch;

pub use error::AgentError;
