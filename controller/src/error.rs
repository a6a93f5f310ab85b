//! The controller library's one error type. Messages are written for an operator: what is wrong,
//! and where it helps, what to do.
use std::{path::PathBuf, time::Duration};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(
        "data store name {0:?} is not allowed: use letters, digits, '-', '_' and '.', at most 64"
    )]
    BadName(String),
    #[error("data store {0:?} is not in this controller's configuration")]
    UnknownDatastore(String),
    #[error("no data store {0:?}")]
    NoSuchDatastore(String),
    #[error(
        "this controller runs its maximum of {0} data stores (--max-datastores): refusing another"
    )]
    TooManyDatastores(usize),
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error(
        "the data folder {0} is in use by another vigil-controller (its lock file is held); \
         give each controller its own --data-dir"
    )]
    DataDirLocked(PathBuf),
    #[error("configuration: {field}: {message}")]
    Config { field: String, message: String },
    #[error("configuration file {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("agent hello: {field} {problem}")]
    HelloField {
        field: &'static str,
        problem: String,
    },
    #[error("node {node:?} would be one more than the {max} nodes a data store may have: refused")]
    TooManyNodes { node: String, max: usize },
    #[error(transparent)]
    Address(#[from] vigil_proto::ProtoError),

    // A data store's reconciler and the commands it sends.
    #[error("the data store's reconciler stopped")]
    ReconcilerStopped,
    #[error("{0}'s agent is not connected")]
    NotConnected(String),
    #[error("{0}'s session is not taking messages")]
    SessionFull(String),
    #[error("{node}'s agent refused: {reason}")]
    Refused { node: String, reason: String },
    #[error("no answer from {node} within {within:?}")]
    NoAnswer { node: String, within: Duration },
    #[error("promoting {node}: {source}")]
    Promote {
        node: String,
        #[source]
        source: Box<ControllerError>,
    },
    #[error("the old primary {node} is not fenced: {source}")]
    NotFenced {
        node: String,
        #[source]
        source: Box<ControllerError>,
    },
    #[error("{node} did not catch up with the fenced primary: at offset {offset}, {wanted} wanted")]
    NotCaughtUp {
        node: String,
        offset: u64,
        wanted: u64,
    },
    #[error("could not persist the new epoch: {0}")]
    EpochNotPersisted(#[source] Box<ControllerError>),
    #[error("could not persist the failover's new target: {0}")]
    TargetNotPersisted(#[source] Box<ControllerError>),
    #[error("the failover at epoch {0} is no longer under way")]
    NotUnderWay(u64),

    // Several controllers on etcd.
    #[error("etcd: {what}: {message}")]
    Etcd { what: String, message: String },
    #[error("this controller no longer leads: a newer leader decides now")]
    Deposed,
    #[error(
        "this controller did not run for {0:?} (stopped or frozen), and its leader lease ran out meanwhile"
    )]
    Paused(Duration),
    #[error("this controller does not lead; {}", match leader {
        Some(l) => format!("{} does, at {}", l.name, l.grpc),
        None => "no controller leads right now (etcd unreachable, or an election under way)".into(),
    })]
    NotLeader {
        leader: Option<crate::member::ControllerInfo>,
    },

    // What an operator asked for and cannot have now.
    #[error("a failover is already in progress")]
    FailoverInProgress,
    #[error("data store {0} has no known primary")]
    NoPrimary(String),
    #[error("{node} is not a replica of {datastore}")]
    NotAReplica { node: String, datastore: String },
    #[error("{0} cannot be promoted now (not a healthy, linked replica with priority > 0)")]
    NotPromotable(String),
    #[error("no replica can be promoted now")]
    NoPromotableReplica,
    #[error(
        "the flavour of {0} (Redis, Valkey or Dragonfly) is not known yet, so the switchover \
         command cannot be chosen: retry once its agent reaches the server"
    )]
    FlavourUnknown(String),

    // The Sentinel endpoint's RESP parser.
    #[error("Protocol error: {0}")]
    Protocol(&'static str),
    #[error("Protocol error: {0} too large")]
    TooLarge(&'static str),
    /// As Redis words it: `multibulk` for an array, `bulk` for a bulk string.
    #[error("Protocol error: unauthenticated {} length", match *.0 {
        "array" | "inline command" => "multibulk",
        _ => "bulk",
    })]
    Unauthenticated(&'static str),
}

impl ControllerError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = ControllerError> = std::result::Result<T, E>;
