//! [`Attempt`]: one write as its writer reported it (one JSON line of
//! `tests/clients/safety_writer.py`), and how it is read back.
use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Whether the writer waited for a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SET alone: acknowledged when SET answered OK.
    Plain,
    /// SET then WAIT 1: acknowledged only when WAIT counted a replica.
    Wait,
}

/// How one attempt ended, as its client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: SET answered OK (and, for a WAIT write, a replica had it).
    Ack,
    /// A WAIT write whose SET a server took but no replica confirmed in time: not acknowledged to
    /// the application, but the server did accept a write.
    Unreplicated,
    /// The server refused it as a replica (READONLY).
    ReadOnly,
    /// No reply within the client's timeout.
    Timeout,
    /// Any other failure, with its text.
    Error(String),
}

/// One write attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Unique per attempt: `<writer id>:<sequence>`; its value is the key itself.
    pub key: String,
    pub kind: Kind,
    pub outcome: Outcome,
    /// The port of the server that executed it (from CLIENT INFO's laddr), when it succeeded.
    pub server_port: Option<u16>,
    /// CLOCK_MONOTONIC ns when the executing server ran it (its TIME, kept within the request's
    /// send and reply), when it succeeded.
    pub exec_ns: Option<u64>,
    /// CLOCK_MONOTONIC ns of the reply (or of the failure).
    pub reply_ns: u64,
}

impl Attempt {
    /// Reads one JSON line of the writer.
    pub fn parse(line: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        let text = |field: &str| v[field].as_str().map(str::to_string);
        let kind = match text("kind").as_deref() {
            Some("plain") => Kind::Plain,
            Some("wait") => Kind::Wait,
            other => bail!("unknown kind {other:?} in {line}"),
        };
        let outcome = match text("outcome").as_deref() {
            Some("ack") => Outcome::Ack,
            Some("unreplicated") => Outcome::Unreplicated,
            Some("readonly") => Outcome::ReadOnly,
            Some("timeout") => Outcome::Timeout,
            Some("error") => Outcome::Error(text("error").unwrap_or_default()),
            other => bail!("unknown outcome {other:?} in {line}"),
        };
        Ok(Self {
            key: text("key").with_context(|| format!("no key in {line}"))?,
            kind,
            outcome,
            server_port: v["server"].as_u64().and_then(|p| u16::try_from(p).ok()),
            exec_ns: v["exec_ns"].as_u64(),
            reply_ns: v["reply_ns"].as_u64().unwrap_or(0),
        })
    }

    pub fn acknowledged(&self) -> bool {
        self.outcome == Outcome::Ack
    }

    /// A server took the write (whether or not the client was told it was safe).
    pub fn accepted(&self) -> bool {
        matches!(self.outcome, Outcome::Ack | Outcome::Unreplicated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_line_is_read_back() {
        let line = r#"{"key": "d-wait:7", "kind": "wait", "sent_ns": 10, "reply_ns": 30, "server": 7001, "exec_ns": 20, "outcome": "ack", "replicas": 1}"#;
        let a = Attempt::parse(line).unwrap();
        assert_eq!(a.key, "d-wait:7");
        assert_eq!(a.kind, Kind::Wait);
        assert!(a.acknowledged());
        assert_eq!(a.server_port, Some(7001));
        assert_eq!(a.exec_ns, Some(20));
        let failed = r#"{"key": "s:1", "kind": "plain", "sent_ns": 1, "reply_ns": 2, "outcome": "readonly", "error": "READONLY"}"#;
        let a = Attempt::parse(failed).unwrap();
        assert_eq!(a.outcome, Outcome::ReadOnly);
        assert!(!a.accepted());
        assert_eq!(a.server_port, None);
    }
}
