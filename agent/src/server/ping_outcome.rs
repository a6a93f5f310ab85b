//! [`PingOutcome`]: what one PING (or one attempt to connect) found, as the pinger, the peer
//! probes, the verdict and the agent's errors all speak of it.
use std::time::Duration;

/// What one PING found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PingOutcome {
    Pong(Duration),
    /// No answer within the interval (the request may still be queued at the server).
    Timeout,
    /// Nothing listens at the address.
    Refused,
    /// The server refused our credentials.
    AuthFailed(String),
    Error(String),
}
