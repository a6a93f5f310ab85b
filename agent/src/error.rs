//! The agent library's one error type. Messages are written for an operator at 3 a.m.: what is
//! wrong and what to do about it.
use std::{path::PathBuf, time::Duration};

use vigil_proto::ProtoError;

use crate::server::ping_outcome::PingOutcome;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "missing capabilities {}: give the agent these (systemd: AmbientCapabilities=, \
         setpriv --ambient-caps), or run it as root",
        crate::capabilities::describe(.0)
    )]
    MissingCapabilities(Vec<crate::capabilities::Need>),
    #[error(
        "cannot write {path} on bpffs, where the fence is pinned: make its user own it \
         (install -d -o USER {path}) or give the agent CAP_DAC_OVERRIDE"
    )]
    PinDirNotWritable { path: PathBuf },
    #[error(
        "this kernel has no BTF ({0} is missing); vigil needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf(PathBuf),
    #[error("kernel BTF: {0}")]
    Btf(String),
    #[error("tracefs is not mounted at {path} and mounting it failed: {reason}")]
    Tracefs { path: PathBuf, reason: String },
    #[error("tracepoint {event}: {reason}")]
    Tracepoint { event: String, reason: String },
    #[error("no such process: {0}")]
    NoSuchProcess(u32),
    #[error("nobody is listening on TCP port {0}")]
    NobodyListening(u16),
    #[error("process {0} is not listening on any TCP port; name the port with --port")]
    NoListeningPort(u32),
    #[error("process {pid} is not listening on TCP port {port}")]
    NotListeningOn { pid: u32, port: u16 },
    #[error("reading /proc: {0}")]
    Procfs(#[from] procfs::ProcError),
    #[error("loading the eBPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("the eBPF object has no {0}; the build is broken")]
    MissingFromObject(&'static str),
    #[error("{fstype} is not mounted and mounting it at {path} failed: {reason}")]
    Mount {
        fstype: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "process {0} is in no cgroup v2 (/proc/{0}/cgroup has no 0:: line); the fence needs the \
         unified hierarchy"
    )]
    NoCgroup2(u32),
    #[error("pinning {path} on bpffs: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("eBPF link of {name}: {source}")]
    Link {
        name: &'static str,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("configuration: {field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    #[error("configuration file {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    // The server, over the wire.
    #[error("cannot reach the server: {0:?}")]
    Unreachable(PingOutcome),
    #[error(transparent)]
    Server(#[from] redis::RedisError),
    #[error("the server did not answer within {0:?}")]
    NoAnswer(Duration),
    #[error("the server did not answer ROLE")]
    NoRoleAnswer,
    #[error("the switchover did not finish within {limit:?}; the server is still {role}")]
    SwitchoverUnfinished { limit: Duration, role: &'static str },
    #[error("INFO replication has no role field")]
    NoRoleField,
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    #[error("ROLE reply is malformed: {0}")]
    BadRoleReply(&'static str),
    #[error(transparent)]
    Address(#[from] ProtoError),

    // What the controller sends.
    #[error("role is unspecified")]
    UnspecifiedRole,
    #[error("command {0} has no action")]
    NoAction(u64),
    #[error("command {id}: address {address:?} is not host:port")]
    BadAddress {
        id: u64,
        address: String,
        #[source]
        source: ProtoError,
    },
    #[error("command {0}: a switchover must name its method (REPLTAKEOVER)")]
    NoSwitchoverMethod(u64),
    #[error("stale epoch {got}: this agent has already seen epoch {newest}")]
    StaleEpoch { got: u64, newest: u64 },
    #[error(
        "refused: {address} is not a server of this data store as the controller last described \
         it (its peers and primary); not replicating from it"
    )]
    NotInTopology { address: vigil_proto::HostPort },
    #[error("refused: epoch {got} is more than {max} past the newest seen ({newest})")]
    EpochJump { got: u64, newest: u64, max: u64 },
    #[error(
        "refused: a write pause of {asked:?} is longer than the maximum {max:?} (--max-pause-secs)"
    )]
    PauseTooLong { asked: Duration, max: Duration },
    #[error("stale leadership {got} < {highest}: a newer controller leads")]
    StaleLeadership { got: u64, highest: u64 },

    // The link to the controller. A transport error is shown with its whole chain of causes:
    // the link logs only this message, and the cause is what an operator needs.
    #[error("bad controller URL {url:?}: {}", error_chain(.error))]
    ControllerUrl {
        url: String,
        error: tonic::transport::Error,
    },
    #[error("cannot connect: {}", error_chain(.0))]
    ControllerConnect(tonic::transport::Error),
    #[error(
        "{0} is plain http, and this agent speaks only TLS to controllers: refusing it (give the \
         controllers https:// URLs: --advertise-grpc)"
    )]
    PlainController(String),
    #[error("the controller refused the session: {0}")]
    ControllerRefused(String),
    #[error("the controller sent no Welcome within {0:?}")]
    NoWelcome(Duration),
    #[error(
        "the controller speaks vigil protocol v{theirs}, this agent v{ours}: upgrade one of them"
    )]
    ProtocolVersion { ours: u32, theirs: u32 },
    #[error("the controller closed the session")]
    LinkClosed,
    #[error("the session broke: {0}")]
    LinkBroken(String),
}

impl AgentError {
    /// The message with every cause under it, for where only one line reaches an operator (a
    /// command's ack, a log line).
    pub fn chain(&self) -> String {
        error_chain(self)
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// `e` and every error under it, joined with ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    // Command acks carry these words to the controller and its operators, and the end-to-end
    // suites match on them.
    #[test]
    fn refusals_keep_the_words_others_match_on() {
        assert_eq!(
            AgentError::StaleEpoch { got: 3, newest: 5 }.to_string(),
            "stale epoch 3: this agent has already seen epoch 5"
        );
        assert_eq!(
            AgentError::StaleLeadership { got: 4, highest: 5 }.to_string(),
            "stale leadership 4 < 5: a newer controller leads"
        );
        assert_eq!(
            AgentError::NoAction(7).to_string(),
            "command 7 has no action"
        );
        let bad = "nowhere".parse::<vigil_proto::HostPort>().unwrap_err();
        assert_eq!(
            AgentError::BadAddress {
                id: 4,
                address: "nowhere".into(),
                source: bad,
            }
            .to_string(),
            "command 4: address \"nowhere\" is not host:port"
        );
        assert_eq!(
            AgentError::ProtocolVersion {
                ours: 2,
                theirs: 99
            }
            .to_string(),
            "the controller speaks vigil protocol v99, this agent v2: upgrade one of them"
        );
    }
}
