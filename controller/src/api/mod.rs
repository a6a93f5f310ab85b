//! The controller's gRPC services.
//!
//! - [`agent_link`]: `AgentLink`, one session per agent: hello, verdicts and acks up; desired
//!   state and commands down.
//! - [`control`]: `Control`, what the `vigil` CLI asks: status, failover, watch.
//! - [`peer`]: who the caller's certificate says it is, and what each identity may do.
pub mod agent_link;
pub mod control;
pub mod peer;

pub use agent_link::AgentLinkService;
pub use control::ControlService;
