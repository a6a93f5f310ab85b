//! What vigil's parts share: the vigil.v1 protocol between agents, the controller and the `vigil`
//! CLI, and the few types and services every daemon speaks the same way.
//!
//! - [`v1`]: the messages and tonic services, generated from `proto/vigil/v1/vigil.proto`;
//!   [`codec`]: the protobuf codec they use, with buffers sized for a fleet of sessions.
//! - [`reason`]: the bits of a verdict's reasons, with their names.
//! - [`heartbeat`]: how often an agent sends a verdict that did not change, and which verdicts
//!   may go out slowly.
//! - [`host_port`]: `HOST:PORT`, parsed in one place for every address.
//! - [`limits`]: the protocol's bounds: string lengths, nodes per data store, message sizes.
//! - [`telemetry`]: the logging flags and setup, and the HTTP server of `/metrics` (with
//!   `vigil_build_info`) and the daemon's health endpoints.
//! - [`health`]: what the health endpoints share: the main loop's heartbeat, and the answer.
//! - [`health_state`]: a health as Prometheus' `state` label, the same on both daemons.
//! - [`notify`]: systemd's `Type=notify` messages (READY, WATCHDOG, STATUS, STOPPING).
//! - [`accept`]: the accept loop every listener shares, which pauses instead of spinning when
//!   the process is out of file descriptors.
//! - [`secret`]: reading a password from a file, the same way for every daemon.
//! - [`tls`]: the identity a vigil certificate names, and reading PEM files.
//! - [`cli`]: what every command line does the same way (defaults shown in help).
//! - [`print_config`]: `--print-config`, the effective configuration with each value's source.
//! - [`error`]: this crate's one error type.
pub mod accept;
pub mod cli;
pub mod codec;
pub mod error;
pub mod health;
pub mod health_state;
pub mod heartbeat;
pub mod host_port;
pub mod limits;
pub mod notify;
pub mod print_config;
pub mod reason;
pub mod secret;
pub mod telemetry;
pub mod tls;

pub use error::ProtoError;
pub use host_port::HostPort;
pub use reason::Reason;

pub mod v1 {
    tonic::include_proto!("vigil.v1");
}

/// Where agents and the CLI find the controller unless told: its default gRPC address.
pub const DEFAULT_CONTROLLER_URL: &str = "http://127.0.0.1:7420";

/// A node's promotion priority when none is given: lower is preferred, 0 never promotes.
pub const DEFAULT_PRIORITY: u32 = 100;

/// The protocol version agents and controller exchange in Hello and Welcome. Both refuse a peer
/// with another version, with a message naming both. Version 2: verdicts carry the server's
/// flavour, and a switchover names the command the agent runs. Version 3: the kernel fence, and
/// the lease desired state grants. Version 4: several controllers (a follower redirects, every
/// command carries its sender's leadership), and replicas say how long their link has been down.
/// Version 5: desired state goes out when it changes (and every few seconds), and the primary's
/// lease is renewed on the heartbeat by a LeaseGrant.
pub const PROTOCOL_VERSION: u32 = 5;

/// `Verdict.link_down_ms` of a replica whose link was not seen up since its agent started.
pub const LINK_NEVER_UP: u32 = u32::MAX;
